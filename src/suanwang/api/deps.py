"""Dependency aliases used by every route: the session, the caller, the platform, the clock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.types import Scope

from suanwang.api.guard import PRINCIPAL_KEY, AuthState
from suanwang.clock import Clock
from suanwang.errors import SuanwangError
from suanwang.services.auth import Principal
from suanwang.services.platform import Platform


class Unauthorized(SuanwangError):
    status_code = 401
    code = "unauthorized"


# The cheap dependencies are ``async``: FastAPI runs a plain ``def`` dependency in its thread pool, and
# two thread round trips per request cost more than the dependency itself.
async def get_platform(request: Request) -> Platform:
    return request.app.state.platform  # type: ignore[no-any-return]


PlatformDep = Annotated[Platform, Depends(get_platform)]


async def get_clock(request: Request) -> Clock:
    """The clock ``create_app`` was given: routes pass it to the services instead of reading the time."""
    return request.app.state.clock  # type: ignore[no-any-return]


ClockDep = Annotated[Clock, Depends(get_clock)]


def get_session(platform: PlatformDep) -> Iterator[Session]:
    """One transaction per request: committed when the handler returns, rolled back on error."""
    with platform.db.transaction() as session:
        yield session


# scope="function": commit before the response is sent, so a client that reads what it just wrote finds it
# (by default FastAPI runs the code after ``yield`` once the response is out: a race on PostgreSQL).
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_principal(request: Request) -> Principal:
    """The caller, as the gate (``suanwang.api.guard``) authenticated it before the body was read."""
    principal: Principal | None = request.scope.get(PRINCIPAL_KEY)
    if principal is None:  # a public route asked for a caller: a table entry and a route disagree
        raise Unauthorized("this route needs a bearer token (Authorization: Bearer <token>)")
    request.state.token_id = principal.token_id  # for the request's log line (observability.http)
    return principal


async def tenant_of(scope: Scope) -> str | None:
    """The caller's tenant for a raw ASGI request, as the gate authenticated it (None on a public route)."""
    principal = scope.get(PRINCIPAL_KEY)
    return principal.tenant_id if isinstance(principal, Principal) else None


async def get_auth(request: Request) -> AuthState:
    return request.app.state.auth  # type: ignore[no-any-return]


AuthDep = Annotated[AuthState, Depends(get_auth)]
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
