"""Rating (批价): a usage record becomes one charge, and the charge one balanced transfer.

Why: every second of compute is billed exactly once.  The idempotency key of
the charge transfer is the usage record key ``(job_id, attempt, seq)``, and its
request digest is the record itself, so a retried report, a worker that
crashed between steps, or two workers rating at once all end in one CHARGE:
the store answers EXISTS to the others (see ``ledger``).

Rounding (L12), declared once:
1. ``gross`` = round_half_even(exact net price); the sub-fen ``residue`` is kept
   on the charge and in the statements (it is not billed).
2. ``fee`` = round_half_even(exact net * fee_bps / 10000) and ``provider`` =
   round_half_even(exact net - exact fee): each party gets the fen nearest its
   exact due; ``rounding`` = gross - fee - provider (-1, 0 or +1 fen) is posted
   to the ROUNDING account, so the transfer balances.
3. ``voucher`` = min(round_half_even(gross * share), cap left, fund); the
   consumer pays ``gross - voucher``, first from the job's open hold, the rest
   from the wallet.

Lost attempts: an attempt the platform declared lost is not the consumer's to
pay for.  Usage of it rated after the declaration books no charge; the record
keeps the reason (``LOST_ATTEMPT``) and the provider, whose agent lost the
lease, earns nothing for it.

Late usage (M3): a record is booked at its end time, or at the first instant
of the open period if its time lies in a settled period (:func:`booking_time`).
"""

from __future__ import annotations

import json.encoder
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

from suanwang.domain.ledger import (
    PLATFORM_FEES,
    ROUNDING,
    Audit,
    Hold,
    HoldState,
    Posting,
    Transfer,
    TransferKind,
    digest,
    digest_text,
    earnings,
    hold_account,
    voucher_fund,
    wallet,
)
from suanwang.domain.money import Fen, check_fen, parse_quantity, round_ratio
from suanwang.domain.pricing import PriceBook, PriceBreakdown, PriceUnit, find_price, preferred_units, price_interval
from suanwang.domain.resources import ResourceClass, ServiceLevel
from suanwang.domain.voucher import VoucherProgramme, voucher_share
from suanwang.errors import InvalidSpec

LOST_ATTEMPT = "lost_attempt"  # why usage is rated with no charge: the platform had declared its attempt lost
_json_text = json.encoder.encode_basestring  # a str as json.dumps(ensure_ascii=False) writes it


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """Measured consumption of one job attempt over ``[start, end)``.

    ``quantities`` maps each unit measured (SCU and/or native units) to the
    amount consumed in the interval.  ``(job_id, attempt, seq)`` identifies it.
    """

    job_id: str
    attempt: int
    seq: int
    consumer: str
    provider: str
    site: str
    pool: str
    resource_class: ResourceClass
    tier: str
    service_level: ServiceLevel
    start: datetime
    end: datetime
    quantities: tuple[tuple[PriceUnit, Decimal], ...]

    def __post_init__(self) -> None:
        if not self.job_id or ":" in self.job_id:
            raise InvalidSpec(f"usage record job_id must be non-empty without ':': {self.job_id!r}")
        for value, what in ((self.attempt, "attempt"), (self.seq, "seq")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidSpec(f"usage record {what} must be an int >= 0, got {value!r}")
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise InvalidSpec("usage record times must be timezone-aware")
        if self.end < self.start:
            raise InvalidSpec(f"usage record {self.key} ends before it starts")
        if _is_normal(self.quantities):
            return  # already what the normalisation below would make (the rating worker builds it so)
        items = self.quantities.items() if isinstance(self.quantities, Mapping) else self.quantities
        normal = tuple(
            sorted(
                ((PriceUnit(u), parse_quantity(q, what=f"{u} quantity")) for u, q in items), key=lambda uq: uq[0].value
            )
        )
        if not normal:
            raise InvalidSpec(f"usage record {self.key} measures no quantity")
        object.__setattr__(self, "quantities", normal)

    @property
    def key(self) -> str:
        return usage_key(self.job_id, self.attempt, self.seq)

    def quantity(self, unit: PriceUnit) -> Decimal:
        return dict(self.quantities)[unit]


def _is_normal(quantities: object) -> bool:
    """A non-empty tuple of (PriceUnit, finite Decimal >= 0) pairs in strictly increasing unit order."""
    if type(quantities) is not tuple or not quantities:
        return False
    last = ""
    for pair in quantities:
        if type(pair) is not tuple or len(pair) != 2:
            return False
        unit, quantity = pair
        if type(unit) is not PriceUnit or unit <= last or type(quantity) is not Decimal:
            return False
        if not quantity.is_finite() or quantity < 0:
            return False
        last = unit
    return True


def usage_digest(record: UsageRecord) -> str:
    """``digest(record)``, the request digest of its charge, with the canonical JSON written directly.

    Rating digests thousands of records a second; the general walk over the
    dataclass costs more than the rest of planning a charge.  Any field of an
    unexpected type (a str or int subclass, say) takes the general path, and
    tests/domain/test_fast_paths.py holds the two equal on random records.
    """
    texts = (record.consumer, record.job_id, record.pool, record.provider, record.site, record.tier)
    units, amounts = zip(*record.quantities, strict=True)
    if (set(map(type, texts)) != _STR or type(record.attempt) is not int or type(record.seq) is not int
            or type(record.resource_class) is not ResourceClass or type(record.service_level) is not ServiceLevel
            or set(map(type, units)) != _UNIT or set(map(type, amounts)) != _DECIMAL):
        return digest(record)
    return usage_request(record.consumer, record.job_id, record.pool, record.provider, record.site, record.tier,
                         record.attempt, record.seq, record.resource_class, record.service_level,
                         _utc_iso(record.start), _utc_iso(record.end), record.quantities)


def usage_request(consumer: str, job_id: str, pool: str, provider: str, site: str, tier: str, attempt: int, seq: int,
                  resource_class: str, service_level: str, start: str, end: str,
                  quantities: tuple[tuple[PriceUnit, Decimal], ...]) -> str:
    """The digest of a usage record from its plain values (times as UTC isoformat): the canonical JSON
    that ``digest(record)`` hashes, written directly (see :func:`usage_digest`)."""
    e = _json_text
    amounts = ", ".join(f'["{u}", "{format(q.normalize(), "f")}"]' for u, q in quantities)
    return digest_text(  # enum members format as their values (StrEnum)
        f'[{{"attempt": {attempt}, "consumer": {e(consumer)}, "end": "{end}", '
        f'"job_id": {e(job_id)}, "pool": {e(pool)}, "provider": {e(provider)}, "quantities": [{amounts}], '
        f'"resource_class": "{resource_class}", "seq": {seq}, '
        f'"service_level": "{service_level}", "site": {e(site)}, "start": "{start}", '
        f'"tier": {e(tier)}}}]'
    )


_STR, _UNIT, _DECIMAL, _INT = {str}, {PriceUnit}, {Decimal}, {int}


def _utc_iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def usage_key(job_id: str, attempt: int, seq: int) -> str:
    """The idempotency key of a usage record and of its charge transfer."""
    return f"usage:{job_id}:{attempt}:{seq}"


@dataclass(frozen=True, slots=True)
class ProviderContract:
    """A provider's terms with the platform: the fee in basis points of each charge."""

    provider: str
    fee_bps: int

    def __post_init__(self) -> None:
        if isinstance(self.fee_bps, bool) or not isinstance(self.fee_bps, int) or not 0 <= self.fee_bps <= 10_000:
            raise InvalidSpec(f"provider {self.provider}: fee_bps must be an int within 0..10000")


@dataclass(frozen=True, slots=True)
class VoucherState:
    """What a programme has left for this consumer: read from the ledger by the caller."""

    programme: VoucherProgramme
    used_fen: Fen
    fund_fen: Fen


@dataclass(frozen=True, slots=True)
class Charge:
    """The rated price of one usage record, split between the parties, all in fen."""

    record: UsageRecord
    price: PriceBreakdown
    gross_fen: Fen
    residue: Fraction  # exact net - gross: sub-fen, not billed
    fee_bps: int
    fee_fen: Fen
    provider_fen: Fen
    rounding_fen: Fen
    voucher_programme: str
    voucher_fen: Fen
    voucher_cap_fen: Fen
    consumer_fen: Fen
    booked_at: datetime
    request: str  # the record's digest (usage_digest): the charge transfer's idempotency request

    def __post_init__(self) -> None:
        amounts = (self.gross_fen, self.fee_fen, self.provider_fen, self.rounding_fen, self.voucher_fen,
                   self.consumer_fen)
        if set(map(type, amounts)) != _INT:  # else name the first that is not int fen
            for name in ("gross_fen", "fee_fen", "provider_fen", "rounding_fen", "voucher_fen", "consumer_fen"):
                check_fen(getattr(self, name), name)
        assert self.fee_fen + self.provider_fen + self.rounding_fen == self.gross_fen
        assert self.consumer_fen + self.voucher_fen == self.gross_fen


def booking_time(usage_end: datetime, settled_until: datetime | None) -> datetime:
    """Book at the usage end, or at the start of the open period if that is later (late usage)."""
    if settled_until is not None and usage_end < settled_until:
        return settled_until
    return usage_end


def rate_usage(
    record: UsageRecord,
    book: PriceBook,
    *,
    contract: ProviderContract,
    voucher: VoucherState | None = None,
    settled_until: datetime | None = None,
) -> Charge:
    """Price one usage record with ``book`` (the one in force at ``record.start``), and apply ``voucher``.

    Raises InvalidSpec if the book has no price for the record's grade and pool,
    or if ``contract`` is for another provider.  Without a voucher nothing here
    depends on the ledger, so a batch can rate all its records first and then
    apply vouchers (:func:`apply_voucher`) in order against the running state.
    """
    if book.effective_from > record.start:
        raise InvalidSpec(
            f"price book v{book.version} takes effect at {book.effective_from.isoformat()}, after usage "
            f"{record.key} started: pick the book with price_book_in_force(books, record.start)"
        )
    if contract.provider != record.provider:
        raise InvalidSpec(f"contract of {contract.provider} used to rate usage of {record.provider}")
    units = preferred_units(dict(record.quantities))
    entry = find_price(
        book,
        resource_class=record.resource_class,
        tier=record.tier,
        service_level=record.service_level,
        site=record.site,
        pool=record.pool,
        units=units,
    )
    if entry is None:
        raise InvalidSpec(
            f"price book v{book.version} has no price for {record.resource_class}/{record.tier}/"
            f"{record.service_level} at pool {record.pool} ({record.site}) in {list(units)}"
        )
    breakdown = price_interval(book, entry, record.quantity(entry.unit), record.start, record.end)
    net_n, net_d = breakdown.net_ratio()  # in integers: rating is a hot path
    gross = round_ratio(net_n, net_d)
    residue = Fraction(net_n - gross * net_d, net_d)
    fee = round_ratio(net_n * contract.fee_bps, net_d * 10_000)  # the exact fee: net * bps / 10000
    provider = round_ratio(net_n * (10_000 - contract.fee_bps), net_d * 10_000)  # net - the exact fee
    charge = Charge(
        record,
        breakdown,
        gross,
        residue,
        contract.fee_bps,
        fee,
        provider,
        gross - fee - provider,
        "",
        0,
        0,
        gross,
        booking_time(record.end, settled_until),
        usage_digest(record),
    )
    return charge if voucher is None else apply_voucher(charge, voucher)


def apply_voucher(charge: Charge, voucher: VoucherState) -> Charge:
    """``charge`` (rated without a voucher) with what ``voucher``'s programme pays of it (rounding step 3).

    Unchanged if the programme does not cover the record (consumer, class, or
    validity at the usage start).
    """
    record = charge.record
    programme = voucher.programme
    if not programme.is_eligible(consumer=record.consumer, resource_class=record.resource_class, at=record.start):
        return charge
    if charge.voucher_programme:
        raise InvalidSpec(f"charge of {record.key} already has voucher {charge.voucher_programme} applied")
    fen = voucher_share(programme, gross_fen=charge.gross_fen, used_fen=voucher.used_fen, fund_fen=voucher.fund_fen)
    return replace(charge, voucher_programme=programme.id, voucher_fen=fen,
                   voucher_cap_fen=programme.cap_per_consumer_fen, consumer_fen=charge.gross_fen - fen)


def plan_charge(charge: Charge, *, hold: Hold | None, actor: str) -> Transfer:
    """The CHARGE transfer: consumer (open hold first, then wallet) and voucher pay provider, fee, rounding.

    ``hold`` is the job's hold as the caller last read it; if it was closed
    meanwhile the store answers HOLD_CLOSED and the caller re-plans.
    """
    record = charge.record
    key = record.key
    from_hold = 0
    if hold is not None and hold.state is HoldState.OPEN:
        if hold.consumer != record.consumer:
            raise InvalidSpec(f"hold {hold.id} belongs to {hold.consumer}, not {record.consumer}")
        from_hold = min(charge.consumer_fen, hold.remaining_fen)
    legs = (
        (hold_account(record.consumer), -from_hold),
        (wallet(record.consumer), -(charge.consumer_fen - from_hold)),
        (voucher_fund(charge.voucher_programme) if charge.voucher_programme else None, -charge.voucher_fen),
        (earnings(record.provider), charge.provider_fen),
        (PLATFORM_FEES, charge.fee_fen),
        (ROUNDING, charge.rounding_fen),
    )
    postings = tuple(Posting(account, fen) for account, fen in legs if fen and account is not None)
    audit = Audit(
        actor,
        f"usage charge, fee {charge.fee_bps} bps",
        consumer=record.consumer,
        provider=record.provider,
        job_id=record.job_id,
        usage_key=key,
        price_book_version=charge.price.book_version,
        resource_class=record.resource_class.value,
        pool=record.pool,
        usage_start=record.start,
        usage_end=record.end,
    )
    return Transfer(
        key,
        TransferKind.CHARGE,
        postings,
        charge.booked_at,
        audit,
        request=charge.request,
        hold_id=hold.id if hold is not None and from_hold else "",
        hold_fen=from_hold,
        voucher_programme=charge.voucher_programme if charge.voucher_fen else "",
        voucher_fen=charge.voucher_fen,
        voucher_cap_fen=charge.voucher_cap_fen,
    )


def credit_headroom_fen(*, hold: Hold | None, wallet_fen: Fen, credit_limit_fen: Fen) -> Fen:
    """What a running job may still be charged before its consumer passes the credit line.

    The service compares this with the cost of the next report interval (from
    the quote) and stops the job when it would not fit, so a running job is
    overspent by at most one report interval.
    """
    held = hold.remaining_fen if hold is not None and hold.state is HoldState.OPEN else 0
    return held + wallet_fen + credit_limit_fen
