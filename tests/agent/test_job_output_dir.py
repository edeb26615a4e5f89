"""The job's output directory is its own user's (0700): the job writes there, another tenant's job cannot look.

Runs the real isolated path as root (CI runs as root); as another user it skips.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from suanwang.agent import job_data
from suanwang.agent.executors.base import Task, TaskPhase, TaskStatus
from suanwang.agent.executors.local import LocalExecutor

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="job users need root (CI runs as root)")


@pytest.fixture
def datasets_root() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="sw-data-"))  # under /tmp: its parents are traversable by the job's uid
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _wait(ex: LocalExecutor, handle: str) -> TaskStatus:
    deadline = time.time() + 20
    while time.time() < deadline:
        status = ex.poll(handle)
        if status.phase is not TaskPhase.RUNNING:
            return status
        time.sleep(0.02)
    raise AssertionError("task did not finish")


def test_the_output_directory_is_the_jobs_own_and_no_other_tenant_reads_it(
        tmp_path: Path, jobs_root: Path, datasets_root: Path) -> None:
    ex = LocalExecutor(tmp_path / "agent", jobs_root=jobs_root)
    alice = Task(job_id="ja", attempt=1, command=(), pool="cpu", tenant="t-alice")
    owner = ex.job_owner(alice)
    assert owner is not None and owner[0] != 0
    env = job_data.prepare(datasets_root, "ja", 1, [], {"dataset_id": "d-out"}, owner=owner)
    out = Path(env["SUANWANG_OUTPUT"]).parent
    st = os.lstat(out)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (owner[0], owner[1], 0o700)
    assert stat.S_IMODE(os.stat(out.parent).st_mode) == 0o711  # .out: enter by name, list nothing

    write = "import os; open(os.environ['SUANWANG_OUTPUT'], 'w').write('alice model')"
    h = ex.start(Task(job_id="ja", attempt=1, command=("python3", "-c", write), pool="cpu", tenant="t-alice",
                      env=env))
    status = _wait(ex, h)
    assert status.phase is TaskPhase.SUCCEEDED, ex.read_log(h, 0).decode()

    snoop = ("import os, sys\nd = sys.argv[1]\n"
             "for what, f in (('list', lambda: os.listdir(d)), ('read', lambda: open(d + '/data').read()),\n"
             "                ('write', lambda: open(d + '/planted', 'w').write('x'))):\n"
             "    try:\n        f(); print('ALLOWED', what)\n"
             "    except OSError as e:\n        print('DENIED', what, e.strerror)\n")
    h = ex.start(Task(job_id="jb", attempt=1, command=("python3", "-c", snoop, str(out)), pool="cpu",
                      tenant="t-bob"))
    status = _wait(ex, h)
    log = ex.read_log(h, 0).decode()
    assert status.phase is TaskPhase.SUCCEEDED and "ALLOWED" not in log and log.count("DENIED") == 3, log

    got = job_data.collect(datasets_root, "ja", 1, "d-out")  # the agent (root) still reads it
    assert (got.kind, got.size_bytes, got.sha256) == ("file", 11, hashlib.sha256(b"alice model").hexdigest())
