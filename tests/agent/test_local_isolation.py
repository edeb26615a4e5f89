"""The local executor as root: each tenant's jobs run as a uid of their own, away from the agent's files.

These run the real isolated path (CI runs as root); as another user they skip.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import time
from pathlib import Path

import pytest

from suanwang.agent.executors import _cgroup
from suanwang.agent.executors.base import Task, TaskPhase, TaskStatus
from suanwang.agent.executors.local import IsolationUnavailable, LocalExecutor
from suanwang.errors import InvalidSpec

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="isolation needs root (CI runs as root)")

PY = "python3"  # found on PATH as the tenant's uid would find it


@pytest.fixture
def ex(tmp_path: Path, jobs_root: Path) -> LocalExecutor:
    return LocalExecutor(tmp_path / "agent", jobs_root=jobs_root)


def _task(*cmd: str, job: str = "j1", tenant: str = "t-alice", **kw: object) -> Task:
    return Task(job_id=job, attempt=1, command=cmd, pool="cpu", tenant=tenant, **kw)  # type: ignore[arg-type]


def _wait(ex: LocalExecutor, handle: str, timeout: float = 20) -> TaskStatus:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = ex.poll(handle)
        if status.phase is not TaskPhase.RUNNING:
            return status
        time.sleep(0.02)
    raise AssertionError("task did not finish")


def _run(ex: LocalExecutor, code: str, **kw: object) -> tuple[TaskStatus, str]:
    h = ex.start(_task(PY, "-c", code, **kw))  # type: ignore[arg-type]
    status = _wait(ex, h)
    return status, ex.read_log(h, 0).decode()


PROBE = """
import json, os, stat
st = os.stat('.')
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "cwd": os.getcwd(),
                  "mode": oct(stat.S_IMODE(st.st_mode)), "owner": st.st_uid, "home": os.environ["HOME"],
                  "env": sorted(os.environ)}))
"""


def _probe(ex: LocalExecutor, **kw: object) -> dict:  # type: ignore[type-arg]
    status, out = _run(ex, PROBE, **kw)
    assert status.phase is TaskPhase.SUCCEEDED, out
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_a_job_runs_as_its_tenants_own_uid_in_a_private_directory(ex: LocalExecutor, jobs_root: Path,
                                                                   tmp_path: Path) -> None:
    alice = _probe(ex, job="ja")
    alice_again = _probe(ex, job="jb")
    bob = _probe(ex, job="jc", tenant="t-bob")
    assert alice["uid"] != 0 and alice["gid"] != 0 and alice["groups"] == []
    assert alice["uid"] == alice_again["uid"] != bob["uid"]
    assert alice["cwd"] == str(jobs_root / "ja-1") == alice["home"]
    assert (alice["mode"], alice["owner"]) == ("0o700", alice["uid"])
    assert not Path(alice["cwd"]).is_relative_to(tmp_path)  # outside the agent's state
    assert not (jobs_root / "ja-1").exists()  # removed when the attempt ended


def test_the_agents_environment_does_not_reach_the_job(ex: LocalExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUANWANG_AGENT_TOKEN", "sw_secret")
    monkeypatch.setenv("SUANWANG_DATABASE_URL", "postgresql://u:pw@h/db")
    env = _probe(ex, env={"MINE": "1"})["env"]
    assert "SUANWANG_AGENT_TOKEN" not in env and "SUANWANG_DATABASE_URL" not in env
    assert {"MINE", "PATH", "HOME", "USER", "SUANWANG_JOB_ID", "SUANWANG_ATTEMPT"} <= set(env)


def test_a_job_cannot_read_the_agents_files_or_another_tenants(ex: LocalExecutor, jobs_root: Path) -> None:
    # Bob's job keeps a file in its working directory while Alice's job goes looking for it.
    bob = ex.start(_task("sh", "-c", "echo bob-secret > notes; echo bob-output; sleep 30", job="jb", tenant="t-bob"))
    deadline = time.time() + 10
    while not ex.read_log(bob, 0) and time.time() < deadline:
        time.sleep(0.02)
    targets = [str(jobs_root / "jb-1" / "notes"), str(ex.root / "jb-1" / "output.log"),
               str(ex.root / "jb-1" / "job.json"),
               str(ex.state / "agent.db"), "../jb-1/notes", "../../" + str(ex.root)]
    code = ("import sys\nfor p in sys.argv[1:]:\n    try:\n        open(p).read(); print('READ', p)\n"
            "    except OSError as e:\n        print('DENIED', p, e.strerror)\n")
    h = ex.start(_task(PY, "-c", code, *targets, job="ja", tenant="t-alice"))
    status = _wait(ex, h)
    out = ex.read_log(h, 0).decode()
    assert status.phase is TaskPhase.SUCCEEDED, out
    assert "READ" not in out and out.count("DENIED") == len(targets), out
    ex.cancel(bob)
    assert _wait(ex, bob).phase is TaskPhase.CANCELLED


def test_a_nul_byte_or_a_missing_tenant_fails_that_task_alone(ex: LocalExecutor) -> None:
    status = _wait(ex, ex.start(_task("echo", "a\0b", job="jn")))
    assert status.phase is TaskPhase.FAILED and "NUL" in status.reason
    status = _wait(ex, ex.start(_task("echo", "hi", job="jt", tenant="")))
    assert status.phase is TaskPhase.FAILED and "no tenant" in status.reason
    assert _probe(ex, job="jok")["uid"] != 0  # and the executor still runs the next one


def test_a_directory_the_job_may_not_enter_fails_it_with_the_reason(ex: LocalExecutor) -> None:
    status = _wait(ex, ex.start(_task("ls", workdir=str(ex.state))))
    assert status.phase is TaskPhase.FAILED and status.exit_code == 127
    assert "cannot enter working directory" in status.reason and "Permission denied" in status.reason


def test_the_jobs_root_must_lie_outside_the_agents_state(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec, match=r"local\.jobs_root"):
        LocalExecutor(tmp_path / "agent", jobs_root=tmp_path / "agent" / "jobs")
    with pytest.raises(InvalidSpec, match=r"local\.jobs_root"):
        LocalExecutor(tmp_path / "agent", jobs_root=tmp_path / "j", outside=(tmp_path,))
    shared = Path(tempfile.mkdtemp())
    shared.chmod(0o1777)  # as /tmp: never chmod a shared directory
    with pytest.raises(InvalidSpec, match="must be a directory of this agent's user"):
        LocalExecutor(tmp_path / "agent", jobs_root=shared)
    with pytest.raises(InvalidSpec, match=r"local\.uid_range"):
        LocalExecutor(tmp_path / "agent", jobs_root=Path(tempfile.mkdtemp()), uid_range=(0, 10))


def test_without_root_the_executor_refuses_unless_told_to_share_its_user(
        tmp_path: Path, jobs_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(IsolationUnavailable, match="--insecure-shared-user"):
        LocalExecutor(tmp_path / "agent", jobs_root=jobs_root)
    os.chown(jobs_root, 1000, 1000)  # as that user's own directory would be
    assert LocalExecutor(tmp_path / "agent", jobs_root=jobs_root, shared_user=True).users is None


def test_state_directories_are_private(ex: LocalExecutor, jobs_root: Path) -> None:
    _probe(ex)
    assert stat.S_IMODE(ex.state.stat().st_mode) == 0o700
    assert stat.S_IMODE(ex.root.stat().st_mode) == 0o700
    assert stat.S_IMODE(jobs_root.stat().st_mode) == 0o711  # enter your own directory, list nobody's
    assert stat.S_IMODE((jobs_root / ".uids.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((ex.root / "j1-1" / "job.json").stat().st_mode) == 0o600


def test_a_job_joins_its_own_cgroup_with_its_limits(tmp_path: Path, jobs_root: Path) -> None:
    fake = tmp_path / "cg"
    fake.mkdir()
    (fake / "cgroup.controllers").write_text("cpu memory pids\n")
    ex = LocalExecutor(tmp_path / "agent", jobs_root=jobs_root, cgroup_root=fake / "suanwang")
    h = ex.start(_task(PY, "-c", "import os; print(os.getpid())", cores=3, memory_gb=2))
    status = _wait(ex, h)
    assert status.phase is TaskPhase.SUCCEEDED
    job_cg = fake / "suanwang" / h
    assert (job_cg / "cgroup.procs").read_text() == ex.read_log(h, 0).decode().strip()  # joined before exec
    assert (job_cg / "memory.max").read_text() == str(2 * 2**30) and (job_cg / "cpu.max").read_text() == "300000 100000"


def test_cgroup_limits_follow_the_job(tmp_path: Path) -> None:
    """A stand-in cgroup tree: what the executor writes for a job's memory, cores and processes."""
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    cgroups, why = _cgroup.probe(tmp_path / "suanwang", pids_max=64)
    assert why == "" and cgroups is not None and cgroups.controllers == ("memory", "cpu", "pids")
    path = cgroups.create("j-1", cores=2, memory_gb=0.5)
    assert (path / "memory.max").read_text() == str(2**29)
    assert (path / "cpu.max").read_text() == "200000 100000"
    assert (path / "pids.max").read_text() == "64"
    assert cgroups.limits(cores=0, memory_gb=0)["memory.max"] == str(_cgroup.MIN_MEMORY_BYTES)


def test_a_host_without_cgroup_v2_controllers_says_which_limits_are_not_enforced(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("\n")
    cgroups, why = _cgroup.probe(tmp_path / "suanwang")
    assert cgroups is None
    assert why.startswith("memory.max, cpu.max, pids.max not enforced: ") and "controllers" in why
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    cgroups, why = _cgroup.probe(tmp_path / "suanwang")
    assert cgroups is not None and why.startswith("cpu.max not enforced")
    mountinfo = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n"
    assert _cgroup.cgroup2_mount(mountinfo) == Path("/sys/fs/cgroup")
    assert _cgroup.probe(None, mountinfo="1 0 8:1 / / rw - ext4 /dev/sda1 rw\n")[1].endswith("no cgroup v2 "
                                                                                              "hierarchy is mounted")
