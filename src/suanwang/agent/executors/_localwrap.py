"""Runs one task for the local executor and writes its exit status and rusage to a file.

Why a wrapper: the agent may die and restart while a task runs; the wrapper
(in the task's own session) outlives it, and the result file lets a new
agent adopt the task and still learn its exit code and exact CPU time.

Usage: python -m suanwang.agent.executors._localwrap RESULT.json -- CMD [ARGS...]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def _write(path: str, result: dict[str, object]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    result_path, sep, *cmd = argv
    assert sep == "--" and cmd, "usage: _localwrap RESULT -- CMD..."
    start = time.time()
    try:
        child = subprocess.Popen(cmd)
    except OSError as exc:
        _write(result_path, {"exit_code": 127, "wall_s": 0.0, "cpu_s": 0.0, "peak_memory_bytes": 0,
                             "reason": f"cannot start {cmd[0]!r}: {exc.strerror}"})
        return 127
    # Forward termination to the child; the group kill from the agent reaches it too.
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    code = child.returncode
    reason = f"killed by signal {-code}" if code < 0 else ("" if code == 0 else f"exit code {code}")
    _write(result_path, {
        "exit_code": code,
        "wall_s": time.time() - start,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_memory_bytes": usage.ru_maxrss * 1024,
        "reason": reason,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
