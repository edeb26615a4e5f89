"""The live scheduling pass as the platform runs it, on a busy grid (used by ``bench/scheduler.py``).

Production path: ``place_waiting_jobs`` reads at most ``queued_jobs``' limit (10,000) waiting jobs in queue
order (priority desc, submit time, id) and calls ``FairScheduler.plan_with_preemption`` with the running jobs;
the ``FairScheduler`` is the one ``GridPlanner`` builds (``GridPlanner._build``: the grid scheduler with the
default weights inside fair share over the grid's total capacity).

Instance.  The synthetic grid of ``bench/scheduler.py`` (S sites x 10 pools: A10 / A100 / H800 / CPU) already
busy: running jobs (8-device or 64-core pieces, 30 % of them spot, expected ends over the next 12 h) hold a
share of every pool drawn uniformly from 40-100 % busy, 70 % on average.  Q queued jobs whose requests (cores,
memory, devices, run time, service level) are drawn from the shipped traces (NASA iPSC SWF: CPU jobs; Alibaba
DLRM: GPU and CPU inference services; Azure LLM code: one-device requests), 40 / 40 / 20, with what the traces
lack drawn from a seed: 50 tenants (shares 1-4, one in ten in a higher tier, five with quotas), 10 % with
deadlines, 20 % with input data at one of the sites, 5 % latency-bound, 5 % region-pinned, 30 % pinned to a
device model, 1 % with a price limit that prices out a tenth of the pools, 0.5 % in gangs of 2-4 alike
members.  Requests ``check_placeable`` refuses (as submit does) are redrawn; 3 % are jobs submit accepts but
no pool can ever run (pinned to a region no site is in), which stay queued.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from suanwang.domain.fairness import FairScheduler, RunningJob, TenantPolicy
from suanwang.domain.grid import Capacity
from suanwang.domain.job import JobSpec
from suanwang.domain.placement import Placement, PoolState, QueuedJob, rule_out
from suanwang.domain.resources import ResourceClass, ServiceLevel
from suanwang.domain.scheduler import GridModel
from suanwang.services.planner import GridPlanner
from suanwang.sim import load_alibaba_dlrm, load_azure_llm, load_swf

PASS_LIMIT = 10_000  # services.scheduling.queued_jobs: what one live pass reads
MODELS = ("A10", "A100", "H800")
REGIONS = ["cn-north", "cn-east", "cn-south", "cn-northwest", "cn-southwest"]


@dataclass
class LiveInstance:
    grid: GridModel
    tenants: dict[str, TenantPolicy]
    queue: list[QueuedJob]  # every queued job, in the order ``queued_jobs`` reads them
    running: list[RunningJob]
    states: list[PoolState]
    now: float
    unrunnable: int  # queued jobs no pool can ever run


def _requests(data: Path) -> list[tuple[int, float, int, float, str]]:
    """(cores, memory GiB, devices, run time s, service level) rows of the three shipped traces, 40/40/20."""
    swf = load_swf(data / "pwa_nasa_ipsc_1993_swf/NASA-iPSC-1993-3.1-cln.swf.gz")
    dlrm = load_alibaba_dlrm(data / "alibaba_gpu_disagg_dlrm_2025/dlrm_trace_timed.csv")
    llm = load_azure_llm(data / "azure_llm_inference_2023/AzureLLMInferenceTrace_code.csv")
    out = []
    for trace, weight in ((swf, 4), (dlrm, 4), (llm, 2)):
        rows = [(int(trace.cores[i]), float(trace.memory_gb[i]), int(trace.devices[i]),
                 float(min(trace.duration_s[i], 14 * 86400.0)), trace.names[trace.service_level[i]])
                for i in range(len(trace))]
        out.append((rows, weight))
    return _mix(out)


def _mix(parts: list[tuple[list[tuple[int, float, int, float, str]], int]]) -> list[tuple[int, float, int, float, str]]:
    """Each trace's rows repeated so the three are weighted 40 / 40 / 20 in the pool draws come from."""
    size = max(len(rows) / weight for rows, weight in parts)
    out = []
    for rows, weight in parts:
        reps = max(1, round(size * weight / len(rows)))
        out.extend(rows * reps)
    return out


def live_instance(synthetic_grid: Callable[[int, int, np.random.Generator], GridModel], data: Path, *,
                  n_sites: int, n_queued: int, seed: int = 7, busy: float = 0.7) -> LiveInstance:
    rng = np.random.default_rng(seed)
    grid = synthetic_grid(n_sites, 10, rng)
    now = 1704038400.0 + 14 * 3600
    sites = [s.name for s in grid.sites]
    total = sum((p.capacity for p in grid.pools), Capacity())
    tenants = {}
    for t in range(50):
        quota = Capacity(total.cores // 20, total.memory_gb / 20, total.devices // 20) if t % 10 == 5 else None
        tenants[f"t{t}"] = TenantPolicy(share=float(1 + t % 4), priority=1 if t % 10 == 0 else 0, quota=quota)
    names = list(tenants)

    running: list[RunningJob] = []
    states: list[PoolState] = []
    for k, p in enumerate(grid.pools):
        share = float(rng.uniform(2 * busy - 1.0, 1.0)) if busy > 0.5 else float(rng.uniform(0.0, 2 * busy))
        gpu = p.capacity.devices > 0
        piece = Capacity(64, 128.0, 8) if gpu else Capacity(64, 256.0, 0)
        count = int(share * (p.capacity.devices / 8 if gpu else p.capacity.cores / 64))
        held = Capacity()
        for j in range(count):
            held = held + piece
            start = now - float(rng.uniform(0, 6 * 3600))
            running.append(RunningJob(f"r{k}-{j}", names[int(rng.integers(50))], p.site, p.name, piece, start,
                                      now + float(rng.uniform(60, 12 * 3600)),
                                      ServiceLevel.SPOT if rng.random() < 0.3 else ServiceLevel.STANDARD))
        states.append(PoolState(p, p.capacity - held))

    reqs = _requests(data)
    placeable: dict[tuple[object, ...], bool] = {}
    queue: list[QueuedJob] = []
    unrunnable = 0
    dearer = {(p.site, p.name): 10**9 for p in grid.pools[::10]}  # a price limit rules a tenth of the pools out
    gang_left, gang_id, gang_size, gang_spec = 0, "", 1, None
    while len(queue) < n_queued:
        i = len(queue)
        cores, mem, devices, dur, level = reqs[int(rng.integers(len(reqs)))]
        roll = rng.random(10)
        tenant = names[int(rng.integers(50))]
        model = MODELS[int(rng.integers(3))] if devices and roll[0] < 0.3 else ""
        latency = roll[2] < 0.05
        spec = JobSpec(
            ("run",), ResourceClass.INTELLIGENT if devices else ResourceClass.GENERAL, device_model=model,
            devices=devices, cores=max(1, cores), memory_gb=mem, duration_s=max(1.0, dur),
            deadline=now + dur * float(rng.uniform(1.5, 4.0)) + float(rng.uniform(0, 12)) * 3600
            if roll[1] < 0.1 and not latency else None,
            data_site=sites[int(rng.integers(len(sites)))] if roll[3] < 0.2 else "",
            data_gb=float(rng.choice([5.0, 20.0, 50.0])) if roll[3] < 0.2 else 0.0,
            consumer_site=sites[int(rng.integers(len(sites)))] if latency else "",
            latency_ms_max=float(rng.choice([10.0, 20.0, 40.0])) if latency else None,
            region=REGIONS[int(rng.integers(len(REGIONS)))] if roll[4] < 0.05 else "",
            service_level=ServiceLevel(level) if roll[5] > 0.1 else ServiceLevel.GUARANTEED,
            priority=1 if roll[6] < 0.05 else 0,
            max_price_fen=1000 if roll[7] < 0.01 else None,
        )
        if roll[8] < 0.03:  # submit accepts it (check_placeable: pool rules only), no pool can ever run it
            unrunnable += 1
            spec = dataclasses.replace(spec, region="cn-xinjiang", consumer_site="", latency_ms_max=None,
                                       deadline=None)
        key = (spec.resource_class, spec.device_model, spec.cores, spec.memory_gb, spec.devices, spec.region)
        ok = placeable.get(key)
        if ok is None:
            ok = placeable[key] = any(rule_out(spec, p) is None for p in grid.pools)
        if not ok:
            unrunnable -= int(roll[8] < 0.03)
            continue  # submit refuses it (check_placeable)
        gang, size = "", 1
        if gang_left:  # a gang's members ask for the same (its first member's spec)
            gang, size, gang_left, spec = gang_id, gang_size, gang_left - 1, gang_spec
        elif roll[9] < 0.005 and spec.deadline is None:
            gang_size = int(rng.integers(2, 5))
            gang_id, gang_left, gang_spec = f"g{i}", gang_size - 1, spec
            gang, size = gang_id, gang_size
        queue.append(QueuedJob(f"j{i}", spec, tenant, now - 3600 + i * 0.01, gang=gang, gang_size=size,
                               prices_fen=dearer if spec.max_price_fen is not None else None))
    queue.sort(key=lambda j: (-j.spec.priority, j.submitted_at, j.id))  # queued_jobs' ORDER BY
    return LiveInstance(grid, tenants, queue, running, states, now, int(unrunnable))


def build_live(inst: LiveInstance) -> FairScheduler:
    """The scheduler exactly as the platform's ``GridPlanner`` builds it."""
    return GridPlanner(tenants=inst.tenants)._build(inst.grid)


def shapes(jobs: Sequence[QueuedJob]) -> int:
    """Distinct request shapes, as the scheduler keys them (``shape_key``)."""
    from suanwang.domain.scheduling.context import shape_key
    return len({shape_key(j.spec) for j in jobs})


def apply(inst: LiveInstance, states: list[PoolState], running: list[RunningJob], queue: list[QueuedJob],
          placed: Sequence[Placement], preempt: Sequence[str], now: float,
          ) -> tuple[list[PoolState], list[RunningJob], list[QueuedJob]]:
    """What the live loop's next pass sees: placed jobs hold capacity and leave the queue, victims free theirs."""
    by_id = {j.id: j for j in queue}
    free = {(s.pool.site, s.pool.name): s.free for s in states}
    gone = set(preempt)
    for r in running:
        if r.id in gone:
            free[(r.site, r.pool)] = free[(r.site, r.pool)] + r.demand
    kept = [r for r in running if r.id not in gone]
    started = {p.job_id for p in placed if p.start_at <= now + 1.0}
    for p in placed:
        if p.job_id in started:
            job = by_id[p.job_id]
            free[(p.site, p.pool)] = free[(p.site, p.pool)] - job.spec.demand
            kept.append(RunningJob(job.id, job.tenant, p.site, p.pool, job.spec.demand, now,
                                   now + job.spec.duration_s, job.spec.service_level))
    new_states = [dataclasses.replace(s, free=free[(s.pool.site, s.pool.name)]) for s in states]
    return new_states, kept, [j for j in queue if j.id not in started]


def time_live(inst: LiveInstance, *, runs: int = 3, batch: int = PASS_LIMIT,
              build: Callable[[LiveInstance], FairScheduler] = build_live) -> dict[str, object]:
    """Per run: a freshly built scheduler's first pass over the first ``batch`` jobs of the queue (as the live
    loop reads them), then its next pass 15 s later over what is left, placed jobs holding their capacity, then
    (``warm``) the first pass's queue and grid again with the same, now warm, scheduler."""
    detail: list[dict[str, object]] = []
    for _ in range(runs):
        gc.collect()
        t0 = time.perf_counter()
        fair = build(inst)
        t_build = time.perf_counter() - t0
        states, running, queue = inst.states, inst.running, inst.queue
        row: dict[str, object] = {"build_s": round(t_build, 3)}
        for name, now in (("first", inst.now), ("next", inst.now + 15.0)):
            jobs = queue[:batch]
            t0, c0 = time.perf_counter(), time.process_time()
            plan = fair.plan_with_preemption(jobs, states, now=now, running=running)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            started = sum(1 for p in plan.placements if p.start_at <= now + 1.0)
            row[name] = {"jobs": len(jobs), "placements": len(plan.placements), "started": started,
                         "preempted": len(plan.preempt), "unrunnable": len(plan.unrunnable),
                         "pass_s": round(dt, 4), "pass_cpu_s": round(cpu, 4),
                         "placements_per_s": round(len(plan.placements) / dt, 1),
                         "placements_per_cpu_s": round(len(plan.placements) / cpu, 1)}
            states, running, queue = apply(inst, states, running, queue, plan.placements, plan.preempt, now)
        # warm: the same scheduler (the planner caches it) over the first pass's queue and grid again, 30 s on:
        # the per-shape tables, rankings and shortlists are built; what a steady live loop pays per pass
        jobs = inst.queue[:batch]
        t0, c0 = time.perf_counter(), time.process_time()
        plan = fair.plan_with_preemption(jobs, inst.states, now=inst.now + 30.0, running=inst.running)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        row["warm"] = {"jobs": len(jobs), "placements": len(plan.placements), "pass_s": round(dt, 4),
                       "pass_cpu_s": round(cpu, 4), "placements_per_s": round(len(plan.placements) / dt, 1),
                       "placements_per_cpu_s": round(len(plan.placements) / cpu, 1)}
        detail.append(row)

    def pick(name: str, key: str) -> dict[str, object]:
        return spread([r[name][key] for r in detail])  # type: ignore[index]

    return {"placements_per_s": pick("first", "placements_per_s"),
            "placements_per_cpu_s": pick("first", "placements_per_cpu_s"),
            "next_pass_placements_per_s": pick("next", "placements_per_s"),
            "next_pass_placements_per_cpu_s": pick("next", "placements_per_cpu_s"),
            "warm_pass_placements_per_s": pick("warm", "placements_per_s"),
            "warm_pass_placements_per_cpu_s": pick("warm", "placements_per_cpu_s"),
            "passes": detail}


def busy_share(inst: LiveInstance) -> float:
    """Share of the grid's devices (cores on CPU pools) the running jobs hold."""
    held = sum(s.pool.capacity.devices - s.free.devices if s.pool.capacity.devices else 0 for s in inst.states)
    total = sum(s.pool.capacity.devices for s in inst.states)
    return held / total if total else 0.0


def spread(values: Sequence[float]) -> dict[str, object]:
    """Median, min, max and every run's value."""
    v = [float(x) for x in values]
    return {"median": round(float(np.median(v)), 1), "min": round(min(v), 1), "max": round(max(v), 1),
            "runs": [round(x, 1) for x in v]}
