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
- Books are versioned and never edited, in one series per owner: the
  operator's (owner ``OPERATOR``) and each provider's, whose entries price only
  its own sites.  A new version must have a higher number than its owner's
  last and take effect no earlier than now, no earlier than its owner's latest
  book and no later than ``MAX_AHEAD`` from now, so history is never rewritten
  and no owner's book blocks or shadows another's.  Usage is priced by the
  books in force at the usage's start (:func:`price_book_in_force`), composed
  with this precedence: the pool's provider's book for its own sites, then the
  operator's book (within one book, the most specific scope wins).
- Every number a book carries is bounded as it is parsed (prices by
  ``money.MAX_FEN``, multipliers by ``tou.MAX_MULTIPLIER``, discounts by 100%,
  versions by ``MAX_VERSION``, 4 decimal places), before any arithmetic.
- Quantities are spread uniformly over their interval; the time-of-use split
  gives each band its share of units exactly.
"""

from __future__ import annotations

import bisect
import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from suanwang.domain.grid import Pool, PoolId, SiteId
from suanwang.domain.money import Fen, parse_bounded, parse_price, parse_quantity, round_fen
from suanwang.domain.resources import ResourceClass, ServiceLevel
from suanwang.domain.tou import TouBand, TouTariff, band_microseconds
from suanwang.domain.voucher import VoucherProgramme, pick_programme, voucher_share
from suanwang.errors import InvalidSpec

OPERATOR = ""  # the owner of the operator's series of books; a provider's series is owned by its tenant id
MAX_VERSION = 2**31 - 1  # versions are stored as 32-bit integers (price_books.version, transfers' book version)
MAX_AHEAD = timedelta(days=731)  # a book may be published at most two years before it takes effect
MAX_ENTRIES = 10_000
DISCOUNT_PLACES = 4


@enum.unique
class PriceUnit(enum.StrEnum):
    """What one unit of a price is."""

    SCU = "scu"  # one standard compute unit: 1 TFLOPS·h FP32 held (suanwang.domain.units.usage_units)
    CORE_HOUR = "core_hour"  # general: one CPU core for one hour
    CARD_HOUR = "card_hour"  # intelligent: one accelerator card for one hour
    NODE_HOUR = "node_hour"  # super: one HPC node for one hour
    SHOT = "shot"  # quantum: one circuit execution
    GB_TRANSFER = "gb_transfer"  # a staged transfer: one decimal gigabyte moved over a link between two sites
    GB_HOUR_STORAGE = "gb_hour_storage"  # a staged replica held at a site: one decimal gigabyte for one hour


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
    # provenance, stamped by the book that carries the entry: whose series and which version priced a charge
    owner: str = field(default=OPERATOR, compare=False)
    book_version: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "unit_price_fen", parse_price(self.unit_price_fen))
        pct = parse_bounded(self.green_discount_pct, what="green discount percent", low=0, high=100,
                            places=DISCOUNT_PLACES)
        object.__setattr__(self, "green_discount_pct", pct)
        if not self.tier:
            raise InvalidSpec("price entry needs a hardware tier")

    @property
    def specificity(self) -> int:
        return 2 if self.pool else 1 if self.site else 0

    def slot(self) -> tuple[object, ...]:
        return (self.resource_class, self.tier, self.service_level, self.unit, self.site, self.pool)


def check_version(value: object, what: str = "price book version") -> int:
    """A version number: an int in ``1..MAX_VERSION`` (checked before any conversion: ``1e999999`` never
    becomes an int)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSpec(f"{what} must be an integer, got {type(value).__name__}: {str(value)[:40]}")
    if not 1 <= value <= MAX_VERSION:
        raise InvalidSpec(f"{what} must lie within 1..{MAX_VERSION}: {str(value)[:40]}")
    return value


@dataclass(frozen=True, slots=True)
class PriceBook:
    """One owner's book, or (``parts``) the books of several owners in force together, in precedence order."""

    version: int
    effective_from: datetime
    entries: tuple[PriceEntry, ...]
    owner: str = OPERATOR
    parts: tuple[PriceBook, ...] = ()
    # find_price answers, memoised: a book never changes, and a batch of usage asks the same few questions
    _lookups: dict[tuple[object, ...], PriceEntry | None] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        check_version(self.version)
        if self.effective_from.tzinfo is None:
            raise InvalidSpec("price book effective_from must be timezone-aware")
        if self.parts:
            return  # a composition of books already checked
        if len(self.entries) > MAX_ENTRIES:
            raise InvalidSpec(f"a price book has at most {MAX_ENTRIES} entries, got {len(self.entries)}")
        slots = [e.slot() for e in self.entries]
        doubled = {s for s in slots if slots.count(s) > 1} if len(set(slots)) < len(slots) else set()
        if doubled:
            raise InvalidSpec(f"price book v{self.version} prices the same slot twice: {sorted(map(str, doubled))}")
        if self.owner != OPERATOR and any(not e.site for e in self.entries):
            raise InvalidSpec(f"a provider's book ({self.owner}) may only price its own sites: every entry names one")
        object.__setattr__(self, "entries", tuple(
            e if (e.owner, e.book_version) == (self.owner, self.version)
            else replace(e, owner=self.owner, book_version=self.version) for e in self.entries))

    @property
    def key(self) -> tuple[tuple[str, int], ...]:
        """Which books this is: ((owner, version), ...), in precedence order."""
        return tuple((p.owner, p.version) for p in self.parts) if self.parts else ((self.owner, self.version),)


def compose_books(in_force: Iterable[PriceBook]) -> PriceBook:
    """The books in force together (one per owner) as one book: providers' books first (by owner), the
    operator's last, so a provider's entry for its own site wins over any operator entry there."""
    parts = sorted(in_force, key=lambda b: (b.owner == OPERATOR, b.owner))
    if not parts:
        raise InvalidSpec("no price book to compose")
    if len(parts) == 1:
        return parts[0]
    operator = [b for b in parts if b.owner == OPERATOR]
    version = operator[0].version if operator else parts[0].version
    return PriceBook(version, max(b.effective_from for b in parts), tuple(e for b in parts for e in b.entries),
                     owner=OPERATOR, parts=tuple(parts))


def _latest_per_owner(books: Iterable[PriceBook], at: datetime) -> list[PriceBook]:
    best: dict[str, PriceBook] = {}
    for b in books:
        if b.effective_from <= at:
            held = best.get(b.owner)
            if held is None or (b.effective_from, b.version) > (held.effective_from, held.version):
                best[b.owner] = b
    return list(best.values())


def price_book_in_force(books: Iterable[PriceBook], at: datetime) -> PriceBook:
    """Per owner, the book with the latest ``effective_from <= at`` (ties: highest version), composed
    (:func:`compose_books`).  InvalidSpec if no owner has one."""
    latest = _latest_per_owner(books, at)
    if not latest:
        raise InvalidSpec(f"no price book in force at {at.isoformat()}")
    return compose_books(latest)


class BooksInForce:
    """:func:`price_book_in_force` for many instants: each composition built once, each instant found by
    bisection over the instants where some owner's book takes effect."""

    def __init__(self, books: Iterable[PriceBook]) -> None:
        ordered = sorted(books, key=lambda b: (b.effective_from, b.version))
        self._starts: list[datetime] = []
        self._books: list[PriceBook] = []
        current: dict[str, PriceBook] = {}  # owner -> its book in force, swept forward in time
        for i, book in enumerate(ordered):
            current[book.owner] = book  # later (effective_from, version) wins, as in price_book_in_force
            if i + 1 == len(ordered) or ordered[i + 1].effective_from != book.effective_from:
                self._starts.append(book.effective_from)
                self._books.append(compose_books(current.values()))

    def first_effective(self) -> datetime | None:
        """When the first book takes effect (None: no book): usage before it is free."""
        return self._starts[0] if self._starts else None

    def at(self, at: datetime) -> PriceBook:
        """The books in force at ``at``, composed; InvalidSpec if none."""
        found = bisect.bisect_right(self._starts, at)
        if not found:
            raise InvalidSpec(f"no price book in force at {at.isoformat()}")
        return self._books[found - 1]


def check_new_price_book(books: Sequence[PriceBook], new: PriceBook, *, now: datetime) -> PriceBook:
    """Refuse a book that would rewrite its owner's history or lie beyond ``MAX_AHEAD``; return it if
    acceptable.  Only ``new``'s owner's books count: another owner's never block it."""
    mine = [b for b in books if b.owner == new.owner]
    if any(b.version >= new.version for b in mine):
        raise InvalidSpec(f"price book version {new.version} is not above the latest {max(b.version for b in mine)}")
    if new.effective_from < now:
        raise InvalidSpec(
            f"price book v{new.version} would take effect in the past "
            f"({new.effective_from.isoformat()} < now {now.isoformat()})"
        )
    if new.effective_from > now + MAX_AHEAD:
        raise InvalidSpec(f"effective_from {new.effective_from.isoformat()} is more than {MAX_AHEAD.days} days "
                          f"ahead; publish it closer to its start")
    latest = max((b.effective_from for b in mine), default=None)
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
    question = (resource_class, tier, service_level, site, pool, tuple(units))
    if question in book._lookups:
        return book._lookups[question]
    if book.parts:  # the first book (in precedence order) that prices it
        found = next((e for part in book.parts if (e := find_price(
            part, resource_class=resource_class, tier=tier, service_level=service_level, site=site, pool=pool,
            units=units)) is not None), None)
        book._lookups[question] = found
        return found
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
    found = book._lookups[question] = best[2] if best else None
    return found


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
    """Exact price of a quantity over an interval, before rounding and vouchers.

    Each band gets ``units * its seconds / all seconds`` at ``unit price *
    multiplier``; the green discount comes off the sum.  Stored as the
    integers it is made of (microseconds per band), and the exact Fractions
    are derived when asked for: rating needs only :meth:`net_ratio`, and
    Fractions cost more than the rest of pricing a record.
    """

    book_version: int
    entry: PriceEntry
    units: Decimal
    bands: tuple[tuple[TouBand, Decimal, int], ...]  # (band, multiplier, microseconds), in order of first appearance

    def _terms(self) -> tuple[list[tuple[int, int]], int, int]:
        """Each band's units as (numerator, denominator) over one denominator, and the subtotal's
        numerator and denominator (over the least common multiple of the multipliers' denominators)."""
        total_us = sum(us for _, _, us in self.bands)
        qty_n, qty_d = self.units.as_integer_ratio()
        price_n, price_d = self.entry.unit_price_fen.as_integer_ratio()
        ratios = [multiplier.as_integer_ratio() for _, multiplier, _ in self.bands]
        common = math.lcm(*(d for _, d in ratios))
        units_d = qty_d * total_us if total_us else qty_d  # an instant puts all units in its one band
        units = [(qty_n * us if total_us else qty_n, units_d) for _, _, us in self.bands]
        subtotal_n = sum(n * price_n * mult_n * (common // mult_d)
                         for (n, _), (mult_n, mult_d) in zip(units, ratios, strict=True))
        return units, subtotal_n, units_d * price_d * common

    def net_ratio(self) -> tuple[int, int]:
        """``net`` as an (unreduced) numerator and positive denominator, for rounding in integers."""
        if len(self.bands) == 1:  # most intervals lie in one band: the units need no split
            _, multiplier, _ = self.bands[0]
            qty_n, qty_d = self.units.as_integer_ratio()
            price_n, price_d = self.entry.unit_price_fen.as_integer_ratio()
            mult_n, mult_d = multiplier.as_integer_ratio()
            subtotal_n, subtotal_d = qty_n * price_n * mult_n, qty_d * price_d * mult_d
        else:
            _, subtotal_n, subtotal_d = self._terms()
        green_n, green_d = self.entry.green_discount_pct.as_integer_ratio()
        return subtotal_n * (100 * green_d - green_n), subtotal_d * green_d * 100

    @property
    def shares(self) -> tuple[TouShare, ...]:
        units, _, _ = self._terms()
        price = Fraction(self.entry.unit_price_fen)
        out = []
        for (band, multiplier, us), (n, d) in zip(self.bands, units, strict=True):
            share = Fraction(n, d)
            out.append(TouShare(band, multiplier, Fraction(us, 1_000_000), share, share * price * Fraction(multiplier)))
        return tuple(out)

    @property
    def subtotal(self) -> Fraction:
        """The sum of the bands' amounts."""
        _, subtotal_n, subtotal_d = self._terms()
        return Fraction(subtotal_n, subtotal_d)

    @property
    def green_discount(self) -> Fraction:
        return self.subtotal * Fraction(self.entry.green_discount_pct) / 100

    @property
    def net(self) -> Fraction:
        """subtotal - green_discount: the exact amount to charge."""
        return Fraction(*self.net_ratio())


def price_interval(
    book: PriceBook, entry: PriceEntry, units: Decimal, start: datetime, end: datetime
) -> PriceBreakdown:
    """Price ``units`` spread uniformly over ``[start, end)`` (instantaneous: all in one FLAT share)."""
    qty = parse_quantity(units, what="units")
    version = entry.book_version or book.version  # the version of the book that priced it, in its owner's series
    return PriceBreakdown(version, entry, qty, tuple(band_microseconds(entry.tou, start, end)))


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
    measured = frozenset(quantities)
    found = _PREFERRED.get(measured)
    if found is None:
        natives = [u for u in PriceUnit if u is not PriceUnit.SCU and u in measured]
        found = _PREFERRED[measured] = (*natives, PriceUnit.SCU) if PriceUnit.SCU in measured else tuple(natives)
    return found


_PREFERRED: dict[frozenset[PriceUnit], tuple[PriceUnit, ...]] = {}  # at most 2**5 sets of units


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
