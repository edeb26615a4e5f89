"""Submission throughput and submit-to-start latency through the real HTTP API.

    python bench/submit.py [--quick] [--database-url URL] [--priced]

(1) jobs/s submitted one job per request, by 4 concurrent clients (and by one
client alone, ``jobs_per_s_single_sequential``); (2) jobs/s
through the batch endpoint; (3) submit-to-start latency on a local site
with a real agent: from the platform's accept time to the moment the agent
leased the job and started its process.  Targets (SQLite): 300 jobs/s
single, 3,000 jobs/s batched, p99 under 1 s.  Writes bench/results/submit.json
(submit_postgresql.json with ``--database-url``; each phase then gets a fresh schema).  ``--priced``
publishes a price book and funds the consumer first, so every submit quotes and holds (``*_priced.json``).
"""

from __future__ import annotations

import argparse
import json
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

JOB = {"command": ["true"], "cores": 1, "memory_gb": 0.01, "duration_s": 1}
BIG_POOL = {"name": "bench", "resource_class": "general", "engine": "local", "cores": 10_000_000, "memory_gb": 1e9}
# --priced: a price book in force (every submit then quotes its job and places a hold) and a funded wallet
PRICE_BOOK = {"entries": [{"resource_class": "general", "tier": "standard", "service_level": "standard",
                           "unit": "core_hour", "unit_price_fen": "35.5", "tou": {"province": "Gansu"}}]}


def price(live: Live) -> None:
    """Publish a price book and fund the demo consumer, as a priced platform runs."""
    with live.client("operator") as op, live.client() as c:
        op.post("/price-books", json=PRICE_BOOK).raise_for_status()
        consumer = c.get("/wallet").json()["consumer"]
        op.post("/topups", json={"consumer": consumer, "amount_fen": 10**12}).raise_for_status()


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
    task = progress.add_task("submit-to-start", total=n)
    latencies = []
    with live.client() as c:
        for _ in range(n):
            job = c.post("/jobs", json=JOB).json()
            while True:
                j = c.get(f"/jobs/{job['id']}").json()
                if j["started_at"]:
                    latencies.append(j["started_at"] - j["submitted_at"])
                    break
                time.sleep(0.005)
            progress.advance(task)
            time.sleep(0.02)
    return latencies


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
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    ap.add_argument("--database-url", default=None, help="default: SQLite in a temporary directory")
    ap.add_argument("--priced", action="store_true", help="with a price book in force and a funded wallet")
    args = ap.parse_args()
    n_single, n_batch, n_latency = (300, 3000, 40) if args.quick else (2000, 30_000, 200)
    results: dict[str, object] = {"database": "postgresql" if args.database_url else "sqlite", "quick": args.quick,
                                  "priced": args.priced}
    with tempfile.TemporaryDirectory() as tmp, Progress() as progress:
        # Throughput: a site whose agent registered a large pool but runs nothing, so only the API is measured.
        with _database(args.database_url) as url:
            live = Live(_fresh_dir(tmp, "throughput"), url)
            try:
                with live.client("agent") as agent:
                    agent.post("/agent/register", json={"pools": [BIG_POOL]}).raise_for_status()
                if args.priced:
                    price(live)
                results["jobs_per_s_single_sequential"] = round(bench_single(live, n_single // 2, 1, progress), 1)
                results["jobs_per_s_single"] = round(bench_single(live, n_single, 4, progress), 1)
                results["jobs_per_s_batch"] = round(bench_batch(live, n_batch, 500, progress), 1)
            finally:
                live.stop()
        # Latency: a new, empty platform, so the thousands of jobs queued above are not in the way.
        with _database(args.database_url) as url:
            live = Live(_fresh_dir(tmp, "latency"), url)
            try:
                live.start_agent()
                live.wait_for_pools()
                if args.priced:
                    price(live)
                lat = np.array(bench_latency(live, n_latency, progress)) * 1000
            finally:
                live.stop()
    results |= {
        "submit_to_start_p50_ms": round(float(np.percentile(lat, 50)), 1),
        "submit_to_start_p99_ms": round(float(np.percentile(lat, 99)), 1),
        "submit_to_start_max_ms": round(float(lat.max()), 1),
        "jobs_single": n_single, "jobs_batch": n_batch, "jobs_latency": n_latency,
        "targets": {"jobs_per_s_single": 300, "jobs_per_s_batch": 3000, "submit_to_start_p99_ms": 1000},
    }
    name = ("submit" + ("_postgresql" if args.database_url else "") + ("_priced" if args.priced else "")) + ".json"
    out = Path(__file__).resolve().parent / "results" / name
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
