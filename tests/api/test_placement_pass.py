"""The scheduling pass writes its plan in bulk: states, events, and no overwrite of a concurrent change."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select, text

from suanwang.store.tables import JobEventRow, JobRow
from tests.api.conftest import Grid

API = "/api/v1"
JOB = {"command": ["true"], "cores": 1, "memory_gb": 1}


def _submit(grid: Grid, n: int) -> list[str]:
    r = grid.consumer.post(f"{API}/jobs/batch", json={"jobs": [JOB] * n})
    assert r.status_code == 201, r.text
    return [j["id"] for j in r.json()]


def test_a_pass_places_what_fits_and_logs_one_event_per_placed_job(grid: Grid) -> None:
    grid.register()  # 8 cores
    ids = _submit(grid, 10)
    grid.tick()
    with grid.platform.db.transaction() as s:
        rows = {r.id: r for r in s.scalars(select(JobRow).where(JobRow.id.in_(ids)))}
        events = list(s.scalars(select(JobEventRow).where(JobEventRow.to_state == "placed")))
    queue = sorted(ids)  # one batch shares its submit time: the queue orders it by id
    placed = [i for i in queue if rows[i].state == "placed"]
    assert placed == queue[:8]  # queue order, until the pool is full
    assert all(rows[i].state == "pending" and rows[i].site is None for i in queue[8:])
    assert all(rows[i].site == "local" and rows[i].pool == "cpu" and rows[i].placed_at for i in placed)
    assert all(rows[i].placement["pool"] == "cpu" for i in placed)
    assert sorted(e.job_id for e in events) == sorted(placed)
    assert all(e.from_state == "pending" for e in events)
    grid.tick()  # nothing freed: nothing more placed, no duplicate events
    with grid.platform.db.transaction() as s:
        assert s.scalar(select(text("count(*)")).select_from(JobEventRow).where(JobEventRow.to_state == "placed")) == 8


@pytest.mark.postgres
def test_a_job_being_cancelled_during_a_pass_is_not_placed_over_the_cancel(grid: Grid) -> None:
    if grid.platform.db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: a cancel and a pass cannot interleave")
    grid.register()
    first, second = _submit(grid, 2)
    locked, release = threading.Event(), threading.Event()

    def cancel_slowly() -> None:  # holds the row lock as a cancel in flight does, then cancels
        with grid.platform.db.transaction() as s:
            job = s.scalar(select(JobRow).where(JobRow.id == first).with_for_update())
            locked.set()
            release.wait(10)
            job.state = "cancelled"

    t = threading.Thread(target=cancel_slowly)
    t.start()
    assert locked.wait(10)
    grid.tick()  # must skip the locked job rather than wait for it or overwrite it
    release.set()
    t.join()
    with grid.platform.db.transaction() as s:
        states = dict(s.execute(select(JobRow.id, JobRow.state).where(JobRow.id.in_([first, second]))).all())
    assert states == {first: "cancelled", second: "placed"}
