"""The audit trail over HTTP: list its rows, and verify the audit and ledger hash chains.

Both are for the operator and the auditor only (api/permissions.py): audit rows name every tenant's actions.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from suanwang.api.deps import CurrentPrincipal, PlatformDep, SessionDep
from suanwang.services import audit, chain

router = APIRouter(tags=["audit"])
MAX_ID = 2**31 - 1  # audit.id is an INTEGER column: PostgreSQL refuses a wider value in a comparison


@router.get("/audit")
def list_audit(
    session: SessionDep, actor: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="rows with a smaller id (a page's next)")] = None,
) -> dict[str, Any]:
    """Newest first; each row with its seal (link seq and hash) once the control loop has sealed it."""
    return audit.audit_page(session, limit=limit, before=before)


@router.get("/audit/verify")
def verify_chains(platform: PlatformDep, actor: CurrentPrincipal) -> dict[str, Any]:
    """Recompute the audit and ledger chains from the rows as stored now (reads in its own short
    transactions: no request transaction, which on SQLite would hold the writer lock for the walk)."""
    return chain.verify(platform.db).as_json()
