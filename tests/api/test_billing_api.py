"""Money over the API on SQLite and PostgreSQL: holds, rating, release, vouchers, settlement, bad input."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select

from suanwang.clock import ManualClock
from suanwang.services.agents import queue_for_rating
from suanwang.store.ledger_tables import TransferRow
from suanwang.store.tables import UnratedUsageRow, UsageRow
from tests.api.conftest import Grid

API = "/api/v1"
JOB = {"command": ["true"], "cores": 2, "memory_gb": 1, "duration_s": 3600}
BOOK = {"entries": [{"resource_class": "general", "tier": "standard", "service_level": "standard",
                     "unit": "core_hour", "unit_price_fen": 1000}]}  # 10 yuan per core-hour: JOB holds 2000 fen


def priced(grid: Grid, book: dict[str, Any] | None = None) -> str:
    """Register the local pool, publish a price book; return the demo consumer's tenant id."""
    grid.register()
    r = grid.operator.post(f"{API}/price-books", json=book or BOOK)
    assert r.status_code == 201, r.text
    return grid.consumer.get(f"{API}/whoami").json()["tenant_id"]


def top_up(grid: Grid, consumer: str, fen: int, key: str = "k1") -> dict[str, Any]:
    r = grid.operator.post(f"{API}/topups", json={"consumer": consumer, "amount_fen": fen},
                           headers={"Idempotency-Key": key})
    assert r.status_code == 201, r.text
    return r.json()


def run_with_usage(grid: Grid, core_hours: float, *, job: dict[str, Any] | None = None, finish: bool = True) -> str:
    """Submit, place, lease, report ``core_hours`` of usage for the 2-core job, rate it, optionally finish."""
    r = grid.consumer.post(f"{API}/jobs", json=job or JOB)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    grid.tick()
    [task] = grid.agent.post(f"{API}/agent/lease", json={"max_jobs": 1}).json()
    start = time.time()
    usage = {"job_id": job_id, "attempt": task["attempt"], "seq": 0, "pool": "cpu", "start": start,
             "end": start + core_hours * 3600 / 2, "wall_s": core_hours * 3600 / 2, "cpu_s": 1.0,
             "peak_memory_bytes": 1}
    assert grid.agent.post(f"{API}/agent/usage", json={"records": [usage]}).json()["new"] == 1
    grid.tick()
    if finish:
        grid.agent.post(f"{API}/agent/jobs/{job_id}/status", json={"attempt": task["attempt"], "phase": "succeeded",
                                                                   "exit_code": 0})
    return job_id


def wallet(grid: Grid, consumer: str) -> dict[str, int]:
    w = grid.consumer.get(f"{API}/wallets/{consumer}").json()
    return {k: w[k]["fen"] for k in ("balance", "held", "credit_limit", "available")}


def test_without_a_price_book_jobs_are_free_and_need_no_funds(grid: Grid) -> None:
    grid.register()
    assert grid.consumer.post(f"{API}/jobs", json=JOB).status_code == 201
    quote = grid.consumer.post(f"{API}/quotes", json=JOB).json()
    assert quote["priced"] is False


def test_submit_without_funds_is_402_with_a_clear_message(grid: Grid) -> None:
    priced(grid)
    r = grid.consumer.post(f"{API}/jobs", json=JOB)
    assert r.status_code == 402
    assert "insufficient funds" in r.json()["detail"] and "20.00 yuan" in r.json()["detail"]
    assert grid.consumer.get(f"{API}/jobs").json()["jobs"] == []  # nothing written


def test_quote_lists_each_eligible_pool_with_its_price(grid: Grid) -> None:
    priced(grid)
    q = grid.consumer.post(f"{API}/quotes", json=JOB).json()
    assert q["priced"] and q["hold"] == {"fen": 2000, "yuan": "20.00", "currency": "CNY"}
    [pool] = q["pools"]
    assert (pool["site"], pool["pool"], pool["unit"], pool["book_version"]) == ("local", "cpu", "core_hour", 1)


def test_hold_charge_and_release_leave_the_wallet_at_balance_minus_charges(grid: Grid) -> None:
    consumer = priced(grid)
    top_up(grid, consumer, 10_000)
    again = top_up(grid, consumer, 10_000)  # same Idempotency-Key and body: the first answer, no second top-up
    assert again["result"] == "created" and again["balance"]["fen"] == 10_000
    job_id = run_with_usage(grid, 1.0, finish=False)
    assert wallet(grid, consumer) == {"balance": 8000, "held": 1000, "credit_limit": 0, "available": 8000}
    grid.agent.post(f"{API}/agent/jobs/{job_id}/status", json={"attempt": 1, "phase": "succeeded", "exit_code": 0})
    assert wallet(grid, consumer)["balance"] == 9000 and wallet(grid, consumer)["held"] == 0
    trail = grid.consumer.get(f"{API}/ledger/transfers", params={"job_id": job_id}).json()
    assert [t["kind"] for t in trail] == ["hold_place", "charge", "hold_release"]
    charge = trail[1]
    assert charge["usage_key"] == f"usage:{job_id}:1:0" and charge["price_book_version"] == "1"
    assert charge["actor"] == "system" and charge["job_id"] == job_id and charge["pool"] == "cpu"
    assert trail[0]["actor"].startswith("tok-")  # the consumer's token placed the hold
    assert grid.operator.get(f"{API}/ledger/reconcile").json()["ok"] is True


def test_usage_is_charged_once_even_when_rated_again(grid: Grid) -> None:
    consumer = priced(grid)
    top_up(grid, consumer, 10_000)
    job_id = run_with_usage(grid, 1.0)
    with grid.platform.db.transaction() as s:  # as if a crash had left the charged record on the queue
        queue_for_rating(s, list(s.scalars(select(UsageRow.id))))
    grid.tick()
    with grid.platform.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(TransferRow).where(TransferRow.kind == "charge")) == 1
        assert s.scalar(select(func.count()).select_from(UnratedUsageRow)) == 0
    assert wallet(grid, consumer)["balance"] == 9000
    assert len(grid.consumer.get(f"{API}/ledger/transfers", params={"job_id": job_id}).json()) == 3


def test_a_job_that_passes_the_credit_line_is_cancelled_and_killed(grid: Grid) -> None:
    consumer = priced(grid)
    top_up(grid, consumer, 2000)
    job_id = run_with_usage(grid, 3.0, finish=False)  # 3000 fen against 2000 held, no credit
    job = grid.consumer.get(f"{API}/jobs/{job_id}").json()
    assert job["state"] == "cancelled" and "credit line" in job["reason"]
    hb = grid.agent.post(f"{API}/agent/heartbeat", json={"running": [{"job_id": job_id, "attempt": 1}]}).json()
    assert hb["kill"] == [{"job_id": job_id, "attempt": 1}]
    assert wallet(grid, consumer)["balance"] == -1000  # overspent by one report, and no further
    assert grid.consumer.post(f"{API}/jobs", json=JOB).status_code == 402


def test_credit_line_lets_a_consumer_submit_on_credit(grid: Grid) -> None:
    consumer = priced(grid)
    r = grid.operator.put(f"{API}/wallets/{consumer}/credit", json={"credit_limit_fen": 2000})
    assert r.status_code == 200 and r.json()["available"]["fen"] == 2000
    assert grid.consumer.post(f"{API}/jobs", json=JOB).status_code == 201
    assert grid.consumer.post(f"{API}/jobs", json=JOB).status_code == 402


def test_voucher_pays_its_share_up_to_the_cap_and_shows_its_spending(grid: Grid) -> None:
    consumer = priced(grid)
    top_up(grid, consumer, 10_000)
    now = time.time()
    r = grid.operator.post(f"{API}/vouchers", json={
        "id": "starter", "share_pct": 50, "cap_per_consumer_fen": 700, "valid_from": now - 10,
        "valid_until": now + 3600, "resource_classes": ["general"], "fund_fen": 5000})
    assert r.status_code == 201, r.text
    assert r.json()["fund"]["fen"] == 5000
    run_with_usage(grid, 1.0)  # 1000 fen: voucher 500
    run_with_usage(grid, 1.0)  # 1000 fen: voucher 200 (cap 700)
    assert wallet(grid, consumer)["balance"] == 10_000 - 500 - 800
    [programme] = grid.operator.get(f"{API}/vouchers").json()
    assert programme["spent"]["fen"] == 700 and programme["fund"]["fen"] == 4300


def test_settlement_statements_reconcile_and_the_period_is_immutable(grid: Grid) -> None:
    # The usage must lie in the past to be settled: 1000 fen of it in a millisecond, at a price to match.
    consumer = priced(grid, {"entries": [BOOK["entries"][0] | {"unit_price_fen": 1_800_000_000}]})
    grid.operator.put(f"{API}/contracts/t-operator", json={"fee_bps": 1000})
    top_up(grid, consumer, 10_000)
    run_with_usage(grid, 1 / 1_800_000, job=JOB | {"duration_s": 0.002})
    end = time.time() + 0.01
    grid.set_clock(ManualClock(end))  # the platform's now is past the usage: a period ending now may close
    r = grid.operator.post(f"{API}/settlements", json={"start": 0, "end": end})
    assert r.status_code == 201, r.text
    s = r.json()
    [c] = [c for c in s["consumers"] if c["consumer"] == consumer]
    assert (c["opening_fen"], c["topups_fen"], c["charged_fen"], c["closing_fen"]) == (0, 10_000, 1000, 9000)
    [p] = s["providers"]
    assert (p["gross_fen"], p["fee_fen"], p["earned_fen"], p["fee_bps"]) == (1000, 100, 900, 1000)
    assert s["payouts"] == [{"transfer": s["payouts"][0]["transfer"], "provider": "t-operator", "fen": 900,
                             "yuan": "9.00", "currency": "CNY"}]
    assert grid.operator.post(f"{API}/settlements", json={"start": 0, "end": end}).json()["id"] == s["id"]
    again = grid.operator.post(f"{API}/settlements", json={"start": 1, "end": end})
    assert again.status_code == 409 and "immutable" in again.json()["detail"]
    csv = grid.operator.get(f"{API}/settlements/{s['id']}/csv").text
    assert csv.startswith("section,party,job_id") and f"consumer,{consumer},,,charged,1000,10.00" in csv
    assert grid.operator.get(f"{API}/ledger/reconcile").json()["ok"] is True
    assert grid.consumer.get(f"{API}/settlements").status_code == 403


def test_bad_money_input_is_a_clear_4xx(grid: Grid) -> None:
    consumer = priced(grid)
    op = grid.operator

    def bad(method: str, path: str, body: Any, status: int, words: str) -> None:
        r = op.request(method, f"{API}{path}", json=body)
        assert r.status_code == status, (path, r.text)
        assert words in r.json()["detail"], r.json()

    bad("POST", "/topups", {"consumer": consumer, "amount_fen": -5}, 422, "top-up must be positive")
    bad("POST", "/topups", {"consumer": consumer, "amount_fen": 5, "currency": "USD"}, 422, "unknown currency 'USD'")
    bad("POST", "/topups", {"consumer": consumer, "amount_fen": 1.5}, 422, "amount_fen")
    bad("POST", "/topups", {"consumer": "t-nobody", "amount_fen": 5}, 404, "not found")
    overlap = {"entries": [{"unit_price_fen": 1, "tou": {"bands": {"peak": [[8, 12]], "flat": [[10, 24], [0, 8]]}}}]}
    bad("POST", "/price-books", overlap, 422, "overlap at hours 10, 11")
    bad("POST", "/price-books", {"entries": [{"unit_price_fen": "1.00001"}]}, 422, "decimal places")
    bad("POST", "/price-books", {"entries": [{"unit_price_fen": 1}], "effective_from": 0}, 422, "in the past")
    bad("POST", "/price-books", {"entries": [{"unit_price_fen": 1}], "currency": "EUR"}, 422, "unknown currency")
    now = time.time()
    bad("POST", "/vouchers", {"id": "v", "share_pct": 150, "cap_per_consumer_fen": 1, "valid_from": now,
                              "valid_until": now + 10}, 422, "share_pct must lie within [0, 100]")
    bad("PUT", "/contracts/t-operator", {"fee_bps": 20_000}, 422, "fee_bps")
    bad("POST", "/settlements", {"start": now + 100, "end": now + 200}, 422, "future")
    r = grid.consumer.post(f"{API}/topups", json={"consumer": consumer, "amount_fen": 5})
    assert r.status_code == 403
