"""Runs one task for the local executor: as the tenant's uid, in its cgroup, output through a pipe.

Why a wrapper: the agent may die and restart while a task runs; the wrapper (in its own
session, with the agent's privileges) outlives it, keeps copying the job's output into
``output.log`` and writes ``result.json`` (exit status and rusage) at the end, so a new agent
adopts the task from its files alone.  The job itself gets none of the agent's files: it is
forked here, joins its cgroup, starts its own session, drops every group and switches to the
tenant's uid *before* it enters its working directory, so paths are checked as that user.
Its stdout and stderr are a pipe that this process reads.

Usage: python -m suanwang.agent.executors._localwrap TASK_DIR
(``TASK_DIR/job.json``: command, env, cwd, uid, gid, cgroup, home)
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from suanwang.agent.executors import _cgroup


def write_result(path: Path, result: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(result, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _exec_job(spec: dict[str, Any], out_w: int, err_w: int) -> None:
    """In the forked child: never returns.  A failure is written to ``err_w`` (closed on exec)."""
    step = "start"
    try:
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)  # Python ignores SIGPIPE; exec would keep that
        if spec.get("cgroup"):
            step = "join its cgroup"
            Path(spec["cgroup"], "cgroup.procs").write_text(str(os.getpid()))
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        if spec.get("uid") is not None:
            step = f"switch to uid {spec['uid']}"
            os.setgroups([])
            os.setresgid(spec["gid"], spec["gid"], spec["gid"])
            os.setresuid(spec["uid"], spec["uid"], spec["uid"])
        os.umask(0o077)
        step = f"enter working directory {spec['cwd']!r}"
        os.chdir(spec["cwd"])
        step = f"start {spec['command'][0]!r}"
        os.execvpe(spec["command"][0], spec["command"], spec["env"])  # nosec B606  # the job itself: argv without a shell, by design
    except BaseException as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        os.write(err_w, f"cannot {step}: {detail}".encode(errors="replace")[:2000])
    finally:
        os._exit(127)


def _copy(src: int, log: Path) -> None:
    with open(log, "ab", buffering=0) as out:
        while chunk := os.read(src, 65536):
            out.write(chunk)


def run(task_dir: Path) -> int:
    spec = json.loads((task_dir / "job.json").read_text())
    result = task_dir / "result.json"
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    start = time.time()
    job: list[int] = []  # the job's pid, once forked; a SIGTERM before that ends it as soon as it exists
    term: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: _killpg(job[0], signal.SIGTERM) if job else term.append(True))
    pid = os.fork()  # this process has no threads yet: fork is safe
    if pid == 0:
        _exec_job(spec, out_w, err_w)
    job.append(pid)
    if term:
        _killpg(pid, signal.SIGTERM)
    os.close(out_w)
    os.close(err_w)
    (task_dir / "job.pid").write_text(str(pid))  # the job's process group: what the agent signals
    with os.fdopen(err_r, "rb") as err:
        failure = err.read().decode(errors="replace")
    reader = threading.Thread(target=_copy, args=(out_r, task_dir / "output.log"), daemon=True)
    reader.start()
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    _killpg(pid, signal.SIGKILL)  # what the job left behind in its group ...
    _cgroup.end(spec.get("cgroup"))  # ... and in its cgroup, which also holds those that left the group
    reader.join(timeout=2.0)  # a process that escaped both may still hold the pipe; do not wait for it
    reason = failure or (f"killed by signal {-code}" if code < 0 else ("" if code == 0 else f"exit code {code}"))
    write_result(result, {
        "exit_code": code,
        "wall_s": time.time() - start,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_memory_bytes": usage.ru_maxrss * 1024,
        "reason": reason,
    })
    return 0


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
