"""Price books, price lookup, time-of-use pricing of an interval, and quotes.

Why: the platform sells heterogeneous compute at a price per standard compute
unit (SCU, 1 TFLOPS·h of FP32 peak held, ``suanwang.domain.units``) or per
native unit (core-hour, card-hour, node-hour, shot),
by resource class and grade, per site or pool, varying by time of day.

Invariants owned here
- Unit prices are fen at scale 4 (``money.parse_price``); exact arithmetic is
  ``Fraction`` until one rounding point (``money.round_fen``, half-even).
- Lookup: the most specific scope wins (pool > site > everywhere); within a
  scope the caller's unit preference decides (native units before SCU).
- A book is versioned and never edited: a new version must have a higher
  number and take effect no earlier than now and no earlier than the latest
  book, so history is never rewritten.  Usage is priced by the book in force
  at the usage's start (:func:`price_book_in_force`).
- Quantities are spread uniformly over their interval; the time-of-use split
  gives each band its share of units exactly.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from suanwang.domain.grid import Pool, PoolId, SiteId
from suanwang.domain.money import Fen, parse_price, parse_quantity, round_fen
from suanwang.domain.resources import ResourceClass, ServiceLevel
from suanwang.domain.tou import TouBand, TouTariff, split_by_tou
from suanwang.domain.voucher import VoucherProgramme, pick_programme, voucher_share
from suanwang.errors import InvalidSpec


@enum.unique
class PriceUnit(enum.StrEnum):
    """What one unit of a price is."""

    SCU = "scu"  # one standard compute unit: 1 TFLOPS·h FP32 held (suanwang.domain.units.usage_units)
    CORE_HOUR = "core_hour"  # general: one CPU core for one hour
    CARD_HOUR = "card_hour"  # intelligent: one accelerator card for one hour
    NODE_HOUR = "node_hour"  # super: one HPC node for one hour
    SHOT = "shot"  # quantum: one circuit execution


@dataclass(frozen=True, slots=True)
class PriceEntry:
    """A price for one (class, tier, service level, unit) in a scope.

    ``site`` / ``pool`` empty means any; a pool-scoped entry may name its site
    too.  ``tou`` None means flat all day.  ``green_discount_pct`` (0..100)
    comes off the time-of-use subtotal.
    """

    resource_class: ResourceClass
    tier: str
    service_level: ServiceLevel
    unit_price_fen: Decimal
    unit: PriceUnit = PriceUnit.SCU
    site: SiteId = ""
    pool: PoolId = ""
    tou: TouTariff | None = None
    green_discount_pct: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "unit_price_fen", parse_price(self.unit_price_fen))
        pct = parse_quantity(self.green_discount_pct, what="green discount percent")
        if pct > 100:
            raise InvalidSpec(f"green discount {pct}% is above 100%")
        object.__setattr__(self, "green_discount_pct", pct)
        if not self.tier:
            raise InvalidSpec("price entry needs a hardware tier")

    @property
    def specificity(self) -> int:
        return 2 if self.pool else 1 if self.site else 0

    def slot(self) -> tuple[object, ...]:
        return (self.resource_class, self.tier, self.service_level, self.unit, self.site, self.pool)


@dataclass(frozen=True, slots=True)
class PriceBook:
    version: int
    effective_from: datetime
    entries: tuple[PriceEntry, ...]

    def __post_init__(self) -> None:
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise InvalidSpec(f"price book version must be a positive int, got {self.version!r}")
        if self.effective_from.tzinfo is None:
            raise InvalidSpec("price book effective_from must be timezone-aware")
        slots = [e.slot() for e in self.entries]
        doubled = {s for s in slots if slots.count(s) > 1}
        if doubled:
            raise InvalidSpec(f"price book v{self.version} prices the same slot twice: {sorted(map(str, doubled))}")


def price_book_in_force(books: Iterable[PriceBook], at: datetime) -> PriceBook:
    """The book with the latest ``effective_from <= at`` (ties: highest version)."""
    candidates = [b for b in books if b.effective_from <= at]
    if not candidates:
        raise InvalidSpec(f"no price book in force at {at.isoformat()}")
    return max(candidates, key=lambda b: (b.effective_from, b.version))


def check_new_price_book(books: Sequence[PriceBook], new: PriceBook, *, now: datetime) -> PriceBook:
    """Refuse a book that would rewrite history; return it if acceptable."""
    if any(b.version >= new.version for b in books):
        raise InvalidSpec(f"price book version {new.version} is not above the latest {max(b.version for b in books)}")
    if new.effective_from < now:
        raise InvalidSpec(
            f"price book v{new.version} would take effect in the past "
            f"({new.effective_from.isoformat()} < now {now.isoformat()})"
        )
    latest = max((b.effective_from for b in books), default=None)
    if latest is not None and new.effective_from < latest:
        raise InvalidSpec(f"price book v{new.version} takes effect before the latest book ({latest.isoformat()})")
    return new


def find_price(
    book: PriceBook,
    *,
    resource_class: ResourceClass,
    tier: str,
    service_level: ServiceLevel,
    site: SiteId,
    pool: PoolId,
    units: Sequence[PriceUnit],
) -> PriceEntry | None:
    """The entry that prices this grade at this pool, or None.  See the module docstring for precedence."""
    best: tuple[int, int, PriceEntry] | None = None
    for entry in book.entries:
        if (
            entry.resource_class is not resource_class
            or entry.tier != tier
            or entry.service_level is not service_level
            or entry.unit not in units
            or entry.site not in ("", site)
            or entry.pool not in ("", pool)
        ):
            continue
        rank = (-entry.specificity, units.index(entry.unit), entry)
        if best is None or rank[:2] < best[:2]:
            best = rank
    return best[2] if best else None


@dataclass(frozen=True, slots=True)
class TouShare:
    """Units and exact amount (fen) that fall into one band."""

    band: TouBand
    multiplier: Decimal
    seconds: Fraction
    units: Fraction
    amount: Fraction


@dataclass(frozen=True, slots=True)
class PriceBreakdown:
    """Exact price of a quantity over an interval, before rounding and vouchers."""

    book_version: int
    entry: PriceEntry
    units: Decimal
    shares: tuple[TouShare, ...]
    subtotal: Fraction  # sum of band amounts
    green_discount: Fraction
    net: Fraction  # subtotal - green_discount: the exact amount to charge


def price_interval(
    book: PriceBook, entry: PriceEntry, units: Decimal, start: datetime, end: datetime
) -> PriceBreakdown:
    """Price ``units`` spread uniformly over ``[start, end)`` (instantaneous: all in one FLAT share)."""
    qty = parse_quantity(units, what="units")
    segments = split_by_tou(entry.tou, start, end)
    total_s = sum((s.seconds for s in segments), Fraction(0))
    price = Fraction(entry.unit_price_fen)
    by_band: dict[tuple[TouBand, Decimal], list[Fraction]] = {}
    for seg in segments:
        share = Fraction(qty) * seg.seconds / total_s if total_s else Fraction(qty)
        acc = by_band.setdefault((seg.band, seg.multiplier), [Fraction(0), Fraction(0)])
        acc[0] += seg.seconds
        acc[1] += share
    shares = tuple(
        TouShare(band, mult, secs, u, u * price * Fraction(mult)) for (band, mult), (secs, u) in by_band.items()
    )
    subtotal = sum((s.amount for s in shares), Fraction(0))
    green = subtotal * Fraction(entry.green_discount_pct) / 100
    return PriceBreakdown(book.version, entry, qty, shares, subtotal, green, subtotal - green)


# ---- quotes --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuoteRequest:
    """What a consumer asks a price for.

    ``units_by_pool`` gives, per candidate pool, the quantity the job would use
    over ``duration`` in each unit (the service computes SCU as
    ``units.pool_capacity_scu_per_hour(...)`` of the job's share x hours);
    pools absent from it are not eligible.
    """

    consumer: str
    resource_class: ResourceClass
    service_level: ServiceLevel
    start: datetime
    duration: timedelta
    units_by_pool: Mapping[PoolId, Mapping[PriceUnit, Decimal]]

    def __post_init__(self) -> None:
        if self.duration < timedelta(0):
            raise InvalidSpec("quote duration must not be negative")


@dataclass(frozen=True, slots=True)
class PoolQuote:
    pool: PoolId
    site: SiteId
    price: PriceBreakdown
    gross_fen: Fen  # net rounded half-even
    voucher_programme: str
    voucher_fen: Fen
    total_fen: Fen  # what the consumer pays: gross - voucher; the hold to place

    @property
    def unit_price_fen(self) -> Decimal:
        return self.price.entry.unit_price_fen


def preferred_units(quantities: Mapping[PriceUnit, Decimal]) -> tuple[PriceUnit, ...]:
    """Native units the caller measured first (in enum order), then SCU."""
    natives = [u for u in PriceUnit if u is not PriceUnit.SCU and u in quantities]
    return (*natives, PriceUnit.SCU) if PriceUnit.SCU in quantities else tuple(natives)


def quote(
    request: QuoteRequest,
    pools: Iterable[Pool],
    books: Iterable[PriceBook],
    *,
    programmes: Iterable[VoucherProgramme] = (),
    voucher_used_fen: Mapping[str, Fen] | None = None,
    voucher_fund_fen: Mapping[str, Fen] | None = None,
) -> list[PoolQuote]:
    """Price the request at every eligible pool, cheapest first (ties: pool name).

    ``voucher_used_fen`` / ``voucher_fund_fen`` (programme -> fen) say what the
    consumer already used and what each fund holds; missing means 0 used /
    unlimited fund.  Raises InvalidSpec if no book is in force at ``start``.
    """
    book = price_book_in_force(books, request.start)
    end = request.start + request.duration
    programme = pick_programme(
        programmes, consumer=request.consumer, resource_class=request.resource_class, at=request.start
    )
    quotes: list[PoolQuote] = []
    for pool in pools:
        quantities = request.units_by_pool.get(pool.name)
        if pool.resource_class is not request.resource_class or not quantities:
            continue
        units = preferred_units(quantities)
        entry = find_price(
            book,
            resource_class=pool.resource_class,
            tier=pool.tier,
            service_level=request.service_level,
            site=pool.site,
            pool=pool.name,
            units=units,
        )
        if entry is None:
            continue
        breakdown = price_interval(book, entry, quantities[entry.unit], request.start, end)
        gross, _ = round_fen(breakdown.net)
        voucher = 0
        if programme is not None:
            used = (voucher_used_fen or {}).get(programme.id, 0)
            fund = (voucher_fund_fen or {}).get(programme.id, gross)
            voucher = voucher_share(programme, gross_fen=gross, used_fen=used, fund_fen=fund)
        quotes.append(
            PoolQuote(
                pool.name, pool.site, breakdown, gross, programme.id if programme else "", voucher, gross - voucher
            )
        )
    return sorted(quotes, key=lambda q: (q.total_fen, q.pool))
