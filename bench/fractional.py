"""Fractional GPU benchmark on the live scheduler path: most jobs ask for part of a card.

Run: ``PYTHONPATH=src python bench/fractional.py [--quick]``.  Writes bench/results/fractional.json; the last
stdout line is one JSON object.

Workload (synthetic; the shipped traces have no fractional GPU requests): Poisson arrivals at an offered
load of ``--load`` (default 0.9) of the grid's cards; ``--fraction-share`` (default 0.7, at least 0.6) of
the jobs ask for 0.1-0.5 of a card, the rest for 1-4 whole cards; lognormal run times (median 5 min);
2,000 jobs a run (400 with --quick).  The grid: two sites, each with one pool of ``--cards``/2 shared
(time-slicing) A100s.  Every policy replays the same generic-format trace through the main simulator
(``sim.run_simulation``): ``FairScheduler`` over the policy, booking on ``FreeState`` — the pass the
platform runs, with the card packing and the drain rule — so the baselines differ in which pool they pick,
and all of them pack cards the same way:

- grid: ours (``GridScheduler``: cost, carbon, wait, latency scored);
- random, round-robin, cheapest-first: the simulator's baselines;
- whole-cards: ``grid`` on the same trace with every fraction asking for a whole card, on pools that do not
  share (the platform before fractions).

Figures per policy: placements per second (placements / wall time of the replay, plan passes included),
allocated-share utilisation (mean share of the cards held, sampled), GPU fragmentation (mean), mean wait,
and the longest wait of a whole-card job.  Each figure: median, min, max over ``--runs`` (default 3) seeds,
with each run's value.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from suanwang.domain.grid import Capacity, Link, Pool, Site  # noqa: E402
from suanwang.domain.packing import Sharing, SharingMode  # noqa: E402
from suanwang.domain.resources import Engine, ResourceClass  # noqa: E402
from suanwang.domain.scheduler import CarbonSignal, GridModel, PoolSignals, PriceSignal  # noqa: E402
from suanwang.sim import load_csv, run_simulation  # noqa: E402

POLICIES = ("grid", "random", "round-robin", "cheapest-first")


def grid_model(cards: int, shared: bool) -> GridModel:
    sharing = Sharing(SharingMode.TIME_SLICING) if shared else Sharing()
    half = max(1, cards // 2)
    pools = tuple(Pool(f"gpu-{s}", s, ResourceClass.INTELLIGENT, Engine.LOCAL, Capacity(half * 16, half * 128.0, half),
                       "A100", 80.0, node=Capacity(half * 16, half * 128.0, half), sharing=sharing)
                  for s in ("qingyang", "wuhu"))
    sites = (Site("qingyang", "cn-northwest"), Site("wuhu", "cn-east"))
    prices = {"qingyang": (180,) * 24, "wuhu": (220,) * 24}
    signals = {(p.site, p.name): PoolSignals(PriceSignal(prices[p.site])) for p in pools}
    return GridModel(sites, pools, (Link("qingyang", "wuhu", 20.0, 100.0),), signals,
                     {s.name: CarbonSignal((0.5,) * 24) for s in sites})


def workload(n: int, cards: int, load: float, fraction_share: float, seed: int, whole: bool) -> str:
    rng = np.random.default_rng(seed)
    frac = rng.random(n) < fraction_share
    shares = np.where(frac, rng.choice([0.1, 0.125, 0.2, 0.25, 0.3, 0.5], n), rng.integers(1, 5, n))
    dur = np.clip(rng.lognormal(np.log(300), 1.0, n), 10, 86_400)
    gap = float(np.mean(shares * dur)) / (load * cards)
    submit = np.cumsum(rng.exponential(gap, n))
    rows = ["submit_s,duration_s,cores,devices,memory_gb,tenant"]
    for i in range(n):
        dev = 1 if whole and shares[i] < 1 else shares[i]
        rows.append(f"{submit[i]:.3f},{dur[i]:.1f},1,{dev:g},4,t{i % 4}")
    return "\n".join(rows) + "\n"


def summary(values: list[float]) -> dict[str, object]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def run_fractional(n: int, cards: int = 32, load: float = 0.9, fraction_share: float = 0.7, runs: int = 3
                   ) -> dict[str, object]:
    """Each policy replays the same fractional workloads ``runs`` times; figures as median/min/max/runs.

    Also ``bench/scheduler.py``'s fractional section (``--part fractional``).
    """
    raw: dict[str, dict[str, list[float]]] = {p: {} for p in (*POLICIES, "whole-cards")}
    below = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(runs):
            for name in raw:
                whole = name == "whole-cards"
                path = Path(tmp) / f"r{run}-{whole}.csv"
                if not path.exists():
                    path.write_text(workload(n, cards, load, fraction_share, run, whole))
                trace = load_csv(path)
                if not whole and name == POLICIES[0]:
                    below.append(float(np.mean((trace.devices > 0) & (trace.devices < 1))))
                started = time.perf_counter()
                r = run_simulation(grid_model(cards, not whole), trace, "grid" if whole else name)
                wall = time.perf_counter() - started
                s = r.summary()
                wait = r.start - r.submit
                big = trace.devices >= 1
                placed = float(np.sum(~np.isnan(r.start)))
                figures = {"placements_per_s": placed / wall, "allocated_share": float(s["util_cards_mean"]),
                           "gpu_fragmentation": float(s["gpu_fragmentation_mean"]),
                           "mean_wait_s": float(np.nanmean(wait)),
                           "max_whole_wait_s": float(np.nanmax(wait[big])) if big.any() else 0.0,
                           "placements": placed}
                for k, v in figures.items():
                    raw[name].setdefault(k, []).append(round(v, 6))
                print(f"run {run + 1}/{runs} {name:15s} {figures['placements_per_s']:8.0f} placements/s  "
                      f"allocated {figures['allocated_share']:.3f}  fragmentation {figures['gpu_fragmentation']:.3f}"
                      f"  mean wait {figures['mean_wait_s']:.0f} s  whole wait max {figures['max_whole_wait_s']:.0f} s",
                      file=sys.stderr)
    return {"bench": "fractional", "path": "sim.run_simulation: FairScheduler + FreeState (the live pass)",
            "jobs": n, "cards": cards, "load": load, "fraction_below_one_card": summary(below),
            "policies": {p: {k: summary(v) for k, v in figs.items()} for p, figs in raw.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="400 jobs a run instead of 2,000")
    ap.add_argument("--jobs", type=int, default=0)
    ap.add_argument("--cards", type=int, default=32)
    ap.add_argument("--load", type=float, default=0.9)
    ap.add_argument("--fraction-share", type=float, default=0.7)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if args.fraction_share < 0.6 or args.runs < 3:
        ap.error("at least 60 % fractional jobs and 3 runs")
    n = args.jobs or (400 if args.quick else 2_000)
    result = run_fractional(n, args.cards, args.load, args.fraction_share, args.runs)
    out = ROOT / "bench" / "results" / "fractional.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
