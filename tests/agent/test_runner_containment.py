"""The agent never dies of one task: whatever one task raises fails that attempt, and the loop goes on."""

from __future__ import annotations

from pathlib import Path

from suanwang.agent.executors.base import Task, TaskPhase, TaskStatus
from tests.agent.test_runner import FakeEngine, Platform, _agent


class TroubledEngine(FakeEngine):
    """Raises what a real engine raised for bad tasks (the local one: ValueError on a NUL byte)."""

    def start(self, task: Task) -> str:
        if task.job_id == "j-nul":
            raise ValueError("embedded null byte")
        return super().start(task)

    def poll(self, handle: str) -> TaskStatus:
        if handle == "h-j-odd":
            raise RuntimeError("result file is garbage")
        return super().poll(handle)


def test_a_task_that_cannot_start_fails_alone_and_the_others_run(tmp_path: Path) -> None:
    engine, platform = TroubledEngine(), Platform(["j1", "j-nul", "j2"])
    agent = _agent(tmp_path, engine, platform)
    agent.step()
    agent.step()
    assert sorted(engine.started) == ["j1", "j2"]
    assert platform.statuses() == {"j-nul": "failed"}
    [reason] = [b["reason"] for p, b in platform.calls if p.endswith("j-nul/status")]
    assert "could not start" in reason and "embedded null byte" in reason


def test_a_task_that_cannot_be_followed_fails_alone_and_is_stopped(tmp_path: Path) -> None:
    engine, platform = TroubledEngine(), Platform(["j-odd", "j1"])
    agent = _agent(tmp_path, engine, platform)
    agent.step()
    engine.phases["h-j1"] = TaskPhase.SUCCEEDED
    agent.step()
    agent.step()
    assert platform.statuses() == {"j-odd": "failed", "j1": "succeeded"}
    assert engine.phases["h-j-odd"] is TaskPhase.CANCELLED  # not left running unaccounted
    assert agent.tasks == {}


def test_a_task_the_agent_cannot_read_fails_alone(tmp_path: Path) -> None:
    engine, platform = TroubledEngine(), Platform(["j1"])
    platform.to_lease = ["j1"]
    agent = _agent(tmp_path, engine, platform)
    original = platform.__call__

    def lease_with_a_broken_task(request):  # type: ignore[no-untyped-def]
        response = original(request)
        if request.url.path.endswith("/agent/lease") and response.json():
            import httpx

            return httpx.Response(200, json=[*response.json(), {"job_id": "j-broken", "attempt": 1}])
        return response

    agent.http._transport.handler = lease_with_a_broken_task  # type: ignore[attr-defined]
    agent.step()
    agent.step()
    assert engine.started == ["j1"] and platform.statuses() == {"j-broken": "failed"}


def test_a_step_that_raises_does_not_end_the_loop(tmp_path: Path) -> None:
    engine, platform = FakeEngine(), Platform([])
    agent = _agent(tmp_path, engine, platform)
    steps = []

    def step() -> None:
        steps.append(1)
        if len(steps) == 1:
            raise RuntimeError("disk full")
        agent.stop()

    agent.step = step  # type: ignore[method-assign]
    agent.poll_s = 0
    agent.run_forever()
    assert len(steps) == 2
