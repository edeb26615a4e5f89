"""More money flows over the API: cancel releases, late usage, provider price books, visibility."""

from __future__ import annotations

import time

from suanwang.clock import ManualClock
from tests.api.conftest import Grid
from tests.api.test_billing_api import API, BOOK, JOB, priced, run_with_usage, top_up, wallet


def test_cancelling_a_pending_job_gives_its_hold_back(grid: Grid) -> None:
    consumer = priced(grid)
    top_up(grid, consumer, 5000)
    job = grid.consumer.post(f"{API}/jobs", json=JOB).json()
    assert wallet(grid, consumer)["held"] == 2000
    grid.consumer.post(f"{API}/jobs/{job['id']}/cancel")
    assert wallet(grid, consumer) == {"balance": 5000, "held": 0, "credit_limit": 0, "available": 5000}
    kinds = [t["kind"] for t in grid.consumer.get(f"{API}/ledger/transfers", params={"job_id": job["id"]}).json()]
    assert kinds == ["hold_place", "hold_release"]


def test_usage_reported_after_its_period_was_settled_is_charged_in_the_open_period(grid: Grid) -> None:
    # Usage inside a period of milliseconds: 1000 fen of it takes a price of 1000 fen per 2 core-milliseconds.
    dear = {"entries": [BOOK["entries"][0] | {"unit_price_fen": 1_800_000_000}]}
    consumer = priced(grid, dear)
    top_up(grid, consumer, 10_000)
    job = grid.consumer.post(f"{API}/jobs", json=JOB | {"duration_s": 0.002}).json()
    grid.tick()
    [task] = grid.agent.post(f"{API}/agent/lease", json={"max_jobs": 1}).json()
    start = time.time()
    end = start + 0.01
    grid.set_clock(clock := ManualClock(end))  # the usage below lies before the platform's now
    first = grid.operator.post(f"{API}/settlements", json={"start": 0, "end": end}).json()
    usage = {"job_id": job["id"], "attempt": task["attempt"], "seq": 0, "pool": "cpu", "start": start,
             "end": start + 0.001, "wall_s": 0.001, "cpu_s": 0.001, "peak_memory_bytes": 1}
    grid.agent.post(f"{API}/agent/usage", json={"records": [usage]})
    grid.tick()
    [charge] = [t for t in grid.operator.get(f"{API}/ledger/transfers").json() if t["kind"] == "charge"]
    assert charge["booked_at"] == first["end"]  # not inside the settled, immutable period
    clock.now = max(time.time(), end) + 0.01  # past the charge booked at the open period's start
    second = grid.operator.post(f"{API}/settlements", json={"start": first["end"], "end": clock.now}).json()
    [c] = [c for c in second["consumers"] if c["consumer"] == consumer]
    assert c["charged_fen"] == 1000 and [line["job_id"] for line in c["charges"]] == [job["id"]]


def test_a_provider_prices_only_its_own_sites(grid: Grid) -> None:
    grid.register()
    op = grid.operator
    tenant = op.post(f"{API}/tenants", json={"name": "qy-dc", "kind": "provider"}).json()["id"]
    token = op.post(f"{API}/tokens", json={"role": "provider", "tenant_id": tenant}).json()["token"]
    provider = grid.as_(token)
    assert provider.post(f"{API}/sites", json={"name": "qingyang", "region": "west"}).status_code == 201
    other = provider.post(f"{API}/price-books", json={"entries": [{"site": "local", "unit_price_fen": 5}]})
    assert other.status_code == 422 and "own sites" in other.json()["detail"]
    assert op.post(f"{API}/price-books", json={"entries": [{"unit_price_fen": 7}]}).status_code == 201
    own = provider.post(f"{API}/price-books", json={"entries": [{"site": "qingyang", "unit_price_fen": 5}]})
    assert own.status_code == 201, own.text
    books = grid.consumer.get(f"{API}/price-books").json()  # one series per owner, neither merged into the other
    assert [(b["owner"], b["version"]) for b in books] == [("operator", 1), (tenant, 1)]
    assert [b["entries"] for b in books] == [[{"unit_price_fen": 7}], [{"site": "qingyang", "unit_price_fen": 5}]]


def test_consumers_see_only_their_own_money(grid: Grid) -> None:
    consumer = priced(grid)
    top_up(grid, consumer, 10_000)
    run_with_usage(grid, 1.0)
    other = grid.new_consumer("other")
    assert other.get(f"{API}/ledger/transfers").json() == []
    assert other.get(f"{API}/wallets/{consumer}").status_code == 404
    assert other.get(f"{API}/ledger/reconcile").status_code == 403
    assert len(grid.consumer.get(f"{API}/ledger/transfers").json()) == 4  # top-up, hold, charge, release


def test_an_operator_corrects_a_charge_by_reversing_it_once(grid: Grid) -> None:
    consumer = priced(grid)
    top_up(grid, consumer, 10_000)
    job_id = run_with_usage(grid, 1.0)
    key = f"usage:{job_id}:1:0"
    body = {"transfer": key, "reason": "meter fault at the site"}
    first = grid.operator.post(f"{API}/ledger/reversals", json=body)
    assert first.status_code == 201 and first.json()["result"] == "created"
    assert first.json()["reverses"] == key and first.json()["usage_key"] == key
    assert grid.operator.post(f"{API}/ledger/reversals", json=body).json()["result"] == "exists"  # a retry
    assert wallet(grid, consumer)["balance"] == 10_000
    assert grid.consumer.post(f"{API}/ledger/reversals", json=body).status_code == 403
    missing = grid.operator.post(f"{API}/ledger/reversals", json={"transfer": "nope", "reason": "x"})
    assert missing.status_code == 404
    assert grid.operator.get(f"{API}/ledger/reconcile").json()["ok"] is True


def test_a_job_is_stopped_before_its_next_report_would_pass_the_credit_line(grid: Grid) -> None:
    consumer = priced(grid)
    top_up(grid, consumer, 2000)  # exactly the hold of one JOB: nothing left beyond it
    job = grid.consumer.post(f"{API}/jobs", json=JOB).json()
    grid.tick()
    [task] = grid.agent.post(f"{API}/agent/lease", json={"max_jobs": 1}).json()

    clock = [time.time()]

    def report(seq: int, core_hours: float) -> None:
        start, clock[0] = clock[0], clock[0] + core_hours * 3600 / 2  # back to back: no second billed twice
        usage = {"job_id": job["id"], "attempt": task["attempt"], "seq": seq, "pool": "cpu", "start": start,
                 "end": clock[0], "wall_s": core_hours * 3600 / 2, "cpu_s": 1.0, "peak_memory_bytes": 1}
        grid.agent.post(f"{API}/agent/usage", json={"records": [usage]})
        grid.tick()

    report(0, 0.5)  # 500 fen: 1500 left, room for another such report
    assert grid.consumer.get(f"{API}/jobs/{job['id']}").json()["state"] == "queued_at_site"
    report(1, 1.0)  # 1000 fen: 500 left, less than another such report
    stopped = grid.consumer.get(f"{API}/jobs/{job['id']}").json()
    assert stopped["state"] == "cancelled" and "credit line" in stopped["reason"]
    # The hold waits for the killed attempt's last usage: its agent's final status says none is coming.
    assert wallet(grid, consumer)["held"] == 500
    grid.agent.post(f"{API}/agent/jobs/{job['id']}/status", json={"attempt": task["attempt"], "phase": "cancelled"})
    grid.tick()
    assert wallet(grid, consumer) == {"balance": 500, "held": 0, "credit_limit": 0, "available": 500}
