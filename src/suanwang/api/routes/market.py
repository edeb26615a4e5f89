"""The compute market over HTTP: sessions, asks, bids, results, contracts, public market data.

Bodies are read with exact JSON (a non-integer number is a Decimal, refused where an integer is due);
every bad field answers 422 naming it, a bid the wallet cannot cover 402, an order after the gate 409.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from suanwang.api.deps import ClockDep, CurrentPrincipal, PlatformDep, SessionDep
from suanwang.api.routes.billing import ExactBody, _object
from suanwang.services import market

router = APIRouter(prefix="/market", tags=["market"])
SessionId = Annotated[str, Path(min_length=13, max_length=22)]
OrderId = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("/sessions")
def sessions(actor: CurrentPrincipal, platform: PlatformDep, clock: ClockDep) -> list[dict[str, Any]]:
    return market.sessions_json(clock.time(), platform.market_schedule)


@router.post("/asks", status_code=201)
def post_ask(body: ExactBody, session: SessionDep, actor: CurrentPrincipal, platform: PlatformDep,
             clock: ClockDep) -> dict[str, Any]:
    return market.post_order(session, actor, "ask", _object(body), now=clock.time(),
                             schedule=platform.market_schedule)


@router.post("/bids", status_code=201)
def post_bid(body: ExactBody, session: SessionDep, actor: CurrentPrincipal, platform: PlatformDep,
             clock: ClockDep) -> dict[str, Any]:
    return market.post_order(session, actor, "bid", _object(body), now=clock.time(),
                             schedule=platform.market_schedule)


@router.get("/orders")
def orders(session: SessionDep, actor: CurrentPrincipal, platform: PlatformDep,
           session_id: Annotated[str | None, Query(alias="session", max_length=22)] = None) -> list[dict[str, Any]]:
    return market.orders_json(session, actor, session_id, platform.market_schedule)


@router.patch("/orders/{order_id}")
def amend(order_id: OrderId, body: ExactBody, session: SessionDep, actor: CurrentPrincipal, platform: PlatformDep,
          clock: ClockDep) -> dict[str, Any]:
    return market.amend_order(session, actor, order_id, _object(body), now=clock.time(),
                              schedule=platform.market_schedule)


@router.delete("/orders/{order_id}")
def withdraw(order_id: OrderId, session: SessionDep, actor: CurrentPrincipal, platform: PlatformDep,
             clock: ClockDep) -> dict[str, Any]:
    return market.withdraw_order(session, actor, order_id, now=clock.time(), schedule=platform.market_schedule)


@router.get("/sessions/{session_id}/result")
def result(session_id: SessionId, session: SessionDep, actor: CurrentPrincipal,
           platform: PlatformDep) -> dict[str, Any]:
    return market.result_json(session, actor, session_id, platform.market_schedule)


@router.get("/contracts")
def contracts(session: SessionDep, actor: CurrentPrincipal) -> list[dict[str, Any]]:
    return market.contracts_json(session, actor)


@router.get("/data/{session_id}")
def data(session_id: SessionId, session: SessionDep, platform: PlatformDep) -> dict[str, Any]:
    return market.market_data(session, session_id, platform.market_schedule)
