from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.domain.resources import ResourceClass
from suanwang.domain.voucher import VoucherProgramme, pick_programme, voucher_share
from suanwang.errors import InvalidSpec
from tests.domain.money_builders import T0, at


def a_programme(pid: str = "v", share: str = "50", cap: int = 1_000, **kw: object) -> VoucherProgramme:
    return VoucherProgramme(pid, Decimal(share), cap, T0, T0 + timedelta(days=30), **kw)  # type: ignore[arg-type]


def test_a_share_above_100_percent_is_rejected() -> None:
    with pytest.raises(InvalidSpec, match=r"share_pct 100.01 is above 100%"):
        a_programme(share="100.01")
    with pytest.raises(InvalidSpec, match="negative"):
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
