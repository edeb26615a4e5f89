"""Unified compute units (统一度量): one measure for CPU core-hours, accelerator card-hours and HPC node-hours.

Why: a network that sells 通用, 智能 and 超算 capacity from many vendors must meter, price and settle it
in one unit, or no two offers can be compared.  This module defines that unit and a catalogue of device
peak figures to convert native usage (core-seconds, device-seconds) into it.

The standard compute unit (标准算力单位, ``SCU`` in code)
    1 SCU = one hour of 1 TFLOPS of FP32 peak (1 TFLOPS·h at single precision).

    * A CPU core earns ``chip FP32 peak / cores`` SCU per hour; an accelerator card earns its FP32 peak;
      an HPC node earns the sum over its cores and cards.  So 1000 SCU per hour of capacity is 1 "P"
      (PFLOPS) in the FP32-equivalent totals used by Chinese national compute statistics (``to_pflops``).
    * Why FP32 and not each class's favourite precision (FP64 for 超算, FP16 for 智能): (1) national totals
      are quoted FP32-equivalent, so our capacity figures add up the same way; (2) FP32 is the one
      precision that both source tables give (or let us derive) for every CPU, GPU, NPU and DCU, whereas
      tensor-FP16 figures are missing or mislabelled for many non-NVIDIA parts; (3) it measures every
      class on one axis without rewarding one vendor's precision tricks.  The extra value of tensor units
      for AI work is a *price* matter (a per-class price per SCU), not a measurement matter.
    * Where a source gives no FP32 figure it is derived, and the catalogue's ``note`` column says how
      (CPUs: cores x base clock x FLOPs/cycle; Ascend 910: FP16 / 4).

Peak, not sustained: an SCU measures capacity *held* for a time, like a card-hour, not work done.
Results are ``Decimal`` quantized to ``SCALE`` (6 places, ROUND_HALF_EVEN); floats never leave this module.
"""

from __future__ import annotations

import csv
import enum
import functools
import io
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from importlib import resources
from pathlib import Path

from suanwang.errors import InvalidSpec

SCALE = Decimal("0.000001")  # SCU results are quantized to 6 decimal places
SECONDS_PER_HOUR = Decimal(3600)
SCU_PER_PFLOPS = Decimal(1000)  # 1 SCU = 1 TFLOPS·h, so 1000 SCU/h of capacity = 1 PFLOPS
GENERIC_CPU = "cpu-core"  # catalogue row used for unknown or unnamed CPUs
REFERENCE_DEVICE = "NVIDIA A100 SXM4 80GB"  # speed_factor 1.0 for accelerators

COLUMNS = (
    "model", "aliases", "vendor", "kind", "cores", "clock_ghz",
    "fp64_tflops", "fp32_tflops", "fp16_tflops", "int8_tops",
    "memory_gb", "memory_bw_gbps", "tdp_w", "source", "note",
)  # fmt: skip
_DECIMAL_COLUMNS = ("clock_ghz", "fp64_tflops", "fp32_tflops", "fp16_tflops", "int8_tops",
                    "memory_gb", "memory_bw_gbps", "tdp_w")  # fmt: skip


@enum.unique
class DeviceKind(enum.StrEnum):
    CPU = "cpu"  # figures are per chip; usage is metered per core
    ACCELERATOR = "accelerator"  # GPU, NPU, DCU: figures and usage per card


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One catalogue row.  Peak figures in TFLOPS (TOPS for int8), memory in GB and GB/s, power in W.

    ``fp16_tflops`` is dense tensor FP16/BF16 where the source gives it, else the source's FP16 figure
    (the ``note`` says which).  ``None`` means the source states no figure.
    """

    model: str
    kind: DeviceKind
    vendor: str = ""
    aliases: tuple[str, ...] = ()
    cores: int = 1
    clock_ghz: Decimal | None = None
    fp64_tflops: Decimal | None = None
    fp32_tflops: Decimal | None = None
    fp16_tflops: Decimal | None = None
    int8_tops: Decimal | None = None
    memory_gb: Decimal | None = None
    memory_bw_gbps: Decimal | None = None
    tdp_w: Decimal | None = None
    source: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise InvalidSpec("device model must not be empty")
        if self.cores < 1:
            raise InvalidSpec(f"device {self.model}: cores must be at least 1", cores=self.cores)
        for name in _DECIMAL_COLUMNS:
            value = getattr(self, name)
            if value is not None and (not value.is_finite() or value < 0):
                raise InvalidSpec(f"device {self.model}: {name} must be a non-negative number", value=str(value))


@dataclass(frozen=True, slots=True)
class DeviceCatalog:
    """Devices by model, looked up case-insensitively by model name or any alias."""

    specs: tuple[DeviceSpec, ...]
    _index: Mapping[str, DeviceSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", _build_index(self.specs))

    def get(self, model: str) -> DeviceSpec:
        spec = self._index.get(_key(model))
        if spec is None:
            raise InvalidSpec(f"unknown device model {model!r}; known: {', '.join(self.models())}", model=model)
        return spec

    def find(self, model: str) -> DeviceSpec | None:
        """Exact (normalised) match, else the longest known name the query starts with.

        The fallback maps what drivers print ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB")
        onto catalog entries; names shorter than four characters never match by prefix.
        """
        key = _key(model)
        if key in self._index:
            return self._index[key]
        # a prefix must end where a word of the name ends: "a10" is not "a100 80gb pcie"
        ends, total = set(), 0
        for word in re.findall(r"[0-9a-z]+", model.lower()):
            total += len(word)
            ends.add(total)
        matches = (k for k in self._index if len(k) >= 4 and len(k) in ends and key.startswith(k))
        best = max(matches, key=len, default=None)
        return self._index[best] if best else None

    def models(self) -> list[str]:
        return [s.model for s in self.specs]


def _key(name: str) -> str:
    """Lookup key: lower case, letters and digits only ('NVIDIA H800-SXM5' -> 'nvidiah800sxm5')."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _keys(spec: DeviceSpec) -> set[str]:
    names = {spec.model, *spec.aliases}
    vendor = _key(spec.vendor.split()[0]) if spec.vendor else ""
    keys = {_key(n) for n in names}
    keys |= {k[len(vendor) :] for k in keys if vendor and k.startswith(vendor) and len(k) > len(vendor)}
    keys |= {vendor + k for k in keys if vendor and not k.startswith(vendor)}
    return {k for k in keys if k}


def _build_index(specs: Iterable[DeviceSpec]) -> dict[str, DeviceSpec]:
    index: dict[str, DeviceSpec] = {}
    for spec in specs:
        for key in _keys(spec):
            other = index.setdefault(key, spec)
            if other is not spec:
                raise InvalidSpec(f"device name {key!r} is claimed by both {other.model} and {spec.model}")
    return index


# ---------------------------------------------------------------- loading


def load_catalog(path: str | Path | None = None) -> DeviceCatalog:
    """The packaged catalogue (cached), or one read from a CSV with the same columns (see ``COLUMNS``)."""
    if path is None:
        return _default_catalog()
    return parse_catalog(Path(path).read_text(encoding="utf-8"), origin=str(path))


@functools.cache
def _default_catalog() -> DeviceCatalog:
    text = resources.files("suanwang").joinpath("data", "devices.csv").read_text(encoding="utf-8")
    return parse_catalog(text, origin="suanwang/data/devices.csv")


def parse_catalog(text: str, *, origin: str = "<csv>") -> DeviceCatalog:
    """Parse catalogue CSV text.  Required columns: model, kind, fp32_tflops; the rest are optional."""
    reader = csv.DictReader(io.StringIO(text))
    missing = {"model", "kind", "fp32_tflops"} - set(reader.fieldnames or ())
    if missing:
        raise InvalidSpec(f"{origin}: missing columns {sorted(missing)}", origin=origin)
    specs = tuple(_parse_row(row, origin, line) for line, row in enumerate(reader, start=2))
    if not specs:
        raise InvalidSpec(f"{origin}: no devices", origin=origin)
    return DeviceCatalog(specs)


def _parse_row(row: Mapping[str, str | None], origin: str, line: int) -> DeviceSpec:
    def text(name: str) -> str:
        return (row.get(name) or "").strip()

    where = f"{origin} line {line}"
    try:
        kind = DeviceKind(text("kind"))
        cores = int(text("cores") or 1)
        numbers = {n: Decimal(text(n)) if text(n) else None for n in _DECIMAL_COLUMNS}
    except (ValueError, InvalidOperation) as exc:
        raise InvalidSpec(f"{where}: {exc}", origin=origin, line=line) from exc
    aliases = tuple(a.strip() for a in text("aliases").split(";") if a.strip())
    return DeviceSpec(model=text("model"), kind=kind, vendor=text("vendor"), aliases=aliases, cores=cores,
                      source=text("source"), note=text("note"), **numbers)  # fmt: skip


# ---------------------------------------------------------------- units


def scu_per_hour(spec: DeviceSpec) -> Decimal:
    """SCU earned by holding one accelerator card, or one CPU core, for an hour (= its FP32 peak TFLOPS)."""
    if spec.fp32_tflops is None:
        raise InvalidSpec(f"device {spec.model} has no fp32_tflops figure; it cannot be measured in SCU")
    with localcontext() as ctx:
        ctx.prec = 40
        per_unit = spec.fp32_tflops / spec.cores if spec.kind is DeviceKind.CPU else spec.fp32_tflops
    return per_unit


def usage_units(
    *,
    core_seconds: float,
    device_seconds: float,
    cpu_model: str = "",
    device_model: str = "",
    catalog: DeviceCatalog | None = None,
) -> Decimal:
    """SCU for native usage: core-seconds of ``cpu_model`` plus device-seconds of ``device_model``.

    An empty or unknown ``cpu_model`` is metered as the generic ``cpu-core``; device-seconds need a known
    ``device_model``.  The result is quantized to ``SCALE`` with ROUND_HALF_EVEN.
    """
    catalog = catalog or load_catalog()
    cores, devices = _seconds(core_seconds, "core_seconds"), _seconds(device_seconds, "device_seconds")
    with localcontext() as ctx:
        ctx.prec = 60
        total = cores * scu_per_hour(_cpu(catalog, cpu_model))
        if devices:
            total += devices * scu_per_hour(_device(catalog, device_model))
        return _quantize(total / SECONDS_PER_HOUR)


def pool_capacity_scu_per_hour(
    *, cores: int, devices: int, cpu_model: str, device_model: str, catalog: DeviceCatalog | None = None
) -> Decimal:
    """SCU per hour that a pool (or one HPC node) of ``cores`` CPU cores and ``devices`` cards can deliver."""
    if cores < 0 or devices < 0:
        raise InvalidSpec("cores and devices must not be negative", cores=cores, devices=devices)
    catalog = catalog or load_catalog()
    with localcontext() as ctx:
        ctx.prec = 60
        total = cores * scu_per_hour(_cpu(catalog, cpu_model))
        if devices:
            total += devices * scu_per_hour(_device(catalog, device_model))
        return _quantize(total)


def to_pflops(scu_per_hour: Decimal) -> Decimal:
    """Capacity in national-style "P" (PFLOPS, FP32-equivalent): 1000 SCU/h == 1 P.  Exact, not rounded."""
    with localcontext() as ctx:
        ctx.prec = 60
        return scu_per_hour / SCU_PER_PFLOPS


def from_pflops(pflops: Decimal) -> Decimal:
    """The inverse of ``to_pflops``: "P" of FP32-equivalent capacity as SCU per hour."""
    with localcontext() as ctx:
        ctx.prec = 60
        return pflops * SCU_PER_PFLOPS


def speed_factor(device_model: str, cpu_model: str = "", catalog: DeviceCatalog | None = None) -> float:
    """How fast a device runs compared with a reference, for scaling a job's estimated run time.

    With a ``device_model``: its FP32 peak over the reference card's (``REFERENCE_DEVICE``, A100 SXM4
    80GB = 1.0).  With no device: the CPU core's FP32 peak over the generic ``cpu-core`` (= 1.0).
    A float because it feeds an estimate, never money.  Peak ratios ignore memory bandwidth and tensor
    units, so tensor-bound AI work may scale differently; override figures with a user catalogue.
    """
    catalog = catalog or load_catalog()
    if device_model:
        return float(scu_per_hour(_device(catalog, device_model)) / scu_per_hour(catalog.get(REFERENCE_DEVICE)))
    return float(scu_per_hour(_cpu(catalog, cpu_model)) / scu_per_hour(catalog.get(GENERIC_CPU)))


def _cpu(catalog: DeviceCatalog, model: str) -> DeviceSpec:
    spec = catalog.find(model) if model else None
    if spec is None or spec.kind is not DeviceKind.CPU:
        return catalog.get(GENERIC_CPU)
    return spec


def _device(catalog: DeviceCatalog, model: str) -> DeviceSpec:
    if not model.strip():
        raise InvalidSpec("device usage needs a device model")
    spec = catalog.get(model)
    if spec.kind is not DeviceKind.ACCELERATOR:
        raise InvalidSpec(f"{spec.model} is a {spec.kind}, not an accelerator", model=model)
    return spec


def _seconds(value: float, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise InvalidSpec(f"{name} must be a number", value=repr(value))
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidSpec(f"{name} must be finite", value=repr(value))
    amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not amount.is_finite() or amount < 0:
        raise InvalidSpec(f"{name} must not be negative", value=str(amount))
    return amount


def _quantize(value: Decimal) -> Decimal:
    return value.quantize(SCALE, rounding=ROUND_HALF_EVEN)
