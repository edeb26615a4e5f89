"""Fractional GPU benchmark: a pool of shared cards under a stream where most jobs ask for part of a card.

Run: ``PYTHONPATH=src python bench/fractional.py [--quick]``.  Writes bench/results/fractional.json; the last
stdout line is one JSON object.

Workload (synthetic; the shipped traces have no fractional GPU requests): Poisson arrivals at an offered
load of ``--load`` (default 0.9) of the pool's cards; ``--fraction-share`` (default 0.7, at least 0.6) of
the jobs ask for 0.1-0.5 of a card (with 2-16 GiB of device memory), the rest for 1-4 whole cards;
lognormal run times (median 5 min); 5,000 jobs a run (1,000 with --quick).  Every policy replays the
same instance through ``sim.fractional.replay`` (the packing code the agent and simulator use):

- ours: best fit onto the busiest card with room, and drain after 120 s for waiting whole-card jobs;
- best-fit-no-drain: ours without drain (the ablation: what drain costs and buys);
- first-fit: the lowest-numbered card with room, no drain (what a naive time-slicing device plugin does);
- whole-cards: no sharing, a fraction holds a whole card (the platform before this change).

Figures per policy: placements per second of the packer (placements / wall time of the replay),
allocated-share utilisation (time-weighted share of the cards held), requested-share utilisation (what the
running jobs asked for), GPU fragmentation (time-weighted), mean wait, and the longest wait of a
whole-card job.  Each figure: median, min, max over ``--runs`` (default 3) seeds, with each run's value.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from suanwang.domain.packing import WHOLE  # noqa: E402
from suanwang.sim.fractional import FracJob, replay  # noqa: E402

POLICIES = {
    "ours": {"best_fit": True, "drain": True},
    "best-fit-no-drain": {"best_fit": True, "drain": False},
    "first-fit": {"best_fit": False, "drain": False},
    "whole-cards": {"best_fit": True, "drain": False, "whole_cards_only": True},
}
MEMORY_MIB = 80 * 1024


def workload(n: int, cards: int, load: float, fraction_share: float, seed: int) -> list[FracJob]:
    rng = np.random.default_rng(seed)
    frac = rng.random(n) < fraction_share
    shares = np.where(frac, rng.choice([100, 125, 200, 250, 300, 500], n), rng.integers(1, 5, n) * WHOLE)
    mem = np.where(frac, rng.integers(2, 17, n) * 1024, 0)
    dur = np.clip(rng.lognormal(np.log(300), 1.0, n), 10, 86_400)
    mean_demand = float(np.mean(shares * dur)) / WHOLE  # card-seconds per job
    gap = mean_demand / (load * cards)
    submit = np.cumsum(rng.exponential(gap, n))
    return [FracJob(f"j{i}", float(submit[i]), float(dur[i]), int(shares[i]), int(mem[i])) for i in range(n)]


def summary(values: list[float]) -> dict[str, object]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1,000 jobs a run instead of 5,000")
    ap.add_argument("--jobs", type=int, default=0)
    ap.add_argument("--cards", type=int, default=64)
    ap.add_argument("--load", type=float, default=0.9)
    ap.add_argument("--fraction-share", type=float, default=0.7)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if args.fraction_share < 0.6 or args.runs < 3:
        ap.error("at least 60 % fractional jobs and 3 runs")
    n = args.jobs or (1_000 if args.quick else 5_000)
    raw: dict[str, dict[str, list[float]]] = {p: {} for p in POLICIES}
    below = []
    for run in range(args.runs):
        jobs = workload(n, args.cards, args.load, args.fraction_share, seed=run)
        below.append(sum(j.share < WHOLE for j in jobs) / len(jobs))
        for name, kw in POLICIES.items():
            started = time.perf_counter()
            rep = replay(jobs, cards=args.cards, memory_mib=MEMORY_MIB, drain_after_s=120.0, **kw)
            wall = time.perf_counter() - started
            figures = {"placements_per_s": rep.placements / wall, "allocated_share": rep.allocated_share,
                       "requested_share": rep.requested_share, "fragmentation": rep.fragmentation,
                       "mean_wait_s": rep.mean_wait_s, "max_whole_wait_s": rep.max_whole_wait_s,
                       "placements": float(rep.placements)}
            for k, v in figures.items():
                raw[name].setdefault(k, []).append(round(v, 6))
            print(f"run {run + 1}/{args.runs} {name:18s} {rep.placements / wall:10.0f} placements/s  "
                  f"allocated {rep.allocated_share:.3f}  requested {rep.requested_share:.3f}  "
                  f"fragmentation {rep.fragmentation:.3f}  whole wait max {rep.max_whole_wait_s:.0f} s",
                  file=sys.stderr)
    result = {"bench": "fractional", "jobs": n, "cards": args.cards, "load": args.load,
              "fraction_below_one_card": summary(below),
              "policies": {p: {k: summary(v) for k, v in figs.items()} for p, figs in raw.items()}}
    out = ROOT / "bench" / "results" / "fractional.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
