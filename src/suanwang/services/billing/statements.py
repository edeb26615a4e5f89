"""Settlement statements and the audit view: periods settled with payouts, the transfer journal,
reversals, reconciliation and account balances."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suanwang.clock import SYSTEM_CLOCK, Clock
from suanwang.domain.ledger import (
    audit_record,
    plan_reversal,
)
from suanwang.domain.settlement import Settlement, check_period, compute_settlement, plan_payouts, settlement_csv
from suanwang.errors import NotFound
from suanwang.services.audit import record_audit
from suanwang.services.auth import Principal, Role
from suanwang.services.billing.codec import _jsonable, money_json, settlement_json
from suanwang.services.billing.common import _actor, _raise_if_refused, now_utc
from suanwang.services.billing.wallets import contracts
from suanwang.store.ledger_tables import (
    SettlementRow,
    TransferRow,
)
from suanwang.store.sql_ledger import (
    SqlLedger,
    cached_balances,
    load_transfers,
    lock_for_settlement,
    reconcile,
    to_us,
)
from suanwang.store.tables import SiteRow, UsageRow


def settle(session: Session, actor: Principal, *, start: datetime, end: datetime,
           payouts: bool = True, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """Close ``[start, end)``: statements per consumer and provider, payouts, and the period made immutable.

    Settling exactly the last settled period again returns it (a retried
    request); any other overlap is a Conflict.
    """
    lock_for_settlement(session)
    existing = session.scalar(select(SettlementRow).where(SettlementRow.start_us == to_us(start),
                                                          SettlementRow.end_us == to_us(end)))
    if existing is not None:
        return settlement_json(existing)
    ledger = SqlLedger(session)
    check_period(ledger.settled_until(), start=start, end=end, now=now_utc(clock))
    settlement = compute_settlement(load_transfers(session, before=end), start=start, end=end,
                                    fee_bps=contracts(session))
    paid = _pay_out(ledger, settlement, actor) if payouts else []  # booked at ``end``: in the next period
    row = SettlementRow(start_us=to_us(start), end_us=to_us(end), created_at=clock.time(), created_by=_actor(actor),
                        transfer_count=settlement.transfer_count,
                        statements={**_jsonable(settlement), "payouts": paid,
                                    "unbilled": unbilled_usage(session, start=start, end=end)},
                        csv=settlement_csv(settlement))
    session.add(row)  # written once: the table refuses updates and deletes
    session.flush()
    record_audit(session, actor, "settlement.close", str(row.id), start=start.isoformat(), end=end.isoformat(),
                 transfers=settlement.transfer_count)
    return settlement_json(row)


def _pay_out(ledger: SqlLedger, settlement: Settlement, actor: Principal) -> list[dict[str, Any]]:
    transfers = plan_payouts(settlement, at=settlement.end, actor=_actor(actor))
    results = ledger.apply_many(transfers)
    for transfer, result in zip(transfers, results, strict=True):
        _raise_if_refused(result, transfer)
    return [{"transfer": t.key, "provider": t.audit.provider, **money_json(-t.postings[0].fen)} for t in transfers]


def unbilled_usage(session: Session, *, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Per provider and reason, the usage ending in ``[start, end)`` that rating charged nobody for: work
    its sites delivered and metered that earns nothing (an attempt the platform declared lost)."""
    t0, t1 = start.timestamp(), end.timestamp()
    rows = session.execute(
        select(UsageRow.site, UsageRow.unbilled_reason, func.count(), func.sum(UsageRow.units_nano))
        .where(UsageRow.unbilled_reason.is_not(None), UsageRow.end >= t0, UsageRow.end < t1)
        .group_by(UsageRow.site, UsageRow.unbilled_reason).order_by(UsageRow.site, UsageRow.unbilled_reason))
    providers = dict(session.execute(select(SiteRow.name, SiteRow.tenant_id)).all())
    return [{"provider": providers.get(site, site), "site": site, "reason": reason, "records": count,
             "units": f"{Decimal(int(nano or 0)).scaleb(-9):.9f}"} for site, reason, count, nano in rows]


def get_settlement(session: Session, actor: Principal, settlement_id: int) -> SettlementRow:
    """The stored row (for services; routes take :func:`settlement_view` or :func:`settlement_csv_text`)."""
    row = session.get(SettlementRow, settlement_id)
    if row is None:
        raise NotFound(f"settlement {settlement_id} not found")
    return row


def settlement_view(session: Session, actor: Principal, settlement_id: int) -> dict[str, Any]:
    """A settlement's statements as plain data."""
    return settlement_json(get_settlement(session, actor, settlement_id))


def settlement_csv_text(session: Session, actor: Principal, settlement_id: int) -> str:
    """A settlement's statement lines as CSV (kept as settled)."""
    return get_settlement(session, actor, settlement_id).csv


def list_settlements(session: Session, actor: Principal) -> list[dict[str, Any]]:
    return [settlement_json(r) for r in session.scalars(select(SettlementRow).order_by(SettlementRow.start_us))]


def ledger_transfers(session: Session, actor: Principal, *, job_id: str | None = None, consumer: str | None = None,
                     limit: int = 1000) -> list[dict[str, Any]]:
    """Each transfer traced to its usage record, job, price book version and actor (newest last)."""
    query = select(TransferRow).order_by(TransferRow.seq)
    if job_id:
        query = query.where(TransferRow.job_id == job_id)
    if consumer:
        query = query.where(TransferRow.consumer == consumer)
    if actor.role is Role.CONSUMER:
        query = query.where(TransferRow.consumer == actor.tenant_id)
    elif actor.role is Role.PROVIDER:
        query = query.where(TransferRow.provider == actor.tenant_id)
    elif not actor.sees_all:
        return []
    rows = list(session.scalars(query.limit(limit)))
    from suanwang.domain.ledger import transfer_from_row

    return [{"seq": r.seq, "over_limit": r.over_limit, **audit_record(transfer_from_row(r.body))} for r in rows]


def reverse_transfer(session: Session, actor: Principal, key: str, reason: str, *,
                     clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """Operator correction: book the exact negation of transfer ``key`` (L4: never an edit).

    The reversal's key is derived from the original's, so a retried request
    answers ``exists``; a transfer is reversed at most once.
    """
    ledger = SqlLedger(session)
    original = ledger.transfer(key)
    if original is None:
        raise NotFound(f"transfer {key} not found")
    at = max(now_utc(clock), original.booked_at)
    transfer = plan_reversal(f"reversal:{key}", original=original, at=at, actor=_actor(actor), reason=reason)
    result = ledger.apply(transfer)
    _raise_if_refused(result, transfer)
    record_audit(session, actor, "ledger.reverse", key, reason=reason, result=result.code.value)
    return {"result": result.code.value, "over_limit": result.over_limit, **audit_record(transfer)}


def reconcile_view(session: Session, actor: Principal) -> dict[str, Any]:
    return reconcile(session).as_json()


def accounts_view(session: Session, actor: Principal) -> list[dict[str, Any]]:
    return [{"account": str(a), **money_json(b)} for a, b in sorted(cached_balances(session).items())]
