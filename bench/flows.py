"""Flows benchmark: agent-to-agent transfer throughput vs a plain copy, and scheduling overhead per workflow step.

    python bench/flows.py [--quick]

Transfer: the production path (``suanwang.agent.transfer``: the source agent's HTTP server with ``sendfile``,
the receiver's ``fetch`` with SHA-256 verified as it streams, fsync and atomic rename) between two stores on
this machine, against ``shutil.copyfile`` + fsync of the same bytes (the kernel's in-place copy: the fastest
plain copy there is); ``transfer_ratio_to_copy`` = copy time / transfer time (1.0: as fast as a copy), per
pair, median over the pairs.  Fairness: both read the same source file from the page cache; every timed
operation starts after ``os.sync()`` (neither pays for writing back the other's, or the setup's, dirty
pages); copy and transfer alternate which goes first.  CPU seconds of each (this process: the transfer's
both ends) are reported beside the wall time, because on a loaded machine the wall ratio tends to the CPU
ratio (the transfer must hash every byte; the copy hashes none).

Step overhead: ``POST /workflows`` of N independent steps through the in-process API on SQLite (validation,
run and step rows, N job submits, each quoted and held against a price book), divided by N, three times on each
of >= 3 platforms after one warm-up request (a server serves many); the control loop's next pass, which places
those N jobs, divided by N (``schedule_ms_per_step``); and a chain of steps with the control loop running and an
agent that ends each job at once, from the submit to the last job's end, per step (``chain_ms_per_step``: the
latency each link adds).  Every figure over >= 3 runs; the load average before and after is recorded; results
in bench/results/flows.json; the last stdout line is one JSON object.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from suanwang.agent.transfer import DatasetStore, Serving, fetch, make_server

BOOK = {"entries": [{"resource_class": "general", "tier": "standard", "service_level": "standard",
                     "unit": "core_hour", "unit_price_fen": 50}]}


def summary(values: list[float]) -> dict[str, object]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of ``fn``, started from clean page-cache state (nothing dirty to write back)."""
    os.sync()
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def transfer_runs(size: int, runs: int, tmp: Path) -> dict[str, list[float]]:
    src = tmp / "blob"
    with open(src, "wb") as f:
        f.write(os.urandom(size))
    east = DatasetStore(tmp / "east")
    sha = east.put_file("d-1", src)
    src.unlink()
    serving = Serving()
    serving.allow("d-1", "s")
    server = make_server(east, serving)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/datasets/d-1"
    out: dict[str, list[float]] = {"copy": [], "copy_cpu": [], "move": [], "move_cpu": []}

    def copy(dst: Path) -> None:
        shutil.copyfile(east.path("d-1"), dst)
        with open(dst, "rb+") as f:
            os.fsync(f.fileno())

    try:
        for i in range(runs):
            dst, west = tmp / f"copy{i}", DatasetStore(tmp / f"west{i}")
            move = functools.partial(fetch, url, west, dataset_id="d-1", transfer_id=f"t{i}", sha256=sha,
                                     size_bytes=size, secret="s")  # nosec B106  # a scratch secret
            pair: list[tuple[str, Callable[[], object]]] = [("copy", functools.partial(copy, dst)), ("move", move)]
            for name, fn in pair if i % 2 == 0 else pair[::-1]:
                wall, cpu = timed(fn)
                out[name].append(wall)
                out[f"{name}_cpu"].append(cpu)
            assert west.has("d-1")
            dst.unlink()
            shutil.rmtree(west.root)
    finally:
        server.shutdown()
        server.server_close()
    return out


def step_overhead_runs(steps: int, runs: int, tmp: Path) -> tuple[list[float], list[float]]:
    from fastapi.testclient import TestClient

    from suanwang.api.app import create_app
    from suanwang.services.bootstrap import bootstrap
    from suanwang.services.platform import Platform
    from suanwang.store.db import Database

    submit, place = [], []
    for i in range(runs):
        d = tmp / f"p{i}"
        d.mkdir()
        db = Database(f"sqlite:///{d / 'db.sqlite'}")
        db.migrate()
        bootstrap(db, d)
        platform = Platform(db)
        app = create_app(platform, run_loop=False)
        with TestClient(app) as c:
            c.headers["Authorization"] = f"Bearer {(d / 'agent.token').read_text().strip()}"
            c.post("/api/v1/agent/register", json={"pools": [{"name": "cpu", "resource_class": "general",
                                                              "engine": "local", "cores": 1024, "memory_gb": 4096}]})
            c.headers["Authorization"] = f"Bearer {(d / 'operator.token').read_text().strip()}"
            assert c.post("/api/v1/price-books", json=BOOK).status_code == 201  # every step is quoted and held
            c.headers["Authorization"] = f"Bearer {(d / 'consumer.token').read_text().strip()}"
            tenant = c.get("/api/v1/whoami").json()["tenant_id"]
            c.headers["Authorization"] = f"Bearer {(d / 'operator.token').read_text().strip()}"
            assert c.post("/api/v1/topups", json={"consumer": tenant, "amount_fen": 10**9},
                          headers={"Idempotency-Key": "bench"}).status_code == 201
            c.headers["Authorization"] = f"Bearer {(d / 'consumer.token').read_text().strip()}"
            warm = c.post("/api/v1/workflows", json={"name": "warm", "steps": [{"name": "w",
                                                                                 "job": {"command": ["true"]}}]})
            assert warm.status_code == 201, warm.text
            platform.tick(reap=True)
            body = {"name": "bench", "steps": [{"name": f"s{k}", "job": {"command": ["true"]}} for k in range(steps)]}
            for _ in range(3):  # three workflows per platform: a stall of the machine is one sample of nine
                t0 = time.perf_counter()
                r = c.post("/api/v1/workflows", json=body)
                submit.append((time.perf_counter() - t0) * 1000 / steps)
                assert r.status_code == 201, r.text
                t0 = time.perf_counter()
                platform.tick(reap=True)
                place.append((time.perf_counter() - t0) * 1000 / steps)
                placed = c.get(f"/api/v1/workflows/{r.json()['id']}").json()["steps"]
                assert all(s["job_state"] == "placed" for s in placed), placed[:2]
        db.dispose()
    return submit, place


def chain_runs(steps: int, runs: int, tmp: Path) -> list[float]:
    """A chain s0 -> s1 -> ... with the control loop running and an agent that ends each job as soon as it holds
    it: milliseconds from the submit to the last job's end, per step (placement, lease and the loop starting
    the next step, each link; nothing reads the run meanwhile, which would move it on itself)."""
    from fastapi.testclient import TestClient

    from suanwang.api.app import create_app
    from suanwang.services.bootstrap import bootstrap
    from suanwang.services.platform import Platform
    from suanwang.store.db import Database

    out = []
    for i in range(runs):
        d = tmp / f"c{i}"
        d.mkdir()
        db = Database(f"sqlite:///{d / 'db.sqlite'}")
        db.migrate()
        bootstrap(db, d)
        with TestClient(create_app(Platform(db))) as agent, TestClient(agent.app) as consumer:
            agent.headers["Authorization"] = f"Bearer {(d / 'agent.token').read_text().strip()}"
            consumer.headers["Authorization"] = f"Bearer {(d / 'consumer.token').read_text().strip()}"
            agent.post("/api/v1/agent/register", json={"pools": [{"name": "cpu", "resource_class": "general",
                                                                  "engine": "local", "cores": 8, "memory_gb": 32}]})
            chain = [{"name": f"s{k}", "job": {"command": ["true"]}, "after": [f"s{k - 1}"] if k else []}
                     for k in range(steps)]
            t0, ended = time.perf_counter(), 0
            assert consumer.post("/api/v1/workflows", json={"name": "chain", "steps": chain}).status_code == 201
            while ended < steps and time.perf_counter() - t0 < 120:
                for task in agent.post("/api/v1/agent/lease", json={"max_jobs": 8, "wait_s": 5}).json():
                    agent.post(f"/api/v1/agent/jobs/{task['job_id']}/status",
                               json={"attempt": task["attempt"], "phase": "succeeded", "exit_code": 0})
                    ended += 1
            out.append((time.perf_counter() - t0) * 1000 / steps)
            assert ended == steps, f"{ended} of {steps} steps ran in 120 s"
        db.dispose()
    return out


def main() -> None:
    quick = "--quick" in sys.argv
    size, runs, steps = (64 << 20, 5, 50) if quick else (256 << 20, 7, 200)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as t:
        moves = transfer_runs(size, runs, Path(t))
        submit, place = step_overhead_runs(steps, 3 if quick else 5, Path(t))
        chain = chain_runs(5 if quick else 20, 3, Path(t))
    ratios = [c / m for c, m in zip(moves["copy"], moves["move"], strict=True)]
    cpu_ratios = [c / m for c, m in zip(moves["copy_cpu"], moves["move_cpu"], strict=True)]
    result = {
        "bytes": size, "steps_per_run": steps, "quick": quick,
        "load_average": {"before": load_before, "after": os.getloadavg(), "cpus": os.cpu_count()},
        "copy_s": summary(moves["copy"]), "transfer_s": summary(moves["move"]),
        "copy_cpu_s": summary(moves["copy_cpu"]), "transfer_cpu_s": summary(moves["move_cpu"]),
        "transfer_mb_s": summary([size / m / 1e6 for m in moves["move"]]),
        "transfer_ratio": summary(ratios), "transfer_cpu_ratio": summary(cpu_ratios),
        "step_overhead": summary(submit), "schedule_per_step": summary(place), "chain_per_step": summary(chain),
        "transfer_ratio_to_copy": statistics.median(ratios), "step_overhead_ms": statistics.median(submit),
        "schedule_ms_per_step": statistics.median(place), "chain_ms_per_step": statistics.median(chain),
    }
    out = Path(__file__).resolve().parent / "results" / "flows.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"transfer {result['transfer_mb_s']['median']:.0f} MB/s, ratio to copy "  # type: ignore[index]
          f"{result['transfer_ratio_to_copy']:.2f} (CPU {statistics.median(cpu_ratios):.2f}); step overhead "
          f"{result['step_overhead_ms']:.2f} ms, placing {result['schedule_ms_per_step']:.2f} ms per step, "
          f"a chain {result['chain_ms_per_step']:.0f} ms per step; "
          f"load {load_before[0]:.1f} on {os.cpu_count()} CPUs")
    print(json.dumps({"transfer_ratio_to_copy": result["transfer_ratio_to_copy"],
                      "step_overhead_ms": result["step_overhead_ms"]}))


if __name__ == "__main__":
    main()
