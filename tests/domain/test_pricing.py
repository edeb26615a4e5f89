from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.pricing import (
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
