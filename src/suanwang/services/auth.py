"""Tokens, principals and role checks.

Tokens are random strings shown once; only their SHA-256 is stored.  Every
object belongs to a tenant: a principal that may not see an object gets
``NotFound``, exactly as if it did not exist.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.errors import Forbidden, NotFound
from suanwang.store.tables import TenantRow, TokenRow

TOKEN_PREFIX = "sw_"  # nosec B105  # a marker that makes leaked tokens greppable, not a secret


@enum.unique
class Role(enum.StrEnum):
    OPERATOR = "operator"  # runs the platform; sees and changes everything
    PROVIDER = "provider"  # owns sites and pools
    CONSUMER = "consumer"  # submits jobs and pays
    AUDITOR = "auditor"  # reads everything, changes nothing
    AGENT = "agent"  # one site's agent: sees only that site's work


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: str
    role: Role
    tenant_id: str
    site: str | None = None

    @property
    def sees_all(self) -> bool:
        return self.role in (Role.OPERATOR, Role.AUDITOR)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def require(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        allowed = ", ".join(sorted(r.value for r in roles))
        raise Forbidden(f"a {principal.role} token may not do this (needs {allowed})")


def create_tenant(session: Session, *, name: str, kind: str, tenant_id: str | None = None) -> TenantRow:
    if session.scalar(select(TenantRow).where(TenantRow.name == name)) is not None:
        from suanwang.errors import Conflict

        raise Conflict(f"a tenant named {name!r} already exists")
    row = TenantRow(id=tenant_id or new_id("t"), name=name, kind=kind, created_at=time.time(), attrs={})
    session.add(row)
    session.flush()
    return row


def issue_token(
    session: Session, *, role: Role, tenant_id: str, site: str | None = None, name: str = ""
) -> tuple[TokenRow, str]:
    """Create a token; returns the row and the plaintext, which is never stored."""
    if session.get(TenantRow, tenant_id) is None:
        raise NotFound(f"tenant {tenant_id} not found")
    if role is Role.AGENT and not site:
        from suanwang.errors import InvalidSpec

        raise InvalidSpec("an agent token needs a site")
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = TokenRow(
        id=new_id("tok"),
        token_hash=hash_token(plaintext),
        role=role.value,
        tenant_id=tenant_id,
        site=site,
        name=name,
        created_at=time.time(),
        revoked=False,
    )
    session.add(row)
    session.flush()
    return row, plaintext


def authenticate(session: Session, token: str) -> Principal | None:
    row = session.scalar(select(TokenRow).where(TokenRow.token_hash == hash_token(token)))
    if row is None or row.revoked:
        return None
    return Principal(token_id=row.id, role=Role(row.role), tenant_id=row.tenant_id, site=row.site)
