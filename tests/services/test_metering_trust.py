"""Metering under faults: usage and logs only from the site that ran the attempt, bounded by what could have
happened; a lost attempt is not the consumer's to pay for; a job's hold pays its last usage."""

from __future__ import annotations

import base64
import dataclasses
import math
import time
from typing import Any

import pytest
from sqlalchemy import select, update

from suanwang.clock import ManualClock
from suanwang.errors import InvalidSpec
from suanwang.services.agents import MAX_LOG_BYTES, UsageReport, check_usage_bounds
from suanwang.store.tables import AttemptRow, AuditRow, JobRow, UsageRow
from tests.api.conftest import Grid
from tests.api.test_billing_api import API, JOB, priced, top_up, wallet

USAGE = f"{API}/agent/usage"


def _second_site(grid: Grid) -> Any:
    """An agent of site wuhu, which has a pool named like the local one."""
    op = grid.operator
    assert op.post(f"{API}/sites", json={"name": "wuhu", "region": "east"}).status_code == 201
    token = op.post(f"{API}/tokens", json={"role": "agent", "tenant_id": "t-operator", "site": "wuhu"}).json()["token"]
    other = grid.as_(token)
    r = other.post(f"{API}/agent/register", json={"pools": [
        {"name": "cpu", "resource_class": "general", "engine": "local", "cores": 8, "memory_gb": 32}]})
    assert r.status_code == 200, r.text
    return other


def _lease(grid: Grid, job: dict[str, Any] | None = None) -> dict[str, Any]:
    r = grid.consumer.post(f"{API}/jobs", json=job or JOB)
    assert r.status_code == 201, r.text
    grid.tick()
    [task] = grid.agent.post(f"{API}/agent/lease", json={"max_jobs": 1}).json()
    return task


def _record(task: dict[str, Any], seq: int, start: float, wall: float, **extra: Any) -> dict[str, Any]:
    return {"job_id": task["job_id"], "attempt": task["attempt"], "seq": seq, "pool": "cpu", "start": start,
            "end": start + wall, "wall_s": wall, "cpu_s": 1.0, "peak_memory_bytes": 1} | extra


def _expire(grid: Grid, job_id: str) -> None:
    with grid.platform.db.transaction() as s:
        s.execute(update(JobRow).where(JobRow.id == job_id).values(lease_expires_at=time.time() - 1))
    grid.tick()


def _transfers(grid: Grid, job_id: str) -> list[dict[str, Any]]:
    return grid.operator.get(f"{API}/ledger/transfers", params={"job_id": job_id}).json()


def _stored(grid: Grid) -> list[tuple[str, int, int]]:
    with grid.platform.db.transaction() as s:
        return sorted(s.execute(select(UsageRow.job_id, UsageRow.attempt, UsageRow.seq)).tuples())


def test_an_agent_cannot_bill_an_attempt_another_site_ran(grid: Grid) -> None:
    consumer = priced(grid)
    top_up(grid, consumer, 10_000)
    other = _second_site(grid)
    task = _lease(grid)  # attempt 1 at the local site; its lease lapses, attempt 2 runs there again
    _expire(grid, task["job_id"])
    [again] = grid.agent.post(f"{API}/agent/lease", json={"max_jobs": 1}).json()
    assert again["attempt"] == 2
    start = time.time()
    for attempt in (1, 2):  # an earlier attempt was the hole: any site could bill it
        r = other.post(USAGE, json={"records": [_record(task, 0, start, 1800) | {"attempt": attempt}]})
        assert r.status_code == 404 and "site wuhu" in r.text, r.text
    grid.tick()
    assert _stored(grid) == []
    assert [t["kind"] for t in _transfers(grid, task["job_id"])] == ["hold_place"]
    assert wallet(grid, consumer) == {"balance": 8000, "held": 2000, "credit_limit": 0, "available": 8000}


def test_a_batch_with_one_record_of_another_site_stores_nothing(grid: Grid) -> None:
    top_up(grid, priced(grid), 10_000)
    task = _lease(grid)
    start = time.time()
    good = _record(task, 0, start, 10)
    r = grid.agent.post(USAGE, json={"records": [good, _record(task, 1, start + 10, 10) | {"pool": "gpu"}]})
    assert r.status_code == 404 and "pool" in r.text
    assert _stored(grid) == []


@pytest.mark.parametrize(("extra", "words"), [
    ({"wall_s": 100.0}, "exceeds its interval"),  # 100 s of wall time in a 10 s window
    ({"cpu_s": 10 * 2 * 3.0}, "allocated cores"),  # JOB has 2 cores
    ({"device_s": 1.0}, "allocated devices"),  # and no device
    ({"start": 32503680000.0, "end": 32503680010.0}, "in the future"),  # the year 2999
    ({"start": 1.0, "end": 11.0}, "before its attempt was leased"),
])
def test_usage_beyond_what_its_attempt_could_use_is_refused(grid: Grid, extra: dict[str, Any], words: str) -> None:
    grid.platform.settings = dataclasses.replace(grid.platform.settings, usage_clock_skew_s=120.0)
    top_up(grid, priced(grid), 10_000)
    task = _lease(grid)
    r = grid.agent.post(USAGE, json={"records": [_record(task, 0, time.time(), 10) | extra]})
    assert r.status_code == 422 and words in r.text, r.text
    assert _stored(grid) == []


def test_records_of_one_attempt_covering_the_same_seconds_are_refused(grid: Grid) -> None:
    top_up(grid, priced(grid), 10_000)
    task = _lease(grid)
    start = time.time()
    assert grid.agent.post(USAGE, json={"records": [_record(task, 0, start, 60)]}).json()["new"] == 1
    later = grid.agent.post(USAGE, json={"records": [_record(task, 1, start + 30, 60)]})  # overlaps stored seq 0
    assert later.status_code == 422 and "overlaps stored seq 0" in later.text
    within = grid.agent.post(USAGE, json={"records": [_record(task, 2, start + 60, 60),
                                                      _record(task, 3, start + 100, 60)]})
    assert within.status_code == 422 and "overlaps" in within.text
    # Empty windows overlap nothing, but may not add up to more wall time than the attempt's span.
    pumped = [_record(task, 10 + i, start + 60, 0) | {"wall_s": 0.9} for i in range(200)]
    r = grid.agent.post(USAGE, json={"records": pumped})
    assert r.status_code == 422 and "claims" in r.text
    assert grid.agent.post(USAGE, json={"records": [_record(task, 4, start + 60, 60)]}).json()["new"] == 1
    assert _stored(grid) == [(task["job_id"], 1, 0), (task["job_id"], 1, 4)]


def test_numbers_that_are_not_finite_are_refused_by_the_service() -> None:
    # The API refuses NaN and inf in JSON; the service refuses them from any other caller too.
    now = time.time()
    for field in ("start", "end", "wall_s", "cpu_s", "device_s"):
        values = {"start": now, "end": now + 10, "wall_s": 10.0, "cpu_s": 1.0, "device_s": 0.0}
        for bad in (math.nan, math.inf):
            report = UsageReport("j", 1, 0, "cpu", peak_memory_bytes=0, **(values | {field: bad}))
            with pytest.raises(InvalidSpec, match=field):
                check_usage_bounds(report, cores=1, devices=1, leased_at=now, now=now)


def test_only_the_site_that_ran_an_attempt_appends_to_its_log(grid: Grid) -> None:
    grid.register()
    other = _second_site(grid)
    task = _lease(grid)
    chunk = {"job_id": task["job_id"], "attempt": 1, "offset": 0, "data_b64": base64.b64encode(b"forged\n").decode()}
    r = other.post(f"{API}/agent/logs", json=chunk)
    assert r.status_code == 404 and "site wuhu" in r.text
    far = grid.agent.post(f"{API}/agent/logs", json=chunk | {"offset": MAX_LOG_BYTES})
    assert far.status_code == 422 and "limit" in far.text
    assert grid.agent.post(f"{API}/agent/logs", json=chunk | {"data_b64": "b2sK"}).status_code == 200
    assert grid.consumer.get(f"{API}/jobs/{task['job_id']}/logs").text == "ok\n"


def test_usage_of_an_attempt_declared_lost_is_borne_by_the_provider(grid: Grid) -> None:
    consumer = priced(grid)
    grid.operator.put(f"{API}/contracts/t-operator", json={"fee_bps": 1000})
    top_up(grid, consumer, 10_000)
    task = _lease(grid, JOB | {"on_lost": "fail"})
    start = time.time()
    _expire(grid, task["job_id"])  # the platform declares attempt 1 lost; its agent reports later
    r = grid.agent.post(USAGE, json={"records": [_record(task, 0, start, 1800)]})
    assert r.json()["new"] == 1  # it happened: stored and metered
    grid.tick()
    [usage] = grid.consumer.get(f"{API}/jobs/{task['job_id']}/usage").json()
    assert usage["unbilled_reason"] == "lost_attempt" and usage["core_s"] == 3600.0
    assert [t["kind"] for t in _transfers(grid, task["job_id"])] == ["hold_place", "hold_release"]
    assert wallet(grid, consumer) == {"balance": 10_000, "held": 0, "credit_limit": 0, "available": 10_000}
    accounts = {a["account"]: a["fen"] for a in grid.operator.get(f"{API}/ledger/accounts").json()}
    assert accounts.get("earnings:t-operator", 0) == 0
    assert grid.operator.get(f"{API}/ledger/reconcile").json()["ok"] is True
    with grid.platform.db.transaction() as s:
        assert s.scalar(select(AttemptRow.outcome).where(AttemptRow.job_id == task["job_id"])) == "lost"


def test_unbilled_usage_shows_on_the_providers_settlement_statement(grid: Grid) -> None:
    consumer = priced(grid)
    top_up(grid, consumer, 10_000)
    task = _lease(grid)
    start = time.time() - 0.002
    _expire(grid, task["job_id"])
    assert grid.agent.post(USAGE, json={"records": [_record(task, 0, start, 0.001)]}).json()["new"] == 1
    grid.tick()
    grid.set_clock(ManualClock(end := time.time() + 0.002))  # past the usage, without waiting for it
    settled = grid.operator.post(f"{API}/settlements", json={"start": 0, "end": end})
    assert settled.status_code == 201, settled.text
    [line] = settled.json()["unbilled"]
    assert (line["provider"], line["site"], line["reason"], line["records"]) == ("t-operator", "local",
                                                                                  "lost_attempt", 1)


def test_the_last_usage_arriving_with_the_final_status_is_paid_from_the_hold(grid: Grid) -> None:
    consumer = priced(grid)
    top_up(grid, consumer, 10_000)
    task = _lease(grid)  # holds 2000 fen
    # The agent's last report: its usage, then its final status, before any rating pass.
    assert grid.agent.post(USAGE, json={"records": [_record(task, 0, time.time(), 1800)]}).json()["new"] == 1
    grid.agent.post(f"{API}/agent/jobs/{task['job_id']}/status", json={"attempt": 1, "phase": "succeeded"})
    assert wallet(grid, consumer)["held"] == 2000  # not released before its usage is rated
    grid.tick()
    transfers = _transfers(grid, task["job_id"])
    assert [t["kind"] for t in transfers] == ["hold_place", "charge", "hold_release"]
    charge = transfers[1]
    assert charge["hold_id"] == task["job_id"] and f"wallet:{consumer}" not in charge["postings"]
    assert wallet(grid, consumer) == {"balance": 9000, "held": 0, "credit_limit": 0, "available": 9000}
    assert grid.operator.get(f"{API}/ledger/reconcile").json()["ok"] is True


def test_usage_arriving_after_the_hold_was_released_is_charged_to_the_wallet_and_audited(grid: Grid) -> None:
    consumer = priced(grid)
    top_up(grid, consumer, 10_000)
    task = _lease(grid)
    start = time.time()
    grid.agent.post(f"{API}/agent/jobs/{task['job_id']}/status", json={"attempt": 1, "phase": "succeeded"})
    grid.tick()
    assert wallet(grid, consumer)["held"] == 0
    assert grid.agent.post(USAGE, json={"records": [_record(task, 0, start, 1800)]}).json()["new"] == 1
    grid.tick()
    assert wallet(grid, consumer)["balance"] == 9000
    with grid.platform.db.transaction() as s:
        actions = list(s.scalars(select(AuditRow.action).where(AuditRow.action == "usage.after_release")))
    assert actions == ["usage.after_release"]


def test_a_cancelled_running_jobs_hold_waits_for_its_agents_last_usage(grid: Grid) -> None:
    consumer = priced(grid)
    top_up(grid, consumer, 10_000)
    task = _lease(grid)
    start = time.time()
    assert grid.consumer.post(f"{API}/jobs/{task['job_id']}/cancel").status_code == 200
    grid.tick()
    assert wallet(grid, consumer)["held"] == 2000  # the agent kills it and sends what it used
    assert grid.agent.post(USAGE, json={"records": [_record(task, 0, start, 900)]}).json()["new"] == 1
    stale = grid.agent.post(f"{API}/agent/jobs/{task['job_id']}/status", json={"attempt": 1, "phase": "cancelled"})
    assert stale.json() == {"applied": False}
    grid.tick()
    kinds = [t["kind"] for t in _transfers(grid, task["job_id"])]
    assert kinds == ["hold_place", "charge", "hold_release"]
    assert wallet(grid, consumer) == {"balance": 9500, "held": 0, "credit_limit": 0, "available": 9500}
