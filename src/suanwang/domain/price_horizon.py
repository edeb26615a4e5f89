"""Prices over a queueing horizon: what a job would cost if its window started at any time in the next day.

Why: a quote prices a window that starts now, but a queued job starts later, and under time-of-use bands
its window slides into dearer or cheaper hours as the clock moves.  A job held for the window quoted at
submit, just before a dearer band, was priced above its hold seconds later, and the price rule
(``placement.priced_out``) kept it waiting.  So, like a card pre-authorisation:

- a job with no explicit limit is held for the *dearest* window starting within ``QUEUE_HORIZON`` of its
  submit, and that is its limit: the clock moving never prices it out;
- a job with an explicit ``max_price_fen`` is accepted when its *cheapest* window within the horizon is
  within it (refused only when no pool is within it at any start), and waits for that band; ``explain``
  says from when (:func:`first_within`).

Invariants owned here
- Before rounding, a window's price is piecewise linear in its start, breaking only where the start or the
  end crosses a local hour (bands change on the hour; China time is a whole-hour offset of UTC with no
  daylight saving, so local hours are UTC hours) or where a book takes effect.  The extremes over
  ``[start, start + horizon]`` therefore lie at those breaks or at the two ends (:func:`window_starts`),
  and rounding half-even (monotone) keeps them the extremes in fen.
- ``QUEUE_HORIZON`` is 24 h: bands recur daily, so the horizon holds every band of a book in force.  A
  season or a book that starts later than that is not foreseen: a job it prices out waits, and says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from suanwang.domain.grid import Pool, PoolId, SiteId
from suanwang.domain.money import Fen
from suanwang.domain.pricing import (
    BooksInForce,
    PoolQuote,
    PriceBook,
    QuoteRequest,
    find_price,
    preferred_units,
    price_interval,
    quote,
)
from suanwang.domain.voucher import VoucherProgramme

QUEUE_HORIZON = timedelta(hours=24)
_HOUR = timedelta(hours=1)
_TICK = timedelta(microseconds=1)
_SECOND = timedelta(seconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ceil_hour(at: datetime) -> datetime:
    """The first whole (UTC, hence China) hour at or after ``at``."""
    rest = (at - _EPOCH) % _HOUR
    return at if not rest else at + (_HOUR - rest)


def changes_of(books: Iterable[PriceBook]) -> tuple[datetime, ...]:
    """Where a window's gross price may jump as its start moves: where books take effect (a voucher changes
    what the consumer pays, not the gross the limit bounds)."""
    return tuple(sorted({b.effective_from for b in books}))


def has_tou(books: Iterable[PriceBook]) -> bool:
    """Whether any entry of ``books`` carries time-of-use bands (else a window's price does not depend on when
    it starts, between changes)."""
    return any(e.tou is not None for b in books for e in b.entries)


def window_starts(start: datetime, duration: timedelta, *, horizon: timedelta = QUEUE_HORIZON,
                  changes: Sequence[datetime] = (), tou: bool = True) -> list[datetime]:
    """The starts within ``[start, start + horizon]`` where a window of ``duration`` may be at its dearest or
    cheapest (see the module docstring), in order.  Without time-of-use bands only the ends and changes."""
    last = start + horizon
    out = {start, last}
    if tou:
        at = _ceil_hour(start)  # the start crosses an hour
        while at <= last:
            out.add(at)
            at += _HOUR
        at = _ceil_hour(start + duration) - duration  # the end crosses an hour
        while at <= last:
            out.add(at)
            at += _HOUR
    for change in changes:
        if start < change <= last:
            out.update((change - _TICK, change))  # the last instant before it, and the first after
    return sorted(out)


@dataclass(frozen=True, slots=True)
class PriceRange:
    """One pool's cheapest and dearest quote for windows starting within the horizon, and their starts."""

    cheapest: PoolQuote
    cheapest_at: datetime
    dearest: PoolQuote
    dearest_at: datetime


def quote_range(request: QuoteRequest, pools: Sequence[Pool], books: Sequence[PriceBook],
                starts: Sequence[datetime], *, programmes: Iterable[VoucherProgramme] = (),
                voucher_used_fen: Mapping[str, Fen] | None = None,
                voucher_fund_fen: Mapping[str, Fen] | None = None) -> dict[tuple[SiteId, PoolId], PriceRange]:
    """Per priced pool, the cheapest and dearest of its quotes at each of ``starts`` (:func:`window_starts`;
    the first is the request's start, and raises InvalidSpec as :func:`pricing.quote` when no book is in
    force then).

    Each start is priced as an exact ratio (no Fraction, no voucher) and only the two extremes are quoted
    in full.  Gross decides (the limit is gross); a tie keeps the earliest start, so a voucher that ends
    within the horizon does not raise the hold of a job that would run now."""
    in_force = BooksInForce(books)
    in_force.at(request.start)  # InvalidSpec when none is: as quote() says it
    extremes: dict[int, tuple[int, int, datetime, int, int, datetime]] = {}  # pool -> low n, d, at; high …
    for at in starts:
        if at < request.start:
            continue
        book = in_force.at(at)
        for i, pool in enumerate(pools):
            quantities = request.units_by_pool.get(pool.name)
            if pool.resource_class is not request.resource_class or not quantities:
                continue
            entry = find_price(book, resource_class=pool.resource_class, tier=pool.tier,
                               service_level=request.service_level, site=pool.site, pool=pool.name,
                               units=preferred_units(quantities))
            if entry is None:
                continue
            n, d = price_interval(book, entry, quantities[entry.unit], at, at + request.duration).net_ratio()
            seen = extremes.get(i)
            if seen is None:
                extremes[i] = (n, d, at, n, d, at)
                continue
            low_n, low_d, low_at, high_n, high_d, high_at = seen
            if n * low_d < low_n * d:
                low_n, low_d, low_at = n, d, at
            if n * high_d > high_n * d:
                high_n, high_d, high_at = n, d, at
            extremes[i] = (low_n, low_d, low_at, high_n, high_d, high_at)
    found: dict[tuple[SiteId, PoolId], PriceRange] = {}
    for i, (_, _, low_at, _, _, high_at) in extremes.items():
        pool = pools[i]
        low, high = (quote(replace(request, start=at), [pool], books, programmes=programmes,
                           voucher_used_fen=voucher_used_fen, voucher_fund_fen=voucher_fund_fen)[0]
                     for at in (low_at, high_at))
        found[(pool.site, pool.name)] = PriceRange(low, low_at, high, high_at)
    return found


def first_within(request: QuoteRequest, pool: Pool, books: Sequence[PriceBook], starts: Sequence[datetime],
                 limit_fen: Fen) -> datetime | None:
    """The earliest start (to the second) within the horizon at which ``pool`` prices the window at or
    below ``limit_fen`` gross, or None.  Between two consecutive ``starts`` the price is monotone, so the
    crossing is found by bisection."""

    def gross(at: datetime) -> Fen | None:
        quotes = quote(replace(request, start=at), [pool], books)
        return quotes[0].gross_fen if quotes else None

    before: datetime | None = None
    for at in starts:
        if at < request.start:
            continue
        fen = gross(at)
        if fen is not None and fen <= limit_fen:
            if before is None:
                return at
            low, high = before, at  # over the limit at low, within it at high
            while high - low > _SECOND:
                middle = low + (high - low) / 2
                price = gross(middle)
                low, high = (low, middle) if price is not None and price <= limit_fen else (middle, high)
            return high
        before = at
    return None
