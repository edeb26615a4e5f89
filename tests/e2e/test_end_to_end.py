"""The whole path with real processes: submit -> place -> lease -> run -> logs, usage, state."""

from __future__ import annotations

import signal
import time
from decimal import Decimal

import psutil
import pytest

from tests.e2e.conftest import TERMINAL, LivePlatform

pytestmark = pytest.mark.e2e


def test_job_runs_and_reports_logs_usage_and_units(live: LivePlatform) -> None:
    live.start_server()
    live.start_agent("a")
    with live.client() as c:
        job = c.post("/jobs", json={"command": ["python3", "-c", "print(6*7)"]}).json()
        done = live.wait_for(job["id"], TERMINAL)
        assert done["state"] == "succeeded" and done["exit_code"] == 0
        assert "42" in c.get(f"/jobs/{job['id']}/logs").text
        usage = c.get(f"/jobs/{job['id']}/usage").json()
    assert usage, "no usage recorded"
    assert sum(r["cpu_s"] for r in usage) > 0
    assert sum(Decimal(r["units"]) for r in usage) > 0
    assert all(r["site"] == "local" and r["attempt"] == 1 for r in usage)


def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie; a process reaped between the two looks is gone, not an error."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_cancelled_sleeping_job_is_killed_within_two_seconds(live: LivePlatform) -> None:
    live.start_server()
    live.start_agent("a")
    with live.client() as c:
        job = c.post("/jobs", json={"command": ["sleep", "300"]}).json()
        live.wait_for(job["id"], {"running"})
        pid_file = live.data_dir / "agent-a" / "tasks" / f"{job['id']}-1" / "pid"
        deadline = time.time() + 10
        sleeper = None
        while time.time() < deadline and sleeper is None:
            if pid_file.exists():
                kids = psutil.Process(int(pid_file.read_text())).children(recursive=True)
                sleeper = next((k for k in kids if "sleep" in k.name()), None)
            time.sleep(0.05)
        assert sleeper is not None, "the job's process never started"
        t0 = time.time()
        assert c.post(f"/jobs/{job['id']}/cancel").json()["state"] == "cancelled"
        while _alive(sleeper) and time.time() - t0 < 5:
            time.sleep(0.02)
        killed_after = time.time() - t0
    assert killed_after < 2.0, f"still alive {killed_after:.2f}s after cancel"


def test_agent_killed_mid_job_is_requeued_and_finished_by_another_agent(live: LivePlatform) -> None:
    live.start_server(lease_s=2.0)
    first = live.start_agent("first")
    with live.client() as c:
        job = c.post("/jobs", json={"command": ["python3", "-c", "import time; time.sleep(1.5); print('done')"]}).json()
        running = live.wait_for(job["id"], {"running"})
        assert running["attempt"] == 1
        first.send_signal(signal.SIGKILL)
        first.wait()
        live.wait_for(job["id"], {"requeued", "placed"}, timeout=20)
        live.start_agent("second")
        done = live.wait_for(job["id"], TERMINAL, timeout=60)
        assert done["state"] == "succeeded"
        assert done["attempt"] == 2
        assert "done" in c.get(f"/jobs/{job['id']}/logs").text
        events = [(e["to"], e["attempt"]) for e in c.get(f"/jobs/{job['id']}/events").json()]
    assert ("requeued", 1) in events and ("succeeded", 2) in events
