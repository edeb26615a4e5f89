"""Time-of-use books and price limits, on SQLite and PostgreSQL, with a test clock: a job held just before a
dearer band starts is not stranded when the clock moves, and a job whose explicit limit is below the band in
force waits for a cheaper band and says so."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

import pytest

from suanwang.clock import ManualClock
from suanwang.domain.placement import QueuedJob, priced_out
from suanwang.errors import InvalidSpec
from suanwang.services import billing, jobs, scheduling
from suanwang.services.auth import Principal, Role
from suanwang.store.tables import JobRow
from tests.api.conftest import Grid

API = "/api/v1"
# Gansu (stand-in windows): valley 23-07, flat 07-10, peak 10-15 (China time); 10 yuan per core-hour flat.
TOU_BOOK = {"entries": [{"resource_class": "general", "tier": "standard", "service_level": "standard",
                         "unit": "core_hour", "unit_price_fen": 1000, "tou": {"province": "Gansu"}}]}
POOL = {"name": "cpu", "resource_class": "general", "engine": "local", "cores": 128, "memory_gb": 256}
JOB = {"command": ["true"], "cores": 64, "memory_gb": 1, "duration_s": 3600}
SUBMIT_AT = datetime(2026, 12, 7, 22, 35, tzinfo=UTC).timestamp()  # 06:35 China time: valley, flat from 07:00


def _setup(grid: Grid) -> tuple[ManualClock, Principal]:
    clock = ManualClock(SUBMIT_AT)
    grid.set_clock(clock)
    grid.register([POOL])
    assert grid.operator.post(f"{API}/price-books", json=TOU_BOOK).status_code == 201
    consumer = grid.consumer.get(f"{API}/whoami").json()["tenant_id"]
    assert grid.operator.post(f"{API}/topups", json={"consumer": consumer, "amount_fen": 10**7}).status_code == 201
    return clock, Principal("consumer", Role.CONSUMER, consumer)


def _submit(grid: Grid, actor: Principal, clock: ManualClock, **change: Any) -> str:
    """Submit at the clock's time (the service reads the injected clock)."""
    with grid.platform.db.transaction() as s:
        [row] = jobs.submit_jobs(s, actor, [jobs.spec_from_json(JOB | change)], clock=clock)
        return row.id


def _place(grid: Grid, now: float) -> list[str]:
    with grid.platform.db.transaction() as s:
        scheduler = functools.partial(grid.platform.planner.scheduler, s)
        return [p.job_id for p in scheduling.place_waiting_jobs(s, scheduler, now=now)]


def _explain(grid: Grid, job_id: str, now: float) -> dict[str, Any]:
    with grid.platform.db.transaction() as s:
        job = s.get(JobRow, job_id)
        assert job is not None
        return scheduling.explain_job(s, grid.platform.planner, job, now=now)


def test_a_job_held_just_before_a_dearer_band_is_placed_a_minute_later(grid: Grid) -> None:
    clock, consumer = _setup(grid)
    job_id = _submit(grid, consumer, clock)
    clock.advance(60)  # 06:36: the 1-hour window now holds a minute more of the flat band
    assert _place(grid, clock.time()) == [job_id]


def test_a_job_without_a_limit_is_held_for_its_dearest_window_in_the_next_day(grid: Grid) -> None:
    """Like a card pre-authorisation: 64 core-hours at peak (1.25 x 64,000 fen), whatever band it is now."""
    clock, consumer = _setup(grid)
    job_id = _submit(grid, consumer, clock)  # 06:35: the window quoted now would cost 57,333 fen
    job = grid.consumer.get(f"{API}/jobs/{job_id}").json()
    assert job["spec"]["max_price_fen"] == 80_000
    assert grid.consumer.get(f"{API}/wallets/{consumer.tenant_id}").json()["held"]["fen"] == 80_000
    for hour in range(24):  # at every hour of the next day some pool is within its limit: it is never stranded
        with grid.platform.db.transaction() as s:
            [queued] = billing.price_queue(s, [QueuedJob(job_id, jobs.spec_from_json(job["spec"]), consumer.tenant_id,
                                                         SUBMIT_AT)], [p.pool for p in scheduling.pool_states(s)],
                                           now=SUBMIT_AT + hour * 3600)
        assert priced_out(queued) == {}, hour


def test_a_limit_is_refused_at_submit_only_when_no_band_is_ever_within_it(grid: Grid) -> None:
    clock, consumer = _setup(grid)
    clock.advance(4 * 3600)  # 10:35 China time, peak: 80,000 fen now, 48,000 in the valley tonight
    refused = "within max_price_fen 47999 at any start in the next 24 h"
    with pytest.raises(InvalidSpec, match=refused), grid.platform.db.transaction() as s:
        jobs.submit_jobs(s, consumer, [jobs.spec_from_json(JOB | {"max_price_fen": 47_999})], clock=clock)
    job_id = _submit(grid, consumer, clock, max_price_fen=48_000)  # the valley is within it: it waits for it
    assert grid.consumer.get(f"{API}/wallets/{consumer.tenant_id}").json()["held"]["fen"] == 48_000
    valley = datetime(2026, 12, 8, 15, 0, tzinfo=UTC).timestamp()  # 23:00 China time
    assert _explain(grid, job_id, clock.time())["waiting_for_price"] == {"local/cpu": valley}
    assert _place(grid, valley - 1) == []
    assert _place(grid, valley) == [job_id]



def test_a_job_whose_limit_is_below_the_band_waits_for_a_cheaper_band_and_says_so(grid: Grid) -> None:
    clock, consumer = _setup(grid)
    clock.advance(4 * 3600)  # 10:35 China time: peak until 15:00, then flat
    # 64 core-hours: 64,000 fen flat, 80,000 at peak, 48,000 in the valley: a limit of 64,000 waits for flat
    job_id = _submit(grid, consumer, clock, max_price_fen=64_000)
    assert _place(grid, clock.time()) == []
    explained = _explain(grid, job_id, clock.time())
    flat = datetime(2026, 12, 8, 7, 0, tzinfo=UTC).timestamp()  # 15:00 China time
    assert explained["waiting_for_price"] == {"local/cpu": flat}, explained
    assert explained["summary"] == (f"job {job_id}: waiting for price: every pool that could run it is above its "
                                    "limit 64000 fen now; local/cpu is within it from 2026-12-08 15:00 China time (a "
                                    "cheaper time-of-use band)"), explained
    assert "waiting for price: within it from 2026-12-08 15:00" in explained["ruled_out"]["local/cpu"]
    clock.now = flat
    assert _place(grid, clock.time()) == [job_id]
