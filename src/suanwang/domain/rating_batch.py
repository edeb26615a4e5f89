"""Rating a batch in integers: a usage row's charge as the general path books it, without its objects.

Why: the general path (UsageRecord -> rate_usage -> Charge -> plan_charge ->
Transfer -> check_transfer -> stored row) builds and validates six objects
per record, which costs several times the database writes; the rating worker
must keep up with tens of thousands of records a second.  This module prices
a row straight from the plain values the store claimed and writes the charge's
legs, request digest and stored body exactly as the general path would.

It covers the common case only.  :func:`price_row` answers None (take the
general path) for a row it does not cover: usage no entry prices, or a quantity
the record would refuse; :func:`plan_row` answers None where the rule book might
refuse the charge (its hold is another consumer's, or the hold account would go
below zero).  A voucher programme that covers the row is named on the priced row
and :func:`plan_row` applies it against the running ledger state (what the
consumer used of the cap, what the fund holds), as ``apply_voucher`` does.
tests/domain/test_rating_batch.py and tests/services/test_rating_fast.py hold both
paths equal on random batches.

Where a price comes from: :meth:`RatingContext.terms` (the book in force at the
usage start).  A per-record price source (a contract price, say) plugs in as
``RatingContext.price_source``: a function of the claimed row answering the net
price as an exact ratio and the version to record, or None for the book's price.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from suanwang.domain.ledger import (
    PLATFORM_FEES,
    ROUNDING,
    Hold,
    HoldState,
    LedgerView,
    TransferKind,
    earnings,
    hold_account,
    transfer_text,
    voucher_fund,
    wallet,
)
from suanwang.domain.money import CURRENCY, Fen, round_ratio
from suanwang.domain.pricing import BooksInForce, PriceBreakdown, PriceUnit, find_price, preferred_units
from suanwang.domain.rating import booking_time, usage_key, usage_request
from suanwang.domain.resources import ResourceClass, ServiceLevel
from suanwang.domain.tou import band_microseconds
from suanwang.domain.voucher import VoucherProgramme

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_ROUNDING, _FEES = str(ROUNDING), str(PLATFORM_FEES)
_CLASSES = {c.value: c for c in ResourceClass}  # ResourceClass(value) costs more than a dict
FREE = "free"  # price_row's answer for usage that started before any price book: rated, no charge


def quantities(core_s: float, device_s: float, units_nano: int,
               shots: int = 0) -> tuple[tuple[PriceUnit, Decimal], ...]:
    """What a usage row measured per unit, in the order a UsageRecord keeps them (by unit name)."""
    out = []
    if device_s:
        out.append((PriceUnit.CARD_HOUR, Decimal(str(device_s)) / 3600))
    if core_s:
        out.append((PriceUnit.CORE_HOUR, Decimal(str(core_s)) / 3600))
    out.append((PriceUnit.SCU, Decimal(units_nano).scaleb(-9)))
    if shots:
        out.append((PriceUnit.SHOT, Decimal(shots)))
    return tuple(out)


def utc(seconds: float) -> datetime:
    """Unix seconds as an aware UTC datetime (what the usage record and billing use)."""
    return datetime.fromtimestamp(seconds, UTC)


class PricedUsage(NamedTuple):
    """A rated usage row: who pays whom how much, and the texts its charge transfer carries."""

    key: str
    job_id: str
    consumer: str
    provider: str
    pool: str
    resource_class: str
    version: int
    fee_bps: int
    usage_start: str  # isoformat, as the stored body writes it
    usage_end: str
    booked_at: str  # isoformat
    booked_us: int
    request: str
    gross_fen: Fen
    fee_fen: Fen
    provider_fen: Fen
    rounding_fen: Fen
    programme: tuple[VoucherProgramme, int, int] | None = None  # its voucher programme and share (ratio of %)


# A per-record price: (net numerator, net denominator, price version to record) in fen, or None for the book's.
PriceSource = Callable[[Sequence[Any]], tuple[int, int, int] | None]


@dataclass
class RatingContext:
    """What pricing a batch reads besides the rows (the caller loads it once per batch)."""

    books: BooksInForce
    providers: Mapping[str, str]  # site -> provider tenant
    tiers: Mapping[tuple[str, str], str]  # (site, pool) -> hardware tier
    levels: Mapping[str, ServiceLevel]  # job -> service level
    fee_bps: Mapping[str, int]  # provider -> platform fee
    settled_until: datetime | None
    programmes: Sequence[VoucherProgramme] = ()
    price_source: PriceSource | None = None  # plug-in for prices the book does not give (see the docstring)
    _terms: dict[tuple[Any, ...], tuple[Any, ...] | None] = field(default_factory=dict)
    _offers: dict[tuple[str, ResourceClass], tuple[tuple[VoucherProgramme, int, int], ...]] = field(
        default_factory=dict)
    _measures: dict[tuple[Any, ...], tuple[tuple[tuple[PriceUnit, Decimal], ...], tuple[PriceUnit, ...]] | None] = (
        field(default_factory=dict))

    def programme(self, consumer: str, cls: ResourceClass, at: datetime) -> tuple[VoucherProgramme, int, int] | None:
        """``pick_programme``'s answer with its share as an integer ratio of percent, or None: the programmes
        open to this consumer and class are sorted once per batch (largest share, then id), and the first
        valid at ``at`` wins."""
        offers = self._offers.get((consumer, cls))
        if offers is None:
            open_to = sorted((p for p in self.programmes if cls in p.resource_classes
                              and (p.consumers is None or consumer in p.consumers)), key=lambda p: (-p.share_pct, p.id))
            offers = self._offers[(consumer, cls)] = tuple((p, *p.share_pct.as_integer_ratio()) for p in open_to)
        for offer in offers:
            if offer[0].valid_from <= at < offer[0].valid_until:
                return offer
        return None

    def measured(self, core_s: float, device_s: float, units_nano: int, more: Sequence[int]
                 ) -> tuple[tuple[tuple[PriceUnit, Decimal], ...], tuple[PriceUnit, ...]] | None:
        """:func:`quantities` and their preferred units, or None when a quantity is not a finite amount >= 0:
        worked out once per batch for each distinct measure (an agent's reports of a job repeat them)."""
        key = (core_s, device_s, units_nano, *more)
        if key in self._measures:
            return self._measures[key]
        measured = quantities(core_s, device_s, units_nano, *more)
        ok = all(q.is_finite() and q >= 0 for _, q in measured)
        found = self._measures[key] = (measured, preferred_units(dict(measured))) if ok else None
        return found

    def terms(self, book: Any, cls: ResourceClass, tier: str, level: ServiceLevel, site: str, pool: str,
              units: tuple[PriceUnit, ...]) -> tuple[Any, ...] | None:
        """(entry, price ratio, green factor ratio) for a grade at a pool, or None if unpriced."""
        question = (book.key, cls, tier, level, site, pool, units)  # key: which owners' books, composed
        if question not in self._terms:
            entry = find_price(book, resource_class=cls, tier=tier, service_level=level, site=site, pool=pool,
                               units=units)
            if entry is None:
                self._terms[question] = None
            else:
                green_n, green_d = entry.green_discount_pct.as_integer_ratio()
                self._terms[question] = (entry, *entry.unit_price_fen.as_integer_ratio(),
                                         100 * green_d - green_n, green_d * 100)
        return self._terms[question]


def price_row(row: Sequence[Any], ctx: RatingContext) -> PricedUsage | str | None:
    """Rate a claimed usage row ``(id, job_id, attempt, seq, consumer, site, pool, resource_class, start,
    end, core_s, device_s, units_nano)``: a PricedUsage, FREE, or None for the general path."""
    _, job_id, attempt, seq, consumer, site, pool, cls_value, start_s, end_s, core_s, device_s, units_nano, *more = row
    start, end = utc(start_s), utc(end_s)
    first = ctx.books.first_effective()
    if first is None or start < first:
        return FREE
    cls = _CLASSES.get(cls_value)
    level = ctx.levels.get(job_id)
    if (cls is None or level is None or not job_id or ":" in job_id or end < start
            or type(attempt) is not int or type(seq) is not int or attempt < 0 or seq < 0):
        return None
    found = ctx.measured(core_s, device_s, units_nano, more)
    if found is None:
        return None
    measured, units = found
    programme = ctx.programme(consumer, cls, start) if ctx.programmes else None
    book = ctx.books.at(start)
    tier = ctx.tiers.get((site, pool), "standard")
    plugged = ctx.price_source(row) if ctx.price_source is not None else None
    if plugged is not None:  # a per-record price (the plug-in point): the book's entry is not asked
        net_n, net_d, version = plugged
    else:
        terms = ctx.terms(book, cls, tier, level, site, pool, units)
        if terms is None:
            return None
        entry, price_n, price_d, green_n, green_d = terms
        version = entry.book_version or book.version
        qty = next(q for u, q in measured if u is entry.unit)
        bands = band_microseconds(entry.tou, start, end)
        if len(bands) == 1:
            qty_n, qty_d = qty.as_integer_ratio()
            mult_n, mult_d = bands[0][1].as_integer_ratio()
            net_n, net_d = qty_n * price_n * mult_n * green_n, qty_d * price_d * mult_d * green_d
        else:
            net_n, net_d = PriceBreakdown(book.version, entry, qty, tuple(bands)).net_ratio()
    provider = ctx.providers.get(site, site)
    bps = ctx.fee_bps.get(provider, 0)
    gross = round_ratio(net_n, net_d)
    fee = round_ratio(net_n * bps, net_d * 10_000)
    paid = round_ratio(net_n * (10_000 - bps), net_d * 10_000)
    start_text, end_text = start.isoformat(), end.isoformat()
    booked = booking_time(end, ctx.settled_until)
    booked_text = end_text if booked is end else booked.isoformat()
    request = usage_request(consumer, job_id, pool, provider, site, tier, attempt, seq, cls, level, start_text,
                            end_text, measured)
    return PricedUsage(usage_key(job_id, attempt, seq), job_id, consumer, provider, pool, cls_value,
                       version, bps, start_text, end_text, booked_text, (booked - EPOCH) // _US, request, gross,
                       fee, paid, gross - fee - paid, programme)


class ChargeRow(NamedTuple):
    """A priced usage row planned against the ledger: what the store books for it."""

    priced: PricedUsage
    legs: tuple[tuple[str, Fen], ...]  # (account id, signed fen), non-zero, in the order plan_charge posts
    hold: Hold | None  # the job's hold after this charge captured from it (None: untouched)
    hold_id: str  # set when the hold paid some of it
    hold_fen: Fen
    over_limit: bool
    actor: str
    body: str  # the stored transfer body
    voucher_programme: str = ""  # set when the voucher paid some of it
    voucher_fen: Fen = 0
    consumer_fen: Fen = 0  # what the consumer paid (hold and wallet): the gross less the voucher


def plan_row(priced: PricedUsage, *, hold: Hold | None, view: LedgerView, actor: str) -> ChargeRow | None:
    """The CHARGE of ``priced`` (voucher first, as apply_voucher makes it against ``view``; then the open
    hold, then the wallet) as plan_charge and check_transfer make it, or None where the rule book might
    refuse it (the general path then answers why)."""
    consumer, gross, offer = priced.consumer, priced.gross_fen, priced.programme
    voucher, cap, fund, programme = 0, 0, "", None
    if offer is not None and gross > 0:  # voucher_share in integers: round(gross * share / 100), then cut
        programme, share_n, share_d = offer
        cap, fund = programme.cap_per_consumer_fen, str(voucher_fund(programme.id))
        voucher = max(0, min(round_ratio(gross * share_n, share_d * 100),
                             cap - view.voucher_used(programme.id, consumer), view.balance(voucher_fund(programme.id)),
                             gross))
    elif offer is not None:
        programme, cap = offer[0], offer[0].cap_per_consumer_fen
    owed = gross - voucher
    from_hold, after = 0, None
    if hold is not None and hold.state is HoldState.OPEN:
        if hold.consumer != consumer:
            return None
        from_hold = min(owed, hold.remaining_fen)
    held, purse = str(hold_account(consumer)), str(wallet(consumer))
    if from_hold and view.balance(hold_account(consumer)) < from_hold:
        return None  # the hold account would pass its floor: refused, said by the general path
    legs = tuple((account, fen) for account, fen in (
        (held, -from_hold), (purse, from_hold - owed), (fund, -voucher), (str(earnings(priced.provider)),
                                                                            priced.provider_fen),
        (_FEES, priced.fee_fen), (_ROUNDING, priced.rounding_fen)) if fen)
    over = False
    if owed > from_hold:  # the wallet pays the rest: a charge may pass the credit line, flagged
        over = view.balance(wallet(consumer)) + from_hold - owed < -view.credit_limit(consumer)
    hold_id = ""
    if from_hold:
        assert hold is not None
        hold_id = hold.id
        after = Hold(hold.id, hold.consumer, hold.amount_fen, hold.captured_fen + from_hold, hold.released_fen,
                     hold.state, hold.expires_at)
    p = priced
    body = transfer_text(TransferKind.CHARGE, p.key, f'"{p.booked_at}"', p.request,
                         [(account, fen, CURRENCY) for account, fen in legs], actor,
                         f"usage charge, fee {p.fee_bps} bps", consumer, p.provider, p.job_id, p.key, p.version,
                         p.resource_class, p.pool, f'"{p.usage_start}"', f'"{p.usage_end}"', hold_id, from_hold,
                         programme.id if voucher and programme else "", voucher, cap, "", "null")
    return ChargeRow(priced, legs, after, hold_id, from_hold, over, actor, body,
                     programme.id if voucher and programme else "", voucher, owed)
