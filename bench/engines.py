"""Engine overhead: N trivial jobs through suanwang to a Slurm (and a Ray) site vs. straight into the engine.

The same run measures both, one after the other on the same engine, so the ratio
via/native is suanwang's cost at a real site: platform (serve, SQLite), agent with the
site config (``--config``, ``--max-tasks``), the platform's ``--engine-queue`` (3 here: the
Slurm/Ray pool may hold 3x its cores, the excess queued in the engine), batch submission
(POST /api/v1/jobs/batch), placement, lease, the engine, and every report back until each
job is terminal on the platform.

    python bench/engines.py [--quick] [--slurm-jobs N] [--ray-jobs N] [--max-tasks M] [--engine-queue F]

The native side submits with the parallelism our agent uses for that engine (8 concurrent
``sbatch`` calls; Ray jobs one at a time, as the executors' ``parallel_starts``).  1,000 jobs for
Slurm and 200 for Ray (``--quick``: 100 and 10).  Writes bench/results/engines.json; the last
stdout line is a JSON object with slurm_native_jobs_per_s, slurm_via_suanwang_jobs_per_s,
slurm_ratio and the same for Ray.  An engine that does not answer is reported as skipped, with the
reason; one whose cluster holds anyone else's jobs (squeue, Ray's job list), before either side
runs, is not measured and reported as refused, naming them: the figures would time their jobs too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform as host_platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _live import Live
from engines_native import (
    DEFAULT_RAY_ADDRESS,
    DEFAULT_SLURM_CONF,
    ClusterBusy,
    measure_ray,
    measure_slurm,
    ray_foreign_jobs,
    refuse_if_busy,
    slurm_foreign_jobs,
)

from suanwang.cli.demo import (
    ray_site,
    ray_unavailable,
    register_site,
    slurm_site,
    slurm_unavailable,
    start_agent,
    write_site_config,
)

RESULTS = Path(__file__).resolve().parent / "results" / "engines.json"
ACTIVE = ("pending", "placed", "queued_at_site", "running", "requeued")  # every state a job leaves


def _wait_pools(c: httpx.Client, site: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if c.get("/pools", params={"site": site}).json():
            return
        time.sleep(0.1)
    raise RuntimeError(f"the {site} agent never registered its pools")


def _count(c: httpx.Client, state: str) -> int:
    """Jobs in ``state`` (pages of 1000)."""
    total, before = 0, None
    while True:
        params: dict[str, Any] = {"state": state, "limit": 1000, **({"before": before} if before else {})}
        page = c.get("/jobs", params=params).json()
        total += len(page["jobs"])
        if not page["next"]:
            return total
        before = page["next"]


def via_suanwang(live: Live, spec: Any, n: int, job: dict[str, Any], max_tasks: int,
                 timeout_s: float = 1800) -> dict[str, Any]:
    """Register the site, start its agent, submit ``n`` × ``job`` in one batch, wait until all are terminal."""
    token = register_site(live.url, live.token("operator"), spec)
    config = write_site_config(live.data_dir / "sites", spec)
    proc = start_agent(live.url, token, live.data_dir / f"agent-{spec.name}", live.data_dir / f"agent-{spec.name}.log",
                       config, "--max-tasks", str(max_tasks), "--poll-s", "0.02", "--heartbeat-s", "1")
    live.procs.append(proc)
    with live.client() as c:
        _wait_pools(c, spec.name)
        t0 = time.perf_counter()
        resp = c.post("/jobs/batch", json={"jobs": [job] * n})
        resp.raise_for_status()
        submit_s = time.perf_counter() - t0
        deadline = time.monotonic() + timeout_s
        while any(c.get("/jobs", params={"state": s, "limit": 1}).json()["jobs"] for s in ACTIVE):
            if time.monotonic() > deadline:
                raise TimeoutError(f"suanwang did not finish {n} jobs in {timeout_s} s")
            time.sleep(0.2)
        wall_s = time.perf_counter() - t0
        succeeded = _count(c, "succeeded")
        sites = {j["site"] for j in c.get("/jobs", params={"limit": 1000}).json()["jobs"]}
    proc.terminate()
    proc.wait(timeout=30)
    if succeeded < n:
        print(f"warning: only {succeeded} of {n} jobs succeeded via suanwang", file=sys.stderr)
    return {"jobs": n, "succeeded": succeeded, "submit_s": round(submit_s, 3), "wall_s": round(wall_s, 3),
            "e2e_rate": round(n / wall_s, 2), "max_tasks": max_tasks, "sites": sorted(s for s in sites if s)}


def _slurm(n: int, conf: str, max_tasks: int, engine_queue: float) -> dict[str, Any]:
    if reason := slurm_unavailable(conf):
        return {"skipped": reason}
    try:
        native = measure_slurm(n, partition="hpc", slurm_conf=conf)
        refuse_if_busy("Slurm", slurm_foreign_jobs(conf))  # someone started jobs while ours drained
    except ClusterBusy as exc:
        return {"refused": str(exc)}
    with tempfile.TemporaryDirectory(prefix="swbench-") as tmp:
        live = Live(Path(tmp), serve_args=("--engine-queue", str(engine_queue)))
        try:
            job = {"command": ["true"], "resource_class": "super", "cores": 1, "memory_gb": 0.0625, "duration_s": 60}
            via = via_suanwang(live, slurm_site(conf, "bench-slurm"), n, job, max_tasks)
        finally:
            live.stop()
    return {"native": native, "via_suanwang": {**via, "engine_queue": engine_queue},
            "ratio": round(via["e2e_rate"] / native["e2e_rate"], 3)}


def _ray(n: int, address: str, max_tasks: int, engine_queue: float) -> dict[str, Any]:
    if reason := ray_unavailable(address):
        return {"skipped": reason}
    try:
        native = measure_ray(n, address=address, num_cpus=1)  # the same 1 CPU per job that suanwang asks for
        refuse_if_busy("Ray", ray_foreign_jobs(address))
    except ClusterBusy as exc:
        return {"refused": str(exc)}
    with tempfile.TemporaryDirectory(prefix="swbench-") as tmp:
        live = Live(Path(tmp), serve_args=("--engine-queue", str(engine_queue)))
        try:
            spec = ray_site(address, "bench-ray")
            spec.config["pools"][0].update(resource_class="general", device_model="", device_memory_gb=0)
            job = {"command": ["true"], "resource_class": "general", "cores": 1, "memory_gb": 0.0625,
                   "duration_s": 60}
            via = via_suanwang(live, spec, n, job, max_tasks)
        finally:
            live.stop()
    return {"native": native, "via_suanwang": {**via, "engine_queue": engine_queue},
            "ratio": round(via["e2e_rate"] / native["e2e_rate"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small N, under a minute")
    ap.add_argument("--slurm-jobs", type=int)
    ap.add_argument("--ray-jobs", type=int)
    ap.add_argument("--max-tasks", type=int, default=256, help="the agent's --max-tasks")
    ap.add_argument("--engine-queue", type=float, default=3.0,
                    help="the platform's --engine-queue: Slurm/Ray pools may hold this multiple of their capacity")
    ap.add_argument("--slurm-conf", default=os.environ.get("SLURM_CONF") or DEFAULT_SLURM_CONF)
    ap.add_argument("--ray-address", default=os.environ.get("SUANWANG_RAY_ADDRESS", DEFAULT_RAY_ADDRESS))
    args = ap.parse_args()
    n_slurm = args.slurm_jobs or (100 if args.quick else 1000)
    n_ray = args.ray_jobs or (10 if args.quick else 200)
    os.environ.pop("SUANWANG_DATABASE_URL", None)
    slurm = _slurm(n_slurm, args.slurm_conf, args.max_tasks, args.engine_queue)
    ray = _ray(n_ray, args.ray_address, args.max_tasks, args.engine_queue)
    result = {
        "bench": "engines", "quick": args.quick,
        "host": {"cpus": os.cpu_count(), "machine": host_platform.machine(), "python": host_platform.python_version()},
        "slurm": slurm, "ray": ray,
        "slurm_native_jobs_per_s": slurm.get("native", {}).get("e2e_rate"),
        "slurm_via_suanwang_jobs_per_s": slurm.get("via_suanwang", {}).get("e2e_rate"),
        "slurm_ratio": slurm.get("ratio"),
        "ray_native_jobs_per_s": ray.get("native", {}).get("e2e_rate"),
        "ray_via_suanwang_jobs_per_s": ray.get("via_suanwang", {}).get("e2e_rate"),
        "ray_ratio": ray.get("ratio"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
