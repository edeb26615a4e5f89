"""Crashes at a Slurm site: every job finishes once, every usage record arrives once, one Slurm job each.

The scenarios are tests/e2e/test_faults.py's, with the agent behind a real Slurm
(scripts/slurm/setup.sh); Slurm's own accounting is checked too: a re-adopted job must
not have been submitted again.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import LivePlatform
from tests.e2e.test_faults import SLEEPER, kill_agent_while_jobs_run, kill_platform_while_jobs_run
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
