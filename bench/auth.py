"""What authentication and permission checking add per request, at p99.

    python bench/auth.py [--quick] [--runs N]

In-process (httpx.AsyncClient over ASGITransport, no sockets), SQLite, one
event loop.  The same cheap route (GET /api/v1/whoami) is timed on two apps
built from one platform in the SAME run: one with the gate (token lookup with
its 0.8 s principal cache, route match against the permission table, rate
bucket, size check), one with the gate removed and the caller injected
(``dependency_overrides``).  Requests alternate one by one between the apps,
so a noisy moment on a shared machine falls on both.  The gate also times its
own decision (``gate_p99_ms``): the direct measure of what it adds, less
exposed to noise than a difference of two p99s.  A third app with the principal cache
off (ttl 0: every request reads the token from the database) shows the cost of
a cache miss.  Writes bench/results/auth.json; the last line printed is one
JSON object with ``auth_added_p99_ms`` (target ≤ 1 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import ClassVar

import httpx
from fastapi import FastAPI

from suanwang.api.app import create_app
from suanwang.api.deps import get_principal
from suanwang.api.guard import Guard, GuardSettings
from suanwang.services.auth import Principal, Role
from suanwang.services.bootstrap import bootstrap
from suanwang.services.platform import Platform, Settings
from suanwang.store.db import Database, sqlite_url

ROUTE = "/api/v1/whoami"
TARGET_MS = 1.0


def _bypassed(platform: Platform) -> FastAPI:
    app = create_app(platform, run_loop=False)
    app.user_middleware = [m for m in app.user_middleware if m.cls is not Guard]
    fixed = Principal(token_id="bench", role=Role.CONSUMER, tenant_id="t-bench")  # nosec B106  # a token id, not a secret

    async def caller() -> Principal:
        return fixed

    app.dependency_overrides[get_principal] = caller
    return app


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000


class TimedGuard(Guard):
    """The gate, timing its own decision (token, route, role, rate, size) per request."""

    spent: ClassVar[list[float]] = []

    async def _check(self, scope):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return await super()._check(scope)
        finally:
            TimedGuard.spent.append(time.perf_counter() - t)


def _timed(app: FastAPI) -> FastAPI:
    for m in app.user_middleware:
        if m.cls is Guard:
            m.cls = TimedGuard  # type: ignore[misc]
    return app


async def _time(clients: dict[str, httpx.AsyncClient], n: int) -> dict[str, list[float]]:
    """Round-robin one request per app, so a noisy moment on a shared machine falls on all of them alike."""
    out: dict[str, list[float]] = {k: [] for k in clients}
    for c in clients.values():  # warm up: first-request route tables, caches, the threadpool
        for _ in range(50):
            assert (await c.get(ROUTE)).status_code == 200
    TimedGuard.spent.clear()
    for _ in range(n):
        for name, c in clients.items():
            t = time.perf_counter()
            r = await c.get(ROUTE)
            out[name].append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
    return out


async def _run(platform: Platform, token: str, n: int) -> dict[str, float]:
    apps = {
        "auth": _timed(create_app(platform, run_loop=False)),
        "bypass": _bypassed(platform),
        "uncached": create_app(platform, run_loop=False, guard=GuardSettings(cache_s=0.0)),
    }
    headers = {"Authorization": f"Bearer {token}"}
    clients = {k: httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://bench", headers=headers)
               for k, a in apps.items()}
    try:
        samples = await _time(clients, n)
    finally:
        for c in clients.values():
            await c.aclose()
    p99 = {k: _p99(v) for k, v in samples.items()}
    gate = list(TimedGuard.spent)  # only the "auth" app's gate is a TimedGuard
    return {
        "gate_p50_ms": round(statistics.median(gate) * 1000, 4), "gate_p99_ms": round(_p99(gate), 4),
        "auth_p99_ms": round(p99["auth"], 4), "bypass_p99_ms": round(p99["bypass"], 4),
        "uncached_p99_ms": round(p99["uncached"], 4),
        "auth_added_p99_ms": round(p99["auth"] - p99["bypass"], 4),
        "uncached_added_p99_ms": round(p99["uncached"] - p99["bypass"], 4),
        "auth_p50_ms": round(statistics.median(samples["auth"]) * 1000, 4),
        "bypass_p50_ms": round(statistics.median(samples["bypass"]) * 1000, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 requests per app per run instead of 5,000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    n = 1000 if args.quick else 5000
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        db = Database(sqlite_url(d / "suanwang.db"))
        db.migrate()
        bootstrap(db, d)
        platform = Platform(db, Settings())
        token = (d / "consumer.token").read_text().strip()
        runs = []
        for i in range(max(3, args.runs)):
            run = asyncio.run(_run(platform, token, n))
            runs.append(run)
            print(f"run {i + 1}: " + json.dumps(run))
        db.dispose()
    added = [r["auth_added_p99_ms"] for r in runs]
    summary = {
        "bench": "auth", "transport": "in-process httpx ASGITransport", "database": "sqlite", "route": ROUTE,
        "quick": args.quick, "requests_per_app_per_run": n, "runs": runs,
        "auth_added_p99_ms": round(statistics.median(added), 4),
        "auth_added_p99_ms_min": min(added), "auth_added_p99_ms_max": max(added),
        "uncached_added_p99_ms": round(statistics.median(r["uncached_added_p99_ms"] for r in runs), 4),
        "gate_p99_ms": round(statistics.median(r["gate_p99_ms"] for r in runs), 4),
        "target_ms": TARGET_MS,
    }
    out = Path(__file__).parent / "results" / "auth.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}))


if __name__ == "__main__":
    main()
