"""SlurmExecutor against a real Slurm (scripts/slurm/setup.sh): sbatch, sacct, scancel, sinfo."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from suanwang.agent.executors.base import Task, TaskPhase
from suanwang.agent.executors.slurm import PartitionPool, SlurmExecutor
from suanwang.errors import InvalidSpec

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_ready")]

POOLS = [
    PartitionPool("hpc", "t-hpc", "super", cpu_model="sim-x86"),
    PartitionPool("gpu", "t-gpu", "intelligent", device_model="A100-80G", device_memory_gb=80),
]
PY = sys.executable if Path(sys.executable).exists() else "python3"


@pytest.fixture
def executor(tmp_path: Path, slurm_conf_path: str) -> SlurmExecutor:
    return SlurmExecutor(POOLS, log_dir=tmp_path / "logs", slurm_conf=slurm_conf_path)


def task(*command: str, pool: str = "t-hpc", **kw: object) -> Task:
    return Task(job_id=f"j{time.monotonic_ns()}", attempt=1, command=command, pool=pool, **kw)  # type: ignore[arg-type]


def test_detect_pools_reports_partitions_with_real_capacity(executor: SlurmExecutor) -> None:
    pools = {p.name: p for p in executor.detect_pools()}
    assert set(pools) == {"t-hpc", "t-gpu"}
    hpc, gpu = pools["t-hpc"], pools["t-gpu"]
    assert hpc.resource_class == "super" and hpc.cores >= 1 and hpc.devices == 0 and hpc.cpu_model == "sim-x86"
    assert gpu.devices >= 1 and gpu.device_model == "A100-80G" and gpu.node_devices == gpu.devices
    assert hpc.memory_gb > 0 and hpc.node_cores is not None and hpc.node_cores <= hpc.cores


def test_a_missing_partition_is_named_in_the_error(tmp_path: Path, slurm_conf_path: str) -> None:
    ex = SlurmExecutor([PartitionPool("nosuch", "p")], log_dir=tmp_path, slurm_conf=slurm_conf_path)
    with pytest.raises(InvalidSpec, match="nosuch"):
        ex.detect_pools()


def test_job_runs_and_logs_and_usage_come_back_from_sacct(executor: SlurmExecutor, wait: Callable) -> None:
    burn = "import time\nx=bytearray(60*10**6)\nt=time.process_time()\nwhile time.process_time()-t<2: pass"
    t = task("bash", "-c", f"echo out $GREETING; echo err >&2; {PY} -c '{burn}'", pool="t-gpu",
             cores=2, memory_gb=0.5, devices=1, env={"GREETING": "ni hao"})
    handle = executor.start(t)
    status = wait(lambda: executor.poll(handle))
    assert status.phase is TaskPhase.SUCCEEDED and status.exit_code == 0
    assert executor.read_log(handle, 0) == b"out ni hao\nerr\n"
    assert executor.read_log(handle, 4) == b"ni hao\nerr\n"
    u = status.usage
    assert u.wall_s >= 1 and u.cpu_s >= 1.0
    assert u.peak_memory_bytes >= 50 * 10**6
    assert u.device_s == u.wall_s  # one GPU for the whole run


def test_jobs_do_not_see_the_agents_environment(
    executor: SlurmExecutor, wait: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUANWANG_AGENT_TOKEN", "secret")
    handle = executor.start(task("bash", "-c", "echo token=${SUANWANG_AGENT_TOKEN:-none}"))
    assert wait(lambda: executor.poll(handle)).phase is TaskPhase.SUCCEEDED
    assert executor.read_log(handle, 0) == b"token=none\n"


def test_non_zero_exit_is_failed_with_the_exit_code(executor: SlurmExecutor, wait: Callable) -> None:
    handle = executor.start(task("bash", "-c", "exit 3"))
    status = wait(lambda: executor.poll(handle))
    assert (status.phase, status.exit_code, status.reason) == (TaskPhase.FAILED, 3, "exit code 3")


def test_exceeding_memory_is_failed_as_out_of_memory(executor: SlurmExecutor, wait: Callable) -> None:
    hog = "import time\nx=bytearray(400*10**6)\ntime.sleep(20)"
    handle = executor.start(task(PY, "-c", hog, memory_gb=0.1))
    status = wait(lambda: executor.poll(handle))
    assert status.phase is TaskPhase.FAILED
    assert status.reason.startswith("out of memory")
    assert status.usage.peak_memory_bytes > 0.1 * 2**30


def test_a_job_is_running_from_saccts_start_not_from_its_submission(executor: SlurmExecutor, wait: Callable) -> None:
    submitted = time.time()
    handle = executor.start(task("bash", "-c", "echo started; sleep 30"))
    try:
        status = wait(lambda: executor.poll(handle), lambda s: s.phase is not TaskPhase.QUEUED, timeout_s=60)
    finally:
        executor.cancel(handle)
    assert status.phase is TaskPhase.RUNNING and status.started_at is not None
    assert submitted - 2 <= status.started_at <= time.time()  # sacct's Start has whole seconds


def test_cancel_reaches_scancel(executor: SlurmExecutor, wait: Callable) -> None:
    handle = executor.start(task("bash", "-c", "echo started; sleep 60"))
    wait(lambda: executor.poll(handle), lambda s: executor.read_log(handle, 0) == b"started\n")
    executor.cancel(handle)
    status = wait(lambda: executor.poll(handle), timeout_s=30)
    assert status.phase is TaskPhase.CANCELLED
    assert status.usage.wall_s < 30
    executor.cancel(handle)  # idempotent


def test_a_new_executor_adopts_a_running_job_by_its_handle(executor: SlurmExecutor, wait: Callable) -> None:
    t = task("bash", "-c", "sleep 2; echo done")
    handle = executor.start(t)
    restarted = SlurmExecutor(POOLS, log_dir=executor.log_dir, slurm_conf=executor.slurm_conf)
    assert restarted.adopt(handle, t)
    assert not restarted.adopt(handle, task("true"))  # same id, another task: not ours
    status = wait(lambda: restarted.poll(handle))
    assert status.phase is TaskPhase.SUCCEEDED and restarted.read_log(handle, 0) == b"done\n"
    assert restarted.adopt(handle, t)  # finished but known: the agent can still collect it


def test_unknown_handles_are_lost_and_not_adopted(executor: SlurmExecutor) -> None:
    assert executor.poll("99999999").phase is TaskPhase.LOST
    assert not executor.adopt("99999999", task("true"))


def test_an_unmapped_pool_is_refused(executor: SlurmExecutor) -> None:
    with pytest.raises(InvalidSpec, match="nope"):
        executor.start(task("true", pool="nope"))
