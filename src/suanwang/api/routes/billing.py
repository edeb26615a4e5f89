"""Money over HTTP: wallets, top-ups, price books, contracts, quotes, vouchers, settlements, the ledger.

Money in JSON is integer fen (``"fen": 1234``) with a yuan string for display
(``"yuan": "12.34"``).  Price books and voucher programmes are read with JSON
numbers parsed as exact decimals, so ``123.4567`` is never a float.  Money-moving
POSTs take an ``Idempotency-Key`` header: a retry with the same key answers the
first result and moves nothing twice.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import Field, StrictInt

from suanwang.api.deps import ClockDep, CurrentPrincipal, SessionDep
from suanwang.api.price_books import PriceBookOut, draft_from_json, price_book_out
from suanwang.api.schemas import INT64, In, JobIn
from suanwang.errors import InvalidSpec
from suanwang.observability.metrics import record_reconciliation
from suanwang.services import billing
from suanwang.services.jobs import spec_from_json

router = APIRouter(tags=["money"])
IdempotencyKey = Annotated[str | None, Header(max_length=150)]
SettlementId = Annotated[int, Path(ge=1, le=INT64)]  # the settlements table's BIGINT key


async def exact_json(request: Request) -> Any:
    """The request body as JSON with every non-integer number parsed as a Decimal (never a float)."""
    try:
        return json.loads(await request.body(), parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidSpec(f"body is not valid JSON: {exc}") from None
    except RecursionError:  # json.loads gives up on arrays or objects nested thousands deep
        raise InvalidSpec("body is nested too deeply to read") from None


ExactBody = Annotated[Any, Depends(exact_json)]


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidSpec("body must be a JSON object")
    return body


class TopUpIn(In):
    consumer: str = Field(min_length=1)
    amount_fen: StrictInt | str
    currency: str = "CNY"
    reason: str = ""


class CreditIn(In):
    credit_limit_fen: StrictInt | str


class ContractIn(In):
    fee_bps: StrictInt


class FundIn(In):
    amount_fen: StrictInt | str


class ReverseIn(In):
    transfer: str = Field(min_length=1)
    reason: str = Field(min_length=1)


class SettleIn(In):
    start: str | float
    end: str | float
    payouts: bool = True


@router.get("/wallet")
def my_wallet(session: SessionDep, actor: CurrentPrincipal) -> dict[str, Any]:
    return billing.wallet_view(session, actor, actor.tenant_id)


@router.get("/wallets/{consumer}")
def get_wallet(consumer: str, session: SessionDep, actor: CurrentPrincipal) -> dict[str, Any]:
    return billing.wallet_view(session, actor, consumer)


@router.put("/wallets/{consumer}/credit")
def set_credit(consumer: str, body: CreditIn, session: SessionDep, actor: CurrentPrincipal) -> dict[str, Any]:
    return billing.set_credit_limit(session, actor, consumer, body.credit_limit_fen)


@router.post("/topups", status_code=201)
def top_up(body: TopUpIn, session: SessionDep, actor: CurrentPrincipal, clock: ClockDep,
           idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    return billing.top_up(session, actor, body.consumer, body.amount_fen, currency=body.currency,
                          key=idempotency_key, reason=body.reason, clock=clock)


@router.get("/price-books")
def list_price_books(session: SessionDep, actor: CurrentPrincipal) -> list[PriceBookOut]:
    return [price_book_out(b) for b in billing.list_price_books(session)]


@router.post("/price-books", status_code=201)
def set_price_book(body: ExactBody, session: SessionDep, actor: CurrentPrincipal, clock: ClockDep) -> PriceBookOut:
    return price_book_out(billing.set_price_book(session, actor, draft_from_json(_object(body)), clock=clock))


@router.get("/contracts")
def list_contracts(session: SessionDep, actor: CurrentPrincipal) -> dict[str, int]:
    return billing.contracts(session)


@router.put("/contracts/{provider}")
def set_contract(provider: str, body: ContractIn, session: SessionDep, actor: CurrentPrincipal,
                 clock: ClockDep) -> dict[str, Any]:
    return billing.set_contract(session, actor, provider, body.fee_bps, clock=clock)


@router.post("/quotes")
def quote(body: JobIn, session: SessionDep, actor: CurrentPrincipal, clock: ClockDep) -> dict[str, Any]:
    return billing.quote_for(session, actor, spec_from_json(body.model_dump()), clock=clock)


@router.get("/vouchers")
def list_vouchers(session: SessionDep, actor: CurrentPrincipal) -> list[dict[str, Any]]:
    return billing.list_programmes(session, actor)


@router.post("/vouchers", status_code=201)
def create_voucher(body: ExactBody, session: SessionDep, actor: CurrentPrincipal, clock: ClockDep,
                   idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    return billing.create_programme(session, actor, _object(body), key=idempotency_key, clock=clock)


@router.post("/vouchers/{programme}/fund")
def fund_voucher(programme: str, body: FundIn, session: SessionDep, actor: CurrentPrincipal, clock: ClockDep,
                 idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    return billing.fund_programme(session, actor, programme, body.amount_fen, key=idempotency_key, clock=clock)


@router.post("/settlements", status_code=201)
def settle(body: SettleIn, session: SessionDep, actor: CurrentPrincipal, clock: ClockDep) -> dict[str, Any]:
    start, end = billing.parse_period(body.start, body.end)
    return billing.settle(session, actor, start=start, end=end, payouts=body.payouts, clock=clock)


@router.get("/settlements")
def list_settlements(session: SessionDep, actor: CurrentPrincipal) -> list[dict[str, Any]]:
    return billing.list_settlements(session, actor)


@router.get("/settlements/{settlement_id}")
def get_settlement(settlement_id: SettlementId, session: SessionDep, actor: CurrentPrincipal) -> dict[str, Any]:
    return billing.settlement_view(session, actor, settlement_id)


@router.get("/settlements/{settlement_id}/csv", response_class=PlainTextResponse)
def settlement_csv(settlement_id: SettlementId, session: SessionDep, actor: CurrentPrincipal) -> PlainTextResponse:
    return PlainTextResponse(billing.settlement_csv_text(session, actor, settlement_id), media_type="text/csv")


@router.get("/ledger/transfers")
def ledger_transfers(session: SessionDep, actor: CurrentPrincipal, job_id: str | None = None,
                     consumer: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[dict[str, Any]]:
    return billing.ledger_transfers(session, actor, job_id=job_id, consumer=consumer, limit=limit)


@router.post("/ledger/reversals", status_code=201)
def reverse(body: ReverseIn, session: SessionDep, actor: CurrentPrincipal, clock: ClockDep) -> dict[str, Any]:
    return billing.reverse_transfer(session, actor, body.transfer, body.reason, clock=clock)


@router.get("/ledger/accounts")
def ledger_accounts(session: SessionDep, actor: CurrentPrincipal) -> list[dict[str, Any]]:
    return billing.accounts_view(session, actor)


@router.get("/ledger/reconcile")
def ledger_reconcile(session: SessionDep, actor: CurrentPrincipal) -> dict[str, Any]:
    view = billing.reconcile_view(session, actor)
    record_reconciliation(view["ok"])  # an on-demand reconciliation updates the metric too
    return view
