"""Ledger throughput in the database: usage records rated per second and ledger transfers per second.

    PYTHONPATH=src python bench/ledger.py [--quick] [--postgres-url URL]

For SQLite (a temporary file, WAL) and PostgreSQL (a fresh schema in
``postgresql+psycopg://postgres@127.0.0.1:5432/test``; skipped if unreachable):
(1) ratings/s: unrated usage rows -> charges, with ``billing.rate_all`` exactly
as the control loop runs it (1000 records per transaction: rows claimed, price
lookup, time-of-use split, voucher and hold lookups, balanced CHARGE; the seeded
jobs place no holds and no voucher programme exists, so nothing is captured
from a hold or paid by a voucher);
(2) transactions/s: pre-planned transfers applied by ``SqlLedger.apply_many``
in batches of 1000 per transaction (top-ups to 50 wallets; every one touches
the hot operator funding account); (3) a full reconciliation, which must pass.
Writes bench/results/ledger.json; the last stdout line is one JSON object.
Targets: >= 20,000/s each on SQLite, >= 10,000/s each on PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import OperationalError

from suanwang.domain.ledger import plan_topup
from suanwang.services import billing
from suanwang.services.auth import Principal, Role
from suanwang.services.ledger_store import SqlLedger, reconcile
from suanwang.store.db import Database, scratch_schema
from suanwang.store.tables import JobRow, PoolRow, SiteRow, TenantRow, UnratedUsageRow, UsageRow

PG_URL = os.environ.get("SUANWANG_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CONSUMERS = 50
JOBS = 500
BATCH = 1000
OPERATOR = Principal("bench", Role.OPERATOR, "t-operator")
BOOK = {"entries": [{"resource_class": "general", "tier": "standard", "service_level": "standard",
                     "unit": "core_hour", "unit_price_fen": "123.4567", "green_discount_pct": "5",
                     "tou": {"province": "Gansu"}}]}


def _seed(db: Database, n_usage: int) -> float:
    """Tenants, one site and pool, jobs, a price book, wallets, and ``n_usage`` unrated usage rows."""
    now = time.time()
    with db.transaction() as s:
        s.execute(insert(TenantRow), [{"id": "t-operator", "name": "operator", "kind": "operator", "created_at": now,
                                       "attrs": {}}] + [{"id": f"c{i}", "name": f"c{i}", "kind": "consumer",
                                                         "created_at": now, "attrs": {}} for i in range(CONSUMERS)])
        s.add(SiteRow(name="qingyang", tenant_id="t-operator", province="Gansu", created_at=now))
        s.flush()
        s.add(PoolRow(site="qingyang", name="cpu", resource_class="general", engine="local", cores=10_000,
                      memory_gb=1e6, updated_at=now))
        s.flush()
        s.execute(insert(JobRow), [{
            "id": f"job{j}", "tenant_id": f"c{j % CONSUMERS}", "name": "", "state": "running",
            "spec": {"command": ["true"], "service_level": "standard"}, "resource_class": "general", "cores": 2,
            "memory_gb": 1.0, "devices": 0, "priority": 0, "site": "qingyang", "pool": "cpu", "attempt": 1,
            "submitted_at": now, "reason": "", "placement": {}, "cancel_requested": False} for j in range(JOBS)])
        billing.set_price_book(s, OPERATOR, BOOK)
        billing.set_contract(s, OPERATOR, "t-operator", 700)
        SqlLedger(s).apply_many([plan_topup(f"seed{i}", consumer=f"c{i}", fen=10**12, at=datetime.now(UTC),
                                            actor="bench") for i in range(CONSUMERS)])
    t0 = time.time() + 1
    rows = [{"job_id": f"job{i % JOBS}", "attempt": 1, "seq": i // JOBS, "tenant_id": f"c{i % JOBS % CONSUMERS}",
             "site": "qingyang", "pool": "cpu", "resource_class": "general", "start": t0 + i * 0.01,
             "end": t0 + i * 0.01 + 60, "wall_s": 60.0, "cpu_s": 50.0, "core_s": 120.0 + i % 13, "device_s": 0.0,
             "peak_memory_bytes": 1, "units_nano": 1_333_333 + i % 7, "reported_at": now}
            for i in range(n_usage)]
    with db.transaction() as s:
        for k in range(0, len(rows), 10_000):
            s.execute(insert(UsageRow), rows[k : k + 10_000])
        s.execute(insert(UnratedUsageRow).from_select(["id"], select(UsageRow.id)))  # as record_usage queues them
    return t0


def _ratings(db: Database, n: int) -> float:
    started = time.perf_counter()
    rated = billing.rate_all(db, limit=BATCH)
    elapsed = time.perf_counter() - started
    assert rated == n, f"rated {rated} of {n}"
    return n / elapsed


def _transactions(db: Database, n: int) -> tuple[float, float]:
    at = datetime.now(UTC)
    transfers = [plan_topup(f"bench-{i}", consumer=f"c{i % CONSUMERS}", fen=1 + i % 1000, at=at, actor="bench")
                 for i in range(n)]

    def apply_all() -> float:
        started = time.perf_counter()
        for k in range(0, n, BATCH):
            with db.transaction() as s:
                results = SqlLedger(s).apply_many(transfers[k : k + BATCH])
                assert all(r.ok for r in results)
        return n / (time.perf_counter() - started)

    return apply_all(), apply_all()  # second pass: every transfer is an identical retry (EXISTS)


def run_one(url: str, n: int) -> dict[str, Any]:
    db = Database(url)
    db.migrate()
    try:
        _seed(db, n)
        ratings = _ratings(db, n)
        transactions, retries = _transactions(db, n)
        started = time.perf_counter()
        with db.transaction() as s:
            found = reconcile(s)
        return {"ratings_per_s": round(ratings), "transactions_per_s": round(transactions),
                "retries_per_s": round(retries), "reconcile_s": round(time.perf_counter() - started, 3),
                "reconciled": found.ok, "transfers": found.transfers, "postings": found.postings}
    finally:
        db.dispose()


def run_postgres(url: str, n: int) -> dict[str, Any] | None:
    try:
        with scratch_schema(url, "bench") as schema_url:
            return run_one(schema_url, n)
    except OperationalError as exc:  # no server: report it, do not fail the SQLite figures
        print(f"PostgreSQL not reachable at {url}: {exc.__class__.__name__}", file=sys.stderr)
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 records per database, well under a minute")
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--postgres-url", default=PG_URL)
    args = parser.parse_args()
    n = args.records or (10_000 if args.quick else 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        lite = run_one(f"sqlite:///{Path(tmp) / 'bench.db'}", n)
    pg = run_postgres(args.postgres_url, n)
    result = {
        "bench": "ledger", "quick": args.quick, "records": n, "batch": BATCH, "python": platform.python_version(),
        "ratings_per_s_sqlite": lite["ratings_per_s"], "ratings_per_s_postgres": pg and pg["ratings_per_s"],
        "transactions_per_s_sqlite": lite["transactions_per_s"],
        "transactions_per_s_postgres": pg and pg["transactions_per_s"],
        "reconciled": lite["reconciled"] and (pg is None or pg["reconciled"]),
        "sqlite": lite, "postgres": pg,
    }
    out = Path(__file__).parent / "results" / "ledger.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
