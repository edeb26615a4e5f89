"""An honest catalogue: every device is metered by a figure the catalogue states, and says so.

Why: a pool whose CPU or accelerator model the catalogue does not know must
not be metered silently as something else.  It is flagged (a warning the
agent, ``suanwang pools`` and the audit log show) and metered at a stated,
conservative rate: the lowest per-unit figure of its kind in the catalogue,
so a consumer never pays for more than the least the unknown part could be,
and the provider sees the gap and can add the part (with a source) to
``data/devices.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from suanwang.domain.units import DeviceCatalog, DeviceKind, DeviceSpec, scu_per_hour

CATALOGUE_LABEL = "catalogue"  # the pool label that carries what the catalogue could not rate


@dataclass(frozen=True, slots=True)
class Rated:
    """The catalogue row a model is metered by; ``warning`` is empty when the catalogue knows the model."""

    asked: str
    spec: DeviceSpec
    warning: str = ""

    @property
    def known(self) -> bool:
        return not self.warning


def _lowest(catalog: DeviceCatalog, kind: DeviceKind) -> DeviceSpec:
    rated = [s for s in catalog.specs if s.kind is kind and s.fp32_tflops is not None]
    return min(rated, key=lambda s: (scu_per_hour(s), s.model))


def rate_device(catalog: DeviceCatalog, model: str) -> Rated:
    """An accelerator model as the catalogue meters it: its own row, or the lowest-rated card, flagged."""
    spec = catalog.find(model) if model.strip() else None
    if spec is not None and spec.kind is DeviceKind.ACCELERATOR and spec.fp32_tflops is not None:
        return Rated(model, spec)
    low = _lowest(catalog, DeviceKind.ACCELERATOR)
    return Rated(model, low, f"device model {model!r} is not in the catalogue: metered at "
                             f"{scu_per_hour(low)} SCU per card-hour, the lowest card it lists ({low.model})")


def rate_cpu(catalog: DeviceCatalog, model: str) -> Rated:
    """A CPU model as the catalogue meters its cores: its own row, or the lowest per-core rate, flagged."""
    spec = catalog.find(model) if model.strip() else None
    if spec is not None and spec.kind is DeviceKind.CPU and spec.fp32_tflops is not None:
        return Rated(model, spec)
    low = _lowest(catalog, DeviceKind.CPU)
    what = f"CPU model {model!r} is not in the catalogue" if model.strip() else "no CPU model named"
    return Rated(model, low, f"{what}: cores metered at {scu_per_hour(low)} SCU per core-hour, "
                             f"the lowest per-core rate it lists ({low.model})")


def pool_warnings(catalog: DeviceCatalog, *, cpu_model: str, cores: int, device_model: str, devices: int,
                  quantum: bool = False) -> list[str]:
    """What a pool's declaration leaves the catalogue guessing (quantum pools are metered in shots)."""
    if quantum:
        return []
    out = []
    if cores:
        out.append(rate_cpu(catalog, cpu_model).warning)
    if devices:
        out.append(rate_device(catalog, device_model).warning)
    return [w for w in out if w]


def catalogue_rows(catalog: DeviceCatalog) -> list[dict[str, Any]]:
    """Each model with its standard-unit rate (SCU per card-hour, or per core-hour for CPUs) and source."""
    rows = []
    for s in catalog.specs:
        rate: Decimal | None = scu_per_hour(s) if s.fp32_tflops is not None else None
        rows.append({"model": s.model, "kind": s.kind.value, "vendor": s.vendor, "aliases": list(s.aliases),
                     "unit": "core_hour" if s.kind is DeviceKind.CPU else "card_hour",
                     "scu_per_unit_hour": None if rate is None else str(rate.normalize()),
                     "fp32_tflops": None if s.fp32_tflops is None else str(s.fp32_tflops),
                     "cores": s.cores, "memory_gb": None if s.memory_gb is None else str(s.memory_gb),
                     "source": s.source, "note": s.note})
    return rows
