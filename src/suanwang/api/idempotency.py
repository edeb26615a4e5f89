"""``Idempotency-Key`` on every POST: a retry gets the first answer, a reused key with another body a 409.

A pure ASGI middleware around the routes, so every POST that moves money or
creates something gets the same rule without each route repeating it.  Routes
that move money also key what they book (ledger transfer keys, a job's client
key), in their own transaction: this layer makes retries answer alike, those
keys make a crash between the two harmless.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from suanwang.domain.idempotency import Decision, check_key, fingerprint
from suanwang.services import idempotency
from suanwang.store.db import Database

TenantOf = Callable[[Scope], Awaitable[str | None]]
"""The caller's tenant id, or None when the request carries no valid token (then the routes answer 401)."""


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, *, db: Database, tenant_of: TenantOf) -> None:
        self.app = app
        self.db = db
        self.tenant_of = tenant_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        raw = dict(scope["headers"]).get(b"idempotency-key")
        if raw is None:
            await self.app(scope, receive, send)
            return
        key = raw.decode("latin-1")
        if (problem := check_key(key)) is not None:
            await _json(send, 422, {"error": "invalid_request", "detail": problem})
            return
        tenant = await self.tenant_of(scope)
        if tenant is None:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        fp = fingerprint("POST", scope["path"], body)
        decision, row = await run_in_threadpool(idempotency.claim, self.db, tenant, key, fp)
        if decision is Decision.MISMATCH:
            await _json(send, 409, {"error": "idempotency_key_reused", "detail": (
                f"Idempotency-Key {key!r} was used for a different request; use a new key for a new request")})
        elif decision is Decision.IN_PROGRESS:
            await _json(send, 409, {"error": "idempotency_key_in_use", "detail": (
                f"a request with Idempotency-Key {key!r} is still running; retry in a moment")},
                headers=[(b"retry-after", b"1")])
        elif decision is Decision.REPLAY:
            assert row is not None
            await _send(send, row.status, row.body, [(b"content-type", row.content_type.encode()),
                                                     (b"idempotent-replayed", b"true")])
        else:
            await self._run(scope, _replay(body, receive), send, tenant, key)

    async def _run(self, scope: Scope, receive: Receive, send: Send, tenant: str, key: str) -> None:
        """Run the route, store its answer, then send it: a client that saw an answer finds it stored."""
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, receive, capture)
        except BaseException:
            await run_in_threadpool(idempotency.answer, self.db, tenant, key, 500, "", b"")
            raise
        assert start is not None
        body = b"".join(chunks)
        ctype = dict(start.get("headers", [])).get(b"content-type", b"").decode("latin-1")
        await run_in_threadpool(idempotency.answer, self.db, tenant, key, start["status"], ctype, body)
        await send(start)
        await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, payload: dict[str, Any],
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await _send(send, status, json.dumps(payload).encode(), [(b"content-type", b"application/json"), *(headers or [])])
