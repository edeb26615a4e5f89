"""Real-engine fixtures: a Slurm started by scripts/slurm/setup.sh, a Ray head by scripts/ray/setup.sh.

Tests skip, with the reason, when the engine's clients are missing or it does not answer;
CI sets SUANWANG_REQUIRE_SLURM=1 / SUANWANG_REQUIRE_RAY=1 to make that a failure instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from suanwang.agent.executors.base import TaskStatus

SLURM_DIR = Path(os.environ.get("SUANWANG_SLURM_DIR", "/var/tmp/suanwang-slurm"))
RAY_DIR = Path(os.environ.get("SUANWANG_RAY_DIR", "/var/tmp/suanwang-ray"))


def slurm_conf() -> str:
    """The SLURM_CONF to use: the environment's, else the one setup.sh wrote."""
    if os.environ.get("SLURM_CONF"):
        return os.environ["SLURM_CONF"]
    return str(SLURM_DIR / "etc" / "slurm.conf")


def slurm_unavailable() -> str:
    """Why the Slurm tests cannot run here, or '' if they can."""
    if shutil.which("sbatch") is None:
        return "sbatch not installed (run scripts/slurm/setup.sh)"
    if not Path(slurm_conf()).exists():
        return f"no slurm.conf at {slurm_conf()} (run scripts/slurm/setup.sh)"
    env = {**os.environ, "SLURM_CONF": slurm_conf()}
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, env=env, timeout=20)
    if "UP" not in ping.stdout:
        return "slurmctld does not answer (run scripts/slurm/setup.sh)"
    acct = subprocess.run(["sacct", "-n", "-X", "-j", "1"], capture_output=True, text=True, env=env, timeout=20)
    if acct.returncode != 0:
        return f"sacct does not work (slurmdbd down?): {acct.stderr.strip()}"
    return ""


def ray_address_from_env() -> str:
    return os.environ.get("SUANWANG_RAY_ADDRESS", "http://127.0.0.1:8365")


def ray_unavailable() -> str:
    """Why the Ray tests cannot run here: the same check `suanwang demo` makes."""
    from suanwang.cli.demo import ray_unavailable as unavailable

    return unavailable(ray_address_from_env())


def wait_until(poll: Callable[[], TaskStatus], done: Callable[[TaskStatus], bool], timeout_s: float = 60) -> TaskStatus:
    deadline = time.monotonic() + timeout_s
    while True:
        status = poll()
        if done(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.3)


def finished(status: TaskStatus) -> bool:
    return status.phase.is_final


@pytest.fixture
def wait() -> Callable[..., TaskStatus]:
    """wait(poll, done=finished, timeout_s=60): poll until done or timeout; the last status."""

    def run(poll: Callable[[], TaskStatus], done: Callable[[TaskStatus], bool] = finished, timeout_s: float = 60):
        return wait_until(poll, done, timeout_s)

    return run


@pytest.fixture(scope="session")
def slurm_conf_path() -> str:
    return slurm_conf()


def skip_or_fail(reason: str, require_var: str) -> None:
    """Skip with the reason; where CI sets ``require_var=1`` a missing engine is a failure."""
    if reason:
        if os.environ.get(require_var) == "1":
            pytest.fail(f"{reason} ({require_var}=1)")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_ready() -> None:
    skip_or_fail(slurm_unavailable(), "SUANWANG_REQUIRE_SLURM")


@pytest.fixture(scope="session")
def ray_address() -> str:
    return ray_address_from_env()


@pytest.fixture(scope="session")
def ray_ready() -> None:
    skip_or_fail(ray_unavailable(), "SUANWANG_REQUIRE_RAY")
