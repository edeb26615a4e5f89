"""Native engine rates: N trivial jobs straight into Slurm (sbatch) and Ray (Jobs API), jobs/s.

The baseline for bench/engines.py, which runs the same jobs through suanwang's agent:
the difference is suanwang's overhead.  Both engines are the local ones the project's
scripts start (scripts/slurm/setup.sh, scripts/ray/setup.sh); an engine that does not
answer is reported as skipped, with the reason.

    python bench/engines_native.py [--quick] [--slurm-jobs N] [--ray-jobs N]

Writes bench/results/engines_native.json; the last stdout line is the same JSON object.
Measured: submit rate (submissions / seconds spent submitting) and end-to-end rate (jobs /
seconds from the first submit until every job has finished and been checked as succeeded).
Jobs are submitted with the parallelism suanwang's agent uses for the engine (``PARALLEL``:
8 concurrent ``sbatch`` calls, as the Slurm executor's ``parallel_starts``; Ray's executor starts
one job at a time), so the comparison is like for like.  A cluster that runs or queues anyone
else's jobs is not measured: the figures would be theirs too; the result says so instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "engines_native.json"
DEFAULT_SLURM_CONF = "/var/tmp/suanwang-slurm/etc/slurm.conf"  # nosec B108  # read only: where setup.sh writes
DEFAULT_RAY_ADDRESS = "http://127.0.0.1:8365"
PARALLEL = {"slurm": 8, "ray": 1}  # concurrent submissions: the agent's executors' ``parallel_starts``


class ClusterBusy(RuntimeError):
    """Other jobs share the cluster: a measurement now would time them too."""


def slurm_foreign_jobs(slurm_conf: str | None = None) -> list[str]:
    """Every job Slurm still knows (pending, running, completing), as "id name user state"."""
    out = _run(["squeue", "-h", "-a", "-o", "%i %j %u %T"], _slurm_env(slurm_conf))
    return [line.strip() for line in out.splitlines() if line.strip()]


def ray_foreign_jobs(address: str = DEFAULT_RAY_ADDRESS) -> list[str]:
    """Ray jobs that are not finished, as "submission_id status"."""
    from ray.job_submission import JobSubmissionClient

    jobs = JobSubmissionClient(address).list_jobs()
    return [f"{j.submission_id} {j.status}" for j in jobs if not j.status.is_terminal()]


def refuse_if_busy(engine: str, jobs: list[str]) -> None:
    if jobs:
        shown = "; ".join(jobs[:5]) + (f"; ... ({len(jobs)} in all)" if len(jobs) > 5 else "")
        raise ClusterBusy(f"not measured: {len(jobs)} other job(s) share the {engine} cluster ({shown})")


def _slurm_env(slurm_conf: str | None) -> dict[str, str]:
    conf = slurm_conf or os.environ.get("SLURM_CONF") or DEFAULT_SLURM_CONF
    return {**os.environ, "SLURM_CONF": conf}


def _run(argv: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    return subprocess.run(argv, input=stdin, env=env, capture_output=True, text=True, check=True, timeout=60).stdout


def measure_slurm(
    n: int, partition: str = "hpc", slurm_conf: str | None = None, timeout_s: float = 600,
    parallel: int = PARALLEL["slurm"],
) -> dict[str, Any]:
    """Submit ``n`` × ``sbatch --wrap true``, ``parallel`` at a time; wait until all have left the queue.

    Raises ClusterBusy when other jobs are in the queue."""
    env = _slurm_env(slurm_conf)
    refuse_if_busy("Slurm", slurm_foreign_jobs(slurm_conf))
    name = f"swbench-{uuid.uuid4().hex[:8]}"
    argv = ["sbatch", "--parsable", f"--job-name={name}", f"--partition={partition}", "--output=/dev/null",
            "--cpus-per-task=1", "--mem=64M", "--wrap", "true"]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda _: _run(argv, env), range(n)))
    submit_s = time.perf_counter() - t0
    deadline = time.monotonic() + timeout_s
    while _run(["squeue", "-h", "-o", "%i", f"--name={name}"], env).strip():
        if time.monotonic() > deadline:
            raise TimeoutError(f"Slurm did not finish {n} jobs in {timeout_s} s")
        time.sleep(0.05)
    wall_s = time.perf_counter() - t0
    completed = 0
    for _ in range(100):  # slurmdbd may trail slurmctld by a moment
        states = _run(["sacct", "-n", "-X", "-P", f"--name={name}", "-o", "State", "-S", "now-1days"], env).split()
        completed = states.count("COMPLETED")
        if completed >= n:
            break
        time.sleep(0.1)
    cpus = _run(["sinfo", "-h", "-p", partition, "-o", "%C"], env).strip().split("/")[-1]
    return {"jobs": n, "completed": completed, "submit_s": round(submit_s, 3), "wall_s": round(wall_s, 3),
            "submit_rate": round(n / submit_s, 2), "e2e_rate": round(n / wall_s, 2),
            "partition": partition, "partition_cpus": int(cpus or 0), "parallel_submits": parallel}


def measure_ray(
    n: int, address: str = DEFAULT_RAY_ADDRESS, timeout_s: float = 1800, num_cpus: float = 0.1,
    parallel: int = PARALLEL["ray"],
) -> dict[str, Any]:
    """Submit ``n`` Ray jobs with entrypoint ``true`` (``num_cpus`` each), ``parallel`` at a time; wait
    until all are terminal.  Raises ClusterBusy when other jobs are not finished."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    refuse_if_busy("Ray", ray_foreign_jobs(address))
    client = JobSubmissionClient(address)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        ids = list(pool.map(lambda _: client.submit_job(entrypoint="true", entrypoint_num_cpus=num_cpus), range(n)))
    submit_s = time.perf_counter() - t0
    pending, statuses = set(ids), {}
    deadline = time.monotonic() + timeout_s
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"Ray did not finish {n} jobs in {timeout_s} s")
        for sid in list(pending):
            status = client.get_job_status(sid)
            if status.is_terminal():
                statuses[sid] = status
                pending.discard(sid)
        time.sleep(0.05)
    wall_s = time.perf_counter() - t0
    completed = sum(1 for s in statuses.values() if s == JobStatus.SUCCEEDED)
    return {"jobs": n, "completed": completed, "submit_s": round(submit_s, 3), "wall_s": round(wall_s, 3),
            "submit_rate": round(n / submit_s, 2), "e2e_rate": round(n / wall_s, 2), "num_cpus": num_cpus,
            "ray_version": _ray_version(), "parallel_submits": parallel}


def _ray_version() -> str:
    import ray

    return str(ray.__version__)


def _safely(fn: Any, *args: Any, **kw: Any) -> dict[str, Any]:
    try:
        return fn(*args, **kw)
    except ClusterBusy as exc:
        return {"refused": str(exc)}
    except (OSError, subprocess.SubprocessError, ImportError, ConnectionError, RuntimeError, TimeoutError) as exc:
        return {"skipped": f"{type(exc).__name__}: {exc}"[:300]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small N, under a minute")
    ap.add_argument("--slurm-jobs", type=int)
    ap.add_argument("--ray-jobs", type=int)
    ap.add_argument("--slurm-conf", default=None)
    ap.add_argument("--ray-address", default=os.environ.get("SUANWANG_RAY_ADDRESS", DEFAULT_RAY_ADDRESS))
    args = ap.parse_args()
    n_slurm = args.slurm_jobs or (100 if args.quick else 1000)
    n_ray = args.ray_jobs or (10 if args.quick else 200)
    result = {
        "bench": "engines_native",
        "quick": args.quick,
        "host": {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()},
        "slurm": _safely(measure_slurm, n_slurm, slurm_conf=args.slurm_conf),
        "ray": _safely(measure_ray, n_ray, address=args.ray_address),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
