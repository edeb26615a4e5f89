"""Ray job details and logs to task status, without a Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from suanwang.agent.executors.base import Task, TaskPhase
from suanwang.agent.executors.ray import (
    MARKER,
    RayExecutor,
    RayPool,
    pools_from_nodes,
    split_log,
    status_from_info,
    wrap,
)
from suanwang.errors import InvalidSpec


def info(status: str, exit_code: int | None = None, start: int = 1000, end: int = 0) -> SimpleNamespace:
    return SimpleNamespace(status=status, driver_exit_code=exit_code, start_time=start, end_time=end, message="",
                           metadata={})


def test_split_log_hides_the_marker_and_rays_own_lines() -> None:
    usage = {"wall_s": 2.0, "cpu_s": 1.5, "peak_bytes": 10, "exit_code": 0, "signal": 0, "oom": False, "limit": 0}
    text = ("2026-11-26 14:17:23,955\tINFO job_manager.py:581 -- Runtime env is setting up.\n"
            f"out\npartial{MARKER} {json.dumps(usage)}\nRunning entrypoint for job h: cmd 'x'\n")
    log, marker = split_log(text, "h", "cmd 'x'")
    assert log == "out\npartial" and marker == usage


def test_statuses_map_from_ray_and_the_marker() -> None:
    oom = {"wall_s": 3.0, "cpu_s": 0.2, "peak_bytes": 500, "exit_code": None, "signal": 9, "oom": True, "limit": 100}
    s = status_from_info(info("FAILED", 137, end=4000), oom, gpus=2, now_ms=9000)
    assert s.phase is TaskPhase.FAILED and s.reason.startswith("out of memory") and s.usage.device_s == 6.0
    s = status_from_info(info("FAILED", 3, end=4000), None, gpus=0, now_ms=9000)
    assert (s.reason, s.exit_code, s.usage.wall_s) == ("exit code 3", 3, 3.0)
    assert status_from_info(info("RUNNING"), None, gpus=1, now_ms=3000).usage.wall_s == 2.0
    assert status_from_info(info("STOPPED", end=2000), None, 0, 0).phase is TaskPhase.CANCELLED
    assert status_from_info(info("SUCCEEDED", 0, end=2000), None, 0, 0).phase is TaskPhase.SUCCEEDED


def test_a_pending_ray_job_is_queued_and_a_running_one_says_when_it_started() -> None:
    pending = status_from_info(info("PENDING"), None, gpus=0, now_ms=3000)
    assert (pending.phase, pending.started_at) == (TaskPhase.QUEUED, None)
    running = status_from_info(info("RUNNING", start=1_500), None, gpus=0, now_ms=3000)
    assert (running.phase, running.started_at) == (TaskPhase.RUNNING, 1.5)
    done = status_from_info(info("SUCCEEDED", 0, start=1_500, end=2000), None, 0, 0)
    assert (done.phase, done.started_at) == (TaskPhase.SUCCEEDED, 1.5)


def test_pools_sum_alive_nodes_and_honour_node_resources() -> None:
    nodes = [
        {"state": "ALIVE", "resources_total": {"CPU": 8.0, "GPU": 2.0, "memory": 16 * 2**30, "wuhu": 1.0}},
        {"state": "ALIVE", "resources_total": {"CPU": 4.0, "memory": 8 * 2**30}},
        {"state": "DEAD", "resources_total": {"CPU": 64.0, "memory": 8 * 2**30}},
    ]
    all_, wuhu = pools_from_nodes(nodes, [RayPool("all"), RayPool("wh", node_resource="wuhu", device_model="A100")])
    assert (all_.cores, all_.memory_gb, all_.devices, all_.node_cores) == (12, 24.0, 0, 8)  # GPUs need a model
    assert (wuhu.cores, wuhu.devices, wuhu.device_model) == (8, 2, "A100")
    with pytest.raises(InvalidSpec, match="beijing"):
        pools_from_nodes(nodes, [RayPool("bj", node_resource="beijing")])


def test_submit_asks_ray_for_the_tasks_resources() -> None:
    ex = RayExecutor([RayPool("p", node_resource="wuhu")], address="http://x:8265", client_factory=lambda a: None)
    kw = ex.submit_kwargs(Task("j", 3, ("echo", "hi"), "p", cores=2, memory_gb=1.0, devices=1, env={"A": "b"}))
    assert (kw["entrypoint_num_cpus"], kw["entrypoint_num_gpus"], kw["entrypoint_memory"]) == (2, 1, 2**30)
    assert kw["runtime_env"] == {"env_vars": {"A": "b"}} and kw["entrypoint_resources"] == {"wuhu": 0.001}
    assert kw["metadata"]["suanwang_job"] == "j" and kw["submission_id"].startswith("sw-j-3-")


def test_the_wrapper_reports_usage_and_exit_and_kills_on_memory(tmp_path) -> None:
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\nraise SystemExit(4)"
    task = Task("j", 1, (sys.executable, "-c", burn), "p", workdir=str(tmp_path))
    done = subprocess.run(wrap(task, sys.executable, True), shell=True, capture_output=True, text=True, timeout=30)
    _, marker = split_log(done.stderr)
    assert done.returncode == 4 and marker is not None
    assert marker["exit_code"] == 4 and marker["cpu_s"] >= 0.3 and not marker["oom"]
    hog_code = "import time\nx=bytearray(300*10**6)\ntime.sleep(20)"
    hog = Task("j", 1, (sys.executable, "-c", hog_code), "p", memory_gb=0.05)
    done = subprocess.run(wrap(hog, sys.executable, True), shell=True, capture_output=True, text=True, timeout=30)
    _, marker = split_log(done.stderr)
    assert marker is not None and marker["oom"] and marker["signal"] == 9 and done.returncode == 137
