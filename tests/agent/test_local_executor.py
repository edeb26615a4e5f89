"""The local executor runs real subprocesses: exit codes, logs, usage, cancellation, adoption."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from suanwang.agent.executors.base import Task, TaskPhase
from tests.agent.conftest import PY, wait_final


def _task(*cmd: str, job: str = "j1", **kw: object) -> Task:
    kw.setdefault("tenant", "t-alice")
    return Task(job_id=job, attempt=1, command=cmd, pool="cpu", **kw)  # type: ignore[arg-type]


def test_success_captures_output_and_cpu_time(tmp_path: Path, make) -> None:
    ex = make(tmp_path)
    h = ex.start(_task(PY, "-c", "sum(range(3_000_000)); print('hi'); import sys; print('err', file=sys.stderr)"))
    status = wait_final(ex, h)
    assert status.phase is TaskPhase.SUCCEEDED and status.exit_code == 0
    assert status.usage.cpu_s > 0 and status.usage.wall_s > 0 and status.usage.peak_memory_bytes > 0
    log = ex.read_log(h, 0)
    assert b"hi" in log and b"err" in log
    assert ex.read_log(h, len(log)) == b""


def test_nonzero_exit_is_failed_with_reason(tmp_path: Path, make) -> None:
    ex = make(tmp_path)
    status = wait_final(ex, ex.start(_task(PY, "-c", "raise SystemExit(3)")))
    assert (status.phase, status.exit_code, status.reason) == (TaskPhase.FAILED, 3, "exit code 3")


def test_missing_program_fails_cleanly(tmp_path: Path, make) -> None:
    ex = make(tmp_path)
    status = wait_final(ex, ex.start(_task("/no/such/program")))
    assert status.phase is TaskPhase.FAILED and status.exit_code == 127
    assert "/no/such/program" in status.reason


def test_env_and_workdir_are_applied(tmp_path: Path, make) -> None:
    ex = make(tmp_path / "agent")
    work = Path(tempfile.mkdtemp(prefix="sw-w-"))
    work.chmod(0o755)
    h = ex.start(_task(PY, "-c", "import os; print(os.getcwd(), os.environ['GREETING'])",
                       env={"GREETING": "ni-hao"}, workdir=str(work)))
    wait_final(ex, h)
    assert f"{work} ni-hao".encode() in ex.read_log(h, 0)


def test_cancel_kills_the_whole_process_group(tmp_path: Path, make) -> None:
    ex = make(tmp_path)
    # a shell that starts a grandchild which ignores SIGTERM: only the group SIGKILL ends it
    h = ex.start(_task("sh", "-c", "trap '' TERM; sleep 300 & wait"))
    time.sleep(0.5)
    t0 = time.time()
    ex.cancel(h)
    status = wait_final(ex, h, timeout=10)
    assert status.phase is TaskPhase.CANCELLED
    assert time.time() - t0 < 2.5


def test_a_new_executor_adopts_a_running_task(tmp_path: Path, make) -> None:
    first = make(tmp_path)
    task = _task(PY, "-c", "import time; time.sleep(0.8); print('adopted')")
    h = first.start(task)
    second = make(tmp_path)  # as after an agent restart
    assert second.adopt(h, task)
    status = wait_final(second, h)
    assert status.phase is TaskPhase.SUCCEEDED
    assert b"adopted" in second.read_log(h, 0)
    assert not second.adopt("j-unknown-1", task)


def test_a_restarted_agent_kills_a_task_from_its_pid_file_alone(tmp_path: Path, make) -> None:  # type: ignore[no-untyped-def]
    import psutil

    h = make(tmp_path).start(_task("sh", "-c", "sleep 300 & wait"))
    pid = (tmp_path / "tasks" / h / "pid").read_text()
    created = (tmp_path / "tasks" / h / "pid-created").read_text()
    assert float(created) == psutil.Process(int(pid)).create_time()  # the files name the process, not a number
    deadline = time.time() + 10
    while not (tmp_path / "tasks" / h / "job.pid").exists() and time.time() < deadline:
        time.sleep(0.02)
    job = (tmp_path / "tasks" / h / "job.pid").read_text()
    fresh = make(tmp_path)  # no memory of the process: as after an agent restart
    fresh.cancel(h)
    assert wait_final(fresh, h, timeout=10).phase is TaskPhase.CANCELLED
    groups = {int(pid), int(job)}
    assert not [p for p in psutil.process_iter() if _pgid(p.pid) in groups and p.status() != psutil.STATUS_ZOMBIE]


def test_a_pid_reused_by_another_process_is_never_signalled(tmp_path: Path, make) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    ex = make(tmp_path)
    h = ex.start(_task(PY, "-c", "pass"))
    wait_final(ex, h)
    import psutil

    bystander = subprocess.Popen(["sleep", "30"], start_new_session=True)
    bystander_created = psutil.Process(bystander.pid).create_time()
    try:
        # The task's leader is gone and the kernel handed its pid to an unrelated process.
        (tmp_path / "tasks" / h / "pid").write_text(str(bystander.pid))
        (tmp_path / "tasks" / h / "pid-created").write_text(str(bystander_created - 5))
        (tmp_path / "tasks" / h / "result.json").unlink()
        fresh = make(tmp_path)
        assert not fresh.adopt(h, _task(PY, "-c", "pass"))
        fresh.cancel(h)
        time.sleep(0.2)  # a signal, had one been sent, lands at once
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def _pgid(pid: int) -> int | None:

    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
