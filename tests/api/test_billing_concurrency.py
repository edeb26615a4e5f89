"""Concurrency on real connections (PostgreSQL, and SQLite for contrast): no double spend, no double charge."""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select

from suanwang.domain.ledger import hold_account, wallet
from suanwang.errors import InsufficientFunds
from suanwang.services import billing, jobs
from suanwang.services.agents import queue_for_rating
from suanwang.services.auth import Principal, Role
from suanwang.services.ledger_store import cached_balances, reconcile
from suanwang.store.ledger_tables import TransferRow
from suanwang.store.tables import JobRow, UnratedUsageRow, UsageRow
from tests.api.conftest import Grid
from tests.api.test_billing_api import API, JOB, priced, top_up

CLIENTS = 20


def _consumer(grid: Grid) -> tuple[str, Principal]:
    consumer = priced(grid)
    return consumer, Principal(token_id="tok-bench", role=Role.CONSUMER, tenant_id=consumer)


def test_concurrent_submits_never_take_a_wallet_past_its_credit_limit(grid: Grid) -> None:
    consumer, principal = _consumer(grid)
    top_up(grid, consumer, 10_000)
    grid.operator.put(f"{API}/wallets/{consumer}/credit", json={"credit_limit_fen": 3_000})
    spec = jobs.spec_from_json(JOB)  # holds 2000 fen: (10000 + 3000) // 2000 = 6 fit
    outcomes: list[str] = []
    barrier = threading.Barrier(CLIENTS)
    db = grid.platform.db

    def client() -> None:
        barrier.wait()
        for _ in range(2):
            try:
                with db.transaction() as s:  # its own connection and transaction
                    jobs.submit_jobs(s, principal, [spec])
                outcomes.append("ok")
            except InsufficientFunds:
                outcomes.append("402")

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 6 and outcomes.count("402") == 2 * CLIENTS - 6
    with db.transaction() as s:
        balances = cached_balances(s)
        assert balances[wallet(consumer)] == 10_000 - 6 * 2000 >= -3_000
        assert balances[hold_account(consumer)] == 6 * 2000
        assert reconcile(s).ok


def test_workers_rating_at_once_charge_each_usage_record_exactly_once(grid: Grid) -> None:
    consumer, principal = _consumer(grid)
    top_up(grid, consumer, 10**9)
    with grid.platform.db.transaction() as s:
        [job] = jobs.submit_jobs(s, principal, [jobs.spec_from_json(JOB)])
        row = s.get(JobRow, job.id)  # submit returns a plain value: the row is what runs
        assert row is not None
        row.site, row.pool, row.attempt, row.state = "local", "cpu", 1, "running"
        now = time.time()
        usage = [UsageRow(job_id=job.id, attempt=1, seq=i, tenant_id=consumer, site="local", pool="cpu",
                          resource_class="general", start=now + i, end=now + i + 1, wall_s=1.0, cpu_s=1.0,
                          core_s=3.6 * (i % 7 + 1), device_s=0.0, peak_memory_bytes=1, units_nano=1000,
                          reported_at=now) for i in range(600)]
        s.add_all(usage)
        s.flush()
        queue_for_rating(s, [u.id for u in usage])
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        billing.rate_all(grid.platform.db, limit=50)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with grid.platform.db.transaction() as s:
        charges = s.scalar(select(func.count()).select_from(TransferRow).where(TransferRow.kind == "charge"))
        assert charges == 600
        assert s.scalar(select(func.count()).select_from(UnratedUsageRow)) == 0
        assert reconcile(s).ok
        expected = sum(i % 7 + 1 for i in range(600))  # 1 fen per 0.001 core-hour x (3.6 s x k) = k fen
        assert cached_balances(s)[wallet(consumer)] + cached_balances(s)[hold_account(consumer)] == 10**9 - expected
