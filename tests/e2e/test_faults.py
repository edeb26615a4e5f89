"""Crashes at the worst moments: nothing lost, nothing run or counted twice.

The two scenarios are shared with the real-engine variants (tests/e2e/test_faults_slurm.py):
they take the agent's extra arguments (a site config) and the job to run.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from tests.e2e.conftest import TERMINAL, LivePlatform

pytestmark = pytest.mark.e2e

SLEEPER = ["python3", "-c", "import time; print('started', flush=True); time.sleep(2.5); print('finished')"]


def check_exactly_once(live: LivePlatform, job_ids: list[str]) -> None:
    """Every job succeeded in one attempt, its usage seqs are contiguous and its output arrived once."""
    with live.client() as c:
        for job_id in job_ids:
            job = live.wait_for(job_id, TERMINAL, timeout=90)
            assert job["state"] == "succeeded", job
            events = c.get(f"/jobs/{job_id}/events").json()
            assert job["attempt"] == 1, f"{job_id} ran {job['attempt']} times: {events}"
            usage = c.get(f"/jobs/{job_id}/usage").json()
            assert sorted(r["seq"] for r in usage) == list(range(len(usage))), usage
            assert {r["attempt"] for r in usage} == {1}, usage
            assert 2.0 <= sum(r["wall_s"] for r in usage) < 30
            assert c.get(f"/jobs/{job_id}/logs").text.count("finished") == 1


def _submit_and_wait_running(live: LivePlatform, job: dict[str, Any], n: int) -> list[str]:
    """Submit and wait until every job runs in the engine (its first line came back through the agent).

    "running" on the platform is not enough: it is committed before the lease reply reaches the
    agent, and a platform killed in between loses the reply, so the job is requeued unrun (attempt 2).
    """
    with live.client() as c:
        ids = [c.post("/jobs", json=job).json()["id"] for _ in range(n)]
        for job_id in ids:
            live.wait_for(job_id, {"running"})
            deadline = time.time() + 60
            while "started" not in c.get(f"/jobs/{job_id}/logs").text:
                assert time.time() < deadline, f"{job_id} never started"
                time.sleep(0.05)
    return ids


def kill_platform_while_jobs_run(live: LivePlatform, *agent_args: str, job: dict[str, Any] | None = None,
                                 n: int = 3) -> list[str]:
    """SIGKILL the platform while ``n`` jobs run, keep it down past the lease, restart it; check exactly-once."""
    live.start_server(lease_s=3.0)
    live.start_agent("a", None, *agent_args)
    ids = _submit_and_wait_running(live, job or {"command": SLEEPER}, n)
    assert live.server is not None
    live.server.send_signal(signal.SIGKILL)
    live.server.wait()
    time.sleep(4.0)  # longer than the lease: the jobs finish while the platform is down
    live.start_server(lease_s=3.0)
    check_exactly_once(live, ids)
    return ids


def kill_agent_while_jobs_run(live: LivePlatform, *agent_args: str, job: dict[str, Any] | None = None,
                              n: int = 3) -> list[str]:
    """SIGKILL the agent while ``n`` jobs run, restart it on the same work directory; check exactly-once."""
    live.start_server(lease_s=5.0)
    agent = live.start_agent("a", None, *agent_args)
    ids = _submit_and_wait_running(live, job or {"command": SLEEPER}, n)
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    live.start_agent("a", None, *agent_args)  # same work directory: same outbox, same task files
    check_exactly_once(live, ids)
    return ids


def test_platform_killed_and_restarted_while_jobs_run(live: LivePlatform) -> None:
    kill_platform_while_jobs_run(live)


def test_agent_killed_and_restarted_readopts_its_jobs(live: LivePlatform) -> None:
    kill_agent_while_jobs_run(live)
