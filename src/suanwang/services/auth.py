"""Tokens, principals and enrolments.

Tokens are random strings shown once; only their SHA-256 is stored, and the
stored hash is compared in constant time after the lookup.  A token may expire
(``expires_at``), be revoked, or be rotated (a new token with the same role,
tenant and site; the old one revoked).  Which role may call which route is
decided in one place, ``suanwang.api.permissions``; services keep only the
object-level rules (another tenant's object answers ``NotFound``, exactly as
if it did not exist).

An enrolment token is a one-use token for a site: a new agent trades it once
(``redeem_enrolment``) for its site's agent token.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, fields

from prometheus_client import Counter
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from suanwang.clock import SYSTEM_CLOCK, Clock
from suanwang.errors import Conflict, InvalidSpec, NotFound
from suanwang.store.db import rowcount
from suanwang.store.tables import EnrolmentRow, SiteRow, TenantRow, TokenRow

TOKEN_PREFIX = "sw_"  # nosec B105  # a marker that makes leaked tokens greppable, not a secret
ENROL_PREFIX = "swe_"  # nosec B105  # likewise
MAX_LIFETIME_S = 10 * 366 * 86400  # ten years: a longer lifetime is a mistake, not a wish
MAX_ENROL_LIFETIME_S = 7 * 86400  # an enrolment token is for installing an agent, not for keeping
DEFAULT_ENROL_LIFETIME_S = 3600.0

AUTH_FAILURES = Counter("suanwang_auth_failures_total", "Refused authentications, by reason", ["reason"])


@enum.unique
class Role(enum.StrEnum):
    OPERATOR = "operator"  # runs the platform; sees and changes everything
    PROVIDER = "provider"  # owns sites and pools
    CONSUMER = "consumer"  # submits jobs and pays
    AUDITOR = "auditor"  # reads everything, changes nothing
    AGENT = "agent"  # one site's agent: sees only that site's work


@enum.unique
class Refusal(enum.StrEnum):
    """Why a presented credential was refused (the label of ``suanwang_auth_failures_total``)."""

    MISSING = "missing"  # no Authorization: Bearer header
    UNKNOWN = "unknown"  # no such token
    REVOKED = "revoked"
    EXPIRED = "expired"
    ENROLMENT = "enrolment"  # an enrolment token unknown, used or expired


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: str
    role: Role
    tenant_id: str
    site: str | None = None
    expires_at: float | None = None

    @property
    def sees_all(self) -> bool:
        return self.role in (Role.OPERATOR, Role.AUDITOR)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def check_lifetime(lifetime_s: float | None, *, limit_s: float = MAX_LIFETIME_S) -> None:
    """A lifetime is a finite number of seconds in (0, limit]; refuse NaN, infinities and absurd sizes."""
    if lifetime_s is None:
        return
    if not (0 < lifetime_s <= limit_s):  # also false for NaN
        raise InvalidSpec(f"lifetime_s must be more than 0 and at most {limit_s:.0f} s, not {lifetime_s!r}")


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    kind: str  # operator | provider | consumer | auditor


@dataclass(frozen=True, slots=True)
class Token:
    """A token as listed: never its hash or plaintext."""

    id: str
    role: str
    tenant_id: str
    site: str | None
    name: str
    created_at: float
    expires_at: float | None  # None: no expiry
    revoked: bool
    revoked_at: float | None
    rotated_to: str | None  # the token that replaced this one

    @classmethod
    def of(cls, row: TokenRow) -> Token:
        return cls(id=row.id, role=row.role, tenant_id=row.tenant_id, site=row.site, name=row.name,
                   created_at=row.created_at, expires_at=row.expires_at, revoked=row.revoked,
                   revoked_at=row.revoked_at, rotated_to=row.rotated_to)


@dataclass(frozen=True, slots=True)
class Enrolment:
    """A one-use enrolment token of a site (its plaintext is returned beside it, once)."""

    id: str
    site: str
    expires_at: float


def create_tenant(
    session: Session, *, name: str, kind: str, tenant_id: str | None = None, clock: Clock = SYSTEM_CLOCK
) -> Tenant:
    if session.scalar(select(TenantRow).where(TenantRow.name == name)) is not None:
        raise Conflict(f"a tenant named {name!r} already exists")
    row = TenantRow(id=tenant_id or new_id("t"), name=name, kind=kind, created_at=clock.time(), attrs={})
    session.add(row)
    session.flush()
    return Tenant(id=row.id, name=row.name, kind=row.kind)


def issue_token(
    session: Session, *, role: Role, tenant_id: str, site: str | None = None, name: str = "",
    lifetime_s: float | None = None, now: float | None = None, clock: Clock = SYSTEM_CLOCK,
) -> tuple[Token, str]:
    """Create a token; returns it and its plaintext, which is never stored."""
    if session.get(TenantRow, tenant_id) is None:
        raise NotFound(f"tenant {tenant_id} not found")
    if role is Role.AGENT and not site:
        raise InvalidSpec("an agent token needs a site")
    check_lifetime(lifetime_s)
    now = clock.time() if now is None else now
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = TokenRow(
        id=new_id("tok"), token_hash=hash_token(plaintext), role=role.value, tenant_id=tenant_id, site=site,
        name=name, created_at=now, revoked=False, expires_at=None if lifetime_s is None else now + lifetime_s,
    )
    session.add(row)
    session.flush()
    return Token.of(row), plaintext


def authenticate(session: Session, token: str, *, now: float) -> Principal | Refusal:
    """The principal a bearer token stands for, or why it is refused."""
    digest = hash_token(token)
    row = session.scalar(select(TokenRow).where(TokenRow.token_hash == digest))
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return Refusal.UNKNOWN
    if row.revoked:
        return Refusal.REVOKED
    if row.expires_at is not None and row.expires_at <= now:
        return Refusal.EXPIRED
    return Principal(token_id=row.id, role=Role(row.role), tenant_id=row.tenant_id, site=row.site,
                     expires_at=row.expires_at)


def token_json(token: Token) -> dict[str, object]:
    """A token as the API lists it (its fields, in their order)."""
    return {f: getattr(token, f) for f in _TOKEN_FIELDS}


_TOKEN_FIELDS = tuple(f.name for f in fields(Token))


def list_tokens(session: Session, *, tenant_id: str | None = None, limit: int = 1000) -> list[Token]:
    query = select(TokenRow).order_by(TokenRow.created_at, TokenRow.id).limit(limit)
    if tenant_id:
        query = query.where(TokenRow.tenant_id == tenant_id)
    return [Token.of(row) for row in session.scalars(query)]


def _live_token(session: Session, token_id: str) -> TokenRow:
    row = session.get(TokenRow, token_id, with_for_update=True)
    if row is None:
        raise NotFound(f"token {token_id} not found")
    if row.revoked:
        raise Conflict(f"token {token_id} is already revoked")
    return row


def revoke_token(session: Session, token_id: str, *, now: float) -> Token:
    row = _live_token(session, token_id)
    row.revoked, row.revoked_at = True, now
    session.flush()
    return Token.of(row)


def rotate_token(
    session: Session, token_id: str, *, now: float, lifetime_s: float | None = None
) -> tuple[Token, str]:
    """A new token with the old one's role, tenant, site and name; the old one is revoked in the same transaction.

    Without ``lifetime_s`` the new token lives as long as the old one was issued for (or forever, if it was).
    """
    old = _live_token(session, token_id)
    if lifetime_s is None and old.expires_at is not None:
        lifetime_s = min(max(old.expires_at - old.created_at, 1.0), MAX_LIFETIME_S)
    row, plaintext = issue_token(session, role=Role(old.role), tenant_id=old.tenant_id, site=old.site,
                                 name=old.name, lifetime_s=lifetime_s, now=now)
    old.revoked, old.revoked_at, old.rotated_to = True, now, row.id
    session.flush()
    return row, plaintext


def issue_enrolment(
    session: Session, actor: Principal, site: str, *, now: float, lifetime_s: float | None = None
) -> tuple[Enrolment, str]:
    """A one-use enrolment token for ``site``; a provider may enrol agents only for its own sites."""
    row = session.get(SiteRow, site)
    if row is None or (actor.role is Role.PROVIDER and row.tenant_id != actor.tenant_id):
        raise NotFound(f"site {site!r} not found")
    lifetime_s = DEFAULT_ENROL_LIFETIME_S if lifetime_s is None else lifetime_s
    check_lifetime(lifetime_s, limit_s=MAX_ENROL_LIFETIME_S)
    plaintext = ENROL_PREFIX + secrets.token_urlsafe(32)
    enrolment = EnrolmentRow(id=new_id("enr"), token_hash=hash_token(plaintext), site=site, tenant_id=row.tenant_id,
                             issued_by=actor.token_id, created_at=now, expires_at=now + lifetime_s)
    session.add(enrolment)
    session.flush()
    return Enrolment(id=enrolment.id, site=enrolment.site, expires_at=enrolment.expires_at), plaintext


def redeem_enrolment(session: Session, enrol_token: str, *, now: float, name: str = "") -> tuple[Token, str] | None:
    """Trade an enrolment token for a fresh agent token, once; ``None`` when it is unknown, used or expired.

    The UPDATE that marks it used is also the check, so two agents racing with one token get one agent
    token between them on SQLite and PostgreSQL alike.
    """
    digest = hash_token(enrol_token)
    row = session.scalar(select(EnrolmentRow).where(EnrolmentRow.token_hash == digest))
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    claimed = session.execute(
        update(EnrolmentRow)
        .where(EnrolmentRow.id == row.id, EnrolmentRow.used_at.is_(None), EnrolmentRow.expires_at > now)
        .values(used_at=now)
    )
    if rowcount(claimed) != 1:
        return None
    token, plaintext = issue_token(session, role=Role.AGENT, tenant_id=row.tenant_id, site=row.site,
                                   name=name or f"agent of {row.site} (enrolled)", now=now)
    session.execute(update(EnrolmentRow).where(EnrolmentRow.id == row.id).values(token_id=token.id))
    return token, plaintext
