"""The scheduler's view of the live grid, built from the database.

``GridModel`` wants, per pool, an hourly price for one reference unit of work
(a reference-card-hour, or a generic-core-hour on CPU pools), a speed and a
power draw, and per site an hourly carbon intensity.  Prices come from the
pool's price per standard compute unit (SCU, 1 TFLOPS·h FP32) in the price
books in force (composed: the pool's provider's book for its own sites, then
the operator's; standard grade; native units converted to SCU), shaped by the
entry's time-of-use bands or else the site province's; where no book prices
the pool, ``DEFAULT_FEN_PER_SCU`` stands in (a product default, said so in the
README).  Every number a book carries was bounded when it was parsed
(domain.pricing), so these signals stay small integers.  Carbon is the site's
grid emission factor, flat over the day until an hourly series is configured.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy.orm import Session

from suanwang.domain import units
from suanwang.domain.grid import Link, Pool, Site
from suanwang.domain.pricing import PriceBook, PriceUnit, find_price, price_book_in_force
from suanwang.domain.resources import ResourceClass, ServiceLevel
from suanwang.domain.scheduler import HOURS, CarbonSignal, GridModel, PoolSignals, PriceSignal
from suanwang.domain.tou import CHINA_TZ, TouTariff, tou_tariff_for_province
from suanwang.errors import InvalidSpec
from suanwang.services.sites import list_links, list_pools, list_sites, pool_from_row, site_from_row

# fen per SCU (one TFLOPS·h of FP32 work) when no price book says otherwise; roughly what public clouds
# in China charge for the kind (an A10 card-hour ~ 31 SCU ~ 12 yuan; a server core-hour ~ 0.04 SCU ~ 0.1 yuan)
DEFAULT_FEN_PER_SCU: dict[ResourceClass, Decimal] = {
    ResourceClass.GENERAL: Decimal(250),
    ResourceClass.INTELLIGENT: Decimal(40),
    ResourceClass.SUPER: Decimal(150),
    ResourceClass.QUANTUM: Decimal(100),
}


def reference_scu_per_hour(pool: Pool) -> Decimal:
    """SCU that one reference unit of the scheduler's work (card-hour or core-hour) is worth."""
    catalog = units.load_catalog()
    reference = units.REFERENCE_DEVICE if pool.capacity.devices else units.GENERIC_CPU
    return units.scu_per_hour(catalog.get(reference))


def hourly_price(pool: Pool, site: Site, fen_per_scu: Decimal, tariff: TouTariff | None = None) -> PriceSignal:
    """Fen per reference unit-hour for each local hour, shaped by time-of-use bands (the price book's, else the
    site province's)."""
    tariff = tariff or tou_tariff_for_province(site.province or "")
    base = fen_per_scu * reference_scu_per_hour(pool)
    day = datetime(2026, 7, 1, tzinfo=CHINA_TZ)
    return PriceSignal(tuple(
        int((base * tariff.period_at(day + timedelta(hours=h)).multiplier).to_integral_value(ROUND_HALF_EVEN))
        for h in range(HOURS)
    ))


_NATIVE = (PriceUnit.SCU, PriceUnit.CORE_HOUR, PriceUnit.CARD_HOUR, PriceUnit.NODE_HOUR)


def book_fen_per_scu(pool: Pool, book: PriceBook | None) -> tuple[Decimal, TouTariff | None] | None:
    """The standard-grade price per SCU the books in force set for ``pool`` (native units converted)."""
    if book is None:
        return None
    entry = find_price(book, resource_class=pool.resource_class, tier=pool.tier, service_level=ServiceLevel.STANDARD,
                       site=pool.site, pool=pool.name, units=_NATIVE)
    if entry is None:
        return None
    catalog = units.load_catalog()
    try:
        if entry.unit is PriceUnit.SCU:
            per_unit = Decimal(1)
        elif entry.unit is PriceUnit.CARD_HOUR and pool.capacity.devices:
            per_unit = units.scu_per_hour(catalog.get(pool.device_model))
        elif entry.unit is PriceUnit.CORE_HOUR:
            cpu = catalog.find(pool.cpu_model) or catalog.get(units.GENERIC_CPU)
            per_unit = units.scu_per_hour(cpu)
        else:  # a node-hour: the largest node's capacity in SCU
            node = pool.largest_node
            per_unit = units.pool_capacity_scu_per_hour(cores=node.cores, devices=node.devices,
                                                        cpu_model=pool.cpu_model, device_model=pool.device_model)
    except InvalidSpec:
        return None
    if per_unit <= 0:
        return None
    return entry.unit_price_fen / per_unit, entry.tou


def pool_signals(pool: Pool, site: Site, book: PriceBook | None = None) -> PoolSignals:
    catalog = units.load_catalog()
    priced = book_fen_per_scu(pool, book)
    fen_per_scu = priced[0] if priced else DEFAULT_FEN_PER_SCU[pool.resource_class]
    price = hourly_price(pool, site, fen_per_scu, priced[1] if priced else None)
    try:
        speed = units.speed_factor(pool.device_model if pool.capacity.devices else "", pool.cpu_model)
        spec = catalog.get(pool.device_model) if pool.capacity.devices else catalog.find(pool.cpu_model)
    except InvalidSpec:
        speed, spec = 1.0, None
    power_kw = 0.4 if pool.capacity.devices else 0.01  # per card / per core when the catalog has no TDP
    if spec is not None and spec.tdp_w:
        per = Decimal(spec.cores) if not pool.capacity.devices and spec.cores else Decimal(1)
        power_kw = float(spec.tdp_w / per / 1000)
    return PoolSignals(price=price, speed=max(speed, 1e-6), power_kw=power_kw)


GridShape = tuple[tuple[Site, ...], tuple[Pool, ...], tuple[Link, ...]]


def load_grid_shape(session: Session) -> GridShape:
    """Sites, pools and links as domain values: cheap to read, and the key the planner caches on."""
    return load_grid(session)[0]


def load_grid(session: Session) -> tuple[GridShape, dict[str, bool]]:
    """The grid's shape and which sites are online, from one read of each table (once per scheduling pass)."""
    site_rows = list_sites(session)
    regions = {r.name: r.region for r in site_rows}
    sites = tuple(site_from_row(r) for r in site_rows)
    pools = tuple(pool_from_row(r, regions.get(r.site, "")) for r in list_pools(session))
    links = tuple(Link(a=r.a, b=r.b, latency_ms=r.latency_ms, bandwidth_gbps=r.bandwidth_gbps, direct=r.direct)
                  for r in list_links(session))
    return (sites, pools, links), {r.name: r.online for r in site_rows}


def build_grid_model(shape: GridShape, book: PriceBook | None = None) -> GridModel:
    sites, pools, links = shape
    by_name = {s.name: s for s in sites}
    signals = {(p.site, p.name): pool_signals(p, by_name[p.site], book) for p in pools}
    carbon = {s.name: CarbonSignal.flat(s.carbon_kg_per_kwh) for s in sites}
    return GridModel(sites=sites, pools=pools, links=links, signals=signals, carbon=carbon)


def book_in_force(books: list[PriceBook], at: datetime) -> PriceBook | None:
    """``price_book_in_force`` (every owner's book in force, composed), or None when none is in force yet
    (the scheduler then uses the defaults)."""
    try:
        return price_book_in_force(books, at)
    except InvalidSpec:
        return None


def load_grid_model(session: Session) -> GridModel:
    from suanwang.services.billing import load_books

    return build_grid_model(load_grid_shape(session), book_in_force(load_books(session), datetime.now(UTC)))
