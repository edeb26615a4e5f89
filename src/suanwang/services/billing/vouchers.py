"""Voucher programmes: created and funded by the operator, drawn on by charges (domain.voucher decides)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.clock import SYSTEM_CLOCK, Clock
from suanwang.domain.ledger import (
    AccountKind,
    plan_voucher_funding,
    voucher_fund,
)
from suanwang.domain.money import parse_fen
from suanwang.domain.voucher import VoucherProgramme, check_new_programme
from suanwang.errors import Conflict, InvalidSpec, NotFound
from suanwang.services.audit import record_audit
from suanwang.services.auth import Principal
from suanwang.services.billing.codec import _plain, money_json, programme_from_json
from suanwang.services.billing.common import _actor, _raise_if_refused, log, now_utc
from suanwang.store.ledger_tables import (
    TransferRow,
    VoucherProgrammeRow,
)
from suanwang.store.sql_ledger import (
    SqlLedger,
    cached_balances,
)


def load_programmes(session: Session) -> list[VoucherProgramme]:
    """Every programme; one stored before today's bounds that fails them is ignored (logged)."""
    programmes = []
    for body in session.scalars(select(VoucherProgrammeRow.body)):
        try:
            programmes.append(programme_from_json(body))
        except InvalidSpec as exc:
            log.error("voucher programme %s ignored: %s", str(body.get("id"))[:40], exc.message)
    return programmes


def create_programme(session: Session, actor: Principal, data: Mapping[str, Any], *,
                     key: str | None = None, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """Operator creates a voucher programme and (optionally, ``fund_fen``) funds it."""
    body = dict(data)
    fund = body.pop("fund_fen", None)
    programme = check_new_programme(programme_from_json(body), now=now_utc(clock))  # all bounded before use
    fund = parse_fen(fund, what="fund_fen") if fund is not None else None
    if fund is not None and fund < 0:
        raise InvalidSpec("fund_fen must not be negative")
    body = _plain(body)
    if session.get(VoucherProgrammeRow, programme.id) is not None:
        raise Conflict(f"voucher programme {programme.id} already exists")
    session.add(VoucherProgrammeRow(id=programme.id, created_at=clock.time(), created_by=_actor(actor), body=body))
    session.flush()
    record_audit(session, actor, "voucher.create", programme.id, share_pct=str(programme.share_pct))
    if fund:
        fund_programme(session, actor, programme.id, fund, key=key or f"create:{programme.id}")
    return programme_json(session, programme)


def fund_programme(session: Session, actor: Principal, programme_id: str, amount: object, *,
                   key: str | None = None, clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    body = session.scalar(select(VoucherProgrammeRow.body).where(VoucherProgrammeRow.id == programme_id))
    if body is None:
        raise NotFound(f"voucher programme {programme_id} not found")
    fen = parse_fen(amount, what="voucher funding")
    transfer = plan_voucher_funding(f"voucher-fund:{programme_id}:{key or time.time_ns()}", programme=programme_id,
                                    fen=fen, at=now_utc(clock), actor=_actor(actor))
    result = SqlLedger(session).apply(transfer)
    _raise_if_refused(result, transfer)
    record_audit(session, actor, "voucher.fund", programme_id, fen=fen, result=result.code.value)
    return programme_json(session, programme_from_json(body))


def programme_json(session: Session, p: VoucherProgramme) -> dict[str, Any]:
    fund = cached_balances(session, AccountKind.VOUCHER).get(voucher_fund(p.id), 0)
    spent = sum(t.voucher_fen for t in _voucher_transfers(session, p.id))
    return {"id": p.id, "share_pct": format(p.share_pct, "f"), "cap_per_consumer": money_json(p.cap_per_consumer_fen),
            "valid_from": p.valid_from.isoformat(), "valid_until": p.valid_until.isoformat(),
            "resource_classes": sorted(c.value for c in p.resource_classes),
            "consumers": sorted(p.consumers) if p.consumers is not None else None,
            "fund": money_json(fund), "spent": money_json(spent)}


def _voucher_transfers(session: Session, programme: str) -> list[TransferRow]:
    return list(session.scalars(select(TransferRow).where(TransferRow.voucher_programme == programme,
                                                          TransferRow.kind.in_(("charge", "reversal")))))


def list_programmes(session: Session, actor: Principal) -> list[dict[str, Any]]:
    """Operator and auditor see every programme; anyone else only those open to its tenant, and never
    which other consumers a programme names."""
    programmes = sorted(load_programmes(session), key=lambda p: p.id)
    if actor.sees_all:
        return [programme_json(session, p) for p in programmes]
    mine = actor.tenant_id
    return [programme_json(session, p) | {"consumers": None if p.consumers is None else [mine]}
            for p in programmes if p.shows_to(mine)]
