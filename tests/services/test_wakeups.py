"""Wake-ups on work: a long-polling agent gets a placed job at once, by an event, not a timer.

In-process (SQLite and PostgreSQL): the control loop's pass wakes the site's long-poll.  A placement
that wakes no one (a missed NOTIFY) still arrives within the safety poll.  Across two platform
processes on PostgreSQL see tests/e2e/test_wakeup_replicas.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from suanwang.api.app import create_app
from suanwang.domain.placement import FirstFit
from suanwang.services import scheduling
from suanwang.services.bootstrap import bootstrap
from suanwang.services.platform import Platform, Settings
from suanwang.services.wakeups import ALL, Listener, Wakeups, lease_topic
from suanwang.store.db import Database, is_postgres

JOB = {"command": ["true"], "cores": 1, "memory_gb": 0.5, "duration_s": 60}
POOL = {"name": "cpu", "resource_class": "general", "engine": "local", "cores": 8, "memory_gb": 32}


# ---- Wakeups, alone ----------------------------------------------------------------------------------


def test_a_wake_up_after_the_mark_is_never_lost() -> None:
    w = Wakeups()
    mark = w.mark("lease:a")
    w.notify("lease:a")  # lands between the look at the database and the wait
    started = time.monotonic()
    assert w.wait("lease:a", mark, timeout=5.0)
    assert time.monotonic() - started < 1.0


def test_another_topic_does_not_wake_but_all_does() -> None:
    w = Wakeups()
    mark = w.mark("lease:a")
    w.notify("lease:b")
    assert not w.wait("lease:a", mark, timeout=0.05)
    w.notify(ALL)
    assert w.wait("lease:a", mark, timeout=0.05)


def test_async_waiter_is_woken_from_another_thread() -> None:
    w = Wakeups()

    async def main() -> tuple[bool, float]:
        mark = w.mark("lease:a")
        threading.Timer(0.05, w.notify, args=("lease:a",)).start()
        started = time.monotonic()
        moved = await w.wait_async("lease:a", mark, timeout=10.0)
        return moved, time.monotonic() - started

    moved, took = asyncio.run(main())
    assert moved and took < 2.0
    assert not w._callbacks  # the waiter left nothing behind


def test_async_waiter_times_out_when_nothing_happens() -> None:
    w = Wakeups()
    assert asyncio.run(w.wait_async("lease:a", w.mark("lease:a"), timeout=0.05)) is False


# ---- the agent protocol's long-poll ------------------------------------------------------------------


@pytest.fixture
def platform(db: Database, tmp_path: Path) -> Iterator[tuple[Platform, TestClient, Path]]:
    bootstrap(db, tmp_path)
    # The safety poll is far away: a job that arrives promptly was brought by the wake-up.
    p = Platform(db, Settings(lease_s=30.0, lease_poll_s=60.0), scheduler=FirstFit())
    app = create_app(p, run_loop=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield p, client, tmp_path


def _as(client: TestClient, data_dir: Path, name: str) -> TestClient:
    c = TestClient(client.app, raise_server_exceptions=False)
    c.headers["Authorization"] = f"Bearer {(data_dir / f'{name}.token').read_text().strip()}"
    return c


def _long_poll(agent: TestClient, wait_s: float) -> Future[tuple[float, list[dict[str, Any]]]]:
    def call() -> tuple[float, list[dict[str, Any]]]:
        r = agent.post("/api/v1/agent/lease", json={"max_jobs": 8, "wait_s": wait_s})
        assert r.status_code == 200, r.text
        return time.monotonic(), r.json()

    return ThreadPoolExecutor(1).submit(call)


def _wait_until_waiting(p: Platform, site: str = "local", timeout: float = 10.0) -> None:
    """Until the long-poll looked at the database, found nothing and waits on its topic."""
    deadline = time.monotonic() + timeout
    while not p.wakeups._callbacks.get(lease_topic(site)):
        assert time.monotonic() < deadline, "the long-poll never started waiting"
        time.sleep(0.01)


def test_a_job_placed_while_the_agent_long_polls_reaches_it_at_once(platform) -> None:  # type: ignore[no-untyped-def]
    p, client, data_dir = platform
    agent, consumer = _as(client, data_dir, "agent"), _as(client, data_dir, "consumer")
    assert agent.post("/api/v1/agent/register", json={"pools": [POOL]}).status_code == 200
    poll = _long_poll(agent, wait_s=30.0)
    _wait_until_waiting(p)
    job = consumer.post("/api/v1/jobs", json=JOB).json()
    placed = time.monotonic()
    p.tick()  # the control loop's pass places it and wakes the site's long-poll
    answered, tasks = poll.result(timeout=20)
    assert [t["job_id"] for t in tasks] == [job["id"]]
    assert answered - placed < 5.0  # the safety poll is 60 s away and the call would wait 30 s


def test_a_placement_that_wakes_no_one_arrives_by_the_safety_poll(db: Database, tmp_path: Path) -> None:
    if not is_postgres(db.engine):
        pytest.skip("SQLite: one process, whose placements all wake its long-polls (no NOTIFY to miss)")
    bootstrap(db, tmp_path)
    p = Platform(db, Settings(lease_s=30.0, lease_poll_s=0.3), scheduler=FirstFit())
    with TestClient(create_app(p, run_loop=False), raise_server_exceptions=False) as client:
        agent, consumer = _as(client, tmp_path, "agent"), _as(client, tmp_path, "consumer")
        assert agent.post("/api/v1/agent/register", json={"pools": [POOL]}).status_code == 200
        poll = _long_poll(agent, wait_s=30.0)
        _wait_until_waiting(p)
        job = consumer.post("/api/v1/jobs", json=JOB).json()
        with db.transaction() as s:  # placed behind the platform's back: no wake-up, as if a NOTIFY was lost
            assert scheduling.place_waiting_jobs(s, FirstFit(), now=time.time())
        placed = time.monotonic()
        answered, tasks = poll.result(timeout=20)
        assert [t["job_id"] for t in tasks] == [job["id"]]
        assert answered - placed < 10.0  # well before the call's own 30 s


def test_a_long_poll_with_nothing_to_do_waits_its_time_and_answers_empty(platform) -> None:  # type: ignore[no-untyped-def]
    p, client, data_dir = platform
    agent = _as(client, data_dir, "agent")
    assert agent.post("/api/v1/agent/register", json={"pools": [POOL]}).status_code == 200
    started = time.monotonic()
    r = agent.post("/api/v1/agent/lease", json={"max_jobs": 8, "wait_s": 0.3})
    assert r.status_code == 200 and r.json() == []
    assert 0.25 <= time.monotonic() - started < 10.0
    assert not p.wakeups._callbacks  # nothing left waiting


def test_the_control_loop_sleeps_until_work_wakes_it(db: Database, tmp_path: Path) -> None:
    """With a safety tick of a minute, a submit is still placed and leased at once: the submit woke the loop."""
    bootstrap(db, tmp_path)
    p = Platform(db, Settings(lease_s=30.0, tick_s=60.0, lease_poll_s=60.0), scheduler=FirstFit())
    with TestClient(create_app(p, run_loop=True), raise_server_exceptions=False) as client:
        agent, consumer = _as(client, tmp_path, "agent"), _as(client, tmp_path, "consumer")
        assert agent.post("/api/v1/agent/register", json={"pools": [POOL]}).status_code == 200
        time.sleep(0.2)  # let the start-up pass and the register's wake-up go by
        passes = p.pass_count
        poll = _long_poll(agent, wait_s=30.0)
        _wait_until_waiting(p)
        job = consumer.post("/api/v1/jobs", json=JOB).json()
        submitted = time.monotonic()
        answered, tasks = poll.result(timeout=20)
        assert [t["job_id"] for t in tasks] == [job["id"]]
        assert answered - submitted < 5.0
        assert p.pass_count - passes <= 3  # woken by the submit, not spinning on a timer


# ---- PostgreSQL: the listener is the wake-up; the safety poll covers only a lost listener ----------


@pytest.fixture
def listening(db: Database, tmp_path: Path) -> Iterator[tuple[Platform, TestClient, Listener]]:
    """A platform on PostgreSQL whose NOTIFY listener is connected (it never reconnects by itself)."""
    if not is_postgres(db.engine):
        pytest.skip("SQLite: one process, no NOTIFY listener")
    bootstrap(db, tmp_path)
    p = Platform(db, Settings(lease_s=30.0, lease_poll_s=0.1), scheduler=FirstFit())
    assert p.channel is not None
    listener = p.listener = Listener(db.url, p.wakeups, p.channel, retry_s=600.0)
    listener.start()
    try:
        assert listener.connected.wait(20), "the listener never connected"
        with TestClient(create_app(p, run_loop=False), raise_server_exceptions=False) as client:
            yield p, client, listener
    finally:
        listener.stop()


def _count_looks(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    from suanwang.api.routes import agent as agent_routes

    looks: list[float] = []
    real = agent_routes._lease_once

    def counted(*args: Any) -> Any:
        looks.append(time.monotonic())
        return real(*args)

    monkeypatch.setattr(agent_routes, "_lease_once", counted)
    return looks


def test_with_its_listener_connected_an_idle_long_poll_looks_at_the_database_once(
        listening, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    _, client, _ = listening
    agent = _as(client, tmp_path, "agent")
    assert agent.post("/api/v1/agent/register", json={"pools": [POOL]}).status_code == 200
    looks = _count_looks(monkeypatch)
    r = agent.post("/api/v1/agent/lease", json={"max_jobs": 8, "wait_s": 1.0})
    assert r.status_code == 200 and r.json() == []
    assert len(looks) == 1  # not one per lease_poll_s (0.1 s): the NOTIFY is the wake-up


def test_a_listener_that_loses_its_connection_sends_waiters_back_to_the_safety_poll(
        listening, db: Database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p, client, listener = listening
    agent, consumer = _as(client, tmp_path, "agent"), _as(client, tmp_path, "consumer")
    assert agent.post("/api/v1/agent/register", json={"pools": [POOL]}).status_code == 200
    poll = _long_poll(agent, wait_s=30.0)
    _wait_until_waiting(p)
    with db.engine.connect() as conn:  # the server drops the listener's connection
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'"
                          " AND pid <> pg_backend_pid()"))
        conn.commit()
    deadline = time.monotonic() + 20
    while listener.connected.is_set():
        assert time.monotonic() < deadline, "the listener never noticed its connection was gone"
        time.sleep(0.01)
    assert p.lease_poll_s(30.0) == 0.1
    job = consumer.post("/api/v1/jobs", json=JOB).json()
    with db.transaction() as s:  # placed behind the platform's back: no wake-up, and no listener to hear one
        assert scheduling.place_waiting_jobs(s, FirstFit(), now=time.time())
    placed = time.monotonic()
    answered, tasks = poll.result(timeout=40)
    assert [t["job_id"] for t in tasks] == [job["id"]]
    assert answered - placed < 10.0  # by the safety poll, well before the call's own 30 s


def test_a_submit_after_a_long_books_pass_is_placed_without_waiting_out_its_pause(
        db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop paces placement and the books apart: a slow rating pass delays the next rating pass
    (by twice its length, ``loop_share``), not the placement of a job submitted just after it."""
    from suanwang.services import platform as platform_module

    bootstrap(db, tmp_path)
    p = Platform(db, Settings(lease_s=30.0, tick_s=60.0, lease_poll_s=60.0), scheduler=FirstFit())
    real, slow_once, slow_done = platform_module.billing.rate_all, threading.Event(), threading.Event()

    def rate_all(*args: Any, **kwargs: Any) -> int:
        if slow_once.is_set() and not slow_done.is_set():
            time.sleep(3.0)  # a long rating pass: the books' next turn is 6 s after it ends
            slow_done.set()
        return real(*args, **kwargs)

    monkeypatch.setattr(platform_module.billing, "rate_all", rate_all)
    with TestClient(create_app(p, run_loop=True), raise_server_exceptions=False) as client:
        agent, consumer = _as(client, tmp_path, "agent"), _as(client, tmp_path, "consumer")
        assert agent.post("/api/v1/agent/register", json={"pools": [POOL]}).status_code == 200
        time.sleep(0.3)  # the start-up passes and the register's wake-up go by
        slow_once.set()
        p.wake()
        assert slow_done.wait(20), "the books pass never ran"
        job = consumer.post("/api/v1/jobs", json=JOB).json()
        submitted = time.monotonic()
        deadline = submitted + 20
        while consumer.get(f"/api/v1/jobs/{job['id']}").json()["state"] == "pending":
            assert time.monotonic() < deadline, "the job was never placed"
            time.sleep(0.02)
        assert time.monotonic() - submitted < 4.0  # not after the books' 6 s pause


def test_placement_keeps_its_safety_tick_while_only_the_books_are_woken(db: Database, tmp_path: Path) -> None:
    """Lapsed leases are reaped by the placement half: usage waking the books all the time must not starve it."""
    bootstrap(db, tmp_path)
    p = Platform(db, Settings(lease_s=30.0, tick_s=0.5, lease_poll_s=60.0), scheduler=FirstFit())
    places: list[float] = []
    real = p.place_pass

    def counted(*, reap: bool = False) -> None:
        places.append(time.monotonic())
        real(reap=reap)

    p.place_pass = counted  # type: ignore[method-assign]
    with TestClient(create_app(p, run_loop=True), raise_server_exceptions=False):
        time.sleep(0.3)  # the start-up passes go by
        started, count = time.monotonic(), len(places)
        while time.monotonic() - started < 3.0:
            p.wake(place=False)  # usage to rate, over and over
            time.sleep(0.05)
        assert len(places) - count >= 2  # about one a tick_s (0.5 s), not none
