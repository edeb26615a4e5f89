from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.domain.money import MAX_FEN
from suanwang.domain.resources import ResourceClass
from suanwang.domain.voucher import MAX_AHEAD, VoucherProgramme, check_new_programme, pick_programme, voucher_share
from suanwang.errors import InvalidSpec
from tests.domain.money_builders import T0, at


def a_programme(pid: str = "v", share: str = "50", cap: int = 1_000, **kw: object) -> VoucherProgramme:
    return VoucherProgramme(pid, Decimal(share), cap, T0, T0 + timedelta(days=30), **kw)  # type: ignore[arg-type]


def test_a_share_above_100_percent_is_rejected() -> None:
    with pytest.raises(InvalidSpec, match=r"share_pct must lie within \[0, 100\]: 100.01"):
        a_programme(share="100.01")
    with pytest.raises(InvalidSpec, match=r"share_pct must lie within \[0, 100\]: -1"):
        a_programme(share="-1")
    with pytest.raises(InvalidSpec, match="float"):
        VoucherProgramme("v", 0.5, 1, T0, T0 + timedelta(days=1))  # type: ignore[arg-type]


def test_eligibility_needs_window_class_and_consumer() -> None:
    p = a_programme(resource_classes=frozenset({ResourceClass.INTELLIGENT}), consumers=frozenset({"acme"}))

    def eligible(
        consumer: str = "acme", cls: ResourceClass = ResourceClass.INTELLIGENT, when: datetime | None = None
    ) -> bool:
        return p.is_eligible(consumer=consumer, resource_class=cls, at=when or at(1))

    assert eligible()
    assert not eligible(consumer="beta")
    assert not eligible(cls=ResourceClass.GENERAL)
    assert not eligible(when=T0 + timedelta(days=30))  # half-open window
    assert not eligible(when=T0 - timedelta(seconds=1))


def test_the_programme_paying_most_wins_then_the_smallest_id() -> None:
    programmes = [a_programme("b", "30"), a_programme("a", "30"), a_programme("c", "10")]
    chosen = pick_programme(programmes, consumer="x", resource_class=ResourceClass.GENERAL, at=at(1))
    assert chosen is not None and chosen.id == "a"


def test_share_is_cut_by_cap_and_fund() -> None:
    p = a_programme(share="50", cap=1_000)
    assert voucher_share(p, gross_fen=101, used_fen=0, fund_fen=10_000) == 50  # 50.5 rounds half to even
    assert voucher_share(p, gross_fen=1_000, used_fen=900, fund_fen=10_000) == 100
    assert voucher_share(p, gross_fen=1_000, used_fen=0, fund_fen=30) == 30
    assert voucher_share(p, gross_fen=1_000, used_fen=1_000, fund_fen=10_000) == 0


@given(st.integers(-10, 10**7), st.integers(0, 10**6), st.integers(0, 10**6), st.decimals(0, 100, places=2))
def test_share_stays_within_gross_cap_and_fund(gross: int, used: int, fund: int, pct: Decimal) -> None:
    p = a_programme(share=str(pct), cap=500_000)
    share = voucher_share(p, gross_fen=gross, used_fen=used, fund_fen=fund)
    assert type(share) is int
    assert 0 <= share <= max(0, min(gross, 500_000 - used, fund))


# ---- bounds: every number a programme carries is checked as it is parsed --------------------------------


@pytest.mark.parametrize("share", ["1e999999", "1e-999999", "NaN", "Infinity", "abc", "0.00001", "1E+3"])
def test_absurd_shares_are_refused_without_building_them(share: str) -> None:
    with pytest.raises(InvalidSpec, match="share_pct"):
        VoucherProgramme("v", share, 1, T0, T0 + timedelta(days=1))  # type: ignore[arg-type]  # as JSON sends it


@given(st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False))
def test_every_share_within_0_to_100_at_4_places_is_accepted(share: Decimal) -> None:
    assert a_programme(share=str(share)).share_pct == share


def test_a_cap_beyond_max_fen_is_refused() -> None:
    assert a_programme(cap=MAX_FEN).cap_per_consumer_fen == MAX_FEN
    with pytest.raises(InvalidSpec, match="cap must lie within"):
        a_programme(cap=MAX_FEN + 1)
    with pytest.raises(InvalidSpec, match="cap must lie within"):
        a_programme(cap=-1)


@pytest.mark.parametrize(("start", "end", "why"), [
    (T0, T0 + MAX_AHEAD + timedelta(seconds=1), "valid_until .* days ahead"),
    (datetime(2999, 1, 1, tzinfo=T0.tzinfo), datetime(2999, 2, 1, tzinfo=T0.tzinfo), "valid_from .* days ahead"),
])
def test_a_new_programme_must_end_within_two_years_of_now(start: datetime, end: datetime, why: str) -> None:
    with pytest.raises(InvalidSpec, match=why):
        check_new_programme(VoucherProgramme("v", Decimal(10), 1, start, end), now=T0)
    ok = VoucherProgramme("v", Decimal(10), 1, T0 - timedelta(days=1), T0 + MAX_AHEAD)
    assert check_new_programme(ok, now=T0) is ok


def test_a_consumer_sees_open_programmes_and_those_naming_it() -> None:
    assert a_programme().shows_to("anyone")
    named = a_programme(consumers=frozenset({"acme"}))
    assert named.shows_to("acme") and not named.shows_to("beta")
