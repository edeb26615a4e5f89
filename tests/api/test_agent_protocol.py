"""The agent protocol: leases, heartbeats, keyed usage, stale reports, lost leases."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import update

from suanwang.store.tables import JobRow
from tests.api.conftest import Grid

JOB = {"command": ["true"], "cores": 2, "memory_gb": 1}


def _leased(grid: Grid, job: dict | None = None) -> dict:
    grid.register()
    job = grid.consumer.post("/api/v1/jobs", json=job or JOB).json()
    grid.tick()
    [task] = grid.agent.post("/api/v1/agent/lease", json={"max_jobs": 4}).json()
    assert task["job_id"] == job["id"] and task["attempt"] == 1
    return task


T0 = time.time()  # before any lease of this module's tests: records start after it, back to back by seq


def _usage(task: dict, seq: int, wall: float = 10.0) -> dict:
    start = T0 + seq * wall
    return {"job_id": task["job_id"], "attempt": task["attempt"], "seq": seq, "pool": "cpu", "start": start,
            "end": start + wall, "wall_s": wall, "cpu_s": wall / 2, "peak_memory_bytes": 1000}


def test_usage_report_retried_is_counted_once(grid: Grid) -> None:
    task = _leased(grid)
    body = {"records": [_usage(task, 0), _usage(task, 1)]}
    first = grid.agent.post("/api/v1/agent/usage", json=body).json()
    again = grid.agent.post("/api/v1/agent/usage", json=body).json()
    assert (first["new"], again["new"]) == (2, 0)
    records = grid.consumer.get(f"/api/v1/jobs/{task['job_id']}/usage").json()
    assert len(records) == 2
    # 2 cores x 10 s x 0.04 SCU per core-hour / 3600 s
    assert records[0]["core_s"] == 20.0
    assert records[0]["units"] == f"{20 * 0.04 / 3600:.9f}"


def test_status_reports_finish_the_job_and_stale_ones_change_nothing(grid: Grid) -> None:
    task = _leased(grid)
    stale = grid.agent.post(f"/api/v1/agent/jobs/{task['job_id']}/status", json={"attempt": 7, "phase": "failed"})
    assert stale.json() == {"applied": False}
    ok = grid.agent.post(f"/api/v1/agent/jobs/{task['job_id']}/status",
                         json={"attempt": 1, "phase": "succeeded", "exit_code": 0})
    assert ok.json() == {"applied": True}
    assert grid.consumer.get(f"/api/v1/jobs/{task['job_id']}").json()["state"] == "succeeded"


def test_heartbeat_asks_agent_to_kill_a_cancelled_attempt(grid: Grid) -> None:
    task = _leased(grid)
    grid.consumer.post(f"/api/v1/jobs/{task['job_id']}/cancel")
    hb = grid.agent.post("/api/v1/agent/heartbeat", json={"running": [{"job_id": task["job_id"], "attempt": 1}]})
    assert hb.json()["kill"] == [{"job_id": task["job_id"], "attempt": 1}]


def test_a_started_report_after_cancel_is_not_the_final_one(grid: Grid) -> None:
    """A cancelled attempt's late "started" report leaves the hold waiting for its usage; its final report ends it."""
    from suanwang.services.attempts import may_still_report

    task = _leased(grid)
    grid.consumer.post(f"/api/v1/jobs/{task['job_id']}/cancel")
    status = f"/api/v1/agent/jobs/{task['job_id']}/status"
    grid.agent.post(status, json={"attempt": 1, "phase": "started", "started_at": time.time()})

    def still() -> bool:
        with grid.platform.db.transaction() as s:
            return may_still_report(s, s.get(JobRow, task["job_id"]), now=time.time(), grace_s=3600)

    assert still(), "usage of the attempt may still arrive after a started report"
    grid.agent.post(status, json={"attempt": 1, "phase": "cancelled", "exit_code": None})
    assert not still(), "the final report says no more usage is on the way"


def _expire(grid: Grid, job_id: str) -> None:
    with grid.platform.db.transaction() as s:
        s.execute(update(JobRow).where(JobRow.id == job_id).values(lease_expires_at=time.time() - 1))


def test_lost_lease_requeues_and_a_new_attempt_runs(grid: Grid) -> None:
    task = _leased(grid)
    _expire(grid, task["job_id"])
    grid.tick()  # reaps the lease and places the job again
    job = grid.consumer.get(f"/api/v1/jobs/{task['job_id']}").json()
    assert job["state"] == "placed"
    [again] = grid.agent.post("/api/v1/agent/lease", json={"max_jobs": 4}).json()
    assert again["attempt"] == 2
    old = grid.agent.post(f"/api/v1/agent/jobs/{task['job_id']}/status", json={"attempt": 1, "phase": "succeeded"})
    assert old.json() == {"applied": False}
    events = [e["to"] for e in grid.consumer.get(f"/api/v1/jobs/{task['job_id']}/events").json()]
    assert events == ["pending", "placed", "queued_at_site", "requeued", "placed", "queued_at_site"]


def test_lost_lease_with_fail_policy_marks_lost(grid: Grid) -> None:
    task = _leased(grid, JOB | {"on_lost": "fail"})
    _expire(grid, task["job_id"])
    grid.tick()
    assert grid.consumer.get(f"/api/v1/jobs/{task['job_id']}").json()["state"] == "lost"


def test_agent_sees_only_its_own_site(grid: Grid) -> None:
    task = _leased(grid)
    op = grid.operator
    op.post("/api/v1/sites", json={"name": "wuhu", "region": "east"})
    tok = op.post("/api/v1/tokens", json={"role": "agent", "tenant_id": "t-operator", "site": "wuhu"}).json()["token"]
    other = grid.as_(tok)
    assert other.post("/api/v1/agent/lease", json={}).json() == []
    r = other.post(f"/api/v1/agent/jobs/{task['job_id']}/status", json={"attempt": 1, "phase": "succeeded"})
    assert r.status_code == 404
    r = other.post("/api/v1/agent/usage", json={"records": [_usage(task, 0) | {"pool": "cpu"}]})
    assert r.status_code == 404
    assert grid.consumer.post("/api/v1/agent/lease", json={}).status_code == 403


def test_logs_are_reassembled_by_offset_and_retries_are_harmless(grid: Grid) -> None:
    import base64

    task = _leased(grid)
    for offset, text in [(0, b"hello "), (6, b"world\n"), (0, b"hello ")]:
        body = {"job_id": task["job_id"], "attempt": 1, "offset": offset, "data_b64": base64.b64encode(text).decode()}
        assert grid.agent.post("/api/v1/agent/logs", json=body).status_code == 200
    assert grid.consumer.get(f"/api/v1/jobs/{task['job_id']}/logs").text == "hello world\n"
    bad = grid.agent.post("/api/v1/agent/logs", json={"job_id": task["job_id"], "attempt": 1, "offset": 0,
                                                       "data_b64": "!!notbase64"})
    assert bad.status_code == 422


def test_negative_usage_is_rejected(grid: Grid) -> None:
    task = _leased(grid)
    r = grid.agent.post("/api/v1/agent/usage", json={"records": [_usage(task, 0) | {"wall_s": -1}]})
    assert r.status_code == 422


def test_register_rejects_a_gpu_pool_without_device_model(grid: Grid) -> None:
    r = grid.agent.post("/api/v1/agent/register", json={"pools": [
        {"name": "gpu", "resource_class": "intelligent", "engine": "local", "cores": 8, "memory_gb": 32,
         "devices": 2}]})
    assert r.status_code == 422
    assert "device" in r.json()["detail"]


@pytest.mark.parametrize("field", ["tier", "device_model", "cpu_model", "engine"])
def test_register_refuses_a_pool_field_wider_than_its_column(grid: Grid, field: str) -> None:
    # PostgreSQL enforces the widths SQLite ignores: a long value was a 500 there, not a message.
    pool = {"name": "cpu", "resource_class": "general", "engine": "local", "cores": 8, "memory_gb": 32}
    r = grid.agent.post("/api/v1/agent/register", json={"pools": [pool | {field: "x" * 101}]})
    assert r.status_code == 422 and field in r.text
    assert grid.consumer.get("/api/v1/pools").json() == []


def test_a_lease_call_repeated_after_a_lost_reply_gets_the_same_attempts(grid: Grid) -> None:
    grid.register()
    ids = {grid.consumer.post("/api/v1/jobs", json=JOB).json()["id"] for _ in range(2)}
    grid.tick()
    first = grid.agent.post("/api/v1/agent/lease", json={"max_jobs": 4, "request_id": "r-1"}).json()
    assert {t["job_id"] for t in first} == ids and {t["attempt"] for t in first} == {1}
    # The reply was lost; the agent repeats the call: same attempts, not re-leased, not lapsing.
    again = grid.agent.post("/api/v1/agent/lease", json={"max_jobs": 4, "request_id": "r-1"}).json()
    assert sorted((t["job_id"], t["attempt"]) for t in again) == sorted((t["job_id"], t["attempt"]) for t in first)
    assert grid.agent.post("/api/v1/agent/lease", json={"max_jobs": 4, "request_id": "r-2"}).json() == []
    events = [e["to"] for i in ids for e in grid.consumer.get(f"/api/v1/jobs/{i}/events").json()]
    assert events.count("queued_at_site") == 2  # one lease per job


def test_a_lease_request_id_longer_than_64_characters_is_refused(grid: Grid) -> None:
    grid.register()
    r = grid.agent.post("/api/v1/agent/lease", json={"max_jobs": 1, "request_id": "x" * 65})
    assert r.status_code == 422 and "request_id" in r.text


def test_agent_reports_with_values_no_column_holds_are_refused(grid: Grid) -> None:
    task = _leased(grid)
    huge, long = 2**70, "x" * 5000
    bad = [
        ("/usage", {"records": [_usage(task, 0) | {"peak_memory_bytes": huge}]}),
        ("/usage", {"records": [_usage(task, huge)]}),
        ("/usage", {"records": [_usage(task, 0) | {"attempt": huge}]}),
        ("/usage", {"records": [_usage(task, 0) | {"job_id": long, "pool": long}]}),
        ("/usage", {"records": [_usage(task, 0) | {"end": 1e300, "wall_s": 1e300, "cpu_s": 1e300, "device_s": 1e300}]}),
        ("/logs", {"job_id": task["job_id"], "attempt": 1, "offset": huge, "data_b64": "eA=="}),
        ("/logs", {"job_id": long, "attempt": huge, "offset": 0, "data_b64": "eA=="}),
        (f"/jobs/{task['job_id']}/status", {"attempt": huge, "phase": "started"}),
        ("/heartbeat", {"running": [{"job_id": task["job_id"], "attempt": huge}]}),
    ]
    answers = [(path, grid.agent.post(f"/api/v1/agent{path}", json=body).status_code) for path, body in bad]
    assert [a for a in answers if not 400 <= a[1] < 500] == []
    assert grid.agent.post("/api/v1/agent/usage", json={"records": [_usage(task, 0)]}).json()["new"] == 1
