"""Dependency aliases used by every route: the session, the caller, the platform."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from suanwang.errors import SuanwangError
from suanwang.services.auth import Principal, authenticate, hash_token
from suanwang.services.platform import Platform

_CACHE_S = 10.0
_cache: dict[str, tuple[float, Principal]] = {}


class Unauthorized(SuanwangError):
    status_code = 401
    code = "unauthorized"


# The cheap dependencies are ``async``: FastAPI runs a plain ``def`` dependency in its thread pool, and
# two thread round trips per request cost more than the dependency itself.
async def get_platform(request: Request) -> Platform:
    return request.app.state.platform  # type: ignore[no-any-return]


PlatformDep = Annotated[Platform, Depends(get_platform)]


def get_session(platform: PlatformDep) -> Iterator[Session]:
    """One transaction per request: committed when the handler returns, rolled back on error."""
    with platform.db.transaction() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


async def get_principal(request: Request, platform: PlatformDep,
                        authorization: Annotated[str | None, Header()] = None) -> Principal:
    principal = await _principal(platform, authorization)
    request.state.token_id = principal.token_id  # for the request's log line (observability.http)
    return principal


async def _principal(platform: Platform, authorization: str | None) -> Principal:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    principal = await principal_of(platform, authorization[7:].strip())
    if principal is None:
        raise Unauthorized("unknown or revoked token")
    return principal


async def principal_of(platform: Platform, token: str) -> Principal | None:
    """The token's principal, from a short cache or the database; None for an unknown or revoked token."""
    key = hash_token(token)
    hit = _cache.get(key)
    now = time.monotonic()
    if hit and hit[0] > now:
        return hit[1]
    principal = await run_in_threadpool(_authenticate, platform, token)  # a cache miss reads the database
    if principal is not None:
        _cache[key] = (now + _CACHE_S, principal)
    return principal


async def tenant_of(platform: Platform, scope: dict[str, object]) -> str | None:
    """The caller's tenant for a raw ASGI request (middleware runs before the routes' dependencies)."""
    auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")  # type: ignore[call-overload]
    if not auth.lower().startswith("bearer "):
        return None
    principal = await principal_of(platform, auth[7:].strip())
    return principal.tenant_id if principal else None


def _authenticate(platform: Platform, token: str) -> Principal | None:
    with platform.db.sessions() as session:
        return authenticate(session, token)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
