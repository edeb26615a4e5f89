"""Standard compute units (provisional; replaced by the device-catalog version)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from suanwang.errors import InvalidSpec


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    model: str
    kind: str
    fp32_tflops: Decimal


_SPECS = {
    "cpu-core": DeviceSpec("cpu-core", "cpu", Decimal("0.05")),
    "h800": DeviceSpec("H800", "accelerator", Decimal("67")),
    "a10": DeviceSpec("A10", "accelerator", Decimal("31.2")),
}


class DeviceCatalog:
    def get(self, model: str) -> DeviceSpec:
        try:
            return _SPECS[model.lower()]
        except KeyError:
            raise InvalidSpec(f"unknown device model {model!r}") from None


def load_catalog(path: object = None) -> DeviceCatalog:
    return DeviceCatalog()


def scu_per_hour(spec: DeviceSpec) -> Decimal:
    return spec.fp32_tflops


def pool_capacity_scu_per_hour(*, cores: int, devices: int, cpu_model: str, device_model: str, catalog=None) -> Decimal:  # type: ignore[no-untyped-def]
    cat = catalog or load_catalog()
    total = cores * scu_per_hour(cat.get("cpu-core"))
    if devices:
        total += devices * scu_per_hour(cat.get(device_model))
    return total


def to_pflops(scu_per_hour_total: Decimal) -> Decimal:
    return scu_per_hour_total / 1000
