"""Grid files: a described grid of sites, pools, links, prices and carbon, in YAML.

Format (every error names the file, line and field)::

    name: east-data-west
    utc_offset_h: 8                 # local time of the ToU windows and carbon hours
    tou_profiles:                   # 24 multipliers of a pool's base price, local hours 0..23
      west: [0.7, 0.7, ...]
    carbon_shapes:                  # 24 multipliers of a site's average emission factor
      solar: [1.1, 1.1, ...]
    sites:
      - {name: qingyang, region: cn-northwest, province: Gansu, lat: 35.7, lon: 107.6,
         green_share: 0.37, carbon_kg_per_kwh: 0.4955, carbon_shape: solar}
    links:
      - {a: qingyang, b: beijing, latency_ms: 12.0, bandwidth_gbps: 400, direct: true}
    pools:
      - {name: a100, site: qingyang, class: intelligent, engine: slurm,
         device_model: A100-SXM4-80GB, device_memory_gb: 80, devices: 64, cores: 1024, memory_gb: 8192,
         node: {cores: 128, memory_gb: 1024, devices: 8},
         speed: 1.0, power_kw: 0.4, price_fen: 3300, tou: west}

``price_fen`` is the flat price of one SCU·h; hour h costs
``round(price_fen * tou[h])`` fen.  ``speed`` is SCU per device-hour (or
core-hour on CPU pools); ``power_kw`` per device (or core) at full load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from suanwang.domain.grid import Capacity, Link, Pool, Site
from suanwang.domain.resources import Engine, ResourceClass
from suanwang.domain.scheduler import HOURS, CarbonSignal, GridModel, PoolSignals, PriceSignal
from suanwang.errors import InvalidSpec


class _LineDict(dict):  # type: ignore[type-arg]
    line: int = 0


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> _LineDict:
    d = _LineDict(loader.construct_mapping(node, deep=True))
    d.line = node.start_mark.line + 1
    return d


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


@dataclass(frozen=True)
class GridFile:
    """A loaded grid: its name and the scheduler's model."""

    name: str
    model: GridModel


class _Ctx:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: Mapping[str, Any] | None, msg: str) -> InvalidSpec:
        line = getattr(where, "line", 0)
        at = f"{self.source}:{line}" if line else self.source
        return InvalidSpec(f"{at}: {msg}", line=line, source=self.source)

    def get(self, d: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str, default: Any = ...) -> Any:
        if key not in d:
            if default is ...:
                raise self.fail(d, f"{what}: missing field '{key}'")
            return default
        value = d[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.fail(d, f"{what}: field '{key}' must be {getattr(kind, '__name__', kind)}, got {value!r}")
        return value

    def number(self, d: Mapping[str, Any], key: str, what: str, default: Any = ..., *, positive: bool = False,
               nonneg: bool = True) -> float:
        v = self.get(d, key, (int, float), what, default)
        if positive and not v > 0:
            raise self.fail(d, f"{what}: field '{key}' must be positive, got {v}")
        if nonneg and v < 0:
            raise self.fail(d, f"{what}: field '{key}' must not be negative, got {v}")
        return float(v)

    def series(self, d: Mapping[str, Any], key: str, what: str) -> tuple[float, ...]:
        v = d.get(key)
        if not isinstance(v, list) or len(v) != HOURS or not all(isinstance(x, (int, float)) and x >= 0 for x in v):
            raise self.fail(d, f"{what}: field '{key}' must be a list of {HOURS} non-negative numbers")
        return tuple(float(x) for x in v)


def load_grid(path: str | Path) -> GridFile:
    """Read a grid file; raise ``InvalidSpec`` naming the line and field of the first problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidSpec(f"{path}: cannot read grid file ({exc.strerror})") from exc
    return parse_grid(text, source=str(path))


def parse_grid(text: str, *, source: str = "<grid>") -> GridFile:
    c = _Ctx(source)
    try:
        doc = yaml.load(text, Loader=_Loader)  # nosec B506  # _Loader is a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise InvalidSpec(f"{source}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if not isinstance(doc, dict):
        raise InvalidSpec(f"{source}: a grid file is a mapping with sites, pools and links")
    profiles = {k: c.series(doc["tou_profiles"], k, "tou_profiles") for k in doc.get("tou_profiles", {}) or {}}
    shapes = {k: c.series(doc["carbon_shapes"], k, "carbon_shapes") for k in doc.get("carbon_shapes", {}) or {}}
    sites, carbon = _sites(c, doc, shapes)
    names = {s.name for s in sites}
    links = tuple(_link(c, d, names, n) for n, d in enumerate(_list(c, doc, "links"), 1))
    pools, signals = [], {}
    for n, d in enumerate(_list(c, doc, "pools", required=True), 1):
        pool, sig = _pool(c, d, names, profiles, n, {s.name: s for s in sites})
        if (pool.site, pool.name) in signals:
            raise c.fail(d, f"pool {n}: duplicate pool '{pool.name}' at site '{pool.site}'")
        pools.append(pool)
        signals[(pool.site, pool.name)] = sig
    offset = c.number(doc, "utc_offset_h", "grid", 8.0, nonneg=False)
    model = GridModel(tuple(sites), tuple(pools), links, signals, carbon, offset)
    return GridFile(str(doc.get("name", Path(source).stem)), model)


def _list(c: _Ctx, doc: Mapping[str, Any], key: str, required: bool = False) -> list[Any]:
    v = doc.get(key)
    if v is None and not required:
        return []
    if not isinstance(v, list) or (required and not v):
        raise c.fail(doc, f"field '{key}' must be a non-empty list")
    for n, item in enumerate(v, 1):
        if not isinstance(item, dict):
            raise c.fail(doc, f"{key} entry {n} must be a mapping")
    return v


def _sites(c: _Ctx, doc: Mapping[str, Any], shapes: dict[str, tuple[float, ...]]) -> tuple[list[Site], dict]:
    sites, carbon = [], {}
    for n, d in enumerate(_list(c, doc, "sites", required=True), 1):
        what = f"site {n}"
        name = c.get(d, "name", str, what)
        if name in carbon:
            raise c.fail(d, f"{what}: duplicate site name '{name}'")
        factor = c.number(d, "carbon_kg_per_kwh", what, 0.0)
        try:
            site = Site(
                name=name, region=c.get(d, "region", str, what), province=c.get(d, "province", str, what, ""),
                lat=c.number(d, "lat", what, 0.0, nonneg=False), lon=c.number(d, "lon", what, 0.0, nonneg=False),
                green_share=c.number(d, "green_share", what, 0.0), carbon_kg_per_kwh=factor,
                provider=c.get(d, "provider", str, what, ""),
            )
        except InvalidSpec as exc:
            raise c.fail(d, f"{what}: {exc.message}") from exc
        shape_name = c.get(d, "carbon_shape", str, what, "")
        if shape_name and shape_name not in shapes:
            raise c.fail(d, f"{what}: field 'carbon_shape' names unknown shape '{shape_name}'")
        shape = shapes.get(shape_name, (1.0,) * HOURS)
        carbon[name] = CarbonSignal(tuple(factor * m for m in shape))
        sites.append(site)
    return sites, carbon


def _link(c: _Ctx, d: Mapping[str, Any], names: set[str], n: int) -> Link:
    what = f"link {n}"
    a, b = c.get(d, "a", str, what), c.get(d, "b", str, what)
    for key, end in (("a", a), ("b", b)):
        if end not in names:
            raise c.fail(d, f"{what}: field '{key}' names unknown site '{end}'")
    lat = c.number(d, "latency_ms", what)
    bw = c.number(d, "bandwidth_gbps", what, positive=True, nonneg=False)
    if a == b:
        raise c.fail(d, f"{what}: joins site '{a}' to itself")
    return Link(a, b, lat, bw, bool(c.get(d, "direct", bool, what, False)))


def _pool(c: _Ctx, d: Mapping[str, Any], names: set[str], profiles: dict, n: int,
          sites: dict[str, Site]) -> tuple[Pool, PoolSignals]:
    what = f"pool {n}"
    site = c.get(d, "site", str, what)
    if site not in names:
        raise c.fail(d, f"{what}: field 'site' names unknown site '{site}'")
    try:
        cls = ResourceClass(c.get(d, "class", str, what))
        engine = Engine(c.get(d, "engine", str, what, "local"))
    except ValueError as exc:
        raise c.fail(d, f"{what}: {exc}") from exc
    cap = Capacity(int(c.number(d, "cores", what, 0)), c.number(d, "memory_gb", what, 0.0),
                   int(c.number(d, "devices", what, 0)))
    node = None
    if "node" in d:
        nd = d["node"]
        if not isinstance(nd, dict):
            raise c.fail(d, f"{what}: field 'node' must be a mapping")
        node = Capacity(int(c.number(nd, "cores", what, 0)), c.number(nd, "memory_gb", what, 0.0),
                        int(c.number(nd, "devices", what, 0)))
    tou = c.get(d, "tou", str, what, "")
    if tou and tou not in profiles:
        raise c.fail(d, f"{what}: field 'tou' names unknown profile '{tou}'")
    base = c.number(d, "price_fen", what)
    shape = profiles.get(tou, (1.0,) * HOURS)
    price = PriceSignal(tuple(int(base * m + 0.5) for m in shape))
    try:
        pool = Pool(
            name=c.get(d, "name", str, what), site=site, resource_class=cls, engine=engine, capacity=cap,
            device_model=c.get(d, "device_model", str, what, ""),
            device_memory_gb=c.number(d, "device_memory_gb", what, 0.0), cpu_model=c.get(d, "cpu_model", str, what, ""),
            tier=c.get(d, "tier", str, what, "standard"), node=node, labels={"region": sites[site].region},
        )
        sig = PoolSignals(price, c.number(d, "speed", what, 1.0, positive=True), c.number(d, "power_kw", what, 0.4))
    except InvalidSpec as exc:
        raise c.fail(d, f"{what}: {exc.message}") from exc
    return pool, sig
