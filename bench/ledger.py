"""Ledger throughput in the database: usage rated with holds, vouchers and contract fees, and transfers of every kind.

    PYTHONPATH=src python bench/ledger.py [--quick] [--records N] [--runs N] [--postgres-url URL]

For SQLite (a temporary file, WAL) and PostgreSQL (a fresh schema in
``postgresql+psycopg://postgres@127.0.0.1:5432/test``; skipped if unreachable), on a ledger as a
priced platform keeps it: a price book with a time-of-use band and a green discount, a provider
contract with a 7 % platform fee, a voucher programme paying 20 % of the charges of half the
consumers (funded), and an open hold on every job, placed at its submit.
(1) ratings/s: unrated usage rows -> charges, with ``billing.rate_all`` exactly as the control
loop runs it (1000 records per transaction: claim, price, time-of-use split, voucher, capture from
the job's hold, fee and provider legs, rounding); each run rates ``--records`` new rows.  The run
checks that every record was charged, that holds were captured from and vouchers paid.
(2) transfers/s, every kind but charges (which (1) books): top-ups, voucher fundings, holds placed,
balanced adjustments and provider payouts in batches of 1000 mixed transfers per transaction
(``SqlLedger.apply_many``), then releases and voids of those holds and reversals of those top-ups;
and the same transfers again, every one an identical retry (EXISTS).
(3) a full reconciliation after all runs, which must pass.
Each figure is reported over ``--runs`` runs (default 3): median, min, max and every run's value.
Writes bench/results/ledger.json; the last stdout line is one JSON object.
Targets: >= 20,000/s each on SQLite, >= 10,000/s each on PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import OperationalError

from suanwang.api.price_books import draft_from_json
from suanwang.domain.ledger import (
    PLATFORM_FEES,
    Hold,
    Posting,
    Transfer,
    TransferKind,
    earnings,
    plan_adjustment,
    plan_hold,
    plan_payout,
    plan_release,
    plan_reversal,
    plan_topup,
    plan_voucher_funding,
    wallet,
)
from suanwang.services import billing
from suanwang.services.auth import Principal, Role
from suanwang.services.ledger_store import SqlLedger, reconcile
from suanwang.store.db import Database, scratch_schema
from suanwang.store.ledger_tables import TransferRow
from suanwang.store.tables import JobRow, PoolRow, SiteRow, TenantRow, UnratedUsageRow, UsageRow

PG_URL = os.environ.get("SUANWANG_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CONSUMERS = 50
JOBS = 500
BATCH = 1000
PROVIDER = "t-operator"  # the site's tenant: its contract's fee is taken from every charge
OPERATOR = Principal("bench", Role.OPERATOR, "t-operator")
BOOK = {"entries": [{"resource_class": "general", "tier": "standard", "service_level": "standard",
                     "unit": "core_hour", "unit_price_fen": "123.4567", "green_discount_pct": "5",
                     "tou": {"province": "Gansu"}}]}
HOLD_FEN = 10**9  # each job's hold: covers every run's charges


def _seed(db: Database) -> None:
    """Tenants, one site and pool, jobs with open holds, a price book, a fee contract, a voucher programme."""
    now = time.time()
    at = datetime.now(UTC)
    with db.transaction() as s:
        s.execute(insert(TenantRow), [{"id": PROVIDER, "name": "operator", "kind": "operator", "created_at": now,
                                       "attrs": {}}] + [{"id": f"c{i}", "name": f"c{i}", "kind": "consumer",
                                                         "created_at": now, "attrs": {}} for i in range(CONSUMERS)])
        s.add(SiteRow(name="qingyang", tenant_id=PROVIDER, province="Gansu", created_at=now))
        s.flush()
        s.add(PoolRow(site="qingyang", name="cpu", resource_class="general", engine="local", cores=10_000,
                      memory_gb=1e6, updated_at=now))
        s.flush()
        s.execute(insert(JobRow), [{
            "id": f"job{j}", "tenant_id": f"c{j % CONSUMERS}", "name": "", "state": "running",
            "spec": {"command": ["true"], "service_level": "standard"}, "resource_class": "general", "cores": 2,
            "memory_gb": 1.0, "devices": 0, "priority": 0, "site": "qingyang", "pool": "cpu", "attempt": 1,
            "submitted_at": now, "reason": "", "placement": {}, "cancel_requested": False} for j in range(JOBS)])
        billing.set_price_book(s, OPERATOR, draft_from_json(BOOK))
        billing.set_contract(s, OPERATOR, PROVIDER, 700)
        ledger = SqlLedger(s)
        ledger.apply_many([plan_topup(f"seed{i}", consumer=f"c{i}", fen=10**12, at=at, actor="bench")
                           for i in range(CONSUMERS)])
        held = ledger.apply_many([plan_hold(f"hold:job{j}", hold_id=f"job{j}", consumer=f"c{j % CONSUMERS}",
                                            fen=HOLD_FEN, at=at, actor="bench", job_id=f"job{j}")
                                  for j in range(JOBS)])
        assert all(r.ok for r in held)
        billing.create_programme(s, OPERATOR, {
            "id": "east-data-west", "share_pct": "20", "cap_per_consumer_fen": 10**12,
            "valid_from": (at - timedelta(days=1)).isoformat(), "valid_until": (at + timedelta(days=30)).isoformat(),
            "consumers": [f"c{i}" for i in range(0, CONSUMERS, 2)], "fund_fen": 10**13})


def _usage(db: Database, n: int, run: int) -> None:
    """``n`` new unrated usage rows (seq numbers of this run), queued as record_usage queues them."""
    now = time.time()
    t0 = now + 1 + run * n * 0.01
    per_job = -(-n // JOBS)
    rows = [{"job_id": f"job{i % JOBS}", "attempt": 1, "seq": run * per_job + i // JOBS,
             "tenant_id": f"c{i % JOBS % CONSUMERS}", "site": "qingyang", "pool": "cpu", "resource_class": "general",
             "start": t0 + i * 0.01, "end": t0 + i * 0.01 + 1800, "wall_s": 1800.0, "cpu_s": 1500.0,
             "core_s": 3600.0 + i % 13, "device_s": 0.0, "peak_memory_bytes": 1, "units_nano": 1_333_333 + i % 7,
             "reported_at": now} for i in range(n)]
    with db.transaction() as s:
        first = (s.scalar(select(func.max(UsageRow.id))) or 0) + 1
        for k in range(0, len(rows), 10_000):
            s.execute(insert(UsageRow), rows[k : k + 10_000])
        s.execute(insert(UnratedUsageRow).from_select(["id"], select(UsageRow.id).where(UsageRow.id >= first)))


def _ratings(db: Database, n: int) -> float:
    started = time.perf_counter()
    rated = billing.rate_all(db, limit=BATCH)
    elapsed = time.perf_counter() - started
    assert rated == n, f"rated {rated} of {n}"
    return n / elapsed


def _check_rating(db: Database, expected: int) -> dict[str, int]:
    """Every record charged once; holds captured from, vouchers paid, fees taken."""
    with db.transaction() as s:
        charges = s.scalar(select(func.count()).select_from(TransferRow).where(
            TransferRow.kind == TransferKind.CHARGE.value)) or 0
        from_hold = s.scalar(select(func.count()).select_from(TransferRow).where(
            TransferRow.kind == TransferKind.CHARGE.value, TransferRow.hold_id != "")) or 0
        vouchered = s.scalar(select(func.count()).select_from(TransferRow).where(
            TransferRow.kind == TransferKind.CHARGE.value, TransferRow.voucher_fen > 0)) or 0
        ledger = SqlLedger(s)
        ledger.lock_accounts([PLATFORM_FEES, earnings(PROVIDER)])  # loads their balances
        fees = ledger.balance(PLATFORM_FEES)
        provider = ledger.balance(earnings(PROVIDER))
    assert charges == expected, f"{charges} charges for {expected} records"
    assert from_hold == charges and vouchered > 0 and fees > 0 and provider > 0, (from_hold, vouchered, fees)
    return {"charges": charges, "captured_from_holds": from_hold, "paid_in_part_by_vouchers": vouchered,
            "fees_fen": fees, "provider_earnings_fen": provider}


def _plan_mixed(n: int, run: int, at: datetime) -> tuple[list[Transfer], list[Transfer]]:
    """``n`` transfers of every kind but charges: (first phase, second phase that closes or undoes the first)."""
    k = max(n // 8, 1)
    first: list[Transfer] = []
    topups, holds = [], []
    for i in range(k):
        c = f"c{i % CONSUMERS}"
        topups.append(plan_topup(f"r{run}-topup-{i}", consumer=c, fen=1 + i % 1000, at=at, actor="bench"))
        holds.append(Hold(f"r{run}-hold-{i}", c, 10 + i % 100))
        first += [
            topups[-1],
            plan_voucher_funding(f"r{run}-vfund-{i}", programme="east-data-west", fen=1 + i % 50, at=at,
                                 actor="bench"),
            plan_hold(f"r{run}-hplace-{i}", hold_id=holds[-1].id, consumer=c, fen=holds[-1].amount_fen, at=at,
                      actor="bench"),
            plan_adjustment(f"r{run}-adj-{i}", postings=(Posting(wallet(c), -3), Posting(
                wallet(f"c{(i + 1) % CONSUMERS}"), 3)), at=at, actor="bench", reason="bench correction"),
            plan_payout(f"r{run}-payout-{i}", provider=PROVIDER, fen=1, at=at, actor="bench"),
        ]
    later = at + timedelta(seconds=1)
    second: list[Transfer] = []
    for i in range(k):
        second.append(plan_release(f"r{run}-hclose-{i}", hold=holds[i], at=later, actor="bench", void=i % 2 == 1))
        second.append(plan_reversal(f"r{run}-rev-{i}", original=topups[i], at=later, actor="bench",
                                    reason="bench refund"))
    return first, second


def _apply(db: Database, transfers: Sequence[Transfer]) -> None:
    for k in range(0, len(transfers), BATCH):
        with db.transaction() as s:
            results = SqlLedger(s).apply_many(transfers[k : k + BATCH])
            bad = [r for r in results if not r.ok]
            assert not bad, bad[:3]


def _transfers(db: Database, n: int, run: int) -> tuple[float, float, dict[str, int]]:
    first, second = _plan_mixed(n, run, datetime.now(UTC))
    started = time.perf_counter()
    _apply(db, first)
    _apply(db, second)
    rate = (len(first) + len(second)) / (time.perf_counter() - started)
    started = time.perf_counter()
    _apply(db, first + second)  # identical retries: each answers EXISTS
    retries = (len(first) + len(second)) / (time.perf_counter() - started)
    kinds: dict[str, int] = {}
    for t in first + second:
        kinds[t.kind.value] = kinds.get(t.kind.value, 0) + 1
    return rate, retries, kinds


def spread(values: list[float]) -> dict[str, Any]:
    return {"median": round(statistics.median(values)), "min": round(min(values)), "max": round(max(values)),
            "runs": [round(v) for v in values]}


def run_one(url: str, n: int, runs: int, label: str) -> dict[str, Any]:
    db = Database(url)
    db.migrate()
    try:
        _seed(db)
        ratings, transfers, retries = [], [], []
        kinds: dict[str, int] = {}
        for run in range(runs):
            _usage(db, n, run)
            ratings.append(_ratings(db, n))
            rate, retry, kinds = _transfers(db, n, run)
            transfers.append(rate)
            retries.append(retry)
            print(f"{label} run {run + 1}/{runs}: {ratings[-1]:,.0f} ratings/s, {rate:,.0f} transfers/s",
                  file=sys.stderr)
        checked = _check_rating(db, n * runs)
        started = time.perf_counter()
        with db.transaction() as s:
            found = reconcile(s)
        return {"ratings_per_s": spread(ratings), "transfers_per_s": spread(transfers),
                "retries_per_s": spread(retries), "transfer_kinds_per_run": kinds, "rating": checked,
                "reconcile_s": round(time.perf_counter() - started, 3), "reconciled": found.ok,
                "transfers": found.transfers, "postings": found.postings}
    finally:
        db.dispose()


def run_postgres(url: str, n: int, runs: int) -> dict[str, Any] | None:
    try:
        with scratch_schema(url, "bench") as schema_url:
            return run_one(schema_url, n, runs, "postgres")
    except OperationalError as exc:  # no server: report it, do not fail the SQLite figures
        print(f"PostgreSQL not reachable at {url}: {exc.__class__.__name__}", file=sys.stderr)
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 records per run, well under a minute")
    parser.add_argument("--records", type=int, default=None, help="usage records rated per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres-url", default=PG_URL)
    args = parser.parse_args()
    n = args.records or (10_000 if args.quick else 100_000)
    runs = max(args.runs, 3)
    with tempfile.TemporaryDirectory() as tmp:
        lite = run_one(f"sqlite:///{Path(tmp) / 'bench.db'}", n, runs, "sqlite")
    pg = run_postgres(args.postgres_url, n, runs)
    result = {
        "bench": "ledger", "quick": args.quick, "records_per_run": n, "runs": runs, "batch": BATCH,
        "python": platform.python_version(), "load_average": [round(x, 2) for x in os.getloadavg()],
        "ratings_with_holds_per_s_sqlite": lite["ratings_per_s"]["median"],
        "ratings_with_holds_per_s_postgres": pg and pg["ratings_per_s"]["median"],
        "transfers_per_s_sqlite": lite["transfers_per_s"]["median"],
        "transfers_per_s_postgres": pg and pg["transfers_per_s"]["median"],
        "reconciled": lite["reconciled"] and (pg is None or pg["reconciled"]),
        "sqlite": lite, "postgres": pg,
        "targets": {"ratings_with_holds_per_s_postgres": 10_000, "ratings_with_holds_per_s_sqlite": 20_000},
    }
    out = Path(__file__).parent / "results" / "ledger.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
