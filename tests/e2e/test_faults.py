"""Crashes at the worst moments: nothing lost, nothing run or counted twice."""

from __future__ import annotations

import signal
import time

import pytest

from tests.e2e.conftest import TERMINAL, LivePlatform

pytestmark = pytest.mark.e2e

SLEEPER = ["python3", "-c", "import time; time.sleep(2.5); print('finished')"]


def _check_exactly_once(live: LivePlatform, job_ids: list[str]) -> None:
    with live.client() as c:
        for job_id in job_ids:
            job = live.wait_for(job_id, TERMINAL, timeout=90)
            assert job["state"] == "succeeded", job
            events = c.get(f"/jobs/{job_id}/events").json()
            assert job["attempt"] == 1, f"{job_id} ran {job['attempt']} times: {events}"
            usage = c.get(f"/jobs/{job_id}/usage").json()
            assert sorted(r["seq"] for r in usage) == list(range(len(usage))), usage
            assert 2.0 <= sum(r["wall_s"] for r in usage) < 30
            assert c.get(f"/jobs/{job_id}/logs").text.count("finished") == 1


def test_platform_killed_and_restarted_while_jobs_run(live: LivePlatform) -> None:
    live.start_server(lease_s=3.0)
    live.start_agent("a")
    with live.client() as c:
        ids = [c.post("/jobs", json={"command": SLEEPER}).json()["id"] for _ in range(3)]
    for job_id in ids:
        live.wait_for(job_id, {"running"})
    assert live.server is not None
    live.server.send_signal(signal.SIGKILL)
    live.server.wait()
    time.sleep(4.0)  # longer than the lease: the jobs finish while the platform is down
    live.start_server(lease_s=3.0)
    _check_exactly_once(live, ids)


def test_agent_killed_and_restarted_readopts_its_jobs(live: LivePlatform) -> None:
    live.start_server(lease_s=5.0)
    agent = live.start_agent("a")
    with live.client() as c:
        ids = [c.post("/jobs", json={"command": SLEEPER}).json()["id"] for _ in range(3)]
    for job_id in ids:
        live.wait_for(job_id, {"running"})
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    live.start_agent("a")  # same work directory: same outbox, same task files
    _check_exactly_once(live, ids)
