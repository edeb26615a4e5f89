"""The evaluation matrix, standalone: every policy on every shipped trace at 50-100 % load, in base,
GPU-heavy, long-running and bursty variants, several seeds (``suanwang.sim.matrix`` states the cells, the
tuning/held-out rule and the tolerances).

    python bench/matrix.py --quick     # 3 traces x 4 variants x 4 loads, seeds 1-3 rotating, 40 jobs a cell
    python bench/matrix.py             # 4 traces x 4 variants x 4 loads x 3 seeds, 300 jobs, HiGHS bound
    python bench/matrix.py --jobs 200 --no-bound   # every cell, 200 jobs a cell, no bound (~9-15 min here)

Writes bench/results/matrix[_quick].json; the last line of stdout is one JSON object with
``matrix_losses``, ``matrix_losses_tuning`` and ``matrix_losses_heldout``.  The matrix is deterministic
(seeded), so one run is the figure; ``runs`` holds its wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from suanwang.sim.matrix import run_matrix  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--jobs", type=int, default=None, help="jobs a cell (default: the plan's)")
    ap.add_argument("--no-bound", action="store_true", help="skip the HiGHS bound")
    args = ap.parse_args()
    t0 = time.perf_counter()
    result = run_matrix(args.quick, progress=lambda d, n, name: print(f"[{d}/{n}] {name}", file=sys.stderr),
                        jobs=args.jobs, bound=False if args.no_bound else None)
    wall = time.perf_counter() - t0
    for c in result["cells"]:
        g = c["policies"]["grid"]
        best = {k: min(v[k] for p, v in c["policies"].items() if p != "grid")
                for k in ("deadline_misses", "wait_p99_no_deadline_s")}
        print(f"{c['cell']:38s} {c['half']:8s} misses {g['deadline_misses']:3d}"
              f" (best baseline {best['deadline_misses']:3d})"
              f"  p99 no-dl {g['wait_p99_no_deadline_s']:9.0f} s (best {best['wait_p99_no_deadline_s']:9.0f})"
              f"  {' '.join(c['losses'])}")
    name = "matrix_quick" if args.quick else "matrix" if args.jobs is None else f"matrix_{args.jobs}"
    out = ROOT / "bench" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**result, "wall_s": round(wall, 1)}, indent=1))
    print(json.dumps({"quick": args.quick, "matrix_losses": result["matrix_losses"],
                      "matrix_losses_tuning": result["matrix_losses_tuning"],
                      "matrix_losses_heldout": result["matrix_losses_heldout"],
                      "cells": len(result["cells"]), "jobs_per_cell": result["jobs_per_cell"],
                      "seeds": result["seeds"], "wall_s": round(wall, 1), "runs": [round(wall, 1)],
                      "policies": result["policies"]}))


if __name__ == "__main__":
    main()
