"""RayExecutor against a real local Ray head (scripts/ray/setup.sh): the Jobs API end to end."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from suanwang.agent.executors.base import Task, TaskPhase
from suanwang.agent.executors.ray import RayExecutor, RayPool
from suanwang.errors import InvalidSpec

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_ready")]

POOLS = [RayPool("t-ray", "intelligent", device_model="A100", cpu_model="sim-x86")]
PY = "python3"


@pytest.fixture
def executor(ray_address: str) -> RayExecutor:
    return RayExecutor(POOLS, address=ray_address)


def task(*command: str, **kw: object) -> Task:
    job = f"j{time.monotonic_ns()}"
    return Task(job_id=job, attempt=1, command=command, pool="t-ray", **kw)  # type: ignore[arg-type]


def test_detect_pools_reports_the_clusters_resources(executor: RayExecutor) -> None:
    (pool,) = executor.detect_pools()
    assert pool.name == "t-ray" and pool.resource_class == "intelligent"
    assert pool.cores >= 1 and pool.memory_gb > 0 and pool.devices >= 1 and pool.device_model == "A100"
    assert pool.node_cores is not None and pool.node_cores <= pool.cores


def test_a_missing_node_resource_is_named_in_the_error(ray_address: str) -> None:
    with pytest.raises(InvalidSpec, match="no_such_resource"):
        RayExecutor([RayPool("p", node_resource="no_such_resource")], address=ray_address).detect_pools()


def test_job_runs_and_logs_and_usage_come_back(executor: RayExecutor, wait: Callable, tmp_path) -> None:
    burn = "import time\nx=bytearray(60*10**6)\nt=time.process_time()\nwhile time.process_time()-t<1.5: pass"
    t = task("bash", "-c", f"echo out $GREETING $PWD; echo err >&2; {PY} -c '{burn}'",
             cores=1, memory_gb=0.5, devices=1, env={"GREETING": "ni hao"}, workdir=str(tmp_path))
    handle = executor.start(t)
    status = wait(lambda: executor.poll(handle))
    assert status.phase is TaskPhase.SUCCEEDED and status.exit_code == 0
    log = executor.read_log(handle, 0)
    assert log == f"out ni hao {tmp_path}\nerr\n".encode()
    assert executor.read_log(handle, 4) == log[4:]
    u = status.usage
    assert u.wall_s >= 1.5 and u.cpu_s >= 1.5
    assert u.peak_memory_bytes >= 50 * 10**6
    assert u.device_s == pytest.approx(u.wall_s)


def test_non_zero_exit_is_failed_with_the_exit_code(executor: RayExecutor, wait: Callable) -> None:
    handle = executor.start(task("bash", "-c", "exit 3"))
    status = wait(lambda: executor.poll(handle))
    assert (status.phase, status.exit_code, status.reason) == (TaskPhase.FAILED, 3, "exit code 3")


def test_exceeding_memory_is_failed_as_out_of_memory(executor: RayExecutor, wait: Callable) -> None:
    handle = executor.start(task(PY, "-c", "import time\nx=bytearray(400*10**6)\ntime.sleep(20)", memory_gb=0.1))
    status = wait(lambda: executor.poll(handle))
    assert status.phase is TaskPhase.FAILED and status.reason.startswith("out of memory")
    assert status.usage.wall_s < 15


def test_cancel_stops_the_job(executor: RayExecutor, wait: Callable) -> None:
    handle = executor.start(task("bash", "-c", "echo started; sleep 60"))
    wait(lambda: executor.poll(handle), lambda s: executor.read_log(handle, 0) == b"started\n")
    executor.cancel(handle)
    status = wait(lambda: executor.poll(handle), timeout_s=30)
    assert status.phase is TaskPhase.CANCELLED and status.usage.wall_s < 30


def test_a_new_executor_adopts_a_job_by_its_handle(executor: RayExecutor, wait: Callable, ray_address: str) -> None:
    t = task("bash", "-c", "sleep 1; echo done")
    handle = executor.start(t)
    restarted = RayExecutor(POOLS, address=ray_address)
    assert restarted.adopt(handle, t)
    assert not restarted.adopt(handle, task("true"))
    status = wait(lambda: restarted.poll(handle))
    assert status.phase is TaskPhase.SUCCEEDED and restarted.read_log(handle, 0) == b"done\n"


def test_unknown_handles_are_lost_and_not_adopted(executor: RayExecutor) -> None:
    assert executor.poll("sw-nosuch-1-0").phase is TaskPhase.LOST
    assert not executor.adopt("sw-nosuch-1-0", task("true"))
    assert executor.read_log("sw-nosuch-1-0", 0) == b""
