"""The live pass's fast paths: the backfill guard's cached form against the EASY rule, and jobs no pool can run."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.fairness import FairScheduler, FairShare, RunningJob, TenantPolicy, _Backfill, _Head
from suanwang.domain.grid import Capacity
from suanwang.domain.placement import PoolState, QueuedJob
from suanwang.domain.scheduler import GridContext, GridScheduler
from suanwang.domain.scheduling.base import FreeState
from tests.domain.sched_helpers import NOON, grid, job, pool, states

POOLS = [pool(f"p{k}", site, devices=16) for k, site in enumerate(["beijing", "ulanqab", "qingyang", "shanghai"])]
GRID = grid(POOLS)
CTX = GridContext(GRID)


def reference_ok(job_: QueuedJob, heads: list[_Head], free: FreeState, now: float) -> np.ndarray:
    """The EASY backfill rule as it was stated before the guard was cached (per pool, over every head)."""
    ends = now + job_.spec.duration_s / CTX.speed
    jd = job_.spec.demand
    ok = np.ones(len(CTX.pools), dtype=bool)
    for h in heads:
        hd = h.job.spec.demand
        never = ~np.isfinite(h.shadow)
        spare = ((free.cores - jd.cores + h.released[0] >= hd.cores)
                 & (free.mem - jd.memory_gb + h.released[1] >= hd.memory_gb - 1e-9)
                 & (free.dev - jd.devices + h.released[2] >= hd.devices))
        ok &= never | (ends <= h.shadow) | spare
    return ok


shadow_at = st.one_of(st.just(math.inf), st.just(0.0), st.floats(0.0, 7200.0))
head_st = st.tuples(st.integers(1, 8), st.lists(shadow_at, min_size=4, max_size=4),
                    st.lists(st.integers(0, 8), min_size=4, max_size=4))


@settings(max_examples=150, deadline=None)
@given(heads=st.lists(head_st, max_size=5), free_dev=st.lists(st.integers(0, 16), min_size=4, max_size=4),
       devices=st.integers(1, 8), duration=st.floats(1.0, 10_000.0))
def test_the_cached_guard_allows_exactly_what_the_easy_rule_allows(
    heads: list[tuple[int, list[float], list[int]]], free_dev: list[int], devices: int, duration: float,
) -> None:
    free = FreeState(CTX, states(GRID))
    free.dev[:] = free_dev
    free.cores[:] = np.array(free_dev) * 16
    free.mem[:] = np.array(free_dev) * 128.0
    guard = _Backfill(CTX.speed, free, NOON)
    built = []
    for k, (size, at, rel) in enumerate(heads):
        shadow = np.array([NOON + a for a in at])
        released = np.array([[r * 16 for r in rel], [r * 128.0 for r in rel], rel], dtype=float)
        built.append(_Head(job(f"h{k}", devices=size, cores=size * 16, memory_gb=size * 128.0), shadow, released))
        guard.add(built[-1])
    j = job("j", devices=devices, cores=devices * 16, memory_gb=devices * 128.0, duration_s=duration)
    want = reference_ok(j, built, free, NOON)
    got = [NOON + duration / CTX.speed_list[i] <= guard.latest_end(j.spec, i) for i in range(len(POOLS))]
    assert got == want.tolist()
    mask = guard.mask(j, np.arange(len(POOLS)))
    assert (np.ones(len(POOLS), dtype=bool) if mask is None else mask).tolist() == want.tolist()


def test_a_job_no_pool_can_run_takes_no_place_among_the_blocked_heads() -> None:
    """One backfill head only: a job pinned to a region no site is in must not take it from a real head."""
    g = grid([pool("a", "qingyang", devices=8)])
    running = [RunningJob("r", "x", "qingyang", "a", Capacity(64, 512.0, 4), NOON - 60, NOON + 3600)]
    st_ = [PoolState(g.pools[0], Capacity(64, 512.0, 4))]
    fair = FairShare(Capacity(128, 1024.0, 8), {"hi": TenantPolicy(priority=1)})
    nowhere = job("nowhere", tenant="hi", region="cn-xinjiang", submitted=NOON - 10)
    head = job("head", tenant="hi", devices=8, duration_s=600.0)
    long_small = job("long", tenant="lo", devices=2, duration_s=7200.0)
    short_small = job("short", tenant="lo", devices=2, duration_s=1800.0, submitted=NOON + 1)
    sched = FairScheduler(GridScheduler(g), fair, backfill_heads=1)
    plan = sched.plan_with_preemption([nowhere, head, long_small, short_small], st_, now=NOON, running=running)
    placed = {p.job_id for p in plan.placements}
    assert plan.unrunnable == ["nowhere"]
    assert "short" in placed  # ends before the head's reserved start
    assert "long" not in placed  # the head keeps its place: the unrunnable job did not take it


def test_unrunnable_jobs_do_not_count_toward_their_tenants_share() -> None:
    """DRF orders by what tenants would hold: a job that can never run holds nothing."""
    g = grid([pool("a", "qingyang", devices=2)])
    fair = FairShare(Capacity(32, 256.0, 2))
    blocked = [job(f"x{k}", tenant="x", devices=2, cores=32, memory_gb=256.0, region="cn-xinjiang",
                   submitted=NOON - 100 + k) for k in range(3)]
    x_real = job("x-real", tenant="x", devices=2, cores=32, memory_gb=256.0, submitted=NOON - 50)
    y_real = job("y-real", tenant="y", devices=2, cores=32, memory_gb=256.0, submitted=NOON - 40)
    plan = FairScheduler(GridScheduler(g), fair).plan_with_preemption(
        [*blocked, x_real, y_real], states(g), now=NOON, running=())
    assert [p.job_id for p in plan.placements] == ["x-real"]  # x's first runnable job, by submit time
    assert sorted(plan.unrunnable) == ["x0", "x1", "x2"]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_the_live_pass_never_overbooks_a_pool_nor_places_a_job_no_pool_can_run(seed: int) -> None:
    """Random queues on a half-busy grid through the fair pass, with blocked heads and unrunnable jobs."""
    rng = np.random.default_rng(seed)
    g = grid([pool(f"p{k}", s, devices=8) for k, s in enumerate(["beijing", "qingyang", "shanghai"])])
    free = {p.name: Capacity(p.capacity.cores // 2, p.capacity.memory_gb / 2, p.capacity.devices // 2)
            for p in g.pools}
    running = [RunningJob(f"r{p.name}", "z", p.site, p.name, p.capacity - free[p.name], NOON - 60,
                          NOON + float(rng.uniform(60, 7200))) for p in g.pools]
    jobs = []
    for k in range(40):
        d = int(rng.integers(1, 9))
        jobs.append(job(f"j{k}", tenant=f"t{k % 3}", devices=d, cores=4 * d, memory_gb=16.0 * d,
                        duration_s=float(rng.uniform(60, 7200)), submitted=NOON - 100 + k,
                        region="cn-xinjiang" if rng.random() < 0.1 else ""))
    sched = FairScheduler(GridScheduler(g), FairShare(Capacity(384, 3072.0, 24)))
    plan = sched.plan_with_preemption(jobs, [PoolState(p, free[p.name]) for p in g.pools], now=NOON,
                                      running=running)
    used = {p.name: 0 for p in g.pools}
    by_id = {j.id: j for j in jobs}
    for p in plan.placements:
        if p.start_at <= NOON:
            used[p.pool] += by_id[p.job_id].spec.devices
    assert all(used[name] <= free[name].devices for name in used)
    assert all(by_id[i].spec.region == "cn-xinjiang" for i in plan.unrunnable)
    assert not {p.job_id for p in plan.placements} & set(plan.unrunnable)
