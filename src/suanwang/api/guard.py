"""The gate every HTTP request passes before its body is read: authentication, permission, rate and size.

One ASGI middleware, so that a caller without a valid token gets 401 and a role
the permission table refuses gets 403 before anything parses the request (a
route's own dependencies run only after FastAPI has read and validated the body).
Order: match the route (no entry in the table → 403, fail closed), a public
route skips the token, then token → 401, role → 403, rate → 429, declared
size → 413 (a streamed body is counted as it arrives and stopped with 413
at the cap).

Principals are cached per process for at most ``cache_s`` (0.8 s by default)
after they were read from the database, so a revocation holds on every replica
within that time; revoking on this replica drops its entry at once, and expiry
is checked on every request.  Past half its age a cached entry is read again in
the background, so a busy token never waits for the database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi.routing import iter_route_contexts
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from suanwang.api.permissions import Rule, rule_for
from suanwang.services.audit import record_audit
from suanwang.services.auth import AUTH_FAILURES, Principal, Refusal, authenticate, hash_token
from suanwang.store.db import Database

log = logging.getLogger("suanwang.auth")

PRINCIPAL_KEY = "suanwang.principal"
_NO_ENTRY = Rule(roles=frozenset(), scope="no entry in the permission table")
_MAX_ENTRIES = 10_000  # bound on each per-token / per-source map; past it the stale half is dropped


@dataclass(frozen=True, slots=True)
class GuardSettings:
    rate_per_s: float = 1000.0  # sustained requests per second per token (agents' lease and heartbeat exempt)
    burst: float = 2000.0  # requests a token may send at once
    max_body_bytes: int = 8 * 1024 * 1024  # larger request bodies answer 413
    cache_s: float = 0.8  # how long a validated token is trusted without reading the database again (≤ 1 s)


@dataclass
class PrincipalCache:
    """Validated tokens by hash, trusted for ``ttl_s`` of ``clock`` time."""

    ttl_s: float
    clock: Callable[[], float] = time.monotonic
    _entries: dict[str, tuple[float, Principal]] = field(default_factory=dict)

    def get(self, digest: str) -> Principal | None:
        hit = self.peek(digest)
        return hit[0] if hit else None

    def peek(self, digest: str) -> tuple[Principal, float] | None:
        """The cached principal and its age, while younger than ``ttl_s``."""
        hit = self._entries.get(digest)
        if hit is None:
            return None
        age = self.clock() - hit[0]
        return (hit[1], age) if age < self.ttl_s else None

    def drop(self, digest: str) -> None:
        self._entries.pop(digest, None)

    def put(self, digest: str, principal: Principal) -> None:
        if len(self._entries) >= _MAX_ENTRIES:
            self._entries.clear()
        self._entries[digest] = (self.clock(), principal)

    def forget(self, token_id: str) -> None:
        """Drop a revoked or rotated token at once on this replica (others within ``ttl_s``)."""
        for digest in [d for d, (_, p) in self._entries.items() if p.token_id == token_id]:
            self._entries.pop(digest, None)


@dataclass
class TokenBuckets:
    """One token bucket per token: ``rate_per_s`` refill, ``burst`` capacity."""

    rate_per_s: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """Take one request; returns 0 when allowed, else the seconds until one is."""
        now = self.clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate_per_s)
        if tokens >= 1.0:
            if len(self._buckets) >= _MAX_ENTRIES and key not in self._buckets:
                self._buckets.clear()
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate_per_s


@dataclass
class RefusalLog:
    """Refused authentications go to the audit log, at most one row per source per ``every_s``, with a count.

    An attacker hammering with bad tokens therefore costs the database one row a second per address, and
    the row's ``count`` says how many refusals it stands for (those since the previous row).
    """

    every_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    _last: dict[str, tuple[float, int]] = field(default_factory=dict)  # source -> (last row at, refusals since)

    def due(self, source: str) -> int:
        """Count one refusal; returns how many the row to write now stands for, or 0 when it waits."""
        now = self.clock()
        at, pending = self._last.get(source, (-math.inf, 0))
        if now - at >= self.every_s:
            if len(self._last) >= _MAX_ENTRIES:
                self._last = {s: v for s, v in self._last.items() if now - v[0] < self.every_s}
            self._last[source] = (now, 0)
            return pending + 1
        self._last[source] = (at, pending + 1)
        return 0

    def count(self, source: str, reason: Refusal) -> int:
        """Count a refusal in the metric; returns the ``count`` of the audit row now due, or 0."""
        AUTH_FAILURES.labels(reason=reason.value).inc()
        return self.due(source)

    @staticmethod
    def write(db: Database, *, source: str, reason: Refusal, count: int, method: str, path: str) -> None:
        """The audit row (its own transaction); never fails the request it refuses."""
        try:
            with db.transaction() as session:
                record_audit(session, None, "auth.refused", source, reason=reason.value, count=count,
                             method=method, path=path[:200])
        except Exception:  # the audit store being down must not turn a 401 into a 500
            log.exception("could not record a refused authentication from %s", source)

    def record(self, db: Database, *, source: str, reason: Refusal, method: str, path: str) -> None:
        """``count`` then ``write`` when due, for callers already off the event loop."""
        if count := self.count(source, reason):
            self.write(db, source=source, reason=reason, count=count, method=method, path=path)


@dataclass
class AuthState:
    """What the gate keeps between requests; created once per application (the composition root)."""

    db: Database
    settings: GuardSettings
    cache: PrincipalCache
    buckets: TokenBuckets
    refusals: RefusalLog
    wall: Callable[[], float] = time.time  # token expiry is wall-clock time, as stored

    @classmethod
    def create(cls, db: Database, settings: GuardSettings | None = None) -> AuthState:
        s = settings or GuardSettings()
        return cls(db=db, settings=s, cache=PrincipalCache(s.cache_s), buckets=TokenBuckets(s.rate_per_s, s.burst),
                   refusals=RefusalLog())

    def cached(self, digest: str) -> Principal | None:
        principal = self.cache.get(digest)
        if principal is not None and (principal.expires_at is None or principal.expires_at > self.wall()):
            return principal
        return None

    def revalidate(self, token: str) -> None:
        """Read a cached token again (in the background, before its entry runs out)."""
        digest = hash_token(token)
        with self.db.sessions() as session:
            found = authenticate(session, token, now=self.wall())
        if isinstance(found, Principal):
            self.cache.put(digest, found)
        else:
            self.cache.drop(digest)

    def lookup(self, token: str) -> Principal | Refusal:
        """The principal of a bearer token: from the cache while fresh and unexpired, else the database."""
        digest = hash_token(token)
        if (principal := self.cached(digest)) is not None:
            return principal
        with self.db.sessions() as session:
            found = authenticate(session, token, now=self.wall())
        if isinstance(found, Principal):
            self.cache.put(digest, found)
        return found


def source_of(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _json(status: int, error: str, detail: str, headers: dict[str, str] | None = None,
          **extra: object) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = json.dumps({"error": error, "detail": detail, **extra}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return status, raw, body


class _Routes:
    """The application's routes in dispatch order, each with its permission rule."""

    def __init__(self, app: object) -> None:
        self.entries: list[tuple[re.Pattern[str], frozenset[str], Rule]] = []
        for route in iter_route_contexts(app.routes):  # type: ignore[attr-defined]
            path, methods = route.path, route.methods
            if path is None or not methods:
                continue
            regex, _, _ = compile_path(path)
            for method in methods:
                self.entries.append((regex, frozenset({method}), rule_for(method, path) or _NO_ENTRY))

    def match(self, method: str, path: str) -> Rule | None:
        for regex, methods, rule in self.entries:
            if method in methods and regex.match(path):
                return rule
        return None  # no route: let the router answer 404 or 405


class Guard:
    """The ASGI middleware; ``create_app`` registers it with the application's ``AuthState``."""

    def __init__(self, app: ASGIApp, state: AuthState) -> None:
        self.app = app
        self.state = state
        self._routes: _Routes | None = None
        self._refreshing: dict[str, asyncio.Future[None]] = {}  # token hash -> its read-ahead (kept referenced)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = await self._check(scope)
        if refused is None:
            await self.app(scope, self._capped(receive), send)
            return
        status, headers, body = refused
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _check(self, scope: Scope) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        if self._routes is None:
            self._routes = _Routes(scope["app"])
        method, path = scope["method"], _route_path(scope)
        rule = self._routes.match(method, path)
        if rule is None:
            return None
        if rule is _NO_ENTRY:
            log.error("refused %s %s: the route has no entry in the permission table", method, path)
            return _json(403, "forbidden", f"{method} {path} has no entry in the permission table")
        headers = dict(scope["headers"])
        if not rule.public:
            found = await self._authenticate(headers.get(b"authorization"))
            if not isinstance(found, Principal):
                source = source_of(scope)
                if count := self.state.refusals.count(source, found):
                    await run_in_threadpool(self.state.refusals.write, self.state.db, source=source, reason=found,
                                            count=count, method=method, path=path)
                return _json(401, "unauthorized", _REFUSAL_TEXT[found], {"WWW-Authenticate": "Bearer"})
            if found.role not in rule.roles:
                allowed = ", ".join(sorted(r.value for r in rule.roles))
                return _json(403, "forbidden", f"a {found.role} token may not call {method} {path} "
                             f"(allowed: {allowed})")
            if rule.metered and (wait_s := self.state.buckets.take(found.token_id)) > 0:
                retry = max(1, math.ceil(wait_s))
                return _json(429, "rate_limited", f"too many requests for this token; retry after {retry} s",
                             {"Retry-After": str(retry)}, retry_after_s=retry)
            scope[PRINCIPAL_KEY] = found
        return self._check_size(headers.get(b"content-length"))

    def _capped(self, receive: Receive) -> Receive:
        """``receive`` that stops a body growing past the cap while it streams in (no Content-Length)."""
        cap, seen = self.state.settings.max_body_bytes, 0

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:  # FastAPI re-raises an HTTPException met while reading the body: a 413, not a 400
                    raise HTTPException(413, f"the request body exceeds the limit of {cap} bytes")
            return message

        return capped

    async def _authenticate(self, header: bytes | None) -> Principal | Refusal:
        if not header or header[:7].lower() != b"bearer ":
            return Refusal.MISSING
        token = header[7:].decode("latin-1").strip()
        if not token or len(token) > 256:  # ours are 46 characters; do not hash a megabyte
            return Refusal.UNKNOWN
        digest = hash_token(token)
        hit = self.state.cache.peek(digest)
        if hit is not None and (hit[0].expires_at is None or hit[0].expires_at > self.state.wall()):
            if hit[1] >= self.state.cache.ttl_s / 2 and digest not in self._refreshing:
                self._refreshing[digest] = asyncio.ensure_future(self._refresh(token, digest))
            return hit[0]  # the common case stays on the event loop; a read ahead keeps it there
        return await run_in_threadpool(self.state.lookup, token)

    async def _refresh(self, token: str, digest: str) -> None:
        try:
            await run_in_threadpool(self.state.revalidate, token)
        except Exception:  # the next request past the entry's age reads the database itself
            log.exception("could not revalidate a cached token")
        finally:
            self._refreshing.pop(digest, None)

    def _check_size(self, declared: bytes | None) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        cap = self.state.settings.max_body_bytes
        if declared is not None and declared.isdigit() and (len(declared) > 18 or int(declared) > cap):
            return _json(413, "too_large", f"the request body is {declared[:20].decode()} bytes; the limit is {cap}")
        return None


_REFUSAL_TEXT = {
    Refusal.MISSING: "missing bearer token (Authorization: Bearer <token>)",
    Refusal.UNKNOWN: "unknown token",
    Refusal.REVOKED: "this token was revoked",
    Refusal.EXPIRED: "this token has expired",
}


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path
