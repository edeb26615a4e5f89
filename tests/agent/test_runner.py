"""The agent loop against a scripted engine and a recording platform: failures cost no job and no report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from suanwang.agent.executors.base import PoolInfo, Task, TaskPhase, TaskStatus, Usage
from suanwang.agent.executors.errors import EngineError
from suanwang.agent.outbox import TaskRecord
from suanwang.agent.runner import Agent


class FakeEngine:
    engine = "fake"
    parallel_starts = 4

    def __init__(self, refuse: set[str] = frozenset(), known: dict[str, str] | None = None) -> None:
        self.refuse = set(refuse)
        self.known = dict(known or {})  # job name -> handle, what find() sees
        self.phases: dict[str, TaskPhase] = {}
        self.started: list[str] = []
        self.poll_error = False
        self.log: list[tuple[str, str]] = []
        self.unadoptable: set[str] = set()  # what adopt() cannot confirm (e.g. Slurm accounting lagging)

    def detect_pools(self) -> list[PoolInfo]:
        return [PoolInfo(name="p", resource_class="general", cores=4, memory_gb=8)]

    def start(self, task: Task) -> str:
        if task.job_id in self.refuse:
            raise EngineError("queue is closed")
        self.started.append(task.job_id)
        self.phases[f"h-{task.job_id}"] = TaskPhase.RUNNING
        return f"h-{task.job_id}"

    def poll(self, handle: str) -> TaskStatus:
        return TaskStatus(self.phases.get(handle, TaskPhase.LOST), Usage(wall_s=1.0))

    def poll_many(self, handles: list[str]) -> dict[str, TaskStatus]:
        if self.poll_error:
            raise EngineError("sacct: slurmdbd not responding")
        return {h: self.poll(h) for h in handles}

    def cancel(self, handle: str) -> None:
        self.log.append(("cancel", handle))
        self.phases[handle] = TaskPhase.CANCELLED

    def read_log(self, handle: str, offset: int) -> bytes:
        return b""

    def adopt(self, handle: str, task: Task) -> bool:
        self.log.append(("adopt", handle))
        return handle in self.phases and handle not in self.unadoptable

    def find(self, task: Task) -> str | None:
        return self.known.get(task.job_id)


class Platform:
    """Records every call; hands out the queued tasks once."""

    def __init__(self, tasks: list[str], stale: set[tuple[str, int]] = frozenset()) -> None:
        self.to_lease = tasks
        self.stale = set(stale)  # attempts the platform gave away: a heartbeat naming them answers "kill"
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v1")
        body = json.loads(request.content or b"{}")
        self.calls.append((path, body))
        if path == "/agent/register":
            return httpx.Response(200, json={"site": "s", "pools": ["p"], "lease_s": 15})
        if path == "/agent/heartbeat":
            kill = [r for r in body["running"] if (r["job_id"], r["attempt"]) in self.stale]
            return httpx.Response(200, json={"kill": kill, "lease_s": 15})
        if path == "/agent/lease":
            tasks, self.to_lease = self.to_lease, []
            return httpx.Response(200, json=[
                {"job_id": j, "attempt": 1, "command": ["true"], "pool": "p", "cores": 1, "memory_gb": 1,
                 "devices": 0, "env": {}, "workdir": "", "duration_s": 60} for j in tasks])
        return httpx.Response(200, json={})

    def statuses(self) -> dict[str, str]:
        """Each job's final phase reported."""
        return {p.split("/")[3]: b["phase"] for p, b in self.calls if p.endswith("/status") and b["phase"] != "started"}


def _agent(tmp_path: Path, engine: FakeEngine, platform: Platform) -> Agent:
    agent = Agent("http://platform", "t", engine, tmp_path, usage_interval_s=3600)
    agent.http = httpx.Client(base_url="http://platform/api/v1", transport=httpx.MockTransport(platform))
    return agent


def test_a_task_the_engine_refuses_goes_back_as_lost_and_the_rest_run(tmp_path: Path) -> None:
    engine, platform = FakeEngine(refuse={"j2"}), Platform(["j1", "j2", "j3"])
    agent = _agent(tmp_path, engine, platform)
    agent.step()
    assert sorted(engine.started) == ["j1", "j3"]
    assert set(agent.tasks) == {("j1", 1), ("j3", 1)}
    agent.step()  # flushes the refusal
    assert platform.statuses() == {"j2": "lost"}
    assert agent.outbox.tasks() and all(r.job_id != "j2" for r in agent.outbox.tasks())


def test_an_engine_poll_failure_skips_a_step_instead_of_killing_the_agent(tmp_path: Path) -> None:
    engine, platform = FakeEngine(), Platform(["j1"])
    agent = _agent(tmp_path, engine, platform)
    agent.step()
    engine.poll_error = True
    engine.phases["h-j1"] = TaskPhase.SUCCEEDED
    agent.step()
    assert ("j1", 1) in agent.tasks and platform.statuses() == {}
    engine.poll_error = False
    agent.step()
    agent.step()
    assert platform.statuses() == {"j1": "succeeded"}


def test_a_task_killed_before_its_handle_was_saved_is_found_and_adopted_not_lost(tmp_path: Path) -> None:
    engine = FakeEngine(known={"j1": "h-j1"})
    engine.phases["h-j1"] = TaskPhase.RUNNING
    platform = Platform([])
    agent = _agent(tmp_path, engine, platform)
    task = {"job_id": "j1", "attempt": 1, "command": ["true"], "pool": "p", "cores": 1, "memory_gb": 1.0,
            "devices": 0, "env": {}, "workdir": "", "duration_s": 60.0}
    agent.outbox.add_task(TaskRecord("j1", 1, "", task, 0, {}, 0.0, 0, False))  # the crash left no handle
    agent.recover()
    assert ("j1", 1) in agent.tasks and agent.tasks[("j1", 1)].handle == "h-j1"
    assert engine.started == []  # adopted, not started again
    agent.outbox.add_task(TaskRecord("j9", 1, "", {**task, "job_id": "j9"}, 0, {}, 0.0, 0, False))
    agent.tasks.clear()
    agent.recover()
    agent.step()
    assert platform.statuses().get("j9") == "lost"  # never reached the engine: given back


def test_flush_sends_all_queued_usage_in_one_batch_before_the_statuses(tmp_path: Path) -> None:
    engine, platform = FakeEngine(), Platform(["j1", "j2", "j3"])
    agent = _agent(tmp_path, engine, platform)
    agent.step()
    for h in list(engine.phases):
        engine.phases[h] = TaskPhase.SUCCEEDED
    agent.follow()
    platform.calls.clear()
    agent.flush()
    paths = [p for p, _ in platform.calls]
    assert paths[0] == "/agent/usage" and paths.count("/agent/usage") == 1
    assert len(platform.calls[0][1]["records"]) == 3
    assert sorted(p.split("/")[3] for p in paths[1:]) == ["j1", "j2", "j3"]
    assert agent.outbox.size() == 0


def test_a_lease_call_that_failed_is_repeated_with_the_same_request_id(tmp_path: Path) -> None:
    platform = Platform(["j1"])
    failing = {"left": 1}

    def flaky(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/agent/lease") and failing["left"]:
            failing["left"] -= 1
            platform.calls.append(("/agent/lease", json.loads(request.content)))
            raise httpx.ReadError("connection reset while reading the reply")
        return platform(request)

    agent = _agent(tmp_path, FakeEngine(), platform)
    agent.http = httpx.Client(base_url="http://platform/api/v1", transport=httpx.MockTransport(flaky))
    for _ in range(3):
        agent.step()
        agent._retry_at = 0.0  # skip the back-off
    ids = [b["request_id"] for p, b in platform.calls if p == "/agent/lease"]
    assert len(ids) >= 3 and ids[0] == ids[1] != ids[2]  # repeated after the failure, fresh after a reply
    assert set(agent.tasks) == {("j1", 1)}


TASK = {"job_id": "j1", "attempt": 1, "command": ["true"], "pool": "p", "cores": 1, "memory_gb": 1.0,
        "devices": 0, "env": {}, "workdir": "", "duration_s": 60.0}


def test_a_restarted_agent_cancels_the_attempts_given_away_before_anything_else(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.phases.update({"h-j1": TaskPhase.RUNNING, "h-j2": TaskPhase.RUNNING})
    engine.unadoptable.add("h-j1")  # the engine cannot confirm it is ours: it must be stopped all the same
    platform = Platform([], stale={("j1", 1)})
    agent = _agent(tmp_path, engine, platform)
    agent.outbox.add_task(TaskRecord("j1", 1, "h-j1", TASK, 0, {}, 0.0, 0, False))
    agent.outbox.add_task(TaskRecord("j2", 1, "h-j2", {**TASK, "job_id": "j2"}, 0, {}, 0.0, 0, False))
    agent.recover()
    assert platform.calls[0][0] == "/agent/heartbeat"
    assert {r["job_id"] for r in platform.calls[0][1]["running"]} == {"j1", "j2"}
    assert engine.log[0] == ("cancel", "h-j1")  # before the engine is asked about anything
    assert ("cancel", "h-j2") not in engine.log and set(agent.tasks) == {("j2", 1)}


def test_a_restarted_agent_with_the_platform_down_kills_on_its_first_heartbeat(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.phases["h-j1"] = TaskPhase.RUNNING
    platform = Platform([], stale={("j1", 1)})
    down = {"on": True}

    def flaky(request: httpx.Request) -> httpx.Response:
        if down["on"]:
            raise httpx.ConnectError("connection refused")
        return platform(request)

    agent = _agent(tmp_path, engine, platform)
    agent.http = httpx.Client(base_url="http://platform/api/v1", transport=httpx.MockTransport(flaky))
    agent.outbox.add_task(TaskRecord("j1", 1, "h-j1", TASK, 0, {}, 0.0, 0, False))
    agent.recover()
    assert set(agent.tasks) == {("j1", 1)} and ("cancel", "h-j1") not in engine.log
    down["on"] = False
    agent.step()
    assert ("cancel", "h-j1") in engine.log


def test_started_is_reported_once_when_the_engine_starts_the_task_before_its_end(tmp_path: Path) -> None:
    engine, platform = FakeEngine(), Platform(["j1"])
    agent = _agent(tmp_path, engine, platform)
    agent.lease(wait_s=0)
    engine.phases["h-j1"] = TaskPhase.QUEUED
    agent.follow()
    agent.flush()
    assert [b for p, b in platform.calls if p.endswith("/status")] == []  # held in the engine's queue
    engine.phases["h-j1"] = TaskPhase.RUNNING
    agent.follow()
    agent.follow()
    engine.phases["h-j1"] = TaskPhase.SUCCEEDED
    agent.follow()
    agent.flush()
    phases = [b["phase"] for p, b in platform.calls if p.endswith("/status")]
    assert phases == ["started", "succeeded"]
    started = next(b for p, b in platform.calls if p.endswith("/status"))
    assert started["attempt"] == 1 and started["started_at"] > 0


def test_the_started_mark_survives_a_restart(tmp_path: Path) -> None:
    engine, platform = FakeEngine(), Platform(["j1"])
    agent = _agent(tmp_path, engine, platform)
    agent.lease(wait_s=0)
    agent.follow()
    agent.close()
    again = _agent(tmp_path, engine, platform)
    [rec] = again.outbox.tasks()
    assert rec.started
    again.recover()
    again.follow()
    again.flush()
    assert [b["phase"] for p, b in platform.calls if p.endswith("/status")] == ["started"]


class TimeoutPlatform(Platform):
    """A platform that tells its agents a site timeout of 6 s on register and heartbeat."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        reply = super().__call__(request)
        if request.url.path.endswith(("/register", "/heartbeat")):
            return httpx.Response(200, json=reply.json() | {"site_timeout_s": 6})
        return reply


def test_an_idle_agent_long_polls_and_heartbeats_three_times_per_site_timeout(tmp_path: Path) -> None:
    """Nothing to run: one long-poll and one heartbeat per third of the site timeout, not per second."""
    engine, platform = FakeEngine(), TimeoutPlatform([])
    agent = _agent(tmp_path, engine, platform)
    agent.step()
    agent.step()  # at once: the heartbeat is not due again
    assert [b["wait_s"] for p, b in platform.calls if p == "/agent/lease"] == [2.0, 2.0]
    assert sum(p == "/agent/heartbeat" for p, _ in platform.calls) == 1


def test_an_agent_with_tasks_heartbeats_and_polls_at_its_own_pace(tmp_path: Path) -> None:
    engine, platform = FakeEngine(), Platform(["j1"])
    agent = _agent(tmp_path, engine, platform)
    agent.heartbeat_s = 0.0  # every step
    agent.step()  # leases j1 (idle long-poll: 10 s, a third of the default 30 s site timeout)
    agent.step()
    leases = [b["wait_s"] for p, b in platform.calls if p == "/agent/lease"]
    assert leases[0] == 10.0 and leases[1] <= 0.2  # with a task running, no long-poll
    assert sum(p == "/agent/heartbeat" for p, _ in platform.calls) == 2
