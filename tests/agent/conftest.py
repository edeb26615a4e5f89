"""Fixtures of the agent tests: a jobs root that tenants' uids can reach, and a local executor over it."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from suanwang.agent.executors.base import TaskStatus
from suanwang.agent.executors.local import LocalExecutor

# Jobs run as a tenant's uid, which may not reach this test's own interpreter (under /root here):
# they find "python3" on PATH as a consumer's job would.
PY = "python3"

MakeExecutor = Callable[..., LocalExecutor]  # (workdir, pools=None, **LocalExecutor's keywords)


@pytest.fixture
def jobs_root() -> Iterator[Path]:
    """A jobs root the tenants' uids can reach (pytest's tmp_path is 0700 root's)."""
    d = Path(tempfile.mkdtemp(prefix="sw-jobs-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def make(jobs_root: Path) -> MakeExecutor:
    """A local executor in ``workdir`` over ``jobs_root``; jobs share this user's uid unless it is root."""
    def build(workdir: Path, pools: Any = None, **kw: Any) -> LocalExecutor:
        return LocalExecutor(workdir, pools, jobs_root=jobs_root, shared_user=os.geteuid() != 0, **kw)
    return build


def wait_final(ex: LocalExecutor, handle: str, timeout: float = 20) -> TaskStatus:
    """Poll until the task is final; fail the test after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = ex.poll(handle)
        if status.phase.is_final:
            return status
        time.sleep(0.05)
    raise AssertionError("task did not finish")
