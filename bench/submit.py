"""Submission throughput and submit-to-process-start latency through the real HTTP API, with holds.

    python bench/submit.py [--quick] [--database-url URL] [--unpriced] [--runs N]

A price book is in force and the consumer's wallet funded (``--unpriced``: neither), so every
submit quotes its job and places a hold, as a priced platform runs.  Each figure is measured
``--runs`` times (default 3) and reported as median, min, max and ``runs``:
(1) ``submit_with_hold_jobs_per_s``: one job per request, 4 concurrent clients (the single-client
rate beside it as ``jobs_per_s_single_sequential``); target >= 500.
(2) ``jobs_per_s_batch``: the batch endpoint, 500 jobs a request.
(3) ``submit_to_process_start_p99_ms``: a local site with a real ``suanwang agent``; from the moment
the client sends the submit to the moment the job's process started, as the agent reports it
(the ``started_at`` of its ``started`` report: the spawn time), not the lease commit.  Jobs are
submitted one at a time, each after the last one started; target <= 100 ms.
Writes bench/results/submit.json (submit_postgresql.json with ``--database-url``; each phase then
gets a fresh schema); the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from rich.progress import Progress

from suanwang.store.db import scratch_schema

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _live import Live

# An hour declared (``true`` ends at once): the hold covers the declared time, and at the book's 35.5 fen a
# core-hour a second's job was held 0 fen, so no hold was written and the bench measured submits without one.
JOB = {"command": ["true"], "cores": 1, "memory_gb": 0.01, "duration_s": 3600}
BIG_POOL = {"name": "bench", "resource_class": "general", "engine": "local", "cores": 10_000_000, "memory_gb": 1e9}
# a price book in force (every submit then quotes its job and places a hold) and a funded wallet
PRICE_BOOK = {"entries": [{"resource_class": "general", "tier": "standard", "service_level": "standard",
                           "unit": "core_hour", "unit_price_fen": "35.5", "tou": {"province": "Gansu"}}]}


def price(live: Live) -> None:
    """Publish a price book and fund the demo consumer, as a priced platform runs; check a submit holds money."""
    with live.client("operator") as op, live.client() as c:
        op.post("/price-books", json=PRICE_BOOK).raise_for_status()
        consumer = c.get("/wallet").json()["consumer"]
        op.post("/topups", json={"consumer": consumer, "amount_fen": 10**12}).raise_for_status()
        held = c.get("/wallet").json()
        c.post("/jobs", json=JOB).raise_for_status()
        if c.get("/wallet").json() == held:
            raise SystemExit(f"a submit placed no hold (wallet {held}): the bench would not measure holds")


def bench_single(live: Live, n: int, clients: int, progress: Progress) -> float:
    """One job per request; ``clients`` connections submit concurrently, each one job after another."""
    task = progress.add_task(f"single submits x{clients}", total=n)

    def worker(count: int) -> None:
        with live.client() as c:
            for _ in range(count):
                c.post("/jobs", json=JOB).raise_for_status()
                progress.advance(task)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, [n // clients] * clients))
    return (n // clients) * clients / (time.perf_counter() - t0)


def bench_batch(live: Live, n: int, batch: int, progress: Progress) -> float:
    task = progress.add_task("batched submits", total=n)
    with live.client() as c:
        t0 = time.perf_counter()
        for _ in range(n // batch):
            c.post("/jobs/batch", json={"jobs": [JOB] * batch}).raise_for_status()
            progress.advance(task, batch)
        return (n // batch) * batch / (time.perf_counter() - t0)


def bench_latency(live: Live, n: int, progress: Progress) -> list[float]:
    """Seconds from sending each submit to its process's start as the agent reported it."""
    task = progress.add_task("submit-to-process-start", total=n)
    latencies = []
    with live.client() as c:
        for _ in range(n):
            sent = time.time()  # same host: the agent's clock is this clock
            job = c.post("/jobs", json=JOB)
            job.raise_for_status()
            while True:
                j = c.get(f"/jobs/{job.json()['id']}").json()
                if j["started_at"]:  # set by the agent's "started" (or final) report: the spawn time
                    latencies.append(j["started_at"] - sent)
                    break
                time.sleep(0.02)  # when we notice does not change the figure (started_at); polling costs the server
            progress.advance(task)
    return latencies


def spread(values: list[float], digits: int = 1) -> dict[str, object]:
    """Median, min, max and every run's figure."""
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "runs": [round(v, digits) for v in values]}


@contextmanager
def _database(url: str | None) -> Iterator[str | None]:
    """SQLite in the run's directory when no URL is given; else a fresh PostgreSQL schema per phase."""
    if url is None:
        yield None
    else:
        with scratch_schema(url, "bench") as schema_url:
            yield schema_url


def _fresh_dir(tmp: str, name: str) -> Path:
    d = Path(tmp) / name
    d.mkdir()
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    ap.add_argument("--database-url", default=None, help="default: SQLite in a temporary directory")
    ap.add_argument("--unpriced", action="store_true", help="no price book and no wallet: submits place no hold")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    n_single, n_batch, n_latency = (200, 2000, 30) if args.quick else (2000, 30_000, 200)
    runs = max(args.runs, 3)
    priced = not args.unpriced
    single, sequential, batch, p50s, p99s, pooled = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp, Progress() as progress:
        # Throughput: a site whose agent registered a large pool but runs nothing, so only the API is measured.
        with _database(args.database_url) as url:
            live = Live(_fresh_dir(tmp, "throughput"), url)
            try:
                with live.client("agent") as agent:
                    agent.post("/agent/register", json={"pools": [BIG_POOL]}).raise_for_status()
                if priced:
                    price(live)
                for _ in range(runs):
                    sequential.append(bench_single(live, n_single // 4, 1, progress))
                    single.append(bench_single(live, n_single, 4, progress))
                    batch.append(bench_batch(live, n_batch, 500, progress))
            finally:
                live.stop()
        # Latency: a new, empty platform, so the thousands of jobs queued above are not in the way.
        with _database(args.database_url) as url:
            live = Live(_fresh_dir(tmp, "latency"), url)
            try:
                live.start_agent()
                live.wait_for_pools()
                if priced:
                    price(live)
                bench_latency(live, 5, progress)  # warm-up: the first spawn pays for imports and caches
                for _ in range(runs):
                    lat = np.array(bench_latency(live, n_latency, progress)) * 1000
                    p50s.append(float(np.percentile(lat, 50)))
                    p99s.append(float(np.percentile(lat, 99)))
                    pooled.extend(lat.tolist())
            finally:
                live.stop()
    p99 = spread(p99s)
    results: dict[str, object] = {
        "bench": "submit", "database": "postgresql" if args.database_url else "sqlite", "quick": args.quick,
        "priced": priced,
        "submit_with_hold_jobs_per_s" if priced else "submit_jobs_per_s": spread(single)["median"],
        "submit_to_process_start_p99_ms": p99["median"],
        "submit_jobs_per_s_4_clients": spread(single), "jobs_per_s_single_sequential": spread(sequential),
        "jobs_per_s_batch": spread(batch, 0),
        "submit_to_process_start_p50_ms": spread(p50s), "submit_to_process_start_p99_ms_runs": p99,
        "submit_to_process_start_max_ms": round(max(pooled), 1),
        "jobs_single": n_single, "jobs_batch": n_batch, "jobs_latency": n_latency, "runs": runs,
        "load_average": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
        "targets": {"submit_with_hold_jobs_per_s": 500, "submit_to_process_start_p99_ms": 100},
    }
    name = "submit" + ("_postgresql" if args.database_url else "") + ("_unpriced" if args.unpriced else "") + ".json"
    out = Path(__file__).resolve().parent / "results" / name
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
