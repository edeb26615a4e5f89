"""Flows benchmark: agent-to-agent transfer throughput vs a plain copy, and scheduling overhead per workflow step.

    python bench/flows.py [--quick]

Transfer: the production path (``suanwang.agent.transfer``: the source agent's HTTP server, the receiver's
``fetch`` with SHA-256 verified as it streams, fsync and atomic rename) between two stores on this machine,
against ``shutil.copyfile`` + fsync of the same bytes; ``transfer_ratio_to_copy`` = copy time / transfer time
(1.0: as fast as a copy).  Step overhead: ``POST /workflows`` of N independent steps through the in-process
API on SQLite (validation, run and step rows, N job submits), divided by N.  Every figure over >= 3 runs;
results in bench/results/flows.json; the last stdout line is one JSON object.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from suanwang.agent.transfer import DatasetStore, Serving, fetch, make_server


def summary(values: list[float]) -> dict[str, object]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def transfer_runs(size: int, runs: int, tmp: Path) -> tuple[list[float], list[float]]:
    src = tmp / "blob"
    with open(src, "wb") as f:
        f.write(os.urandom(size))
    east = DatasetStore(tmp / "east")
    sha = east.put_file("d-1", src)
    serving = Serving()
    serving.allow("d-1", "s")
    server = make_server(east, serving)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/datasets/d-1"
    copies, moves = [], []
    try:
        with httpx.Client(timeout=60) as client:
            for i in range(runs):
                dst = tmp / f"copy{i}"
                t0 = time.perf_counter()
                shutil.copyfile(east.path("d-1"), dst)
                with open(dst, "rb+") as f:
                    os.fsync(f.fileno())
                copies.append(time.perf_counter() - t0)
                dst.unlink()
                west = DatasetStore(tmp / f"west{i}")
                t0 = time.perf_counter()
                fetch(client, url, west, dataset_id="d-1", transfer_id=f"t{i}", sha256=sha, size_bytes=size,
                      secret="s")  # nosec B106  # a scratch transfer secret between two local bench workers
                moves.append(time.perf_counter() - t0)
                shutil.rmtree(west.root)
    finally:
        server.shutdown()
        server.server_close()
    return copies, moves


def step_overhead_runs(steps: int, runs: int, tmp: Path) -> list[float]:
    from fastapi.testclient import TestClient

    from suanwang.api.app import create_app
    from suanwang.services.bootstrap import bootstrap
    from suanwang.services.platform import Platform
    from suanwang.store.db import Database

    out = []
    for i in range(runs):
        d = tmp / f"p{i}"
        d.mkdir()
        db = Database(f"sqlite:///{d / 'db.sqlite'}")
        db.migrate()
        bootstrap(db, d)
        app = create_app(Platform(db), run_loop=False)
        with TestClient(app) as c:
            c.headers["Authorization"] = f"Bearer {(d / 'agent.token').read_text().strip()}"
            c.post("/api/v1/agent/register", json={"pools": [{"name": "cpu", "resource_class": "general",
                                                              "engine": "local", "cores": 64, "memory_gb": 256}]})
            c.headers["Authorization"] = f"Bearer {(d / 'consumer.token').read_text().strip()}"
            body = {"name": "bench", "steps": [{"name": f"s{k}", "job": {"command": ["true"]}} for k in range(steps)]}
            t0 = time.perf_counter()
            r = c.post("/api/v1/workflows", json=body)
            out.append((time.perf_counter() - t0) * 1000 / steps)
            assert r.status_code == 201, r.text
        db.dispose()
    return out


def main() -> None:
    quick = "--quick" in sys.argv
    size, runs, steps = (64 << 20, 3, 50) if quick else (256 << 20, 5, 200)
    with tempfile.TemporaryDirectory() as t:
        copies, moves = transfer_runs(size, runs, Path(t))
        overhead = step_overhead_runs(steps, runs, Path(t))
    ratios = [c / m for c, m in zip(copies, moves, strict=True)]
    result = {
        "bytes": size, "steps_per_run": steps, "quick": quick,
        "copy_s": summary(copies), "transfer_s": summary(moves),
        "transfer_mb_s": summary([size / m / 1e6 for m in moves]),
        "transfer_ratio": summary(ratios), "step_overhead": summary(overhead),
        "transfer_ratio_to_copy": statistics.median(ratios), "step_overhead_ms": statistics.median(overhead),
    }
    out = Path(__file__).resolve().parent / "results" / "flows.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"transfer {result['transfer_mb_s']['median']:.0f} MB/s, ratio to copy "
          f"{result['transfer_ratio_to_copy']:.2f}; step overhead {result['step_overhead_ms']:.2f} ms")
    print(json.dumps({"transfer_ratio_to_copy": result["transfer_ratio_to_copy"],
                      "step_overhead_ms": result["step_overhead_ms"]}))


if __name__ == "__main__":
    main()
