"""CPU that an idle ``suanwang up`` (platform and its local agent) burns: the target is under 1 % of a core.

    PYTHONPATH=src python bench/idle.py [--quick] [--windows N] [--window-s S] [--database-url URL]

Starts ``suanwang up`` on a scratch data directory (SQLite, or a fresh PostgreSQL schema with
``--database-url``), waits until its agent registered and the start-up work settled, then reads
the CPU time (user + system) of the process and all its children with psutil over ``--windows``
windows of ``--window-s`` seconds (60 s; ``--quick``: 15 s; 3 windows).  ``idle_cpu_percent`` is
the median window's CPU seconds per wall second x 100, i.e. per cent of one core.  CPU time is
what the process itself used, so other load on the machine slows the measurement but does not
inflate it.  Writes bench/results/idle.json (idle_postgresql.json with ``--database-url``); the last
stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
from rich.progress import Progress

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _live import free_port

RESULTS = Path(__file__).resolve().parent / "results" / "idle.json"
TARGET = 1.0


def _cpu_s(proc: psutil.Process) -> float:
    """User + system CPU seconds of ``proc`` and every live child."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system
    return total


@contextlib.contextmanager
def _database(url: str | None) -> Iterator[str | None]:
    if url is None:
        yield None
        return
    from suanwang.store.db import scratch_schema

    with scratch_schema(url, "bench") as schema_url:
        yield schema_url


def _wait_ready(url: str, token_file: Path, timeout_s: float = 300) -> None:
    """Until the API answers and the local agent registered its pools."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if token_file.exists():
                token = token_file.read_text().strip()
                r = httpx.get(f"{url}/api/v1/pools", headers={"Authorization": f"Bearer {token}"}, timeout=2)
                if r.status_code == 200 and r.json():
                    return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("suanwang up did not become ready")


def measure(windows: int, window_s: float, settle_s: float, database_url: str | None,
            progress: Progress) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="swidle-") as tmp, _database(database_url) as db_url:
        data = Path(tmp) / "data"
        port = free_port()
        cmd = [sys.executable, "-m", "suanwang", "up", "--data-dir", str(data), "--port", str(port),
               "--jobs-root", str(Path(tmp) / "jobs")]
        if db_url:
            cmd += ["--database-url", db_url]
        env = {**os.environ, "SUANWANG_LOG_LEVEL": "WARNING"}
        env.pop("SUANWANG_DATABASE_URL", None)
        with open(Path(tmp) / "up.log", "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            try:
                _wait_ready(f"http://127.0.0.1:{port}", data / "consumer.token")
                time.sleep(settle_s)  # the first passes (reconciliation, migrations' aftermath) are not idle
                ps = psutil.Process(proc.pid)
                task = progress.add_task(f"idle CPU, {windows} x {window_s:g} s", total=windows)
                out = []
                for _ in range(windows):
                    c0, t0 = _cpu_s(ps), time.monotonic()
                    time.sleep(window_s)
                    c1, t1 = _cpu_s(ps), time.monotonic()
                    out.append(100.0 * (c1 - c0) / (t1 - t0))
                    progress.advance(task)
                if proc.poll() is not None:
                    raise RuntimeError(f"suanwang up exited with {proc.returncode}")
                return out
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="15 s windows instead of 60 s")
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--window-s", type=float, default=None)
    ap.add_argument("--settle-s", type=float, default=5.0)
    ap.add_argument("--database-url", default=None, help="default: SQLite in the scratch data directory")
    args = ap.parse_args()
    window_s = args.window_s or (15.0 if args.quick else 60.0)
    with Progress() as progress:
        runs = measure(max(args.windows, 1), window_s, args.settle_s, args.database_url, progress)
    result = {
        "bench": "idle", "quick": args.quick, "database": "postgresql" if args.database_url else "sqlite",
        "window_s": window_s, "idle_cpu_percent": round(statistics.median(runs), 3),
        "idle_cpu_percent_min": round(min(runs), 3), "idle_cpu_percent_max": round(max(runs), 3),
        "runs": [round(r, 3) for r in runs], "target_percent_max": TARGET,
        "load_average": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
    }
    out = RESULTS.with_name("idle_postgresql.json") if args.database_url else RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
