"""Builders for the money tests: a tiny grid, a price book, usage records, written in the domain language."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from suanwang.domain.grid import Capacity, Pool
from suanwang.domain.ledger import Hold
from suanwang.domain.memory_ledger import MemoryLedger
from suanwang.domain.pricing import PriceBook, PriceEntry, PriceUnit
from suanwang.domain.rating import ProviderContract, UsageRecord
from suanwang.domain.resources import Engine, ResourceClass, ServiceLevel
from suanwang.domain.tou import CHINA_TZ, TouTariff, tou_tariff_for_province

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=CHINA_TZ)  # a Monday in March, local midnight


def at(hours: float = 0, day: int = 0) -> datetime:
    """T0 plus whole/fractional hours (the float only builds a test time, never money)."""
    return T0 + timedelta(days=day, hours=hours)


def a_pool(
    name: str = "qy-cpu", site: str = "qingyang", cls: ResourceClass = ResourceClass.GENERAL, tier: str = "standard"
) -> Pool:
    devices = 8 if cls is ResourceClass.INTELLIGENT else 0
    return Pool(
        name,
        site,
        cls,
        Engine.LOCAL,
        Capacity(cores=64, memory_gb=256, devices=devices),
        device_model="H800" if devices else "",
        tier=tier,
    )


def an_entry(
    price: str = "100",
    *,
    cls: ResourceClass = ResourceClass.GENERAL,
    tier: str = "standard",
    level: ServiceLevel = ServiceLevel.STANDARD,
    unit: PriceUnit = PriceUnit.SCU,
    site: str = "",
    pool: str = "",
    tou: TouTariff | None = None,
    green: str = "0",
) -> PriceEntry:
    return PriceEntry(cls, tier, level, Decimal(price), unit, site, pool, tou, Decimal(green))


def a_book(*entries: PriceEntry, version: int = 1, effective_from: datetime = T0 - timedelta(days=30)) -> PriceBook:
    return PriceBook(version, effective_from, entries or (an_entry(),))


def gansu_tou() -> TouTariff:
    return tou_tariff_for_province("Gansu")


def a_record(
    job: str = "job-1",
    seq: int = 0,
    *,
    attempt: int = 0,
    consumer: str = "acme",
    provider: str = "qy-dc",
    start: datetime | None = None,
    hours: float = 1,
    scu: str = "1",
    pool: str = "qy-cpu",
    site: str = "qingyang",
    cls: ResourceClass = ResourceClass.GENERAL,
    tier: str = "standard",
    level: ServiceLevel = ServiceLevel.STANDARD,
    extra: dict[PriceUnit, str] | None = None,
) -> UsageRecord:
    begin = start or at(10)
    quantities = {PriceUnit.SCU: Decimal(scu)} | {u: Decimal(q) for u, q in (extra or {}).items()}
    return UsageRecord(
        job,
        attempt,
        seq,
        consumer,
        provider,
        site,
        pool,
        cls,
        tier,
        level,
        begin,
        begin + timedelta(hours=hours),
        tuple(quantities.items()),
    )


def a_contract(provider: str = "qy-dc", fee_bps: int = 500) -> ProviderContract:
    return ProviderContract(provider, fee_bps)


def hold_of(ledger: MemoryLedger, hold_id: str) -> Hold:
    """The hold as the ledger has it now (it must exist)."""
    hold = ledger.hold(hold_id)
    assert hold is not None, f"no hold {hold_id}"
    return hold
