"""Scheduler benchmark: throughput and memory at scale, and quality on real traces against a HiGHS bound.

Run: ``PYTHONPATH=src python bench/scheduler.py [--quick] [--part throughput|memory|quality]``.  Writes
bench/results/scheduler[_part][_quick].json; the last stdout line is one JSON object.  ``--quick`` is a smoke
run (under a minute: a 200-pool grid, 10,000 jobs for plan throughput and memory, the 24-cell quick matrix);
the full run is the reference.

(a) Throughput: a synthetic grid of S sites x 10 pools (A10 / A100 / H800 / CPU mixes, ToU prices, carbon
    shapes, a random geometric network) and Q queued jobs (1-8 devices or 1-64 cores, lognormal run
    times, 10 % with deadlines, 20 % with input data elsewhere, 5 % latency-bound, 5 % region-pinned), all
    planned in one ``GridScheduler.plan`` call on one core: placements per second (median of 3 calls,
    each by a fresh scheduler; wall and CPU time).  Memory: tracemalloc
    peak of building M ``QueuedJob`` values (the scheduler's input) divided by M.
(b) Quality: windows of the real traces (NASA iPSC SWF, Alibaba DLRM, Azure LLM code) on the
    east-data-west grid at an offered load (device- or core-seconds per second, whichever binds) of
    ``--load`` (default 70 %) of capacity: every pool is sliced to the share that gives that load — a
    window of a few hundred jobs would not load the whole grid of 10,412 GPUs — and where even one node
    per pool is too much for the window, its arrivals are compressed by the missing factor
    (``sim.sizing.at_load``; both computed from the trace).  Synthetic placement hints (consumer and
    data sites per tenant, a share of jobs with deadlines: see ``with_placement_hints``); every policy
    replays the same instance; total cost, carbon, waits, deadline misses (the simulator plans every
    min(60 s, median run time), at least every 1 s), and the ratio of each policy's cost (before
    rounding each attempt to whole fen) to the HiGHS LP lower bound.
(d) Matrix: ``suanwang.sim.matrix.run_matrix`` (every policy on every shipped trace x variant x load x seed;
    its docstring states the cells, the tuning/held-out halves and the tolerances): per workload, each
    policy's deadline misses, p99 wait with and without a deadline, cost as a ratio to the HiGHS bound (full
    run only: the bound is not computed in ``--quick``) and carbon; ``matrix_losses`` in the JSON line.
    ``--quick`` runs the live pass, the plan throughput, memory and the quick matrix only (the quality and
    pressure instances belong to the full run).
(c) Pressure: the same traces at ``--pressure-load`` (default 100 %) offered load, where queues form and
    deadlines are at risk; the same figures per policy.  The baselines know nothing of deadlines; the
    ablation row ``cheapest-first+urgent`` gives cheapest-first the grid scheduler's urgent-first order,
    to show how much of the difference is order and how much is placement.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import _sched_live as _live  # noqa: E402

from suanwang.domain.bound import cost_lower_bound  # noqa: E402
from suanwang.domain.grid import Capacity, Link, Pool, Site  # noqa: E402
from suanwang.domain.job import JobSpec  # noqa: E402
from suanwang.domain.placement import PoolState, QueuedJob  # noqa: E402
from suanwang.domain.resources import Engine, ResourceClass  # noqa: E402
from suanwang.domain.scheduler import (  # noqa: E402
    POLICIES,
    CarbonSignal,
    CheapestFirst,
    GridContext,
    GridModel,
    GridScheduler,
    PoolSignals,
    PriceSignal,
)
from suanwang.sim import load_alibaba_dlrm, load_azure_llm, load_grid, load_swf, run_simulation  # noqa: E402
from suanwang.sim.matrix import run_matrix  # noqa: E402
from suanwang.sim.sizing import at_load, offered_load  # noqa: E402
from suanwang.sim.traces import with_placement_hints  # noqa: E402

DATA = ROOT / "src/suanwang/data"
GRID = ROOT / "src/suanwang/grids/east_data_west.yaml"
MODELS = [("A10", 24.0, 0.4, 3000), ("A100", 80.0, 1.0, 3500), ("H800", 80.0, 3.17, 1150)]
REGIONS = ["cn-north", "cn-east", "cn-south", "cn-northwest", "cn-southwest"]


def synthetic_grid(n_sites: int, pools_per_site: int, rng: np.random.Generator) -> GridModel:
    sites, pools, signals, carbon = [], [], {}, {}
    lat = rng.uniform(22, 42, n_sites)
    lon = rng.uniform(100, 122, n_sites)
    for s in range(n_sites):
        name = f"s{s}"
        sites.append(Site(name, REGIONS[s % len(REGIONS)], lat=float(lat[s]), lon=float(lon[s])))
        valley = set(range(int(rng.integers(21, 24)), 24)) | set(range(int(rng.integers(5, 8))))
        factor = float(rng.uniform(0.3, 0.8))
        carbon[name] = CarbonSignal(tuple(factor * (0.7 if 10 <= h < 16 else 1.1) for h in range(24)))
        for k in range(pools_per_site):
            if k % 4 == 3:
                pool = Pool(f"cpu{k}", name, ResourceClass.GENERAL, Engine.SLURM, Capacity(4096, 16384.0, 0),
                            node=Capacity(128, 512.0, 0))
                base, speed = 20, 1.0
            else:
                model, mem, speed, base = MODELS[int(rng.integers(len(MODELS)))]
                pool = Pool(f"p{k}", name, ResourceClass.INTELLIGENT, Engine.SLURM,
                            Capacity(512 * 16, 512 * 128.0, 512), model, mem, node=Capacity(128, 1024.0, 8))
            price = tuple(int(base * (0.82 if h in valley else 1.2 if 10 <= h < 15 else 1.0)) for h in range(24))
            pools.append(pool)
            signals[(name, pool.name)] = PoolSignals(PriceSignal(price), speed, 0.5)
    links = []
    order = np.argsort(lon)
    for a, b in itertools.pairwise(order):  # a chain keeps the grid connected
        links.append(_link(int(a), int(b), lat, lon, rng))
    for _ in range(n_sites * 2):
        a, b = rng.choice(n_sites, 2, replace=False)
        links.append(_link(int(a), int(b), lat, lon, rng))
    return GridModel(tuple(sites), tuple(pools), tuple(links), signals, carbon)


def _link(a: int, b: int, lat: np.ndarray, lon: np.ndarray, rng: np.random.Generator) -> Link:
    km = 111.0 * float(np.hypot(lat[a] - lat[b], (lon[a] - lon[b]) * 0.8))
    return Link(f"s{a}", f"s{b}", 1.0 + km * 1.6 / 200, float(rng.choice([100.0, 200.0, 400.0])),
                direct=bool(rng.random() < 0.2))


def synthetic_jobs(n: int, n_sites: int, rng: np.random.Generator, now: float) -> list[QueuedJob]:
    cmd = ("run",)
    shapes = []
    for k in range(64):  # a realistic catalogue of request shapes, reused by many jobs
        gpu = k % 4 != 3
        model = ["", "A100", "H800", "A10", ""][k % 5] if gpu else ""
        shapes.append((gpu, model, int(2 ** rng.integers(0, 4)) if gpu else int(2 ** rng.integers(0, 7))))
    jobs = []
    dur = np.exp(rng.normal(np.log(1800), 1.2, n)).clip(30, 86400 * 3)
    pick = rng.integers(len(shapes), size=n)
    roll = rng.random((n, 4))
    for i in range(n):
        gpu, model, size = shapes[pick[i]]
        data = roll[i, 1] < 0.2
        latency = roll[i, 2] < 0.05
        spec = JobSpec(
            cmd, ResourceClass.INTELLIGENT if gpu else ResourceClass.GENERAL, device_model=model,
            devices=size if gpu else 0, cores=size * 8 if gpu else size, memory_gb=size * 16.0,
            duration_s=float(dur[i]),
            deadline=now + float(dur[i]) * 3 + 8 * 3600 if roll[i, 0] < 0.1 and not latency else None,
            data_site=f"s{int(rng.integers(n_sites))}" if data else "", data_gb=50.0 if data else 0.0,
            consumer_site=f"s{int(rng.integers(n_sites))}" if latency else "",
            latency_ms_max=20.0 if latency else None,
            region=REGIONS[i % len(REGIONS)] if roll[i, 3] < 0.05 else "",
        )
        jobs.append(QueuedJob(f"j{i}", spec, f"t{i % 50}", now - i * 0.01))
    return jobs


def throughput(n_sites: int, n_jobs: int, seed: int = 1, repeat: int = 3) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    grid = synthetic_grid(n_sites, 10, rng)
    now = 1704038400.0 + 14 * 3600
    jobs = synthetic_jobs(n_jobs, n_sites, rng, now)
    states = [PoolState(p, p.capacity) for p in grid.pools]
    walls, cpus = [], []
    placements: list = []
    for _ in range(repeat):  # a fresh scheduler each time (no warm caches); the median of the runs is reported
        placements = []  # the last run's output is not kept alive through this one
        gc.collect()
        t0 = time.perf_counter()
        sched = GridScheduler(grid)
        t_ctx = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        placements = sched.plan(jobs, states, now=now)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    dt, cpu = float(np.median(walls)), float(np.median(cpus))
    rates = [len(placements) / w for w in walls]
    return {"sites": n_sites, "pools": len(grid.pools), "queued_jobs": n_jobs, "placements": len(placements),
            "placements_per_s_plan": _live.spread(rates),
            "deferred": sum(1 for p in placements if p.start_at > now), "plan_s": round(dt, 3),
            "plan_cpu_s": round(cpu, 3), "plan_runs_s": [round(t, 3) for t in walls],
            "context_build_s": round(t_ctx, 3), "placements_per_s": round(len(placements) / dt, 1),
            "placements_per_cpu_s": round(len(placements) / cpu, 1)}


def live(n_sites: int, n_queued: int, runs: int = 3) -> dict[str, object]:
    """The production pass (``FairScheduler.plan_with_preemption`` as ``place_waiting_jobs`` calls it, built as
    ``GridPlanner`` builds it) on a grid 70 % busy: see ``bench/_sched_live.py``."""
    t0 = time.perf_counter()
    inst = _live.live_instance(synthetic_grid, DATA, n_sites=n_sites, n_queued=n_queued)
    t_inst = time.perf_counter() - t0
    batch = inst.queue[:_live.PASS_LIMIT]
    timed = _live.time_live(inst, runs=runs)
    return {"pools": len(inst.grid.pools), "queued_jobs": len(inst.queue), "batch": len(batch),
            "running_jobs": len(inst.running), "busy_share": round(_live.busy_share(inst), 3),
            "request_shapes_in_batch": _live.shapes(batch), "request_shapes_queued": _live.shapes(inst.queue),
            "unrunnable_queued": inst.unrunnable, "instance_s": round(t_inst, 1), **timed}


def memory(n_jobs: int, runs: int = 3) -> dict[str, object]:
    """Bytes per queued job: tracemalloc's count after building ``n_jobs`` jobs, over ``runs`` runs (seeds 2..)."""
    per_job, peaks = [], []
    for k in range(runs):
        rng = np.random.default_rng(2 + k)
        gc.collect()
        tracemalloc.start()
        jobs = synthetic_jobs(n_jobs, 100, rng, 1704038400.0)
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del jobs
        gc.collect()
        per_job.append(current / n_jobs)
        peaks.append(peak / 2**20)
    spread = _live.spread(per_job)
    return {"memory_jobs": n_jobs, "bytes_per_queued_job": spread["median"], "bytes_per_queued_job_runs": spread,
            "memory_peak_mib": round(float(np.median(peaks)), 1)}


def instances(quick: bool) -> list[tuple[str, object]]:
    n = 250 if quick else 1200
    edges = ["beijing", "shanghai", "guangzhou"]
    swf = load_swf(DATA / "pwa_nasa_ipsc_1993_swf/NASA-iPSC-1993-3.1-cln.swf.gz", limit=20000)
    dlrm = load_alibaba_dlrm(DATA / "alibaba_gpu_disagg_dlrm_2025/dlrm_trace_timed.csv")
    llm = load_azure_llm(DATA / "azure_llm_inference_2023/AzureLLMInferenceTrace_code.csv")
    dlrm = dlrm.take(np.flatnonzero(dlrm.duration_s <= 2 * 86400))  # services that end within the window
    return [
        ("nasa_ipsc_swf", with_placement_hints(swf.window(86400 * 7, 86400 * 60).head(n), consumer_sites=edges,
                                               data_sites=edges, data_gb=5.0, deadline_fraction=0.3, seed=1)),
        ("alibaba_dlrm", with_placement_hints(dlrm.window(86400 * 3, 86400 * 31).head(n // 2),
                                              consumer_sites=edges, data_sites=edges, data_gb=20.0,
                                              deadline_fraction=0.3, spot_fraction=0.2, seed=2)),
        ("azure_llm_code", with_placement_hints(llm.head(n * 2), consumer_sites=edges, latency_ms_max=20.0,
                                                seed=3)),
    ]


def cheapest_first_urgent(ctx: GridContext) -> CheapestFirst:
    """Ablation: cheapest-first offered jobs in the grid scheduler's order (urgent deadline jobs first)."""
    policy = CheapestFirst(ctx)
    policy.urgency = GridScheduler(ctx).urgency  # type: ignore[method-assign]
    return policy


def quality(quick: bool, load: float, ablation: bool = False) -> dict[str, object]:
    grid = load_grid(GRID)
    per_instance = {}
    policies_run: dict[str, object] = dict(POLICIES)
    if ablation:
        policies_run["cheapest-first+urgent"] = cheapest_first_urgent
    totals: dict[str, dict[str, float]] = {
        p: {"cost": 0, "exact": 0.0, "carbon_kg": 0.0, "deadline_misses": 0, "jobs": 0} for p in policies_run}
    waits: dict[str, list[np.ndarray]] = {p: [] for p in policies_run}
    nd_waits: dict[str, list[np.ndarray]] = {p: [] for p in policies_run}
    bound_total = 0.0
    for name, trace in instances(quick):
        model, trace, compression = at_load(grid.model, trace, load) if load > 0 else (grid.model, trace, 1.0)
        ctx = GridContext(model)
        runnable = np.array([len(ctx.candidates(trace.spec(i))) > 0 for i in range(len(trace))], dtype=bool)
        rejected = int((~runnable).sum())  # the platform rejects these at submit (check_submit)
        trace = trace.take(np.flatnonzero(runnable))
        tick = float(np.clip(np.median(trace.duration_s), 1.0, 60.0))  # plan at least once per typical job
        t0 = time.perf_counter()
        jobs = list(trace.jobs())
        bound = cost_lower_bound(ctx, jobs)
        if bound.status != "Optimal":  # loaded grid: no schedule without waiting; bound schedules waiting <= 48 h
            bound = cost_lower_bound(ctx, jobs, wait_h=48)
        t_bound = time.perf_counter() - t0
        bounded = bound.status == "Optimal" and bound.cost_fen > 0  # ratios only where the bound is defined
        rows, exact = {}, {}
        for policy, factory in policies_run.items():
            t0 = time.perf_counter()
            result = run_simulation(ctx, trace, factory, tick_s=tick)
            result.policy = policy
            s = result.summary()
            s["sim_s"] = round(time.perf_counter() - t0, 2)
            exact[policy] = float(result.cost_unrounded_fen.sum())
            s["cost_ratio_to_bound"] = round(exact[policy] / bound.cost_fen, 4) if bounded else None
            totals[policy]["exact"] += exact[policy] if bounded else 0.0
            rows[policy] = s
            tot = totals[policy]
            tot["cost"] += s["cost_fen"]
            tot["carbon_kg"] += s["carbon_kg"]
            tot["deadline_misses"] += s["deadline_misses"]
            tot["jobs"] += s["jobs"]
            waits[policy].append(result.wait_s[~np.isnan(result.wait_s)])
            nd_waits[policy].append(result.wait_s[~np.isnan(result.wait_s) & np.isnan(result.deadline)])
        bound_total += bound.cost_fen if bounded else 0.0
        per_instance[name] = {"jobs": len(trace), "rejected_at_submit": rejected,
                              "bound_cost_fen": round(bound.cost_fen, 1),
                              "bound_status": bound.status, "bound_wait_h": bound.wait_h,
                              "offered_load": round(offered_load(model, trace), 3),
                              "arrivals_compressed_by": round(compression, 2),
                              "deadline_jobs": int(np.sum(~np.isnan(trace.deadline_s))),
                              "plan_interval_s": tick, "bound_variables": bound.variables,
                              "bound_s": round(t_bound, 2),
                              "cost_ratio_to_bound": round(exact["grid"] / bound.cost_fen, 4) if bounded else None,
                              "policies": rows}
    policies = {}
    for p, tot in totals.items():
        w = np.concatenate(waits[p]) if waits[p] else np.zeros(1)
        nd = np.concatenate(nd_waits[p]) if nd_waits[p] else np.zeros(1)
        policies[p] = {"cost": int(tot["cost"]), "carbon_kg": round(tot["carbon_kg"], 2),
                       "wait_mean_s": round(float(w.mean()), 1), "wait_p99_s": round(float(np.percentile(w, 99)), 1),
                       "wait_p99_no_deadline_s": round(float(np.percentile(nd, 99)), 1) if len(nd) else 0.0,
                       "deadline_misses": int(tot["deadline_misses"]),
                       "cost_ratio_to_bound": round(tot["exact"] / bound_total, 4) if bound_total else None}
    return {"instances": per_instance, "policies": policies, "bound_cost_fen": round(bound_total, 1),
            "cost_ratio_to_bound": policies["grid"]["cost_ratio_to_bound"]}


def _fmt(v: object, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def matrix(quick: bool) -> dict[str, object]:
    """The evaluation matrix; prints one block per workload (cell), a row per policy."""
    t0 = time.perf_counter()
    res = run_matrix(quick, progress=lambda d, n, name: print(f"[matrix {d}/{n}] {name}", file=sys.stderr))
    wall = time.perf_counter() - t0
    head = (f"{'policy':16s} {'misses':>6s} {'p99 dl s':>10s} {'p99 no-dl s':>11s} {'cost/bound':>10s}"
            f" {'carbon kg':>10s}")
    for c in res["cells"]:
        loss = f"  LOSS: {', '.join(c['losses'])}" if c["losses"] else ""
        print(f"{c['cell']} ({c['half']}, {c['jobs']} jobs){loss}")
        print("  " + head)
        for pol, r in c["policies"].items():
            print(f"  {pol:16s} {r['deadline_misses']:6d} {r['wait_p99_deadline_s']:10.0f}"
                  f" {r['wait_p99_no_deadline_s']:11.0f} {_fmt(r['cost_ratio_to_bound'], '10.3f'):>10s}"
                  f" {r['carbon_kg']:10.1f}")
    return {**res, "wall_s": round(wall, 1)}


def fractional(quick: bool) -> dict[str, object]:
    """Card fractions (≥ 60 % of jobs below one card) replayed through the live pass by every policy and by
    whole cards only: placements/s, allocated-share utilisation, GPU fragmentation (``bench/fractional.py``)."""
    from fractional import run_fractional  # bench/ is on sys.path when a bench runs as a script

    return run_fractional(200 if quick else 2_000)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--load", type=float, default=0.7,
                    help="offered load as a share of the sliced grid's capacity (0: the whole grid)")
    ap.add_argument("--pressure-load", type=float, default=1.0, help="offered load of the pressure instances")
    ap.add_argument("--part", choices=("all", "live", "throughput", "memory", "quality", "matrix", "fractional"),
                    default="all",
                    help="run one part only (written to bench/results/scheduler_<part>.json)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    # quick is a smoke run (the full run is the reference): a smaller grid and queue, 10,000 jobs for plan
    # throughput and memory (per-job figures do not depend on the count)
    sites, jobs, plan_jobs, mem_jobs = (20, 20_000, 10_000, 10_000) if args.quick else (100, 100_000, 100_000,
                                                                                        1_000_000)
    if args.part != "all":
        part = {"live": lambda: live(sites, jobs), "throughput": lambda: throughput(sites, plan_jobs),
                "memory": lambda: memory(mem_jobs), "quality": lambda: quality(args.quick, args.load),
                "matrix": lambda: matrix(args.quick), "fractional": lambda: fractional(args.quick)}[args.part]()
        part = {"quick": args.quick, **part, "wall_s": round(time.perf_counter() - t0, 1)}
        path = ROOT / f"bench/results/scheduler_{args.part}{'_quick' if args.quick else ''}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(part, indent=2))
        if args.part == "live":
            part = {**{k: v for k, v in part.items() if k != "passes"},
                    "placements_per_s_live": part["placements_per_s"]["median"]}  # type: ignore[index]
        if args.part == "matrix":
            part = {k: v for k, v in part.items() if k != "cells"}
        print(json.dumps(part))
        return
    lv = live(sites, jobs)
    tp = throughput(sites, plan_jobs)
    mem = memory(mem_jobs)
    mx = matrix(args.quick)
    fr = fractional(args.quick)
    out: dict[str, object] = {
        "quick": args.quick, "offered_load": args.load, **tp, **mem, "live": lv,
        "placements_per_s_live": lv["placements_per_s"]["median"],  # type: ignore[index]
        "placements_per_s_plan": tp["placements_per_s_plan"]["median"],  # type: ignore[index]
        "matrix_losses": mx["matrix_losses"], "matrix_losses_tuning": mx["matrix_losses_tuning"],
        "matrix_losses_heldout": mx["matrix_losses_heldout"], "matrix": mx, "fractional": fr}
    if not args.quick:
        q = quality(args.quick, args.load)
        hot = quality(args.quick, args.pressure_load, ablation=True)
        out["pressure"] = {"offered_load": args.pressure_load, "cost_ratio_to_bound": hot["cost_ratio_to_bound"],
                           "policies": hot["policies"], "instances": hot["instances"]}
        out.update(cost_ratio_to_bound=q["cost_ratio_to_bound"], policies=q["policies"], instances=q["instances"])
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    path = ROOT / f"bench/results/scheduler{'_quick' if args.quick else ''}.json"  # quick never clobbers the full
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    summary = {k: out[k] for k in ("quick", "matrix_losses", "matrix_losses_tuning", "matrix_losses_heldout",
                                   "placements_per_s_live", "placements_per_s_plan", "placements_per_s",
                                   "pools", "queued_jobs", "placements", "plan_s",
                                   "memory_jobs", "bytes_per_queued_job", "cost_ratio_to_bound", "policies",
                                   "wall_s") if k in out}
    summary["matrix_policies"] = mx["policies"]
    shown = ("placements_per_s", "allocated_share", "gpu_fragmentation")
    summary["fractional"] = {p: {k: f[k]["median"] for k in shown}
                             for p, f in fr["policies"].items()}  # type: ignore[attr-defined]
    if "pressure" in out:
        p = out["pressure"]
        summary["pressure"] = {k: p[k] for k in ("offered_load", "cost_ratio_to_bound", "policies")}  # type: ignore[index]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
