"""The request-id and access-log middleware (pure ASGI: no extra task or body copy per request).

Per request: take the caller's ``X-Request-ID`` when sane or make one, return
it in the response header, and log one line with method, path template,
status, duration and the caller's token id (set by the auth dependency as
``request.state.token_id``; never the token).  An exception no handler
mapped is logged here with its traceback and answered as a plain 500 that
names the request id, so a traceback never reaches a response.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from suanwang.observability.logs import HEADER, REQUEST_ID, sane_request_id
from suanwang.observability.metrics import REQUEST_SECONDS, REQUESTS

log = logging.getLogger("suanwang.http")
_HEADER_KEY = HEADER.lower().encode()


def route_template(scope: Scope) -> str:
    """The matched route's path (``/api/v1/jobs/{job_id}``), so logs and metrics never carry ids."""
    # FastAPI >= 0.13x keeps an included router's routes unprefixed and records the full template here;
    # older versions copy each route with its prefix into ``scope["route"]``.
    fastapi_scope = scope.get("fastapi")
    context = fastapi_scope.get("effective_route_context") if isinstance(fastapi_scope, dict) else None
    path = getattr(context, "path_format", None) or getattr(scope.get("route"), "path", None)
    return path or "<unmatched>"


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v.decode("latin-1") for k, v in scope["headers"] if k == _HEADER_KEY), None)
        request_id = sane_request_id(incoming)
        token = REQUEST_ID.set(request_id)
        state = scope.setdefault("state", {})
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", []), (_HEADER_KEY, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            status = 500
            if not response_started:
                await _internal_error(send_with_id, request_id)
        finally:
            duration_s = time.perf_counter() - started
            route = route_template(scope)
            _count(scope["method"], route, status, duration_s)
            fields: dict[str, Any] = {"request_id": request_id, "method": scope["method"], "path": route,
                                      "status": status, "duration_ms": round(duration_s * 1000, 2),
                                      "token_id": state.get("token_id") if isinstance(state, dict) else None}
            log.info("%s %s %s", scope["method"], route, status, extra=fields)
            REQUEST_ID.reset(token)


_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}  # labelled series, looked up once (labels() is slow)


def _count(method: str, route: str, status: int, duration_s: float) -> None:
    key = (method, route, status)
    child = _children.get(key)
    if child is None:  # bounded: methods x route templates x statuses
        child = _children[key] = (REQUESTS.labels(method, route, str(status)), REQUEST_SECONDS.labels(method, route))
    child[0].inc()
    child[1].observe(duration_s)


async def _internal_error(send: Send, request_id: str) -> None:
    body = json.dumps({"error": "internal", "detail": f"internal error; quote request id {request_id}",
                       "request_id": request_id}).encode()
    await send({"type": "http.response.start", "status": 500,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
