"""Tenants, tokens and agent enrolment (who may call each: ``suanwang.api.permissions``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import Field

from suanwang.api.deps import AuthDep, ClockDep, CurrentPrincipal, PlatformDep, SessionDep, Unauthorized
from suanwang.api.guard import source_of
from suanwang.api.schemas import In, TenantIn, TokenIn
from suanwang.services import auth
from suanwang.services.audit import record_audit
from suanwang.services.auth import Refusal, Role, create_tenant, issue_token, token_json
from suanwang.services.sites import show_site

router = APIRouter(tags=["admin"])

Lifetime = Annotated[float | None, Field(default=None, gt=0, le=auth.MAX_LIFETIME_S)]


class RotateIn(In):
    lifetime_s: Lifetime = None  # none: as long as the old token was issued for


class EnrolmentIn(In):
    lifetime_s: float = Field(default=auth.DEFAULT_ENROL_LIFETIME_S, gt=0, le=auth.MAX_ENROL_LIFETIME_S)


class EnrolIn(In):
    enrol_token: str = Field(min_length=1, max_length=256)
    name: str = Field(default="", max_length=200)  # the tokens table's width


@router.post("/tenants", status_code=201)
def new_tenant(body: TenantIn, session: SessionDep, actor: CurrentPrincipal) -> dict[str, Any]:
    row = create_tenant(session, name=body.name, kind=body.kind)
    record_audit(session, actor, "tenant.create", row.id, name=body.name)
    return {"id": row.id, "name": row.name, "kind": row.kind}


@router.post("/tokens", status_code=201)
def new_token(body: TokenIn, session: SessionDep, actor: CurrentPrincipal) -> dict[str, Any]:
    """Issue a token; its plaintext is in this response only."""
    if body.site:
        show_site(session, body.site)  # 404 for an unknown site
    row, plaintext = issue_token(session, role=Role(body.role), tenant_id=body.tenant_id, site=body.site,
                                 name=body.name, lifetime_s=body.lifetime_s)
    record_audit(session, actor, "token.issue", row.id, role=body.role, tenant_id=body.tenant_id)
    return {**token_json(row), "token": plaintext}


@router.get("/tokens")
def list_tokens(session: SessionDep, actor: CurrentPrincipal, tenant_id: str | None = None,
                limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[dict[str, Any]]:
    """Tokens as listed: ids, roles, scope, expiry and revocation; never a hash or plaintext."""
    return [token_json(r) for r in auth.list_tokens(session, tenant_id=tenant_id, limit=limit)]


@router.post("/tokens/{token_id}/revoke")
def revoke_token(token_id: str, session: SessionDep, actor: CurrentPrincipal, state: AuthDep,
                 clock: ClockDep) -> dict[str, Any]:
    row = auth.revoke_token(session, token_id, now=clock.time())
    record_audit(session, actor, "token.revoke", row.id)
    state.cache.forget(row.id)  # this replica at once; the others within their cache time
    return token_json(row)


@router.post("/tokens/{token_id}/rotate", status_code=201)
def rotate_token(token_id: str, session: SessionDep, actor: CurrentPrincipal, state: AuthDep, clock: ClockDep,
                 body: RotateIn | None = None) -> dict[str, Any]:
    """A new token with the same role, tenant and site; the old one is revoked. The plaintext is shown once."""
    row, plaintext = auth.rotate_token(session, token_id, now=clock.time(),
                                       lifetime_s=body.lifetime_s if body else None)
    record_audit(session, actor, "token.rotate", token_id, new=row.id)
    state.cache.forget(token_id)
    return {**token_json(row), "token": plaintext, "replaces": token_id}


@router.post("/sites/{name}/enrolments", status_code=201)
def new_enrolment(name: str, session: SessionDep, actor: CurrentPrincipal, clock: ClockDep,
                  body: EnrolmentIn | None = None) -> dict[str, Any]:
    """A one-use enrolment token for a new agent of this site; its plaintext is in this response only."""
    body = body or EnrolmentIn()
    row, plaintext = auth.issue_enrolment(session, actor, name, now=clock.time(), lifetime_s=body.lifetime_s)
    record_audit(session, actor, "enrolment.issue", row.id, site=name)
    return {"id": row.id, "site": row.site, "enrol_token": plaintext, "expires_at": row.expires_at}


@router.post("/agent/enrol", status_code=201)
def enrol(body: EnrolIn, request: Request, platform: PlatformDep, state: AuthDep, clock: ClockDep) -> dict[str, Any]:
    """Trade a one-use enrolment token for this site's agent token (shown once); a second use answers 401."""
    with platform.db.transaction() as session:
        issued = auth.redeem_enrolment(session, body.enrol_token, now=clock.time(), name=body.name)
        if issued is not None:
            record_audit(session, None, "agent.enrol", issued[0].id, site=issued[0].site)
    if issued is None:  # recorded after the transaction above: SQLite has one writer at a time
        state.refusals.record(state.db, source=source_of(request.scope), reason=Refusal.ENROLMENT,
                              method="POST", path=request.url.path)
        raise Unauthorized("unknown, used or expired enrolment token")
    row, plaintext = issued
    return {"id": row.id, "token": plaintext, "role": row.role, "tenant_id": row.tenant_id, "site": row.site}


@router.get("/whoami")
def whoami(actor: CurrentPrincipal) -> dict[str, Any]:
    return {"role": actor.role, "tenant_id": actor.tenant_id, "site": actor.site, "token_id": actor.token_id,
            "expires_at": actor.expires_at}
