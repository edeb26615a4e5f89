"""The local executor: each task is a subprocess on this machine, in its own process group.

Layout under the agent's work directory: ``tasks/<job>-<attempt>/`` holds
``output.log`` (stdout and stderr), ``result.json`` (written by the wrapper
at exit), ``pid`` (the wrapper's, which leads the task's process group) and
``pid-created`` (that process's start time).  The handle is that directory's
name, so a restarted agent can adopt, or kill, a task from its files alone; the
start time keeps it from signalling a process that merely reuses the pid.  A
task runs once spawned.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from suanwang.agent.executors.base import PoolInfo, Task, TaskPhase, TaskStatus, Usage
from suanwang.agent.sysinfo import detect_local_pools

KILL_GRACE_S = 1.0  # SIGTERM first, SIGKILL this long after


class LocalExecutor:
    engine = "local"

    def __init__(self, workdir: Path, pools: list[PoolInfo] | None = None) -> None:
        self.root = Path(workdir) / "tasks"
        self.root.mkdir(parents=True, exist_ok=True)
        self._pools = pools
        self._started: dict[str, float] = {}
        self._devices: dict[str, float] = {}
        self._peak: dict[str, int] = {}
        self._cpu: dict[str, float] = {}
        self._kill_at: dict[str, float] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def detect_pools(self) -> list[PoolInfo]:
        return self._pools if self._pools is not None else detect_local_pools()

    def start(self, task: Task) -> str:
        handle = f"{task.job_id}-{task.attempt}"
        d = self.root / handle
        d.mkdir(parents=True, exist_ok=True)
        (d / "task.json").write_text(json.dumps({"devices": task.devices, "started": time.time()}))
        cwd = task.workdir or str(d)
        env = {**os.environ, **task.env, "SUANWANG_JOB_ID": task.job_id, "SUANWANG_ATTEMPT": str(task.attempt)}
        wrapper = [sys.executable, "-m", "suanwang.agent.executors._localwrap", str(d / "result.json"), "--"]
        with open(d / "output.log", "ab") as log:
            try:
                proc = subprocess.Popen([*wrapper, *task.command], cwd=cwd, env=env, stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            except OSError as exc:  # e.g. the working directory does not exist
                (d / "result.json").write_text(json.dumps({"exit_code": 127, "wall_s": 0.0, "cpu_s": 0.0,
                                                           "peak_memory_bytes": 0, "reason": str(exc)}))
                return handle
        (d / "pid-created").write_text(str(_create_time(proc.pid)))  # first: a pid file always has its check
        (d / "pid").write_text(str(proc.pid))
        self._procs[handle] = proc
        self._remember(handle, task.devices, time.time())
        return handle

    def _remember(self, handle: str, devices: int, started: float) -> None:
        self._started[handle] = started
        self._devices[handle] = devices

    def adopt(self, handle: str, task: Task) -> bool:
        d = self.root / handle
        if not (d / "task.json").exists():
            return False
        meta = json.loads((d / "task.json").read_text())
        self._remember(handle, int(meta.get("devices", 0)), float(meta.get("started", time.time())))
        return (d / "result.json").exists() or self._alive(handle)

    def _pid(self, handle: str) -> int | None:
        """The task's process group leader, or None when that pid now belongs to another process."""
        try:
            pid = int((self.root / handle / "pid").read_text())
        except (OSError, ValueError):
            return None
        now = _create_time(pid)
        try:
            if now is not None and abs(now - float((self.root / handle / "pid-created").read_text())) > 0.05:
                return None  # the leader exited and the pid was reused
        except (OSError, ValueError):
            pass  # no start time (an older agent, or the process was gone at once): nothing to check against
        return pid

    def _alive(self, handle: str) -> bool:
        proc = self._procs.get(handle)
        if proc is not None:
            return proc.poll() is None
        pid = self._pid(handle)
        if pid is None:
            return False
        try:
            p = psutil.Process(pid)
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def _sample(self, handle: str) -> None:
        """Add the live process tree's CPU time and memory to what we know."""
        pid = self._pid(handle)
        if pid is None:
            return
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
            cpu = sum(sum(p.cpu_times()[:2]) for p in procs[1:])
            rss = sum(p.memory_info().rss for p in procs[1:])
        except psutil.Error:
            return
        self._cpu[handle] = max(self._cpu.get(handle, 0.0), cpu)
        self._peak[handle] = max(self._peak.get(handle, 0), rss)

    def poll(self, handle: str) -> TaskStatus:
        started = self._started.get(handle, time.time())
        devices = self._devices.get(handle, 0)
        result_file = self.root / handle / "result.json"
        if result_file.exists():
            r = json.loads(result_file.read_text())
            self._reap(handle)
            usage = Usage(wall_s=r["wall_s"], cpu_s=r["cpu_s"], peak_memory_bytes=int(r["peak_memory_bytes"]),
                          device_s=devices * r["wall_s"])
            cancelled = handle in self._kill_at
            phase = TaskPhase.CANCELLED if cancelled else (TaskPhase.SUCCEEDED if r["exit_code"] == 0 else TaskPhase.FAILED)
            return TaskStatus(phase, usage, exit_code=r["exit_code"], reason=r.get("reason", ""),
                              started_at=started)
        wall = time.time() - started
        if self._alive(handle):
            self._sample(handle)
            if handle in self._kill_at and time.time() >= self._kill_at[handle]:
                self._signal(handle, signal.SIGKILL)
            return TaskStatus(TaskPhase.RUNNING, self._usage(handle, wall, devices), started_at=started)
        self._reap(handle)
        usage = self._usage(handle, wall, devices)
        if handle in self._kill_at:
            return TaskStatus(TaskPhase.CANCELLED, usage, reason="killed on cancel", started_at=started)
        return TaskStatus(TaskPhase.LOST, usage, reason="process vanished without a result", started_at=started)

    def _usage(self, handle: str, wall: float, devices: int) -> Usage:
        return Usage(wall_s=wall, cpu_s=self._cpu.get(handle, 0.0), peak_memory_bytes=self._peak.get(handle, 0),
                     device_s=devices * wall)

    def _reap(self, handle: str) -> None:
        proc = self._procs.pop(handle, None)
        if proc is not None:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass

    def _signal(self, handle: str, sig: int) -> None:
        pid = self._pid(handle)
        if pid is None:
            return
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def cancel(self, handle: str) -> None:
        """Terminate the whole process group; escalate to SIGKILL after a grace period."""
        self._kill_at.setdefault(handle, time.time() + KILL_GRACE_S)
        self._signal(handle, signal.SIGTERM)

    def read_log(self, handle: str, offset: int) -> bytes:
        try:
            with open(self.root / handle / "output.log", "rb") as f:
                f.seek(offset)
                return f.read(256 * 1024)
        except FileNotFoundError:
            return b""


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None
