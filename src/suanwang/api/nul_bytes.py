"""A NUL byte in a request's path or query is refused before any route sees it.

Why: PostgreSQL text cannot hold a NUL byte, so a ``%00`` in a path or query value reached the database
as a 500 on every route that looks the value up (SQLite quietly matched nothing).  No name, id or filter
of this API contains one, so the request is refused here once, not in each route.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send


def has_nul(scope: Scope) -> bool:
    """Whether the request's path or query string carries a NUL byte, raw or percent-encoded."""
    query = scope.get("query_string", b"")
    return "\x00" in scope.get("path", "") or b"\x00" in query or b"%00" in query


class RejectNul:
    """ASGI middleware: a path or query holding a NUL byte is a 422 naming the problem."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and has_nul(scope):
            detail = "the URL's path or query holds a NUL byte (%00), which no name, id or filter may contain"
            response = JSONResponse({"error": "invalid_request", "detail": detail}, status_code=422)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
