"""The hot-path forms of rating and booking give exactly what the plain code gives.

Rating runs thousands of records a second, so ``price_interval`` splits time in
integer microseconds (``tou.band_microseconds``), ``rate_usage`` rounds in
integers (``money.round_ratio``), ``digest`` dispatches on types, a charge's
request digest and a transfer's stored body are written directly
(``rating.usage_digest``, ``ledger.transfer_json``), and the books in force are
found by bisection.  Each is checked here against a reference written the
plain way (the code they replaced): same Fractions, same fen, same digest,
same text, on random tariffs, intervals, zones, quantities, prices, records
and transfers.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.ledger import (
    Account,
    AccountKind,
    Audit,
    Posting,
    Transfer,
    TransferKind,
    digest,
    transfer_from_row,
    transfer_json,
    transfer_to_row,
)
from suanwang.domain.money import round_fen, round_ratio
from suanwang.domain.pricing import BooksInForce, PriceEntry, PriceUnit, TouShare, price_book_in_force, price_interval
from suanwang.domain.rating import ProviderContract, UsageRecord, plan_charge, rate_usage, usage_digest
from suanwang.domain.resources import ResourceClass, ServiceLevel
from suanwang.domain.tou import ALL_MONTHS, TouBand, TouPeriod, TouSchedule, TouSeason, TouTariff, split_by_tou
from suanwang.errors import InvalidSpec
from tests.domain.money_builders import a_book

# ---- references: the plain exact code the fast paths replaced --------------------------------------------


def reference_price_interval(
    entry: PriceEntry, units: Decimal, start: datetime, end: datetime
) -> tuple[tuple[TouShare, ...], Fraction, Fraction, Fraction]:
    """(shares, subtotal, green discount, net) as the Fraction code computed them."""
    segments = split_by_tou(entry.tou, start, end)
    total_s = sum((s.seconds for s in segments), Fraction(0))
    price = Fraction(entry.unit_price_fen)
    by_band: dict[tuple[TouBand, Decimal], list[Fraction]] = {}
    for seg in segments:
        share = Fraction(units) * seg.seconds / total_s if total_s else Fraction(units)
        acc = by_band.setdefault((seg.band, seg.multiplier), [Fraction(0), Fraction(0)])
        acc[0] += seg.seconds
        acc[1] += share
    shares = tuple(
        TouShare(band, mult, secs, u, u * price * Fraction(mult)) for (band, mult), (secs, u) in by_band.items()
    )
    subtotal = sum((s.amount for s in shares), Fraction(0))
    green = subtotal * Fraction(entry.green_discount_pct) / 100
    return shares, subtotal, green, subtotal - green


def reference_canonical(value: object) -> object:
    if isinstance(value, float):
        raise TypeError("float")
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: reference_canonical(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, Fraction):
        return str(value)
    if isinstance(value, tuple | list):
        return [reference_canonical(v) for v in value]
    if isinstance(value, frozenset | set):
        return sorted(str(reference_canonical(v)) for v in value)
    if isinstance(value, Mapping):
        return {str(k): reference_canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    return value


def reference_digest(*parts: object) -> str:
    text = json.dumps([reference_canonical(p) for p in parts], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


# ---- strategies ---------------------------------------------------------------------------------------------

multipliers = st.sampled_from([Decimal(1), Decimal("1.0"), Decimal("0.75"), Decimal("1.25"), Decimal("1.35"),
                               Decimal("0.6"), Decimal(0), Decimal("2.125"), Decimal("0.333")])


@st.composite
def schedules(draw: st.DrawFn) -> TouSchedule:
    owners = draw(st.lists(st.sampled_from(list(TouBand)), min_size=24, max_size=24))
    periods = []
    for band in dict.fromkeys(owners):
        windows = tuple((h, h + 1) for h in range(24) if owners[h] is band)
        periods.append(TouPeriod(band, windows, draw(multipliers)))
    return TouSchedule(tuple(periods))


@st.composite
def tariffs(draw: st.DrawFn) -> TouTariff | None:
    if draw(st.booleans()) and draw(st.booleans()):
        return None
    cut = draw(st.lists(st.sampled_from(sorted(ALL_MONTHS)), max_size=11, unique=True))
    seasons = [TouSeason(frozenset(cut), draw(schedules()))] if cut else []
    seasons.append(TouSeason(ALL_MONTHS - frozenset(cut), draw(schedules())))
    return TouTariff("random", tuple(seasons))


zones = st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30)),
                         timezone(timedelta(hours=14))])
instants = st.builds(lambda us, zone: datetime(2000, 1, 1, tzinfo=UTC).astimezone(zone) + timedelta(microseconds=us),
                     st.integers(0, 40 * 365 * 86_400 * 10**6), zones)
durations = st.one_of(st.just(0), st.integers(0, 10**6), st.integers(0, 3 * 3_600 * 10**6),
                      st.integers(0, 4 * 86_400 * 10**6))
quantities = st.decimals(min_value=0, max_value=Decimal("1e9"), allow_nan=False, allow_infinity=False, places=9)
prices = st.decimals(min_value=0, max_value=Decimal("1e7"), places=4)
greens = st.decimals(min_value=0, max_value=100, places=3)


@given(tariffs(), instants, durations, quantities, prices, greens)
@settings(max_examples=400)
def test_price_interval_equals_the_fraction_reference(tariff: TouTariff | None, start: datetime, us: int,
                                                       units: Decimal, price: Decimal, green: Decimal) -> None:
    entry = PriceEntry(ResourceClass.GENERAL, "standard", ServiceLevel.STANDARD, price, PriceUnit.SCU,
                       tou=tariff, green_discount_pct=green)
    end = start + timedelta(microseconds=us)
    fast = price_interval(a_book(entry), entry, units, start, end)
    shares, subtotal, green_discount, net = reference_price_interval(entry, units, start, end)
    assert (fast.shares, fast.subtotal, fast.green_discount, fast.net) == (shares, subtotal, green_discount, net)
    assert [(s.band, str(s.multiplier)) for s in fast.shares] == [(s.band, str(s.multiplier)) for s in shares]
    numerator, denominator = fast.net_ratio()
    assert denominator > 0 and Fraction(numerator, denominator) == net


@given(st.integers(-10**30, 10**30), st.integers(1, 10**30))
def test_round_ratio_is_round_fen(numerator: int, denominator: int) -> None:
    exact = Fraction(numerator, denominator)
    assert round_ratio(numerator, denominator) == round_fen(exact)[0] == round(exact)


@given(st.integers(-10**12, 10**12), st.integers(1, 10**12))
def test_round_ratio_takes_halves_to_even(whole: int, scale: int) -> None:
    numerator, denominator = (2 * whole + 1) * scale, 2 * scale  # exactly whole + 1/2
    assert round_ratio(numerator, denominator) == round(Fraction(numerator, denominator)) == whole + whole % 2


@given(st.integers(0, 10**12), st.integers(1, 10**12), st.integers(0, 10_000))
def test_rounding_of_a_charge_matches_fraction_arithmetic(numerator: int, denominator: int, bps: int) -> None:
    net = Fraction(numerator, denominator)
    fee_exact = net * bps / 10_000
    assert round_ratio(net.numerator * bps, net.denominator * 10_000) == round_fen(fee_exact)[0]
    assert round_ratio(net.numerator * (10_000 - bps), net.denominator * 10_000) == round_fen(net - fee_exact)[0]


@given(tariffs(), instants, durations, quantities, prices, greens, st.integers(0, 10_000))
@settings(max_examples=200)
def test_a_charge_splits_the_reference_price(tariff: TouTariff | None, start: datetime, us: int, units: Decimal,
                                             price: Decimal, green: Decimal, bps: int) -> None:
    entry = PriceEntry(ResourceClass.GENERAL, "standard", ServiceLevel.STANDARD, price, PriceUnit.SCU,
                       tou=tariff, green_discount_pct=green)
    record = UsageRecord("job", 0, 0, "acme", "dc", "site", "pool", ResourceClass.GENERAL, "standard",
                         ServiceLevel.STANDARD, start, start + timedelta(microseconds=us), {PriceUnit.SCU: units})
    charge = rate_usage(record, a_book(entry, effective_from=start), contract=ProviderContract("dc", bps))
    net = reference_price_interval(entry, units, record.start, record.end)[3]
    gross, residue = round_fen(net)
    fee_exact = net * bps / 10_000
    assert (charge.gross_fen, charge.residue) == (gross, residue)
    assert charge.fee_fen == round_fen(fee_exact)[0] and charge.provider_fen == round_fen(net - fee_exact)[0]


texts = st.text(min_size=1, max_size=12).filter(lambda s: ":" not in s)


@given(texts, st.integers(0, 10**6), st.integers(0, 10**9), texts, texts, texts, texts, st.sampled_from(ResourceClass),
       texts, st.sampled_from(ServiceLevel), instants, durations,
       st.dictionaries(st.sampled_from(PriceUnit), st.decimals(min_value=0, allow_nan=False, allow_infinity=False),
                       min_size=1))
def test_a_record_digests_as_the_reference(job: str, attempt: int, seq: int, consumer: str, provider: str, site: str,
                                           pool: str, cls: ResourceClass, tier: str, level: ServiceLevel,
                                           start: datetime, us: int, measured: dict[PriceUnit, Decimal]) -> None:
    record = UsageRecord(job, attempt, seq, consumer, provider, site, pool, cls, tier, level, start,
                         start + timedelta(microseconds=us), measured)
    assert usage_digest(record) == digest(record) == reference_digest(record)


class Tag(str):
    """A str subclass: the record's direct writer must hand it to the general path."""


def test_a_record_with_unexpected_types_digests_as_the_reference() -> None:
    start = datetime(2026, 3, 2, tzinfo=UTC)
    record = UsageRecord(Tag("job"), 0, 0, Tag("acme"), "dc", "site", "pool", ResourceClass.GENERAL, "standard",
                         ServiceLevel.STANDARD, start, start, {PriceUnit.SCU: Decimal("1.50")})
    assert usage_digest(record) == digest(record) == reference_digest(record)


@given(st.lists(st.tuples(st.sampled_from(AccountKind), texts, st.integers(-10**15, 10**15).filter(bool)),
                max_size=6), texts, st.integers(0, 10**9),
       st.one_of(st.none(), st.just(frozenset({"b", "a"})), st.just({"k": Decimal("1.50"), 2: [Fraction(1, 3)]})))
def test_other_requests_digest_as_the_reference(legs: list[tuple[AccountKind, str, int]], text: str, fen: int,
                                                extra: object) -> None:
    postings = tuple(Posting(Account(kind, owner), amount) for kind, owner, amount in legs)
    parts = (TransferKind.CHARGE, postings, text, fen, extra, True)
    assert digest(*parts) == reference_digest(*parts)


# ---- a transfer's stored body ------------------------------------------------------------------------------

any_text = st.text(max_size=10)
owners = st.text(min_size=1, max_size=8).filter(lambda s: ":" not in s)
moments = st.one_of(st.none(), instants)


@st.composite
def transfers(draw: st.DrawFn) -> Transfer:
    legs = draw(st.lists(st.tuples(st.sampled_from([k for k in AccountKind if k is not AccountKind.HOLD]), owners,
                                   st.integers(-10**12, 10**12).filter(bool)), min_size=1, max_size=4))
    postings = [Posting(Account(kind, owner), fen) for kind, owner, fen in legs]
    rest = -sum(p.fen for p in postings)
    if rest:
        postings.append(Posting(Account(AccountKind.FUNDING, draw(owners)), rest))
    audit = Audit(draw(owners), draw(any_text), consumer=draw(any_text), provider=draw(any_text),
                  job_id=draw(any_text), usage_key=draw(any_text),
                  price_book_version=draw(st.one_of(st.none(), st.integers(1, 10**6))),
                  resource_class=draw(any_text), pool=draw(any_text), usage_start=draw(moments),
                  usage_end=draw(moments))
    kind = draw(st.sampled_from([TransferKind.TOPUP, TransferKind.ADJUSTMENT, TransferKind.PAYOUT]))
    return Transfer(draw(owners), kind, tuple(postings), draw(instants), audit, request=draw(any_text),
                    reverses=draw(any_text), voucher_cap_fen=draw(st.integers(0, 10**9)),
                    hold_expires_at=draw(moments))


@given(transfers())
def test_a_transfer_body_is_written_as_json_dumps_writes_it(t: Transfer) -> None:
    text = transfer_json(t)
    assert text == json.dumps(transfer_to_row(t))
    assert transfer_from_row(json.loads(text)) == t


def test_a_transfer_with_unexpected_types_takes_the_general_path() -> None:
    at = datetime(2026, 3, 2, tzinfo=UTC)
    postings = (Posting(Account(AccountKind.FUNDING, "operator"), -5), Posting(Account(AccountKind.WALLET, "a"), 5))
    t = Transfer("k", TransferKind.TOPUP, postings, at, Audit("ops", Tag("a str subclass"), price_book_version=True))
    assert transfer_json(t) == json.dumps(transfer_to_row(t))


# ---- the book in force ---------------------------------------------------------------------------------------


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(1, 5)), max_size=6, unique=True), st.integers(-2, 22))
def test_books_in_force_finds_the_book_price_book_in_force_finds(starts: list[tuple[int, int]], hour: int) -> None:
    base = datetime(2026, 3, 2, tzinfo=UTC)
    books = [a_book(version=v, effective_from=base + timedelta(hours=h)) for h, v in starts]
    at = base + timedelta(hours=hour)
    try:
        expected = price_book_in_force(books, at)
    except InvalidSpec:
        expected = None
    index = BooksInForce(books)
    if expected is None:
        with pytest.raises(InvalidSpec, match="no price book in force"):
            index.at(at)
    else:
        assert index.at(at) is expected
    first = index.first_effective()
    assert (first is None or at < first) == (expected is None)


# ---- quantities already in normal form -------------------------------------------------------------------------


@given(st.dictionaries(st.sampled_from(PriceUnit), quantities, min_size=1))
def test_quantities_in_normal_order_are_kept_as_normalisation_makes_them(measured: dict[PriceUnit, Decimal]) -> None:
    start = datetime(2026, 3, 2, tzinfo=UTC)
    ordered = tuple(sorted(measured.items(), key=lambda uq: uq[0].value))
    from_dict = UsageRecord("j", 0, 0, "c", "p", "s", "o", ResourceClass.GENERAL, "standard", ServiceLevel.STANDARD,
                            start, start, measured)
    from_tuple = UsageRecord("j", 0, 0, "c", "p", "s", "o", ResourceClass.GENERAL, "standard", ServiceLevel.STANDARD,
                             start, start, ordered)
    assert from_tuple.quantities == from_dict.quantities == ordered


def test_a_normal_looking_tuple_is_still_validated() -> None:
    start = datetime(2026, 3, 2, tzinfo=UTC)
    for bad in (((PriceUnit.SCU, Decimal(-1)),), ((PriceUnit.SCU, Decimal("NaN")),), ()):
        with pytest.raises(InvalidSpec):
            UsageRecord("j", 0, 0, "c", "p", "s", "o", ResourceClass.GENERAL, "standard", ServiceLevel.STANDARD,
                        start, start, bad)


def test_a_charge_body_reuses_its_times_correctly() -> None:
    zone = timezone(timedelta(hours=8))
    start = datetime(2026, 3, 2, 10, tzinfo=zone)
    record = UsageRecord("job", 0, 3, "acme", "dc", "site", "pool", ResourceClass.GENERAL, "standard",
                         ServiceLevel.STANDARD, start, start + timedelta(minutes=1, microseconds=7),
                         {PriceUnit.SCU: Decimal("12.5")})
    entry = PriceEntry(ResourceClass.GENERAL, "standard", ServiceLevel.STANDARD, Decimal(100), PriceUnit.SCU)
    for settled in (None, start + timedelta(hours=1)):  # booked at the usage end, or later (late usage)
        charge = rate_usage(record, a_book(entry, effective_from=start), contract=ProviderContract("dc", 700),
                            settled_until=settled)
        t = plan_charge(charge, hold=None, actor="system")
        assert transfer_json(t) == json.dumps(transfer_to_row(t))
        assert t.request == digest(record) == reference_digest(record)


MEASURES = st.sampled_from([0, 0.0, -0.0, 3600, 3600.0, 1e-9, -1.0, float("inf"), float("nan"), 7200.5])


@given(st.lists(st.tuples(MEASURES, MEASURES, st.integers(-1, 3) | st.just(10**12), st.sampled_from([(), (0,), (5,)])),
                max_size=30))
def test_measures_worked_out_once_per_batch_are_the_records_own(rows: list[tuple[float, float, int, tuple[int, ...]]]
                                                                 ) -> None:
    """The integer path's per-batch memo of quantities (``RatingContext.measured``): a repeated measure, or an
    equal one of another type (3600 and 3600.0, 0.0 and -0.0), gets what the row would get on its own."""
    from suanwang.domain.pricing import BooksInForce, preferred_units
    from suanwang.domain.rating_batch import RatingContext, quantities

    ctx = RatingContext(BooksInForce([]), {}, {}, {}, {}, None)
    for core_s, device_s, nano, more in rows:
        alone = quantities(core_s, device_s, nano, *more)
        ok = all(q.is_finite() and q >= 0 for _, q in alone)
        got = ctx.measured(core_s, device_s, nano, more)
        if not ok:
            assert got is None
            continue
        assert got is not None
        measured, units = got
        assert [(u, q.normalize(), q.as_integer_ratio()) for u, q in measured] == \
            [(u, q.normalize(), q.as_integer_ratio()) for u, q in alone]
        assert units == preferred_units(dict(alone))
