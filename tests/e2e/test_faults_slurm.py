"""Crashes at a Slurm site: every job finishes once, every usage record arrives once, one Slurm job each.

The scenarios are tests/e2e/test_faults.py's, with the agent behind a real Slurm
(scripts/slurm/setup.sh); Slurm's own accounting is checked too: a re-adopted job must
not have been submitted again, and an attempt given away while its agent was down must
be scancelled by the restarted agent, although the agent that submitted it is gone.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import LivePlatform
from tests.e2e.test_faults import (
    FIRST_ATTEMPT_HANGS,
    SLEEPER,
    agent_restarted_after_its_leases_lapsed,
    kill_agent_while_jobs_run,
    kill_platform_while_jobs_run,
)
from tests.engines.conftest import skip_or_fail, slurm_conf, slurm_unavailable

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]

JOB = {"command": SLEEPER, "resource_class": "super", "memory_gb": 0.25}


@pytest.fixture
def slurm_site(tmp_path: Path) -> str:
    skip_or_fail(slurm_unavailable(), "SUANWANG_REQUIRE_SLURM")
    path = tmp_path / "slurm-site.yaml"
    path.write_text(yaml.safe_dump({
        "engine": "slurm", "pools": [{"name": "slurm-hpc", "resource_class": "super", "partition": "hpc"}],
        "slurm": {"conf": slurm_conf()}}))
    return str(path)


def slurm_jobs_named(name: str) -> list[str]:
    env = {**os.environ, "SLURM_CONF": slurm_conf()}
    out = subprocess.run(["sacct", "-n", "-X", "-P", f"--name={name}", "-S", "now-1hours", "-o", "JobID"],
                         capture_output=True, text=True, env=env, check=True, timeout=30).stdout
    return out.split()


def assert_one_slurm_job_each(job_ids: list[str]) -> None:
    for job_id in job_ids:
        deadline = time.time() + 30  # slurmdbd's accounting trails slurmctld by seconds under load
        while not slurm_jobs_named(f"sw-{job_id}-1") and time.time() < deadline:
            time.sleep(0.5)
        found = slurm_jobs_named(f"sw-{job_id}-1")
        assert len(found) == 1, f"{job_id} is in Slurm's accounting {len(found)} times, not once: {found}"
        assert slurm_jobs_named(f"sw-{job_id}-2") == [], f"{job_id} got a second attempt in Slurm"


def test_platform_killed_while_jobs_run_at_a_slurm_site(live: LivePlatform, slurm_site: str) -> None:
    ids = kill_platform_while_jobs_run(live, "--config", slurm_site, job=JOB)
    assert_one_slurm_job_each(ids)


def test_agent_killed_while_jobs_run_at_a_slurm_site_readopts_them(live: LivePlatform, slurm_site: str) -> None:
    ids = kill_agent_while_jobs_run(live, "--config", slurm_site, job=JOB)
    assert_one_slurm_job_each(ids)


def slurm_attempts_alive(job_ids: list[str]) -> list[str]:
    """Jobs whose first attempt Slurm still holds unfinished, or whose process still runs on a node.

    setup.sh's nodes are slurmd processes on this host, so the job's own process is visible here
    (by the SLURM_JOB_NAME in its environment, where this user may read it).
    """
    import psutil

    env = {**os.environ, "SLURM_CONF": slurm_conf()}
    names = {f"sw-{job_id}-1": job_id for job_id in job_ids}
    out = subprocess.run(["squeue", "-h", "-t", "PENDING,RUNNING,SUSPENDED,COMPLETING,CONFIGURING", "-o", "%j"],
                         capture_output=True, text=True, env=env, check=True, timeout=30).stdout
    alive = {names[n] for n in out.split() if n in names}
    for proc in psutil.process_iter():
        try:
            name = proc.environ().get("SLURM_JOB_NAME", "")
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        if name in names and proc.status() != psutil.STATUS_ZOMBIE:
            alive.add(names[name])
    return sorted(alive)


def slurm_state(name: str) -> list[str]:
    env = {**os.environ, "SLURM_CONF": slurm_conf()}
    out = subprocess.run(["sacct", "-n", "-X", "-P", f"--name={name}", "-S", "now-1hours", "-o", "State"],
                         capture_output=True, text=True, env=env, check=True, timeout=30).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def test_agent_restarted_after_its_leases_lapsed_scancels_the_old_slurm_jobs(
    live: LivePlatform, slurm_site: str
) -> None:
    ids, outlived = agent_restarted_after_its_leases_lapsed(
        live, "--config", slurm_site, attempts_alive=slurm_attempts_alive, job=JOB | {"command": FIRST_ATTEMPT_HANGS})
    print(f"old Slurm jobs outlived the agent's restart by {outlived:.2f}s")
    assert outlived < 0.5 + 4.5  # one heartbeat, then scancel and Slurm's own teardown (KillWait=2 s)
    for job_id in ids:
        deadline = time.time() + 30  # slurmdbd's accounting trails slurmctld by seconds under load
        while slurm_state(f"sw-{job_id}-1") != ["CANCELLED"] and time.time() < deadline:
            time.sleep(0.5)
        assert slurm_state(f"sw-{job_id}-1") == ["CANCELLED"], f"{job_id}'s old attempt was not scancelled"
        while slurm_state(f"sw-{job_id}-2") != ["COMPLETED"] and time.time() < deadline:
            time.sleep(0.5)
        assert slurm_state(f"sw-{job_id}-2") == ["COMPLETED"]
