"""The market's use cases: post and withdraw orders, clear a session exactly once, read results.

Thin around the pure core (``domain/market``): validation, clearing, contract lines and the money plan
are all there; this module reads and writes rows and applies the money plan through the existing
ledger (``SqlLedger``).  One database transaction per state change:

* posting a bid places its hold (limit x quantity) in the transaction that writes the order: a wallet
  that cannot cover it raises InsufficientFunds (402) and nothing is written;
* clearing a session writes its claim row first, then the ledger transfers, the contract lines and the
  result, in one transaction: a second replica (or a retry after a crash) finds the claim and does
  nothing; a crash before the commit leaves nothing, and the next try clears it.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from suanwang.domain.ledger import HoldState, ResultCode, plan_release, wallet
from suanwang.domain.market import Ask, Bid, canonical_book, clear_book, validate_ask, validate_bid
from suanwang.domain.market.contract import plan_contracts
from suanwang.domain.market.money import bid_hold_id, plan_bid_hold, plan_clear
from suanwang.domain.market.order import Link, link_key
from suanwang.domain.market.session import DEFAULT_SCHEDULE, Schedule, check_open, open_sessions, session_by_id
from suanwang.domain.market.session import Session as MarketSession
from suanwang.domain.money import format_yuan
from suanwang.domain.resources import ResourceClass
from suanwang.errors import Forbidden, InsufficientFunds, InvalidSpec, NotFound, StoreConflict
from suanwang.services.auth import Principal, Role
from suanwang.services.ledger_store import SqlLedger, cached_balances, credit_limit_of
from suanwang.store.db import Database
from suanwang.store.market_tables import MarketClearRow, MarketContractRow, MarketOrderRow
from suanwang.store.tables import LinkRow, SiteRow

ACTOR = "market"
log = logging.getLogger(__name__)
_ASK_FIELDS = {"session", "site", "resource_class", "start_slot", "end_slot", "units_per_slot", "floor_fen"}
_BID_FIELDS = {"session", "sites", "resource_class", "start_slot", "end_slot", "quantity", "rate_per_slot",
               "limit_fen", "all_or_nothing", "data_site", "data_gb_per_unit"}


def _field(data: Mapping[str, Any], name: str, kind: type, default: Any = ...) -> Any:
    value = data.get(name, default)
    if value is ...:
        raise InvalidSpec(f"{name}: required")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidSpec(f"{name}: must be an integer")
    if kind is str and (not isinstance(value, str) or not value or len(value) > 100):
        raise InvalidSpec(f"{name}: must be a non-empty string of at most 100 characters")
    return value


def _order_id(side: str, now: float) -> str:
    """Time priority: ids sort by posting time (microseconds), then a random suffix."""
    return f"{side}-{int(now * 1_000_000):017d}-{uuid.uuid4().hex[:8]}"


def _check_slots(market: MarketSession, start: int, end: int) -> None:
    if start < 0 or end > market.slots:
        raise InvalidSpec(f"start_slot/end_slot: must lie within 0..{market.slots} for session {market.id}")


def _known_sites(session: Session, names: list[str]) -> None:
    known = set(session.scalars(select(SiteRow.name).where(SiteRow.name.in_(names))))
    for name in names:
        if name not in known:
            raise InvalidSpec(f"site: unknown site {name[:100]!r}")


def _class(value: object) -> str:
    try:
        return ResourceClass(value if isinstance(value, str) else "").value
    except ValueError as exc:
        raise InvalidSpec(f"resource_class: unknown class {str(value)[:40]!r} "
                          f"(one of {', '.join(c.value for c in ResourceClass)})") from exc


def post_order(session: Session, actor: Principal, side: str, data: Mapping[str, Any], *, now: float,
               schedule: Schedule = DEFAULT_SCHEDULE) -> dict[str, Any]:
    """Post an ask (provider, for its own site) or a bid (consumer; places its hold)."""
    if side not in ("ask", "bid"):
        raise NotFound(f"no order side {side[:10]!r}")
    fields = _ASK_FIELDS if side == "ask" else _BID_FIELDS
    extra = sorted(set(data) - fields)
    if extra:
        raise InvalidSpec(f"{extra[0][:40]}: unknown field")
    market = session_by_id(data.get("session"), schedule)
    check_open(market, now)
    cls = _class(data.get("resource_class"))
    start, end = _field(data, "start_slot", int), _field(data, "end_slot", int)
    order_id = _order_id(side, now)
    order: Ask | Bid
    if side == "ask":
        if actor.role not in (Role.PROVIDER, Role.OPERATOR):
            raise Forbidden("only a provider posts asks")
        site = _field(data, "site", str)
        _known_sites(session, [site])
        owner = session.scalar(select(SiteRow.tenant_id).where(SiteRow.name == site))
        if actor.role is Role.PROVIDER and owner != actor.tenant_id:
            raise InvalidSpec(f"site: unknown site {site!r}")  # another provider's site is not yours to sell
        order = Ask(order_id, str(owner), site, cls, start, end, _field(data, "units_per_slot", int),
                    _field(data, "floor_fen", int))
        _valid(validate_ask, order)
    else:
        if actor.role is not Role.CONSUMER:
            raise Forbidden("only a consumer posts bids")
        sites = data.get("sites")
        if not isinstance(sites, list) or not 1 <= len(sites) <= 50 or not all(isinstance(s, str) for s in sites):
            raise InvalidSpec("sites: must be a list of 1 to 50 site names")
        _known_sites(session, sites)
        data_site = data.get("data_site")
        if data_site is not None:
            _known_sites(session, [_field(data, "data_site", str)])
        gang = data.get("all_or_nothing", False)
        if not isinstance(gang, bool):
            raise InvalidSpec("all_or_nothing: must be true or false")
        order = Bid(order_id, actor.tenant_id, cls, tuple(sorted(set(sites))), start, end,
                    _field(data, "quantity", int), _field(data, "rate_per_slot", int), _field(data, "limit_fen", int),
                    gang, data_site, _field(data, "data_gb_per_unit", int, 0))
        _valid(validate_bid, order)
    _check_slots(market, start, end)
    if isinstance(order, Bid):
        _place_hold(session, market, order, now)
    body = {k: data[k] for k in sorted(data)}
    session.add(MarketOrderRow(id=order_id, session_id=market.id, side=side, tenant_id=order_owner(order),
                               state="live", body=body, created_at=now, updated_at=now))
    return order_json(order_id, market.id, side, "live", body)


def _valid(check: Any, order: Ask | Bid) -> None:
    try:
        check(order)
    except InvalidSpec as exc:
        raise InvalidSpec(str(exc).removeprefix(f"{order.id}: ")) from exc


def order_owner(order: Ask | Bid) -> str:
    return order.provider if isinstance(order, Ask) else order.consumer


def _place_hold(session: Session, market: MarketSession, bid: Bid, now: float) -> None:
    ledger = SqlLedger(session)
    result = ledger.apply(plan_bid_hold(market.id, bid, at=datetime.fromtimestamp(now, UTC), actor=bid.consumer))
    if result.code is ResultCode.EXCEEDS_CREDIT:
        need = bid.limit_fen * bid.quantity
        balance = cached_balances(session).get(wallet(bid.consumer), 0)
        limit = credit_limit_of(session, bid.consumer)
        raise InsufficientFunds(f"insufficient funds: this bid needs a hold of limit x quantity = "
                                f"{format_yuan(need)} yuan ({need} fen) but wallet {bid.consumer} has "
                                f"{format_yuan(balance)} yuan plus a credit line of {format_yuan(limit)} yuan; "
                                "top up or bid for less", need_fen=need, available_fen=balance + limit)
    if not result.ok:
        raise InvalidSpec(f"bid hold refused: {result.code}")


def order_json(order_id: str, session_id: str, side: str, state: str, body: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": order_id, "session": session_id, "side": side, "state": state, **body}


def withdraw_order(session: Session, actor: Principal, order_id: str, *, now: float,
                   schedule: Schedule = DEFAULT_SCHEDULE) -> dict[str, Any]:
    """Withdraw a live order before its gate; a bid's hold goes back to the wallet at once."""
    row = session.get(MarketOrderRow, order_id, with_for_update=True)
    if row is None or (not actor.sees_all and row.tenant_id != actor.tenant_id):
        raise NotFound(f"no order {order_id[:80]!r}")
    check_open(session_by_id(row.session_id, schedule), now)
    if row.state == "live" and row.side == "bid":
        ledger = SqlLedger(session)
        hold = ledger.hold(bid_hold_id(row.session_id, row.id))
        if hold is not None and hold.state is HoldState.OPEN:
            result = ledger.apply(plan_release(f"market:{row.session_id}:withdraw:{row.id}", hold=hold,
                                               at=datetime.fromtimestamp(now, UTC), actor=actor.tenant_id,
                                               reason="bid withdrawn"))
            if not result.ok:
                raise InvalidSpec(f"hold release refused: {result.code}")
    row.state, row.updated_at = "withdrawn", now
    return order_json(row.id, row.session_id, row.side, row.state, row.body)


def _orders(session: Session, session_id: str) -> tuple[list[Ask], list[Bid]]:
    asks, bids = [], []
    for row in session.scalars(select(MarketOrderRow).where(MarketOrderRow.session_id == session_id,
                                                            MarketOrderRow.state == "live")):
        b = row.body
        if row.side == "ask":
            asks.append(Ask(row.id, row.tenant_id, b["site"], b["resource_class"], b["start_slot"], b["end_slot"],
                            b["units_per_slot"], b["floor_fen"]))
        else:
            bids.append(Bid(row.id, row.tenant_id, b["resource_class"], tuple(sorted(set(b["sites"]))),
                            b["start_slot"], b["end_slot"], b["quantity"], b["rate_per_slot"], b["limit_fen"],
                            b.get("all_or_nothing", False), b.get("data_site"), b.get("data_gb_per_unit", 0)))
    return asks, bids


def market_links(session: Session, slot_s: int) -> list[Link]:
    """The grid's links as the clear sees them: each link's bandwidth in whole GB per slot (Gbit/s x slot / 8,
    rounded down), so data that must cross a link is priced where it binds (congestion)."""
    best: dict[tuple[str, str], int] = {}
    for a, b, gbps in session.execute(select(LinkRow.a, LinkRow.b, LinkRow.bandwidth_gbps)):
        if a != b and math.isfinite(gbps) and gbps >= 0:
            key, gb = link_key(a, b), min(10**12, int(gbps * slot_s / 8))
            best[key] = min(best.get(key, gb), gb)  # a pair entered both ways counts once, the narrower
    return [Link(a, b, gb) for (a, b), gb in sorted(best.items())]


def clear_session(db: Database, session_id: str, *, now: float | None = None,
                  schedule: Schedule = DEFAULT_SCHEDULE) -> bool:
    """Clear a session whose gate has closed, once.  Returns whether this call cleared it."""
    market = session_by_id(session_id, schedule)
    now = time.time() if now is None else now
    if now < market.gate_at:
        raise InvalidSpec(f"session: {session_id} is still open")
    try:
        with db.transaction() as session:
            if session.get(MarketClearRow, market.id) is not None:
                return False
            claim = MarketClearRow(session_id=market.id, cleared_at=now, status="clearing", welfare_fen=0, result="")
            session.add(claim)
            session.flush()  # the claim first: a concurrent replica waits on this key, then fails on it
            asks, bids = _orders(session, market.id)
            links = market_links(session, market.slot_s)
            result = clear_book(asks, bids, links)
            at = datetime.fromtimestamp(max(now, market.gate_at), UTC)
            transfers = plan_clear(market.id, bids, result, at=at, actor=ACTOR)
            outcomes = SqlLedger(session).apply_many(transfers, atomic=True)
            bad = [r for r in outcomes if not r.ok]
            if bad:
                raise InvalidSpec(f"session {market.id}: the clear's ledger transfers were refused: {bad[0].code}")
            for line in plan_contracts(canonical_book(asks, bids, links), result):
                start = market.slot_start(line.slot)
                session.add(MarketContractRow(
                    id=f"{market.id}/{line.id}", session_id=market.id, bid_id=line.bid_id, consumer=line.consumer,
                    ask_id=line.ask_id, provider=line.provider, site=line.site, resource_class=line.resource_class,
                    slot_start=start, slot_end=start + market.slot_s, units=line.units,
                    buyer_price_cf=line.buyer_price_cf, seller_price_cf=line.seller_price_cf))
            claim.status, claim.welfare_fen, claim.result = result.status, result.welfare_fen, result.canonical_json()
        return True
    except (IntegrityError, StoreConflict):  # the store translates a driver's IntegrityError to StoreConflict
        return False  # another replica committed the same claim first


def clear_due(db: Database, *, now: float, schedule: Schedule = DEFAULT_SCHEDULE) -> list[str]:
    """The control loop's step: clear every session with orders whose gate has closed and that no replica
    has cleared yet (oldest first).  A session nobody posted to has nothing to clear and leaves no row."""
    with db.sessions() as session:
        pending = sorted(set(session.scalars(
            select(MarketOrderRow.session_id).where(~select(MarketClearRow.session_id).where(
                MarketClearRow.session_id == MarketOrderRow.session_id).exists()).distinct())))
    due = sorted((m for sid in pending if (m := _known(sid, schedule)) is not None), key=lambda m: (m.gate_at, m.id))
    return [m.id for m in due if m.gate_at <= now and clear_session(db, m.id, now=now, schedule=schedule)]


def _known(session_id: str, schedule: Schedule) -> MarketSession | None:
    """The session an order's id names under the current schedule; None (left alone, logged) if the schedule
    changed under a board that still held orders (their sessions are not this schedule's)."""
    try:
        return session_by_id(session_id, schedule)
    except InvalidSpec:
        log.warning("market session %s is not one of the current schedule's: not cleared", session_id)
        return None


def result_json(session: Session, actor: Principal, session_id: str,
                schedule: Schedule = DEFAULT_SCHEDULE) -> dict[str, Any]:
    """A cleared session's result: public prices and volumes for everyone; fills only one's own."""
    row = session.get(MarketClearRow, session_by_id(session_id, schedule).id)
    if row is None:
        raise NotFound(f"session {session_id[:40]!r} has not cleared")
    body = json.loads(row.result)
    public = {"session": row.session_id, "status": row.status, "prices": body["prices"],
              "congestion": body["congestion"], "cleared_at": row.cleared_at}
    if actor.sees_all:
        return {**public, **body}
    mine = {o.id for o in session.scalars(select(MarketOrderRow).where(
        MarketOrderRow.session_id == row.session_id, MarketOrderRow.tenant_id == actor.tenant_id))}
    public["bids"] = [b for b in body["bids"] if b["bid_id"] in mine]
    public["asks"] = [a for a in body["asks"] if a["ask_id"] in mine]
    return public


def contracts_json(session: Session, actor: Principal) -> list[dict[str, Any]]:
    query = select(MarketContractRow).order_by(MarketContractRow.id)
    if not actor.sees_all:
        query = query.where((MarketContractRow.consumer == actor.tenant_id)
                            | (MarketContractRow.provider == actor.tenant_id))
    return [{c: getattr(row, c) for c in ("id", "session_id", "bid_id", "consumer", "ask_id", "provider", "site",
                                          "resource_class", "slot_start", "slot_end", "units", "buyer_price_cf",
                                          "seller_price_cf")} for row in session.scalars(query.limit(10_000))]


def orders_json(session: Session, actor: Principal, session_id: str | None = None,
                schedule: Schedule = DEFAULT_SCHEDULE) -> list[dict[str, Any]]:
    """The caller's own orders (operator and auditor: everyone's), newest first."""
    query = select(MarketOrderRow).order_by(MarketOrderRow.id.desc()).limit(1000)
    if session_id is not None:
        query = query.where(MarketOrderRow.session_id == session_by_id(session_id, schedule).id)
    if not actor.sees_all:
        query = query.where(MarketOrderRow.tenant_id == actor.tenant_id)
    return [order_json(r.id, r.session_id, r.side, r.state, r.body) for r in session.scalars(query)]


def market_data(session: Session, session_id: str, schedule: Schedule = DEFAULT_SCHEDULE) -> dict[str, Any]:
    """Public data of a session: depth of live orders, and its prices and volumes once cleared; never who."""
    market = session_by_id(session_id, schedule)
    asks, bids = _orders(session, market.id)
    offered: dict[tuple[str, str, int], int] = {}
    for a in asks:
        for t in range(a.start_slot, a.end_slot):
            offered[(a.site, a.resource_class, t)] = offered.get((a.site, a.resource_class, t), 0) + a.units_per_slot
    wanted: dict[tuple[str, int], int] = {}
    for b in bids:
        for t in range(b.start_slot, b.end_slot):
            wanted[(b.resource_class, t)] = wanted.get((b.resource_class, t), 0) + b.rate_per_slot
    clear = session.get(MarketClearRow, market.id)
    body = json.loads(clear.result) if clear is not None and clear.result else None
    return {"session": market.id, "kind": market.kind.value, "gate_at": market.gate_at,
            "first_slot_at": market.first_slot_at, "slot_s": market.slot_s, "slots": market.slots,
            "offered": [{"site": s, "resource_class": c, "slot": t, "units": u}
                        for (s, c, t), u in sorted(offered.items())],
            "wanted": [{"resource_class": c, "slot": t, "units": u} for (c, t), u in sorted(wanted.items())],
            "cleared": body is not None,
            "prices": body["prices"] if body else [], "congestion": body["congestion"] if body else []}


def sessions_json(now: float, schedule: Schedule = DEFAULT_SCHEDULE) -> list[dict[str, Any]]:
    return [{"id": s.id, "kind": s.kind.value, "gate_at": s.gate_at, "first_slot_at": s.first_slot_at,
             "slot_s": s.slot_s, "slots": s.slots} for s in open_sessions(now, schedule=schedule)]


def amend_order(session: Session, actor: Principal, order_id: str, changes: Mapping[str, Any], *,
                now: float, schedule: Schedule = DEFAULT_SCHEDULE) -> dict[str, Any]:
    """Amend a live order before its gate: withdraw it and post the amended one in this one transaction.

    The amended order gets a new id (it loses time priority, as on an exchange); a bid's old hold is
    released and the new one placed, so if the new hold cannot be covered (402) nothing changes.
    """
    row = session.get(MarketOrderRow, order_id)
    if row is None or (not actor.sees_all and row.tenant_id != actor.tenant_id):
        raise NotFound(f"no order {order_id[:80]!r}")
    if row.state != "live":
        raise InvalidSpec(f"order {order_id[:80]}: withdrawn orders cannot be amended")
    if "session" in changes and changes["session"] != row.session_id:
        raise InvalidSpec("session: an order stays in its session; withdraw it and post a new one")
    side, body = row.side, {**row.body, **changes}
    withdraw_order(session, actor, order_id, now=now, schedule=schedule)
    return {**post_order(session, actor, side, body, now=now, schedule=schedule), "replaces": order_id}
