"""Crashes at the worst moments: nothing lost, nothing run or counted twice.

The two scenarios are shared with the real-engine variants (tests/e2e/test_faults_slurm.py):
they take the agent's extra arguments (a site config) and the job to run.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
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

    "running" on the platform is not enough: the agent's "started" report may arrive before the
    task's first output line does.
    """
    with live.client() as c:
        ids = [c.post("/jobs", json=job).json()["id"] for _ in range(n)]
        for job_id in ids:
            # leased (queued at the site, then running): together they span the whole run, where a Slurm
            # site's "started" report may leave only a moment of "running" for a short job
            live.wait_for(job_id, {"queued_at_site", "running"})
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


# The first attempt sleeps a minute, any later one a second: an old attempt left running shows as a live process.
# The attempt comes from the local executor's environment, or from the Slurm job name (sw-<job>-<attempt>).
FIRST_ATTEMPT_HANGS = ["python3", "-c", (
    "import os, time; a = os.environ.get('SUANWANG_ATTEMPT') or os.environ['SLURM_JOB_NAME'].rsplit('-', 1)[1]; "
    "print('started', a, flush=True); time.sleep(60 if a == '1' else 1); print('finished', a)")]


def agent_restarted_after_its_leases_lapsed(
    live: LivePlatform, *agent_args: str, attempts_alive: Callable[[list[str]], list[str]],
    job: dict[str, Any] | None = None, n: int = 2,
) -> tuple[list[str], float]:
    """SIGKILL the agent while ``n`` jobs run, keep it down until their leases lapse, restart it.

    ``attempts_alive(job_ids)`` names the first attempts the site's engine still runs.  Checks that they
    end and that the second attempts succeed; returns the job ids and the seconds the old attempts
    outlived the restarted agent's first heartbeat.
    """
    live.start_server(lease_s=2.0)
    agent = live.start_agent("a", None, *agent_args)
    ids = _submit_and_wait_running(live, job or {"command": FIRST_ATTEMPT_HANGS}, n)
    assert sorted(attempts_alive(ids)) == sorted(ids)
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    with live.client() as c:  # the platform gives the lapsed attempts away as new ones
        for job_id in ids:
            deadline = time.time() + 30
            while c.get(f"/jobs/{job_id}").json()["state"] in {"queued_at_site", "running"}:
                assert time.time() < deadline, c.get(f"/jobs/{job_id}/events").json()
                time.sleep(0.05)
    assert sorted(attempts_alive(ids)) == sorted(ids), "the old attempts must outlive their agent"
    spawned = time.time()
    live.start_agent("a", None, *agent_args)  # returns once the agent's first heartbeat arrived
    restarted = time.time()
    while attempts_alive(ids) and time.time() < restarted + 30:
        time.sleep(0.05)
    outlived = time.time() - restarted
    print(f"restarted agent: first heartbeat {restarted - spawned:.2f}s after its spawn; the old attempts "
          f"died {time.time() - spawned:.2f}s after its spawn")
    assert attempts_alive(ids) == [], f"old attempts still run {outlived:.1f}s after the restart"
    with live.client() as c:
        for job_id in ids:
            done = live.wait_for(job_id, TERMINAL, timeout=90)
            assert (done["state"], done["attempt"]) == ("succeeded", 2), c.get(f"/jobs/{job_id}/events").json()
            assert c.get(f"/jobs/{job_id}/logs").text.count("finished 2") == 1
            old = c.get(f"/jobs/{job_id}/logs", params={"attempt": 1}).text
            assert "finished" not in old, old
            usage = c.get(f"/jobs/{job_id}/usage").json()
            old_wall = sum(r["wall_s"] for r in usage if r["attempt"] == 1)
            print(f"{job_id}: attempt 1 reported {old_wall:.2f}s of wall time, attempt 2 "
                  f"{sum(r['wall_s'] for r in usage if r['attempt'] == 2):.2f}s")
    return ids, outlived


def local_attempts_alive(live: LivePlatform) -> Callable[[list[str]], list[str]]:
    """Jobs whose first attempt's process group still has a live process (read from the task's pid file)."""
    import psutil

    def alive(job_ids: list[str]) -> list[str]:
        out = []
        for job_id in job_ids:
            pid = int((live.data_dir / "agent-a" / "tasks" / f"{job_id}-1" / "pid").read_text())
            if any(p.status() != psutil.STATUS_ZOMBIE for p in psutil.process_iter() if _pgid(p.pid) == pid):
                out.append(job_id)
        return out

    return alive


def _pgid(pid: int) -> int | None:
    import os

    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_agent_restarted_after_its_leases_lapsed_kills_the_old_attempts(live: LivePlatform) -> None:
    _, outlived = agent_restarted_after_its_leases_lapsed(live, attempts_alive=local_attempts_alive(live))
    print(f"old attempts outlived the agent's restart by {outlived:.2f}s")
    assert outlived < 0.5 + 1.0  # one heartbeat (0.5 s), and slack for a loaded machine


def test_platform_killed_and_restarted_while_jobs_run(live: LivePlatform) -> None:
    kill_platform_while_jobs_run(live)


def test_agent_killed_and_restarted_readopts_its_jobs(live: LivePlatform) -> None:
    kill_agent_while_jobs_run(live)
