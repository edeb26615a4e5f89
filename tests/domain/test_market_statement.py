"""Market lines read back from ledger keys: every item, intraday session ids (with a colon), others ignored."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from suanwang.domain.ledger import Posting, earnings, plan_adjustment, wallet
from suanwang.domain.market.money import CONGESTION, market_clearing
from suanwang.domain.market.statement import ITEMS, market_lines

AT = datetime(2026, 12, 7, tzinfo=UTC)


@given(session=st.sampled_from(["da-2026-12-09", "id-2026-12-07T21:15"]), item=st.sampled_from(sorted(ITEMS)),
       fen=st.integers(1, 10**9))
def test_every_market_item_becomes_a_line_without_the_suspense_account(session: str, item: str, fen: int) -> None:
    key = f"market:{session}:{item}" + (":bid-1/ask-2/0" if item not in ("congestion", "rounding", "uplift") else "")
    t = plan_adjustment(key, postings=(Posting(market_clearing(session), -fen), Posting(CONGESTION, fen)), at=AT,
                        actor="t", reason="r")
    (line,) = market_lines([t])
    assert (line.session, line.item, line.account, line.fen) == (session, item, str(CONGESTION), fen)


def test_other_transfers_are_not_market_lines() -> None:
    t = plan_adjustment("adj:1", postings=(Posting(wallet("c"), -5), Posting(earnings("p"), 5)), at=AT, actor="t",
                        reason="r")
    assert market_lines([t]) == ()
