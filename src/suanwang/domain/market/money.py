"""The market's money as ledger transfers (pure planners over the existing ledger's types).

Flow of one session ``S`` (L11: the clearing account returns to zero when the flow completes)::

    bid posted    HOLD_PLACE   wallet(consumer) -> hold(consumer)           limit x quantity
    clear         CHARGE       hold(consumer)   -> clearing(S)              what the bid pays
                  HOLD_RELEASE hold(consumer)   -> wallet(consumer)         the rest, at once
                  ADJUSTMENT   funding(operator) -> clearing(S)             make-whole (uplift)
                  ADJUSTMENT   clearing(S) -> earnings(provider) each ask, fees(congestion) the rent,
                               rounding(platform) the rounding

Apply the clear's transfers as one atomic batch (``apply_many(..., atomic=True)``) in the transaction
that records the session as cleared: all or nothing, and retried keys answer EXISTS.  The existing
ledger has no market transfer kind, so the legs to sellers, the congestion account and the rounding
account are ADJUSTMENTs with a reason naming the session (a dedicated kind would read better in
statements; it belongs to the ledger's owner).
"""

from __future__ import annotations

from datetime import datetime

from suanwang.domain.ledger import (
    OPERATOR_FUNDING,
    ROUNDING,
    Account,
    AccountKind,
    Audit,
    Hold,
    Posting,
    Transfer,
    TransferKind,
    earnings,
    hold_account,
    plan_adjustment,
    plan_hold,
    plan_release,
    wallet,
)
from suanwang.domain.market.clearing import Clearing
from suanwang.domain.market.contract import LENT_SHARE_BPS, ContractLine, LineSettlement
from suanwang.domain.market.order import Bid
from suanwang.domain.money import apply_bps

CONGESTION = Account(AccountKind.FEES, "congestion")  # the links' owners: congestion rent


def market_clearing(session_id: str) -> Account:
    """The suspense account one session's money passes through; zero once its clear is applied."""
    return Account(AccountKind.FUNDING, f"market-{session_id.replace(':', '')}")  # an owner has no ':' (intraday ids)


def bid_hold_id(session_id: str, bid_id: str) -> str:
    return f"market-{session_id}-{bid_id}"


def plan_bid_hold(session_id: str, bid: Bid, *, at: datetime, actor: str) -> Transfer:
    """The hold a bid places when posted: its limit x quantity (what the consumer agreed to risk)."""
    hold_id = bid_hold_id(session_id, bid.id)
    return plan_hold(f"market:{session_id}:hold:{bid.id}", hold_id=hold_id, consumer=bid.consumer,
                     fen=bid.limit_fen * bid.quantity, at=at, actor=actor)


def plan_clear(session_id: str, bids: list[Bid], result: Clearing, *, at: datetime, actor: str) -> list[Transfer]:
    """Every transfer of a session's clear, in order.  ``bids``: every bid of the session (holds placed)."""
    clearing = market_clearing(session_id)
    paid = {b.bid_id: b for b in result.bids}
    out: list[Transfer] = []
    for bid in sorted(bids, key=lambda b: b.id):
        hold_id = bid_hold_id(session_id, bid.id)
        placed = bid.limit_fen * bid.quantity
        outcome = paid.get(bid.id)
        pays = outcome.pays_fen if outcome else 0
        assert pays <= placed, f"bid {bid.id} pays {pays} above its hold {placed}"
        if pays:
            audit = Audit(actor, f"market fill, session {session_id}", consumer=bid.consumer)
            out.append(Transfer(f"market:{session_id}:charge:{bid.id}", TransferKind.CHARGE,
                                (Posting(hold_account(bid.consumer), -pays), Posting(clearing, pays)), at, audit,
                                hold_id=hold_id, hold_fen=pays))
        hold = Hold(hold_id, bid.consumer, placed, captured_fen=pays)
        out.append(plan_release(f"market:{session_id}:release:{bid.id}", hold=hold, at=at, actor=actor,
                                reason=f"market clear, session {session_id}: unfilled part returned"))
    legs: list[tuple[str, Account, int]] = [("uplift", OPERATOR_FUNDING, -result.make_whole_fen)]
    legs += [(f"earn:{a.ask_id}", earnings(a.provider), a.earns_fen) for a in result.asks]
    legs += [("congestion", CONGESTION, result.congestion_rent_fen), ("rounding", ROUNDING, result.rounding_fen)]
    for name, account, fen in legs:
        if fen:
            out.append(plan_adjustment(f"market:{session_id}:{name}", postings=(
                Posting(clearing, -fen), Posting(account, fen)), at=at, actor=actor,
                reason=f"market clear, session {session_id}: {name}"))
    return out


def plan_line_settlement(session_id: str, line: ContractLine, settled: LineSettlement, *, at: datetime,
                         actor: str) -> list[Transfer]:
    """Refund + penalty for undelivered unit-slots, and the buyer's share of spot revenue on lent capacity."""
    out: list[Transfer] = []
    buyer = wallet(line.consumer)
    provider = earnings(line.provider)
    if settled.provider_clawback_fen:
        out.append(plan_adjustment(f"market:{session_id}:failed:{line.id}", postings=(
            Posting(provider, -settled.provider_clawback_fen), Posting(buyer, settled.provider_clawback_fen)),
            at=at, actor=actor, reason=f"contract {line.id} not delivered: refund and penalty"))
    if settled.congestion_refund_fen:
        out.append(plan_adjustment(f"market:{session_id}:failed-congestion:{line.id}", postings=(
            Posting(CONGESTION, -settled.congestion_refund_fen), Posting(buyer, settled.congestion_refund_fen)),
            at=at, actor=actor, reason=f"contract {line.id} not delivered: congestion refund"))
    if settled.lent_credit_fen:
        out.append(plan_adjustment(f"market:{session_id}:lent:{line.id}", postings=(
            Posting(provider, -settled.lent_credit_fen), Posting(buyer, settled.lent_credit_fen)),
            at=at, actor=actor, reason=f"contract {line.id}: share of spot revenue on lent capacity"))
    return out


def lent_credit_key(session_id: str, line_id: str, usage_ref: str) -> str:
    """One credit per (contract line, spot usage record): a retried rating batch books nothing again."""
    return f"market:{session_id}:lent:{line_id}#{usage_ref}"


def plan_lent_credit(session_id: str, line_id: str, *, consumer: str, provider: str, usage_ref: str,
                     spot_revenue_fen: int, at: datetime, actor: str,
                     share_bps: int = LENT_SHARE_BPS) -> Transfer | None:
    """The buyer's share of what one spot usage record paid for the line's lent capacity (provider -> buyer)."""
    fen = apply_bps(spot_revenue_fen, share_bps)
    if fen <= 0:
        return None
    audit = Audit(actor, f"contract {line_id}: share of spot revenue on lent capacity", consumer=consumer,
                  provider=provider)  # both parties find it in their own ledger view
    return Transfer(lent_credit_key(session_id, line_id, usage_ref), TransferKind.ADJUSTMENT,
                    (Posting(earnings(provider), -fen), Posting(wallet(consumer), fen)), at, audit)
