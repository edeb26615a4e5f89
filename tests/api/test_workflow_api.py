"""Workflow runs through the API: refused at submit naming the step, steps start once their inputs exist,
outputs become dataset versions, retries, failure and cancel stop the run."""

from __future__ import annotations

import hashlib

import pytest

from suanwang.store.tables import JobRow, WorkflowRunRow, WorkflowStepRow
from tests.api.conftest import Grid

SHA = hashlib.sha256(b"raw").hexdigest()
OUT = hashlib.sha256(b"model").hexdigest()
JOB = {"command": ["true"], "cores": 1, "memory_gb": 1}


def _run(grid: Grid, steps: list[dict], client=None):  # type: ignore[no-untyped-def]
    return (client or grid.consumer).post("/api/v1/workflows", json={"name": "flow", "steps": steps})


def _lease_one(grid: Grid) -> dict:
    grid.tick()
    [task] = grid.agent.post("/api/v1/agent/lease", json={"max_jobs": 4}).json()
    return task


def _end(grid: Grid, task: dict, phase: str = "succeeded") -> None:
    code = 0 if phase == "succeeded" else 1
    r = grid.agent.post(f"/api/v1/agent/jobs/{task['job_id']}/status",
                        json={"attempt": task["attempt"], "phase": phase, "exit_code": code})
    assert r.status_code == 200, r.text


def test_refused_at_submit_naming_the_step(grid: Grid) -> None:
    grid.register()
    r = _run(grid, [{"name": "a", "job": JOB, "inputs": ["nope"]}])
    assert r.status_code == 422 and "step a: unknown input nope" in r.text
    r = _run(grid, [{"name": "a", "job": JOB, "inputs": ["b.y"], "output": "x"},
                    {"name": "b", "job": JOB, "inputs": ["a.x"], "output": "y"}])
    assert r.status_code == 422 and "cycle" in r.text
    r = _run(grid, [{"name": "a", "job": {"command": ["x\x00"]}}])
    assert r.status_code == 422
    r = _run(grid, [{"name": "a", "job": {"command": ["true"], "cores": 2**70}}])
    assert r.status_code == 422 and "step a" in r.text
    assert grid.consumer.get("/api/v1/workflows").json() == []  # nothing half-written


def test_a_chain_runs_step_by_step_with_its_output_as_a_dataset(grid: Grid) -> None:
    grid.register()
    assert grid.consumer.post("/api/v1/datasets", json={"name": "raw", "size_bytes": 3, "sha256": SHA,
                                                          "sites": ["local"]}).status_code == 201
    r = _run(grid, [{"name": "train", "job": JOB, "inputs": ["raw"], "output": "model"},
                    {"name": "serve", "job": JOB, "inputs": ["train.model"]}])
    assert r.status_code == 201, r.text
    run = r.json()
    assert [s["state"] for s in run["steps"]] == ["submitted", "waiting"]
    task = _lease_one(grid)
    assert task["job_id"] == run["steps"][0]["job_id"]
    other = grid.new_consumer("other")
    assert other.get(f"/api/v1/workflows/{run['id']}").status_code == 404
    assert grid.agent.post(f"/api/v1/agent/jobs/{task['job_id']}/output",
                           json={"attempt": task["attempt"], "size_bytes": 5, "sha256": OUT}).status_code == 200
    _end(grid, task)
    grid.tick()
    view = grid.consumer.get(f"/api/v1/workflows/{run['id']}").json()
    assert [s["state"] for s in view["steps"]] == ["succeeded", "submitted"]
    [model] = grid.consumer.get("/api/v1/datasets?name=model").json()
    assert (model["sha256"], model["source_job"], [x["site"] for x in model["replicas"]]) == (
        OUT, task["job_id"], ["local"])
    _end(grid, _lease_one(grid))
    grid.tick()
    view = grid.consumer.get(f"/api/v1/workflows/{run['id']}").json()
    assert view["state"] == "succeeded" and [s["state"] for s in view["steps"]] == ["succeeded", "succeeded"]


def test_a_step_without_its_output_fails_the_run_and_retries_first(grid: Grid) -> None:
    grid.register()
    run = _run(grid, [{"name": "a", "job": JOB, "retries": 1}, {"name": "b", "job": JOB, "after": ["a"]}]).json()
    _end(grid, _lease_one(grid), "failed")
    grid.tick()
    view = grid.consumer.get(f"/api/v1/workflows/{run['id']}").json()
    assert view["steps"][0]["attempts"] == 2 and view["state"] == "running"  # retried once
    _end(grid, _lease_one(grid), "failed")
    grid.tick()
    view = grid.consumer.get(f"/api/v1/workflows/{run['id']}").json()
    assert view["state"] == "failed" and "step a" in view["reason"]
    assert [s["state"] for s in view["steps"]] == ["failed", "cancelled"]


def test_cancel_stops_the_whole_run(grid: Grid) -> None:
    grid.register()
    run = _run(grid, [{"name": "a", "job": JOB}, {"name": "b", "job": JOB}, {"name": "c", "job": JOB, "after": ["a"]}])
    run = run.json()
    job_ids = [s["job_id"] for s in run["steps"] if s["job_id"]]
    assert len(job_ids) == 2
    assert grid.new_consumer("x").post(f"/api/v1/workflows/{run['id']}/cancel").status_code == 404
    view = grid.consumer.post(f"/api/v1/workflows/{run['id']}/cancel").json()
    assert view["state"] == "cancelled" and {s["state"] for s in view["steps"]} == {"cancelled"}
    assert {grid.consumer.get(f"/api/v1/jobs/{j}").json()["state"] for j in job_ids} == {"cancelled"}
    assert grid.consumer.post(f"/api/v1/workflows/{run['id']}/cancel").status_code == 409


def test_a_wide_workflow_is_submitted_in_as_many_statements_as_a_narrow_one(grid: Grid) -> None:
    """Submitting N independent steps is one batch (one submit, one hold, bulk inserts), not N of each:
    the SQL a submit sends does not grow with its steps, and each step still has its own job and audit row."""
    from sqlalchemy import event, func, select

    from suanwang.store.tables import AuditRow

    grid.register([{"name": "cpu", "resource_class": "general", "engine": "local", "cores": 128, "memory_gb": 512}])
    assert grid.operator.post("/api/v1/price-books", json={"entries": [
        {"resource_class": "general", "tier": "standard", "service_level": "standard", "unit": "core_hour",
         "unit_price_fen": 50}]}).status_code == 201
    tenant = grid.consumer.get("/api/v1/whoami").json()["tenant_id"]
    assert grid.operator.post("/api/v1/topups", json={"consumer": tenant, "amount_fen": 10**9},
                              headers={"Idempotency-Key": "t"}).status_code == 201
    _run(grid, [{"name": "warm", "job": JOB}])
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    engine = grid.platform.db.engine
    sent = {}
    for n in (3, 40):
        statements.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            r = _run(grid, [{"name": f"s{k}", "job": JOB} for k in range(n)])
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert r.status_code == 201, r.text
        steps = r.json()["steps"]
        assert [s["state"] for s in steps] == ["submitted"] * n and len({s["job_id"] for s in steps}) == n
        sent[n] = len(statements)
    assert sent[40] <= sent[3] + 4, sent  # a statement or two of cache warm-up either way, never one per step
    with grid.platform.db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(AuditRow).where(AuditRow.action == "workflow.step")) == 44
    grid.tick()
    view = grid.consumer.get(f"/api/v1/workflows/{r.json()['id']}").json()
    assert {s["job_state"] for s in view["steps"]} == {"placed"}


def test_a_step_the_loop_starts_is_placed_in_the_same_pass(grid: Grid) -> None:
    """Each link of a chain costs one pass of the control loop, not two (nor a safety tick, seconds)."""
    grid.register()
    run = _run(grid, [{"name": "a", "job": JOB}, {"name": "b", "job": JOB, "after": ["a"]}]).json()
    _end(grid, _lease_one(grid))
    grid.tick()  # a's end is seen, b's job submitted and placed
    with grid.platform.db.sessions() as s:  # not through the API: reading a run moves it on itself
        step = s.get(WorkflowStepRow, (run["id"], "b"))
        job = s.get(JobRow, step.job_id) if step is not None and step.job_id else None
        assert job is not None and job.state == "placed"


def test_reading_a_run_that_starts_a_step_wakes_the_loop(grid: Grid) -> None:
    grid.register()
    run = _run(grid, [{"name": "a", "job": JOB}, {"name": "b", "job": JOB, "after": ["a"]}]).json()
    _end(grid, _lease_one(grid))
    grid.platform._wake.clear()
    view = grid.consumer.get(f"/api/v1/workflows/{run['id']}").json()  # the read moves the run on first
    assert view["steps"][1]["state"] == "submitted" and grid.platform._wake.is_set()


def test_a_run_being_advanced_is_not_advanced_twice_at_once(grid: Grid) -> None:
    """Two replicas' passes (or a pass and a read) never both start a step: the run's row is locked while it
    moves on, and the loop skips a run another transaction holds (PostgreSQL; SQLite has one writer)."""
    from suanwang.services import workflows

    if grid.platform.db.engine.dialect.name != "postgresql":
        pytest.skip("row locks: PostgreSQL (SQLite runs one write transaction at a time)")
    grid.register()
    run = _run(grid, [{"name": "a", "job": JOB}, {"name": "b", "job": JOB, "after": ["a"]}]).json()
    _end(grid, _lease_one(grid))
    with grid.platform.db.transaction() as holder:
        row = holder.get(WorkflowRunRow, run["id"], with_for_update=True)  # another pass is moving it on
        assert row is not None
        with grid.platform.db.transaction() as other:
            assert workflows.advance_all(other) == 0  # skipped, not started a second time
    with grid.platform.db.transaction() as s:
        assert workflows.advance_all(s) == 1
    view = grid.consumer.get(f"/api/v1/workflows/{run['id']}").json()
    assert len(view["steps"][1]["jobs"]) == 1
