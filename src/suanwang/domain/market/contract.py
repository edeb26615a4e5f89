"""Contracts (合约) from a clearing, and the rules for unused reservations and failed delivery (pure).

Every whole unit-slot a bid bought is supplied by one ask at the same node; :func:`plan_contracts`
pairs them deterministically (bids by id, asks in merit order ``(floor_fen, id)``) into contract
lines: capacity reserved for the buyer at (site, class, slot), bought at the buyer's price and sold at
the node price.  The scheduler honours a line by keeping ``units`` of that site's class free for the
buyer's jobs in that slot (see ``docs/market.md``).

Rules (stated in the rule book, tested in ``tests/domain/test_market_contract.py``):

* **take-or-pay** — the buyer pays for the whole line at clearing, used or not.  Reserved capacity the
  buyer leaves idle may be lent to spot work (which the buyer's jobs preempt); the buyer is credited
  ``LENT_SHARE_BPS`` of what the spot work paid for it (the rest stays with the provider).
* **failure to deliver** — for each unit-slot the provider did not deliver (site offline, pool gone),
  the buyer gets back what it paid for it plus a penalty of ``PENALTY_BPS`` of that; both come out of
  the provider's earnings.  The congestion part of a refunded unit comes back from the congestion
  account (the data never moved).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from suanwang.domain.market.clearing import CF, Clearing
from suanwang.domain.market.order import Book, ResourceClass, SiteId, Slot
from suanwang.domain.money import apply_bps, round_ratio

LENT_SHARE_BPS = 5_000  # half of what spot work paid for lent capacity goes back to the contract's buyer
PENALTY_BPS = 2_000  # a provider that fails to deliver pays the buyer 20 % of the undelivered value on top


@dataclass(frozen=True, slots=True)
class ContractLine:
    """``units`` reserved for ``bid_id``'s buyer at (site, class, slot), supplied by ``ask_id``."""

    id: str
    bid_id: str
    consumer: str
    ask_id: str
    provider: str
    site: SiteId
    resource_class: ResourceClass
    slot: Slot
    units: int
    buyer_price_cf: int  # per unit-slot: node price + the bid's congestion
    seller_price_cf: int  # per unit-slot: node price


def plan_contracts(book: Book, result: Clearing) -> list[ContractLine]:
    """Pair each node's bought units with the asks that sold there, in canonical order."""
    bids = {b.id: b for b in book.bids}
    asks = {a.id: a for a in book.asks}
    supply: dict[tuple[SiteId, ResourceClass, Slot], list[list[object]]] = defaultdict(list)
    for sale in sorted(result.ask_fills, key=lambda s: (asks[s.ask_id].floor_fen, s.ask_id, s.slot)):
        ask = asks[sale.ask_id]
        supply[(ask.site, ask.resource_class, sale.slot)].append([sale.ask_id, sale.units, sale.price_cf])
    lines: list[ContractLine] = []
    for f in sorted(result.bid_fills, key=lambda f: (f.bid_id, f.site, f.slot)):
        bid = bids[f.bid_id]
        need = f.units
        for entry in supply[(f.site, bid.resource_class, f.slot)]:
            ask_id, left, price = str(entry[0]), int(str(entry[1])), int(str(entry[2]))
            if need == 0:
                break
            if left == 0:
                continue
            take = min(need, left)
            entry[1] = left - take
            need -= take
            lines.append(ContractLine(f"{f.bid_id}/{ask_id}/{f.slot}", f.bid_id, bid.consumer, ask_id,
                                      asks[ask_id].provider, f.site, bid.resource_class, f.slot, take,
                                      f.price_cf, price))
        assert need == 0, f"bid fill {f} has no supply"
    return lines


@dataclass(frozen=True, slots=True)
class LineSettlement:
    """What one contract line moves after delivery, in fen (all >= 0)."""

    refund_fen: int  # back to the buyer for undelivered unit-slots (what it paid for them)
    penalty_fen: int  # provider -> buyer on top of the refund
    provider_clawback_fen: int  # taken from the provider's earnings: its price for undelivered + penalty
    congestion_refund_fen: int  # congestion account -> buyer for undelivered unit-slots
    lent_credit_fen: int  # provider -> buyer: its share of spot revenue on lent, unused capacity


def settle_line(line: ContractLine, *, delivered: int, spot_revenue_fen: int = 0,
                lent_share_bps: int = LENT_SHARE_BPS, penalty_bps: int = PENALTY_BPS) -> LineSettlement:
    """Apply the take-or-pay and failure rules to one line.

    ``delivered``: unit-slots the provider made available (the site was online and the pool served
    them), 0..units.  ``spot_revenue_fen``: what spot work paid for this line's capacity while the
    buyer left it idle.  Money identity: ``refund = provider_clawback - penalty + congestion_refund``
    up to the rounding of each amount to fen (each is rounded once, half to even).
    """
    if not 0 <= delivered <= line.units:
        raise ValueError(f"delivered must be within 0..{line.units}, got {delivered}")
    if spot_revenue_fen < 0:
        raise ValueError("spot revenue cannot be negative")
    missing = line.units - delivered
    seller_part = round_ratio(missing * line.seller_price_cf, CF)
    congestion_part = round_ratio(missing * (line.buyer_price_cf - line.seller_price_cf), CF)
    refund = seller_part + congestion_part
    penalty = apply_bps(seller_part, penalty_bps)
    return LineSettlement(refund, penalty, seller_part + penalty, congestion_part,
                          apply_bps(spot_revenue_fen, lent_share_bps))


def lent_revenue_fen(paid_fen: int, *, lent_units: int, job_units: int, start_ms: int, end_ms: int,
                     slot_start_ms: int, slot_end_ms: int) -> int:
    """The part of one spot usage record's price that paid for a contract line's lent units: pro rata to the
    units it borrowed from the line and to the time the record overlaps the line's slot (rounded once, half
    to even).  A record of zero length counts in full if it starts inside the slot."""
    if paid_fen < 0 or not 0 <= lent_units <= job_units or job_units <= 0:
        raise ValueError("lent revenue needs paid >= 0 and 0 <= lent units <= job units (> 0)")
    if end_ms <= start_ms:
        inside = slot_start_ms <= start_ms < slot_end_ms
        return round_ratio(paid_fen * lent_units, job_units) if inside else 0
    overlap = max(0, min(end_ms, slot_end_ms) - max(start_ms, slot_start_ms))
    return round_ratio(paid_fen * lent_units * overlap, job_units * (end_ms - start_ms))


def spot_room(*, capacity: int, reserved: int, owner_running: int, spot_running: int) -> int:
    """Units spot work may still start at a (site, class) in a slot with ``reserved`` units under contract.

    Spot may borrow whatever the contracts' owners leave idle: everything not running, reserved or not.
    (Reclaiming it when an owner comes is :func:`spot_to_preempt`.)
    """
    return max(0, capacity - owner_running - spot_running)


def spot_to_preempt(*, capacity: int, reserved: int, owner_running: int, spot_running: int, owner_wants: int) -> int:
    """Units of spot work to preempt so the owners can run ``owner_wants`` more units within their contracts.

    Owners are entitled to ``reserved - owner_running`` more units; what free capacity cannot give comes out
    of spot work, never more than spot is running and never more than needed.
    """
    entitled = max(0, min(owner_wants, reserved - owner_running))
    free = max(0, capacity - owner_running - spot_running)
    return min(spot_running, max(0, entitled - free))
