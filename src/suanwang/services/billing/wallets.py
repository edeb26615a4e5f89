"""Wallets, credit lines, top-ups and provider contracts: the consumer's and provider's standing."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.clock import SYSTEM_CLOCK, Clock
from suanwang.domain.ledger import (
    hold_account,
    plan_topup,
    wallet,
)
from suanwang.domain.money import check_currency, parse_fen
from suanwang.domain.rating import (
    ProviderContract,
)
from suanwang.errors import NotFound
from suanwang.services.audit import record_audit
from suanwang.services.auth import Principal
from suanwang.services.billing.codec import money_json
from suanwang.services.billing.common import _actor, _raise_if_refused, now_utc
from suanwang.store.ledger_tables import (
    ProviderContractRow,
)
from suanwang.store.sql_ledger import (
    SqlLedger,
    cached_balances,
    credit_limit_of,
)
from suanwang.store.tables import TenantRow


def _consumer_visible(actor: Principal, consumer: str) -> None:
    if not actor.sees_all and actor.tenant_id != consumer:
        raise NotFound(f"wallet {consumer} not found")


def _check_tenant(session: Session, consumer: str) -> None:
    if session.get(TenantRow, consumer) is None:
        raise NotFound(f"tenant {consumer} not found")


def wallet_view(session: Session, actor: Principal, consumer: str) -> dict[str, Any]:
    _consumer_visible(actor, consumer)
    _check_tenant(session, consumer)
    balances = cached_balances(session)
    balance = balances.get(wallet(consumer), 0)
    held = balances.get(hold_account(consumer), 0)
    limit = credit_limit_of(session, consumer)
    return {"consumer": consumer, "balance": money_json(balance), "held": money_json(held),
            "credit_limit": money_json(limit), "available": money_json(balance + limit)}


def top_up(session: Session, actor: Principal, consumer: str, amount: object, *, currency: str = "CNY",
           key: str | None = None, reason: str = "", clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """Operator adds money to a consumer's wallet; ``key`` makes a retry answer the first result."""
    check_currency(currency)
    fen = parse_fen(amount, currency=currency, what="top-up amount")
    _check_tenant(session, consumer)
    transfer = plan_topup(f"topup:{key}" if key else f"topup:{time.time_ns()}:{consumer}", consumer=consumer,
                          fen=fen, at=now_utc(clock), actor=_actor(actor), reason=reason or "top-up")
    result = SqlLedger(session).apply(transfer)
    _raise_if_refused(result, transfer)
    record_audit(session, actor, "wallet.topup", consumer, fen=fen, key=transfer.key, result=result.code.value)
    return {"transfer": transfer.key, "result": result.code.value, **wallet_view(session, actor, consumer)}


def set_credit_limit(session: Session, actor: Principal, consumer: str, amount: object) -> dict[str, Any]:
    fen = parse_fen(amount, what="credit limit")
    _check_tenant(session, consumer)
    SqlLedger(session).set_credit_limit(consumer, fen)
    record_audit(session, actor, "wallet.credit_limit", consumer, fen=fen)
    return wallet_view(session, actor, consumer)


def set_contract(session: Session, actor: Principal, provider: str, fee_bps: int, *,
                 clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    _check_tenant(session, provider)
    ProviderContract(provider, fee_bps)  # validates 0..10000
    row = session.get(ProviderContractRow, provider)
    if row is None:
        session.add(ProviderContractRow(provider=provider, fee_bps=fee_bps, updated_at=clock.time()))
    else:
        row.fee_bps, row.updated_at = fee_bps, clock.time()
    record_audit(session, actor, "contract.set", provider, fee_bps=fee_bps)
    return {"provider": provider, "fee_bps": fee_bps}


def contracts(session: Session) -> dict[str, int]:
    """Provider -> platform fee in basis points; a provider without a contract pays no fee."""
    return dict(session.execute(select(ProviderContractRow.provider, ProviderContractRow.fee_bps)).all())
