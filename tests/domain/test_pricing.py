from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.money import MAX_FEN
from suanwang.domain.pricing import (
    MAX_AHEAD,
    MAX_VERSION,
    BooksInForce,
    PriceBook,
    PriceEntry,
    PriceUnit,
    QuoteRequest,
    check_new_price_book,
    find_price,
    price_book_in_force,
    price_interval,
    quote,
)
from suanwang.domain.resources import ResourceClass, ServiceLevel
from suanwang.domain.tou import TouBand
from suanwang.domain.voucher import VoucherProgramme
from suanwang.errors import InvalidSpec
from tests.domain.money_builders import T0, a_book, a_pool, an_entry, at, gansu_tou

GENERAL, STANDARD = ResourceClass.GENERAL, ServiceLevel.STANDARD


def lookup(
    book: PriceBook, units: tuple[PriceUnit, ...] = (PriceUnit.SCU,), site: str = "qingyang", pool: str = "qy-cpu"
) -> PriceEntry | None:
    return find_price(
        book, resource_class=GENERAL, tier="standard", service_level=STANDARD, site=site, pool=pool, units=units
    )


def test_the_most_specific_scope_wins() -> None:
    book = a_book(an_entry("10"), an_entry("20", site="qingyang"), an_entry("30", site="qingyang", pool="qy-cpu"))
    prices = [lookup(book), lookup(book, pool="qy-other"), lookup(book, site="wuhu", pool="wh-cpu")]
    assert [e.unit_price_fen if e else None for e in prices] == [30, 20, 10]


def test_native_unit_wins_within_a_scope_but_not_over_a_more_specific_scope() -> None:
    book = a_book(an_entry("10"), an_entry("3", unit=PriceUnit.CORE_HOUR), an_entry("40", site="qingyang"))
    both = (PriceUnit.CORE_HOUR, PriceUnit.SCU)
    found = [lookup(book, both), lookup(book, both, site="wuhu"), lookup(book, (PriceUnit.SCU,), site="wuhu")]
    assert [(e.unit, e.unit_price_fen) if e else None for e in found] == [
        (PriceUnit.SCU, 40),
        (PriceUnit.CORE_HOUR, 3),
        (PriceUnit.SCU, 10),
    ]


def test_grade_must_match() -> None:
    book = a_book(an_entry("10", tier="flagship"), an_entry("5", level=ServiceLevel.SPOT))
    assert lookup(book) is None


def test_price_book_in_force_is_picked_by_usage_time() -> None:
    v1, v2 = a_book(version=1, effective_from=at(-100)), a_book(an_entry("200"), version=2, effective_from=at(10))
    assert price_book_in_force([v2, v1], at(9)).version == 1
    assert price_book_in_force([v2, v1], at(10)).version == 2
    with pytest.raises(InvalidSpec, match="no price book in force"):
        price_book_in_force([v1], at(-101))


def test_a_new_book_cannot_rewrite_history() -> None:
    v1 = a_book(version=1, effective_from=at(0))
    check_new_price_book([v1], a_book(version=2, effective_from=at(5)), now=at(5))
    with pytest.raises(InvalidSpec, match="in the past"):
        check_new_price_book([v1], a_book(version=2, effective_from=at(4)), now=at(5))
    with pytest.raises(InvalidSpec, match="not above"):
        check_new_price_book([v1], a_book(version=1, effective_from=at(6)), now=at(5))


def test_bad_price_entries_are_rejected() -> None:
    with pytest.raises(InvalidSpec, match="same slot twice"):
        a_book(an_entry("1"), an_entry("2"))
    with pytest.raises(InvalidSpec, match=r"green discount percent must lie within \[0, 100\]"):
        an_entry(green="100.5")
    with pytest.raises(InvalidSpec, match="negative"):
        an_entry("-1")
    with pytest.raises(InvalidSpec, match="float"):
        PriceEntry(GENERAL, "standard", STANDARD, 1.5)  # type: ignore[arg-type]


def test_an_interval_across_time_of_use_bands_is_priced_per_band() -> None:
    entry = an_entry("100", tou=gansu_tou(), green="10")  # flat x1 until 10:00, peak x1.25 after
    breakdown = price_interval(a_book(entry), entry, Decimal(4), at(9), at(11))
    shares = {s.band: (s.units, s.amount) for s in breakdown.shares}
    assert shares == {TouBand.FLAT: (2, 200), TouBand.PEAK: (2, 250)}
    assert breakdown.subtotal == 450 and breakdown.green_discount == 45 and breakdown.net == 405


def test_instantaneous_usage_is_priced_flat() -> None:
    entry = an_entry("7.5", cls=ResourceClass.QUANTUM, unit=PriceUnit.SHOT, tou=gansu_tou())
    breakdown = price_interval(a_book(entry), entry, Decimal(1000), at(12), at(12))
    assert breakdown.net == 7500


@settings(deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 48 * 60))
def test_price_is_monotonic_in_units_and_zero_units_cost_nothing(u1: int, u2: int, minutes: int) -> None:
    entry = an_entry("123.4567", tou=gansu_tou(), green="3.5")
    book = a_book(entry)
    end = at(7) + timedelta(minutes=minutes)
    low, high = sorted((Decimal(u1) / 100, Decimal(u2) / 100))
    assert price_interval(book, entry, low, at(7), end).net <= price_interval(book, entry, high, at(7), end).net
    assert price_interval(book, entry, Decimal(0), at(7), end).net == 0
    units = sum(s.units for s in price_interval(book, entry, high, at(7), end).shares)
    assert units == Fraction(high)


def a_request(**units: dict[PriceUnit, Decimal]) -> QuoteRequest:
    return QuoteRequest("acme", GENERAL, STANDARD, at(9), timedelta(hours=2), units)


def test_quote_lists_eligible_pools_cheapest_first_with_breakdown() -> None:
    pools = [
        a_pool("qy-cpu"),
        a_pool("wh-cpu", site="wuhu"),
        a_pool("qy-gpu", cls=ResourceClass.INTELLIGENT),
        a_pool("qy-flag", tier="flagship"),
    ]
    book = a_book(an_entry("100", tou=gansu_tou()), an_entry("60", site="wuhu"))
    scu = {PriceUnit.SCU: Decimal(4)}
    quotes = quote(a_request(**{p.name: scu for p in pools}), pools, [book])
    assert [q.pool for q in quotes] == ["wh-cpu", "qy-cpu"]  # gpu: other class; flagship: no price
    wuhu, qingyang = quotes
    assert (wuhu.gross_fen, wuhu.total_fen, wuhu.unit_price_fen) == (240, 240, Decimal("60"))
    assert qingyang.gross_fen == 450  # 2 units flat at 100 + 2 units peak at 125
    assert {s.band: s.units for s in qingyang.price.shares} == {TouBand.FLAT: 2, TouBand.PEAK: 2}
    assert qingyang.price.book_version == 1


def test_quote_shows_the_voucher_share_and_what_the_consumer_pays() -> None:
    programme = VoucherProgramme("v", Decimal(25), 100, T0 - timedelta(days=1), T0 + timedelta(days=1))
    pool = a_pool()
    [q] = quote(
        a_request(**{pool.name: {PriceUnit.SCU: Decimal(4)}}),
        [pool],
        [a_book()],
        programmes=[programme],
        voucher_used_fen={"v": 20},
    )
    assert (q.gross_fen, q.voucher_programme, q.voucher_fen, q.total_fen) == (400, "v", 80, 320)


def test_quote_without_a_book_in_force_is_refused() -> None:
    with pytest.raises(InvalidSpec, match="no price book"):
        quote(a_request(), [a_pool()], [a_book(effective_from=at(100))])


# ---- bounds: every number a book carries is checked as it is parsed, before any arithmetic ---------------


@pytest.mark.parametrize("version", [0, -1, 2**31, 2**63 - 1, 2**70, True, "3", Decimal("1e999999"), Decimal("2.0"),
                                     None])
def test_versions_outside_1_to_max_version_are_refused(version: object) -> None:
    with pytest.raises(InvalidSpec, match="version must"):
        PriceBook(version, T0, (an_entry(),))  # type: ignore[arg-type]


def test_the_largest_version_is_accepted() -> None:
    assert PriceBook(MAX_VERSION, T0, (an_entry(),)).version == MAX_VERSION


@pytest.mark.parametrize("price", ["1e999999", "1e-999999", "NaN", "-Infinity", str(MAX_FEN + 1), "0.00001", "-1"])
def test_absurd_unit_prices_are_refused(price: str) -> None:
    with pytest.raises(InvalidSpec, match="unit price"):
        an_entry(price)


@pytest.mark.parametrize("green", ["1e999999", "1e-999999", "NaN", "100.0001", "-0.5", "0.00001"])
def test_absurd_green_discounts_are_refused_without_building_them(green: str) -> None:
    with pytest.raises(InvalidSpec, match="green discount percent"):
        an_entry(green=green)


@given(st.decimals(min_value=0, max_value=MAX_FEN, places=4, allow_nan=False, allow_infinity=False),
       st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False))
def test_every_bounded_price_and_discount_is_accepted_as_given(price: Decimal, green: Decimal) -> None:
    entry = an_entry(str(price), green=str(green))
    assert (entry.unit_price_fen, entry.green_discount_pct) == (price, green)


def test_a_book_taking_effect_more_than_two_years_ahead_is_refused() -> None:
    check_new_price_book([], a_book(effective_from=T0 + MAX_AHEAD), now=T0)
    with pytest.raises(InvalidSpec, match="days ahead"):
        check_new_price_book([], a_book(effective_from=T0 + MAX_AHEAD + timedelta(seconds=1)), now=T0)
    with pytest.raises(InvalidSpec, match="days ahead"):
        check_new_price_book([], a_book(effective_from=datetime(2999, 1, 1, tzinfo=UTC)), now=T0)


# ---- one series per owner, composed with the pool's provider first ---------------------------------------


def a_provider_book(*entries: PriceEntry, owner: str = "t-p1", version: int = 1,
                    effective_from: datetime = T0 - timedelta(days=30)) -> PriceBook:
    return PriceBook(version, effective_from, entries or (an_entry("50", site="qingyang"),), owner=owner)


def test_one_owners_book_never_blocks_anothers_publishing() -> None:
    provider = a_provider_book(version=MAX_VERSION, effective_from=T0 + MAX_AHEAD)  # the attack: its series only
    operator = a_book(version=1, effective_from=at(0))
    assert check_new_price_book([provider, operator], a_book(version=2, effective_from=at(5)), now=at(5))
    with pytest.raises(InvalidSpec, match="not above"):  # it blocks only its own series
        check_new_price_book([provider], a_provider_book(version=MAX_VERSION, effective_from=at(5)), now=at(5))


def test_a_providers_book_prices_only_its_sites() -> None:
    with pytest.raises(InvalidSpec, match="only price its own sites"):
        a_provider_book(an_entry("1"))


def test_the_pools_providers_book_wins_over_the_operators_then_the_operators_prices_the_rest() -> None:
    operator = a_book(an_entry("10"), an_entry("30", site="qingyang", pool="qy-cpu"), version=7)
    provider = a_provider_book(an_entry("50", site="qingyang"), version=3)
    book = price_book_in_force([operator, provider], T0)
    here, elsewhere = lookup(book), lookup(book, site="wuhu", pool="wh-cpu")
    assert here is not None and elsewhere is not None
    # the provider's site-wide price beats even the operator's pool-specific one at the provider's site
    assert (here.unit_price_fen, here.owner, here.book_version) == (50, "t-p1", 3)
    assert (elsewhere.unit_price_fen, elsewhere.owner, elsewhere.book_version) == (10, "", 7)
    assert book.key == (("t-p1", 3), ("", 7))
    entry = lookup(book)
    assert entry is not None
    assert price_interval(book, entry, Decimal(1), T0, T0).book_version == 3  # a charge names the book that priced it


def test_a_later_operator_book_does_not_shadow_a_providers_book() -> None:
    provider = a_provider_book(an_entry("50", site="qingyang"))
    old, new = a_book(an_entry("10"), version=1), a_book(an_entry("20"), version=2, effective_from=at(1))
    books = BooksInForce([old, provider, new])
    for when in (at(0), at(2)):
        here = lookup(books.at(when))
        assert here is not None and here.unit_price_fen == 50
    there = [lookup(books.at(w), site="wuhu", pool="wh-cpu") for w in (at(0), at(2))]
    assert [e.unit_price_fen if e else None for e in there] == [10, 20]


@given(st.lists(st.tuples(st.sampled_from(["", "t-a", "t-b"]), st.integers(1, 5), st.integers(-5, 5)),
                max_size=8, unique_by=lambda b: (b[0], b[1])),
       st.integers(-6, 6))
def test_books_in_force_agrees_with_price_book_in_force(specs: list[tuple[str, int, int]], hour: int) -> None:
    books = [PriceBook(v, at(h), (an_entry(str(v), site="qingyang"),), owner=o) for o, v, h in specs]
    try:
        expected = price_book_in_force(books, at(hour)).key
    except InvalidSpec:
        with pytest.raises(InvalidSpec):
            BooksInForce(books).at(at(hour))
        return
    assert BooksInForce(books).at(at(hour)).key == expected
    per_owner = {o: max((b for b in books if b.owner == o and b.effective_from <= at(hour)),
                        key=lambda b: (b.effective_from, b.version)).version
                 for o in {b.owner for b in books if b.effective_from <= at(hour)}}
    assert dict(expected) == per_owner
