"""The operator's own map background: an approved GeoJSON file, checked once at start-up.

No borders ship with suanwang: a public map of China needs boundary data with an approval number (审图号),
so the grid map draws sites on plain longitude/latitude axes unless the operator names a file it is allowed
to publish (setting ``map_geojson``, ``SUANWANG_MAP_GEOJSON``).  The file is refused at start-up, with a
message naming what is wrong, when it is too large, not JSON, or not GeoJSON; once accepted it is served
from the platform (``/map.geojson``), never from elsewhere.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

MAX_BYTES = 20 * 1024 * 1024
GEOMETRIES = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2, "MultiPolygon": 3}
MAX_DEPTH = 1_000_000  # positions checked in all (a bound on the work, not the file)


class BadGeoJson(ValueError):
    """The file cannot be the map's background; the message says why."""


def _positions(value: Any, depth: int, where: str) -> int:
    """Check nested arrays of positions ``depth`` deep; the number of positions."""
    if not isinstance(value, list):
        raise BadGeoJson(f"{where}: coordinates must be arrays")
    if depth == 0:
        if not 2 <= len(value) <= 3 or not all(isinstance(x, int | float) and not isinstance(x, bool)
                                                and math.isfinite(x) for x in value):
            raise BadGeoJson(f"{where}: a position is 2 or 3 finite numbers")
        if not (-180 <= value[0] <= 180 and -90 <= value[1] <= 90):
            raise BadGeoJson(f"{where}: position {value[:2]} is outside longitude -180..180, latitude -90..90")
        return 1
    return sum(_positions(v, depth - 1, where) for v in value)


def _geometry(g: Any, where: str) -> int:
    if not isinstance(g, dict):
        raise BadGeoJson(f"{where}: a geometry must be an object")
    kind = g.get("type")
    if kind == "GeometryCollection":
        parts = g.get("geometries")
        if not isinstance(parts, list):
            raise BadGeoJson(f"{where}: a GeometryCollection needs a geometries array")
        return sum(_geometry(p, f"{where}.geometries[{i}]") for i, p in enumerate(parts))
    if kind not in GEOMETRIES:
        raise BadGeoJson(f"{where}: unknown geometry type {str(kind)[:40]!r}")
    return _positions(g.get("coordinates"), GEOMETRIES[str(kind)], where)


def check(body: Any) -> None:
    """Raise BadGeoJson unless ``body`` is a GeoJSON FeatureCollection, Feature or geometry (RFC 7946)."""
    if not isinstance(body, dict):
        raise BadGeoJson("not a GeoJSON object")
    kind = body.get("type")
    if kind == "FeatureCollection":
        features = body.get("features")
        if not isinstance(features, list) or not features:
            raise BadGeoJson("a FeatureCollection needs a non-empty features array")
        items = features
    elif kind == "Feature":
        items = [body]
    else:
        _geometry(body, "geometry")
        return
    total = 0
    for i, f in enumerate(items):
        if not isinstance(f, dict) or f.get("type") != "Feature":
            raise BadGeoJson(f"features[{i}]: not a Feature")
        if "geometry" not in f:
            raise BadGeoJson(f"features[{i}]: a Feature needs a geometry member (null allowed)")
        if f["geometry"] is not None:
            total += _geometry(f["geometry"], f"features[{i}].geometry")
        if total > MAX_DEPTH:
            raise BadGeoJson(f"more than {MAX_DEPTH} positions")


def load(path: Path) -> bytes:
    """The file's bytes once checked (raise BadGeoJson naming the file and the fault)."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise BadGeoJson(f"{path}: {size} bytes, over the limit of {MAX_BYTES}")
        raw = path.read_bytes()
    except OSError as exc:
        raise BadGeoJson(f"{path}: {exc.strerror or exc}") from None
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadGeoJson(f"{path}: not JSON ({str(exc)[:200]})") from None
    try:
        check(body)
    except RecursionError:
        raise BadGeoJson(f"{path}: nested too deep") from None
    except BadGeoJson as exc:
        raise BadGeoJson(f"{path}: {exc}") from None
    return raw
