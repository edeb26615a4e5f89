"""Tenants and tokens (operator only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from suanwang.api.deps import CurrentPrincipal, SessionDep
from suanwang.api.schemas import TenantIn, TokenIn
from suanwang.services.audit import record_audit
from suanwang.services.auth import Role, create_tenant, issue_token, require
from suanwang.services.sites import get_site

router = APIRouter(tags=["admin"])


@router.post("/tenants", status_code=201)
def new_tenant(body: TenantIn, session: SessionDep, actor: CurrentPrincipal) -> dict[str, Any]:
    require(actor, Role.OPERATOR)
    row = create_tenant(session, name=body.name, kind=body.kind)
    record_audit(session, actor, "tenant.create", row.id, name=body.name)
    return {"id": row.id, "name": row.name, "kind": row.kind}


@router.post("/tokens", status_code=201)
def new_token(body: TokenIn, session: SessionDep, actor: CurrentPrincipal) -> dict[str, Any]:
    """Issue a token; its plaintext is in this response only."""
    require(actor, Role.OPERATOR)
    if body.site:
        get_site(session, body.site)
    row, plaintext = issue_token(session, role=Role(body.role), tenant_id=body.tenant_id, site=body.site, name=body.name)
    record_audit(session, actor, "token.issue", row.id, role=body.role, tenant_id=body.tenant_id)
    return {"id": row.id, "token": plaintext, "role": row.role, "tenant_id": row.tenant_id, "site": row.site}


@router.get("/whoami")
def whoami(actor: CurrentPrincipal) -> dict[str, Any]:
    return {"role": actor.role, "tenant_id": actor.tenant_id, "site": actor.site, "token_id": actor.token_id}
