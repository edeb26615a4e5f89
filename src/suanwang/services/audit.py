"""The audit trail: one row per mutation, written in the mutation's own transaction.

Rows are append-only in the database (migration 0007's triggers); the control loop later seals them into
a hash chain (``services.chain``), so this insert takes no lock and stays off the mutation's hot path.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from suanwang.services import chain
from suanwang.services.auth import Principal
from suanwang.store.tables import AuditRow

OBJECT_CHARS = 200  # the width of ``audit.object``; PostgreSQL refuses a longer value, SQLite would keep it


def record_audit(
    session: Session, actor: Principal | None, action: str, obj: str = "", **detail: Any
) -> None:
    if len(obj) > OBJECT_CHARS:  # keep the whole name in the detail rather than fail the mutation it records
        detail["object"] = obj
        obj = obj[: OBJECT_CHARS - 1] + "…"
    # A Core INSERT, not ``session.add``: nothing reads the row back in the same transaction, and the ORM's
    # unit of work costs more than the rest of a job submission.
    session.execute(insert(AuditRow.__table__), {
        "at": time.time(), "actor": actor.token_id if actor else "system",
        "tenant_id": actor.tenant_id if actor else "", "action": action, "object": obj, "detail": detail,
    })


def record_audits(session: Session, actor: Principal | None, action: str,
                  entries: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """One row per ``(object, detail)``, in one INSERT: a batch (a workflow's steps) audited item by item."""
    if not entries:
        return
    at = time.time()
    rows = []
    for obj, detail in entries:
        if len(obj) > OBJECT_CHARS:
            detail = {**detail, "object": obj}
            obj = obj[: OBJECT_CHARS - 1] + "…"
        rows.append({"at": at, "actor": actor.token_id if actor else "system",
                     "tenant_id": actor.tenant_id if actor else "", "action": action, "object": obj, "detail": detail})
    session.execute(insert(AuditRow.__table__), rows)


def audit_page(session: Session, *, limit: int, before: int | None = None) -> dict[str, Any]:
    """Newest first, ``limit`` rows with ids below ``before``; each with its seal (link seq and hash) once
    the control loop has sealed it, and ``next``, the ``before`` of the following page (None at the end)."""
    query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
    if before is not None:
        query = query.where(AuditRow.id < before)
    rows = session.scalars(query).all()
    seals = chain.seal_of(session, chain.AUDIT.chain, [r.id for r in rows])
    out = [{"id": r.id, "at": r.at, "actor": r.actor, "tenant_id": r.tenant_id, "action": r.action,
            "object": r.object, "detail": r.detail,
            "seal": {"seq": seals[r.id][0], "hash": seals[r.id][1]} if r.id in seals else None} for r in rows]
    return {"rows": out, "next": rows[-1].id if len(rows) == limit else None}
