"""Small grids and jobs for scheduler tests: two regions, a fast far site and a near slow one."""

from __future__ import annotations

from suanwang.domain.grid import Capacity, Link, Pool, Site
from suanwang.domain.job import JobSpec
from suanwang.domain.placement import PoolState, QueuedJob
from suanwang.domain.resources import Engine, ResourceClass, ServiceLevel
from suanwang.domain.scheduler import CarbonSignal, GridModel, PoolSignals, PriceSignal

T0 = 1704038400.0  # 2024-01-01 00:00 local (UTC+8)
NOON = T0 + 12 * 3600
VALLEY = tuple(100 if h < 7 or h >= 23 else 300 for h in range(24))  # local hours 23-07 are cheap


def pool(name: str, site: str, *, model: str = "A100", mem: float = 80.0, devices: int = 16, node_devices: int = 8,
         cls: ResourceClass = ResourceClass.INTELLIGENT) -> Pool:
    if cls is ResourceClass.GENERAL:
        return Pool(name, site, cls, Engine.LOCAL, Capacity(256, 1024.0, 0), node=Capacity(64, 256.0, 0))
    return Pool(name, site, cls, Engine.SLURM, Capacity(devices * 16, devices * 128.0, devices), model, mem,
                node=Capacity(node_devices * 16, node_devices * 128.0, node_devices))


def grid(pools: list[Pool] | None = None, *, prices: dict | None = None, carbon: dict | None = None,
         links: tuple[Link, ...] | None = None) -> GridModel:
    sites = (
        Site("beijing", "cn-north"), Site("ulanqab", "cn-north"), Site("qingyang", "cn-northwest"),
        Site("shanghai", "cn-east"),
    )
    pools = pools or [pool("a100", "qingyang"), pool("a40", "beijing", model="A40", mem=40.0)]
    links = links if links is not None else (
        Link("beijing", "ulanqab", 3.0, 400.0), Link("beijing", "qingyang", 12.0, 100.0),
        Link("beijing", "shanghai", 9.0, 400.0), Link("qingyang", "shanghai", 11.0, 200.0, direct=True),
    )
    prices = prices or {}
    signals = {(p.site, p.name): PoolSignals(PriceSignal(prices.get(p.name, (200,) * 24))) for p in pools}
    carbon = carbon or {}
    return GridModel(sites, tuple(pools), links, signals,
                     {s.name: CarbonSignal(carbon.get(s.name, (0.5,) * 24)) for s in sites})


def job(jid: str = "j1", *, tenant: str = "t", submitted: float = NOON, **kw: object) -> QueuedJob:
    kw.setdefault("resource_class", ResourceClass.INTELLIGENT)
    kw.setdefault("devices", 1)
    kw.setdefault("cores", 4)
    kw.setdefault("memory_gb", 16.0)
    return QueuedJob(jid, JobSpec(("run",), **kw), tenant, submitted)  # type: ignore[arg-type]


def states(model: GridModel) -> list[PoolState]:
    return [PoolState(p, p.capacity) for p in model.pools]


__all__ = ["NOON", "T0", "VALLEY", "ServiceLevel", "grid", "job", "pool", "states"]
