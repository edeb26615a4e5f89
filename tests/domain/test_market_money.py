"""The market's money through the in-memory reference ledger: holds, a clear, refunds, all balanced."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings

from suanwang.domain.ledger import ROUNDING, HoldState, ResultCode, earnings, plan_topup, wallet
from suanwang.domain.market import canonical_book, clear_book
from suanwang.domain.market.contract import plan_contracts, settle_line
from suanwang.domain.market.money import CONGESTION, market_clearing, plan_bid_hold, plan_clear, plan_line_settlement
from suanwang.domain.memory_ledger import MemoryLedger
from tests.domain.market_builders import a_bid, an_ask, books

AT = datetime(2026, 12, 7, 12, tzinfo=UTC)
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _funded(consumers: set[str], fen: int = 10**9) -> MemoryLedger:
    ledger = MemoryLedger()
    for c in sorted(consumers):
        assert ledger.apply(plan_topup(f"top:{c}", consumer=c, fen=fen, at=AT, actor="op")).ok
    return ledger


@FAST
@given(books())
def test_a_clear_moves_exactly_the_results_money_and_the_clearing_account_returns_to_zero(book_parts) -> None:
    asks, bids, links = book_parts
    ledger = _funded({b.consumer for b in bids})
    for bid in bids:
        assert ledger.apply(plan_bid_hold("s1", bid, at=AT, actor="c")).ok
    result = clear_book(asks, bids, links)
    transfers = plan_clear("s1", bids, result, at=AT, actor="market")
    assert all(r.ok for r in ledger.apply_batch(transfers))
    balances = ledger.balances()
    assert balances[market_clearing("s1")] == 0
    pays = {b.bid_id: b.pays_fen for b in result.bids}
    for c in {b.consumer for b in bids}:
        assert balances[wallet(c)] == 10**9 - sum(pays.get(b.id, 0) for b in bids if b.consumer == c)
    for provider in {a.provider for a in asks}:
        assert balances[earnings(provider)] == sum(a.earns_fen for a in result.asks if a.provider == provider)
    assert balances[CONGESTION] == result.congestion_rent_fen
    assert balances[ROUNDING] == result.rounding_fen
    assert all(h.state is HoldState.RELEASED and h.remaining_fen == 0 for h in ledger.holds())
    # applying the same clear again (a retry after a crash) moves nothing
    again = ledger.apply_batch(transfers)
    assert {r.code for r in again} <= {ResultCode.EXISTS} and len(again) == len(transfers)
    assert ledger.balances() == balances


def test_a_bid_the_wallet_cannot_cover_is_refused_and_holds_nothing() -> None:
    ledger = _funded({"c1"}, fen=1_000)
    result = ledger.apply(plan_bid_hold("s1", a_bid("b1", quantity=8, limit=200), at=AT, actor="c1"))
    assert result.code is ResultCode.EXCEEDS_CREDIT
    assert ledger.holds() == () and ledger.balances()[wallet("c1")] == 1_000


def test_a_provider_that_fails_to_deliver_pays_refund_and_penalty_from_its_earnings() -> None:
    asks, bids = [an_ask("a1", units=8, floor=100, end=1)], [a_bid("b1", quantity=8, rate=8, limit=150, end=1)]
    ledger = _funded({"c1"})
    assert ledger.apply(plan_bid_hold("s1", bids[0], at=AT, actor="c1")).ok
    result = clear_book(asks, bids)
    assert all(r.ok for r in ledger.apply_batch(plan_clear("s1", bids, result, at=AT, actor="market")))
    (line,) = plan_contracts(canonical_book(asks, bids), result)
    price = result.prices[0].price_cf // 100  # supply meets demand exactly: the floor sets it
    assert price == 100
    settled = settle_line(line, delivered=5)  # 3 of 8 unit-slots not delivered
    assert (settled.refund_fen, settled.penalty_fen) == (300, 60)
    transfers = plan_line_settlement("s1", line, settled, at=AT, actor="market")
    assert all(r.ok for r in ledger.apply_batch(transfers))
    balances = ledger.balances()
    assert balances[wallet("c1")] == 10**9 - 8 * 100 + 300 + 60
    assert balances[earnings("p1")] == 8 * 100 - 300 - 60
