"""The audit trail: one row per mutation, written in the mutation's own transaction.

Rows are append-only in the database (migration 0007's triggers); the control loop later seals them into
a hash chain (``services.chain``), so this insert takes no lock and stays off the mutation's hot path.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

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
