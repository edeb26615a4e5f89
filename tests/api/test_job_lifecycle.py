"""queued_at_site vs running: a lease is not a start; the agent's "started" report is."""

from __future__ import annotations

import time

from tests.api.conftest import Grid
from tests.api.test_agent_protocol import JOB, _expire, _leased
from tests.api.test_billing_cli import cli  # noqa: F401  (the fixture)


def _status(grid: Grid, task: dict, **body: object) -> dict:
    r = grid.agent.post(f"/api/v1/agent/jobs/{task['job_id']}/status", json={"attempt": task["attempt"], **body})
    assert r.status_code == 200, r.text
    return r.json()


def _job(grid: Grid, task: dict) -> dict:
    return grid.consumer.get(f"/api/v1/jobs/{task['job_id']}").json()


def _events(grid: Grid, task: dict) -> list[str]:
    return [e["to"] for e in grid.consumer.get(f"/api/v1/jobs/{task['job_id']}/events").json()]


def test_a_leased_job_is_queued_at_site_until_its_engine_starts_it(grid: Grid) -> None:
    before = time.time()
    task = _leased(grid)
    job = _job(grid, task)
    assert (job["state"], job["started_at"], job["attempt"]) == ("queued_at_site", None, 1)
    engine_start = time.time()
    assert _status(grid, task, phase="started", started_at=engine_start) == {"applied": True}
    job = _job(grid, task)
    assert job["state"] == "running" and before <= job["started_at"] == engine_start <= time.time()
    assert _status(grid, task, phase="started", started_at=engine_start + 1) == {"applied": True}  # a resend
    assert _job(grid, task)["started_at"] == engine_start
    assert _events(grid, task) == ["pending", "placed", "queued_at_site", "running"]


def test_an_engine_start_time_outside_lease_to_now_is_clamped(grid: Grid) -> None:
    task = _leased(grid)
    leased_at = next(e["at"] for e in grid.consumer.get(f"/api/v1/jobs/{task['job_id']}/events").json()
                     if e["to"] == "queued_at_site")
    _status(grid, task, phase="started", started_at=1.0)  # 1970: before the platform handed it out
    assert _job(grid, task)["started_at"] == leased_at
    other = _leased(grid)
    _status(grid, other, phase="started", started_at=32503680000.0)  # year 3000
    assert leased_at <= _job(grid, other)["started_at"] <= time.time()


def test_a_job_that_finished_between_polls_goes_straight_to_its_final_state(grid: Grid) -> None:
    task = _leased(grid)
    start = time.time()
    assert _status(grid, task, phase="succeeded", exit_code=0, started_at=start) == {"applied": True}
    job = _job(grid, task)
    assert (job["state"], job["started_at"]) == ("succeeded", start)
    assert _events(grid, task) == ["pending", "placed", "queued_at_site", "succeeded"]
    assert _status(grid, task, phase="started", started_at=start) == {"applied": False}  # too late: changes nothing


def test_heartbeats_renew_a_queued_attempt_and_a_lapsed_one_is_requeued(grid: Grid) -> None:
    task = _leased(grid)
    hb = grid.agent.post("/api/v1/agent/heartbeat", json={"running": [{"job_id": task["job_id"], "attempt": 1}]})
    assert hb.json()["kill"] == []
    _expire(grid, task["job_id"])
    grid.tick()
    assert _job(grid, task)["state"] == "placed"
    assert _events(grid, task)[-2:] == ["requeued", "placed"]
    assert _status(grid, task, phase="started", started_at=time.time()) == {"applied": False}
    hb = grid.agent.post("/api/v1/agent/heartbeat", json={"running": [{"job_id": task["job_id"], "attempt": 1}]})
    assert hb.json()["kill"] == [{"job_id": task["job_id"], "attempt": 1}]


def test_cancelling_a_queued_job_kills_it_at_its_site(grid: Grid) -> None:
    task = _leased(grid)
    r = grid.consumer.post(f"/api/v1/jobs/{task['job_id']}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    hb = grid.agent.post("/api/v1/agent/heartbeat", json={"running": [{"job_id": task["job_id"], "attempt": 1}]})
    assert hb.json()["kill"] == [{"job_id": task["job_id"], "attempt": 1}]


def test_a_queued_job_holds_its_capacity(grid: Grid) -> None:
    grid.register([{"name": "cpu", "resource_class": "general", "engine": "local", "cores": 2, "memory_gb": 4}])
    first = grid.consumer.post("/api/v1/jobs", json=JOB).json()
    grid.tick()
    assert [t["job_id"] for t in grid.agent.post("/api/v1/agent/lease", json={"max_jobs": 4}).json()] == [first["id"]]
    second = grid.consumer.post("/api/v1/jobs", json=JOB).json()
    grid.tick()
    assert grid.consumer.get(f"/api/v1/jobs/{second['id']}").json()["state"] == "pending"
    explained = grid.consumer.get(f"/api/v1/jobs/{first['id']}/explain").json()
    assert explained["state"] == "queued_at_site"
    listed = grid.consumer.get("/api/v1/jobs", params={"state": "queued_at_site"}).json()["jobs"]
    assert [j["id"] for j in listed] == [first["id"]]


def test_bad_status_reports_are_refused_with_the_field_named(grid: Grid) -> None:
    task = _leased(grid)
    url = f"/api/v1/agent/jobs/{task['job_id']}/status"
    for body, field in [({"attempt": 1, "phase": "begun"}, "phase"),
                        ({"attempt": 1, "phase": "started", "started_at": -5}, "started_at"),
                        ({"attempt": 1, "phase": "started", "started_at": "soon"}, "started_at")]:
        r = grid.agent.post(url, json=body)
        assert r.status_code == 422 and field in r.text, (body, r.text)
    r = grid.agent.post(url, content=b'{"attempt": 1, "phase": "started", "started_at": NaN}',
                        headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert _job(grid, task)["state"] == "queued_at_site"


def test_show_says_whether_the_engine_started_the_job(  # type: ignore[no-untyped-def]
    grid: Grid, cli,  # noqa: F811
) -> None:
    task = _leased(grid)
    queued = cli("consumer", "show", task["job_id"])
    assert "queued_at_site" in queued and "not started yet" in queued
    assert task["job_id"] in cli("consumer", "jobs", "--state", "queued_at_site")
    _status(grid, task, phase="started", started_at=time.time())
    running = cli("consumer", "show", task["job_id"])
    assert "started: " in running and "not started yet" not in running
