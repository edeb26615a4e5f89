"""Console page render times with 100,000 jobs in the database (target: p95 < 200 ms per page).

    python bench/console.py [--quick] [--jobs N] [--requests N] [--runs N]

Builds a SQLite platform (bootstrap, one registered pool, a price book), inserts N jobs across three tenants
and every state in bulk (half of them the signed-in consumer's; a placement event for each placed job and a
usage record for each succeeded one, what the operator's and provider's charts read), signs each role in
through the real sign-in form, then requests each page through the whole ASGI stack (the gate, the session check, the
services and the templates: what production runs, less the socket).  Each run times ``--requests``
requests per page; the figure per page is the p95 of a run, reported over ``--runs`` runs (median, min,
max and each run's value).  Results go to bench/results/console.json; the last line of stdout is JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient
from rich.progress import Progress

from suanwang.api.app import create_app
from suanwang.services.bootstrap import bootstrap
from suanwang.services.platform import Platform, Settings
from suanwang.store.db import Database
from suanwang.store.tables import JobEventRow, JobRow, UsageRow
from suanwang.web import session

STATES = ("succeeded", "succeeded", "succeeded", "failed", "cancelled", "pending", "running", "placed")
RESULTS = Path(__file__).parent / "results" / "console.json"


def fill(db: Database, consumer: str, others: list[str], n: int) -> str:
    """``n`` jobs in bulk, the newest first id returned (a job page to time)."""
    now = time.time()
    tenants = [consumer, consumer, *others]
    rows = []
    for i in range(n):
        state = STATES[i % len(STATES)]
        rows.append({"id": f"j-bench{i:09d}", "tenant_id": tenants[i % len(tenants)], "name": f"bench-{i}",
                     "state": state, "spec": {"command": ["echo", str(i)], "cores": 1, "memory_gb": 1.0},
                     "resource_class": "general", "cores": 1, "memory_gb": 1.0,
                     "site": None if state == "pending" else "local", "pool": None if state == "pending" else "cpu",
                     "submitted_at": now - (n - i)})
    # what the operator's and provider's charts read: a placement event per placed job, a usage record per
    # succeeded one (over the last day, so the charts have every hour to sum)
    events = [{"job_id": r["id"], "at": r["submitted_at"] + 1, "attempt": 1, "from_state": "pending",
               "to_state": "placed", "reason": ""} for r in rows if r["site"]]
    usage = [{"job_id": r["id"], "attempt": 1, "seq": 0, "tenant_id": r["tenant_id"], "site": "local", "pool": "cpu",
              "resource_class": "general", "start": r["submitted_at"] + 2, "end": r["submitted_at"] + 62,
              "wall_s": 60.0, "cpu_s": 30.0, "core_s": 60.0, "device_s": 0.0, "peak_memory_bytes": 2**20,
              "units_nano": 10**9, "reported_at": r["submitted_at"] + 62} for r in rows if r["state"] == "succeeded"]
    with db.transaction() as s:
        for table, batch in ((JobRow.__table__, rows), (JobEventRow.__table__, events), (UsageRow.__table__, usage)):
            for start in range(0, len(batch), 5000):
                s.execute(table.insert(), batch[start:start + 5000])
    return f"j-bench{(n - 1) - ((n - 1) % len(tenants)):09d}"  # the newest of the consumer's


def sign_in(app: object, token: str) -> TestClient:
    c = TestClient(app)  # type: ignore[arg-type]
    c.get("/signin")
    r = c.post("/signin", data={"csrf": c.cookies.get(session.PRE_CSRF), "token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests per page (under a minute)")
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=0, help="requests per page per run (default 40, quick 12)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    per_page = args.requests or (12 if args.quick else 40)
    root = Path(tempfile.mkdtemp(prefix="suanwang-console-bench-"))
    db = Database(f"sqlite:///{root}/grid.db")
    db.migrate()
    bootstrap(db, root)
    platform = Platform(db, Settings())
    app = create_app(platform, run_loop=False)
    tok = {name: (root / f"{name}.token").read_text().strip() for name in ("operator", "consumer", "agent")}
    with TestClient(app) as base:
        agent = {"Authorization": f"Bearer {tok['agent']}"}
        op = {"Authorization": f"Bearer {tok['operator']}"}
        base.post("/api/v1/agent/register", headers=agent, json={"pools": [
            {"name": "cpu", "resource_class": "general", "engine": "local", "cores": 64, "memory_gb": 256}]})
        base.post("/api/v1/price-books", headers=op, json={"entries": [
            {"resource_class": "general", "unit_price_fen": "100", "tou": {"province": "Gansu"}}]})
        whoami = base.get("/api/v1/whoami", headers={"Authorization": f"Bearer {tok['consumer']}"})
        consumer = whoami.json()["tenant_id"]
        others = [base.post("/api/v1/tenants", headers=op, json={"name": f"other-{i}", "kind": "consumer"}).json()["id"]
                  for i in range(2)]
        started = time.perf_counter()
        job = fill(db, consumer, others, args.jobs)
        fill_s = time.perf_counter() - started
        users = {"consumer": sign_in(app, tok["consumer"]), "operator": sign_in(app, tok["operator"]),
                 "public": TestClient(app)}
        older = re.search(r"before=([\w-]+)", users["consumer"].get("/console/jobs").text)
        pages = {
            "public /": ("public", "/"),
            "public /market": ("public", "/market"),
            "consumer /console/wallet": ("consumer", "/console/wallet"),
            "consumer /console/jobs": ("consumer", "/console/jobs"),
            "consumer /console/jobs?state=failed": ("consumer", "/console/jobs?state=failed"),
            "consumer /console/jobs (page 2)": ("consumer", f"/console/jobs?before={older.group(1) if older else ''}"),
            "consumer /console/jobs/{id}": ("consumer", f"/console/jobs/{job}"),
            "operator /console/operator": ("operator", "/console/operator"),
            "operator /console/provider": ("operator", "/console/provider"),
            "operator /console/auditor": ("operator", "/console/auditor"),
            "operator /console/jobs": ("operator", "/console/jobs"),
        }
        p95s: dict[str, list[float]] = {name: [] for name in pages}
        with Progress() as progress:
            task = progress.add_task("rendering", total=args.runs * len(pages) * per_page)
            for _ in range(args.runs):
                for name, (who, path) in pages.items():
                    times = []
                    for _ in range(per_page):
                        t0 = time.perf_counter()
                        r = users[who].get(path)
                        times.append((time.perf_counter() - t0) * 1000)
                        assert r.status_code == 200, (name, r.status_code, r.text[:300])
                        progress.advance(task)
                    times.sort()
                    p95s[name].append(round(times[min(len(times) - 1, int(0.95 * len(times)))], 2))
    figures = {name: {"p95_ms_median": statistics.median(v), "min": min(v), "max": max(v), "runs": v}
               for name, v in p95s.items()}
    for name, f in figures.items():
        print(f"{name:42s} p95 {f['p95_ms_median']:8.1f} ms  (min {f['min']:.1f}, max {f['max']:.1f})")
    worst = max(f["p95_ms_median"] for f in figures.values())
    out = {"bench": "console", "jobs": args.jobs, "requests_per_page": per_page, "runs": args.runs,
           "database": "sqlite", "fill_s": round(fill_s, 1), "pages": figures, "worst_p95_ms": worst,
           "target_ms": 200, "meets_target": worst < 200}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
