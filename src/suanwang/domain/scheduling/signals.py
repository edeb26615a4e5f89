"""The grid model the scheduler sees: sites, pools, links and each pool's price, speed, power and carbon.

Inputs the live platform feeds (``GridModel``): sites, pools and links, and per
pool a ``PriceSignal`` (fen per standard compute unit-hour, SCU·h, for each
local hour of the day: time-of-use aware), a ``speed`` (SCU a device or core
delivers per hour relative to the reference device) and ``power_kw`` per
device (or core); per site a ``CarbonSignal`` (kg CO2 per kWh for each local
hour).  Local hour = (unix seconds / 3600 + ``utc_offset_h``) mod 24.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from suanwang.domain.grid import Link, Pool, PoolId, Site, SiteId
from suanwang.domain.job import JobSpec
from suanwang.errors import InvalidSpec

PoolKey = tuple[SiteId, PoolId]
HOURS = 24


@dataclass(frozen=True, slots=True)
class PriceSignal:
    """Price of one SCU·h in integer fen for each local hour of the day (index 0 = 00:00-01:00)."""

    fen_per_unit_hour: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.fen_per_unit_hour) != HOURS:
            raise InvalidSpec(f"a price signal needs {HOURS} hourly prices, got {len(self.fen_per_unit_hour)}")
        if any(not isinstance(p, int) or p < 0 for p in self.fen_per_unit_hour):
            raise InvalidSpec("hourly prices must be non-negative integers (fen)")

    @classmethod
    def flat(cls, fen: int) -> PriceSignal:
        return cls((fen,) * HOURS)


@dataclass(frozen=True, slots=True)
class CarbonSignal:
    """Grid carbon intensity (kg CO2 per kWh) for each local hour of the day."""

    kg_per_kwh: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.kg_per_kwh) != HOURS or any(c < 0 for c in self.kg_per_kwh):
            raise InvalidSpec(f"a carbon signal needs {HOURS} non-negative hourly values")

    @classmethod
    def flat(cls, kg: float) -> CarbonSignal:
        return cls((kg,) * HOURS)


@dataclass(frozen=True, slots=True)
class PoolSignals:
    """What a pool costs and delivers: price per SCU·h, speed in SCU per unit-hour, power per unit."""

    price: PriceSignal
    speed: float = 1.0
    power_kw: float = 0.4

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise InvalidSpec("speed must be positive")
        if self.power_kw < 0:
            raise InvalidSpec("power_kw must not be negative")



@dataclass(frozen=True)
class GridModel:
    """Everything static the scheduler knows about the grid."""

    sites: tuple[Site, ...]
    pools: tuple[Pool, ...]
    links: tuple[Link, ...] = ()
    signals: Mapping[PoolKey, PoolSignals] = field(default_factory=dict)
    carbon: Mapping[SiteId, CarbonSignal] = field(default_factory=dict)
    utc_offset_h: float = 8.0

    def __post_init__(self) -> None:
        names = {s.name for s in self.sites}
        for pool in self.pools:
            if pool.site not in names:
                raise InvalidSpec(f"pool {pool.name} is at unknown site {pool.site}")
        if len({(p.site, p.name) for p in self.pools}) != len(self.pools):
            raise InvalidSpec("pool names must be unique within a site")

    def signals_for(self, pool: Pool) -> PoolSignals:
        return self.signals.get((pool.site, pool.name)) or PoolSignals(PriceSignal.flat(0))



def job_units(spec: JobSpec) -> int:
    """Units a job occupies: devices when it asks for devices, else cores."""
    return spec.devices if spec.devices > 0 else max(1, spec.cores)
