"""Discrete-event simulator: replay a trace against a grid through the live scheduler code.

Why its own loop and not SimPy: the scheduler is a pure function of (queue,
pool states, now), so the simulator only needs a clock and an ordered event
list.  Events are ordered by (time, priority, seq): at one instant, finishes
free capacity first, then submissions arrive, then held jobs wake, then the
scheduler plans, then utilisation is sampled; ``seq`` makes ties
deterministic.  The clock is injected (``SimClock``) and never read from the
wall.

Every policy runs behind the same ``FairScheduler`` (DRF order, backfill
guard, preemption of spot for guaranteed work), so policies differ only in
where they put a job.  A placement with ``start_at > now`` (time shifting)
leaves the job queued, as the live platform does: every later plan decides
again (capacity may have been taken, its slack may have shrunk), and a plan
is due at the planned start.  Preempted jobs are requeued as a new attempt
and billed only for what ran.

Billing is exact: ``fen = round_half_up(sum_h price_h * SCU-seconds_h / 3600)``
with SCU-seconds = units x speed x seconds in each local hour, using integers
and fractions; carbon is kg CO2 = units x power_kw x hours x kg/kWh.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from suanwang.domain.fairness import FairScheduler, FairShare, RunningJob, TenantPolicy
from suanwang.domain.grid import Capacity
from suanwang.domain.placement import PoolState, QueuedJob
from suanwang.domain.scheduler import POLICIES, GridContext, GridModel, SchedulerFactory, _integral, job_units
from suanwang.errors import InvalidSpec
from suanwang.sim.grid_file import GridFile, load_grid
from suanwang.sim.traces import Trace, load_trace

Progress = Callable[[int, int, float], None]  # (jobs finished, jobs total, simulated seconds)

FINISH, SUBMIT, WAKE, PLAN, SAMPLE = range(5)


@dataclass
class SimClock:
    """The simulator's clock; the only source of ``now``."""

    now: float = 0.0


@dataclass
class SimResult:
    """What one policy did with one trace on one grid."""

    policy: str
    trace: str
    jobs: int
    submit: np.ndarray
    start: np.ndarray  # nan: never started
    end: np.ndarray  # nan: never finished
    cost_fen: np.ndarray  # int64 per job (all attempts)
    carbon_kg: np.ndarray
    deadline: np.ndarray  # nan: none
    site: np.ndarray  # site index of the last attempt, -1 none
    preemptions: int
    sites: tuple[str, ...]
    util_t: np.ndarray  # sample times (s from trace start)
    util: np.ndarray  # [samples, sites] busy share of the site's units
    plan_calls: int = 0
    cost_unrounded_fen: np.ndarray | None = None  # per job, before rounding each attempt to whole fen
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def wait_s(self) -> np.ndarray:
        return self.start - self.submit

    @property
    def deadline_misses(self) -> int:
        has = ~np.isnan(self.deadline)
        late = np.isnan(self.end) | (self.end > self.deadline + 1e-6)
        return int(np.sum(has & late))

    def summary(self) -> dict[str, float | int | str]:
        wait = self.wait_s[~np.isnan(self.wait_s)]
        nd = self.wait_s[~np.isnan(self.wait_s) & np.isnan(self.deadline)]  # jobs that may not be shifted
        return {
            "policy": self.policy,
            "trace": self.trace,
            "jobs": self.jobs,
            "finished": int(np.sum(~np.isnan(self.end))),
            "cost_fen": int(self.cost_fen.sum()),
            "cost": int(self.cost_fen.sum()),
            "carbon_kg": round(float(self.carbon_kg.sum()), 3),
            "wait_mean_s": round(float(wait.mean()), 3) if len(wait) else 0.0,
            "wait_p99_s": round(float(np.percentile(wait, 99)), 3) if len(wait) else 0.0,
            "wait_p99_no_deadline_s": round(float(np.percentile(nd, 99)), 3) if len(nd) else 0.0,
            "deadline_misses": self.deadline_misses,
            "preemptions": self.preemptions,
            "makespan_s": round(float(np.nanmax(self.end) - self.submit.min()), 1) if np.any(~np.isnan(self.end))
            else 0.0,
        }


@dataclass
class _Run:
    job: QueuedJob
    pool: int
    start: float
    end: float
    units: int
    billed_from: float  # start + data transfer: the run itself begins here


def bill_fen(price: np.ndarray, units: int, speed: float, start: float, end: float, utc_offset_h: float) -> int:
    """Exact charge in fen for ``units`` at ``speed`` SCU each over [start, end) (Unix s), ToU by local hour."""
    fen = charge(price, units, speed, start, end, utc_offset_h)
    return math.floor(fen + Fraction(1, 2))


def charge(price: np.ndarray, units: int, speed: float, start: float, end: float, utc_offset_h: float) -> Fraction:
    """The charge before rounding to whole fen, as an exact fraction."""
    if end <= start:
        return Fraction(0)
    scu = Fraction(units) * Fraction(speed).limit_denominator(10_000)
    total = Fraction(0)
    t = start
    while t < end:
        local_h = t / 3600.0 + utc_offset_h
        hour_end = (math.floor(local_h) + 1 - utc_offset_h) * 3600.0
        seg_end = min(end, hour_end)
        seconds = Fraction(round(seg_end * 1000) - round(t * 1000), 1000)
        total += int(price[math.floor(local_h) % 24]) * seconds
        t = seg_end
    return total * scu / 3600


class Simulator:
    """One replay of ``trace`` on the grid with ``scheduler`` (a ``FairScheduler``)."""

    def __init__(self, ctx: GridContext, trace: Trace, scheduler: FairScheduler, *, tick_s: float = 60.0,
                 samples: int = 200, progress: Progress | None = None, clock: SimClock | None = None) -> None:
        self.ctx, self.trace, self.sched, self.tick = ctx, trace, scheduler, tick_s
        self.clock = clock or SimClock(trace.t0)
        self.progress = progress
        n, p = len(trace), len(ctx.pools)
        self.free = [pool.capacity for pool in ctx.pools]
        self.units_cap = np.array([pool.capacity.devices or pool.capacity.cores for pool in ctx.pools], float)
        self.busy = np.zeros(p)
        self.events: list[tuple[float, int, int, int]] = []
        self.seq = 0
        self.queue: dict[str, QueuedJob] = {}
        self.running: dict[str, _Run] = {}
        self.start = np.full(n, np.nan)
        self.end = np.full(n, np.nan)
        self.cost = np.zeros(n, dtype=np.int64)
        self.cost_exact = np.zeros(n)  # before rounding to fen: for comparing with bounds
        self.carbon = np.zeros(n)
        self.site = np.full(n, -1, dtype=np.int64)
        self.deadline = np.where(np.isnan(trace.deadline_s), np.nan, trace.t0 + trace.deadline_s)
        self.preemptions = 0
        self.plan_pending = False
        self._wake: set[tuple[float, int]] = set()  # (planned start, job) of deferred jobs
        self.plan_calls = 0
        self.done = 0
        span = float(trace.submit_s.max() + trace.duration_s.max()) if n else 0.0
        self.sample_every = max(60.0, span / max(1, samples))
        self.util_t: list[float] = []
        self.util: list[np.ndarray] = []
        self.site_of_pool = ctx.site_idx
        self.n_sites = len(ctx.network.sites)

    def push(self, t: float, kind: int, arg: int) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, kind, self.seq, arg))

    def run(self) -> SimResult:
        tr = self.trace
        for i in range(len(tr)):
            self.push(tr.t0 + float(tr.submit_s[i]), SUBMIT, i)
        self.push(tr.t0, SAMPLE, 0)
        idle_plans = 0
        while self.events:
            t, kind, _, arg = heapq.heappop(self.events)
            self.clock.now = t
            if kind == FINISH:
                self._finish(arg)
            elif kind == SUBMIT:
                self.queue[f"j{arg}"] = tr.job(arg)
                self._want_plan()
            elif kind == WAKE:
                self._wake.discard((t, arg))
                if f"j{arg}" in self.queue:  # its planned start: plan again (it may have started earlier)
                    idle_plans = 0
                    self._want_plan()
            elif kind == PLAN:
                self.plan_pending = False
                placed = self._plan()
                idle_plans = 0 if placed or self.running else idle_plans + 1
            elif kind == SAMPLE:
                self._sample()
                if self.running or self.queue or self.events:
                    self.push(t + self.sample_every, SAMPLE, 0)
            if idle_plans > 2 and not self.running and not any(
                    k in (SUBMIT, WAKE, FINISH) for _, k, _, _ in self.events):
                break  # what is left in the queue can run nowhere
        return self._result()

    def _want_plan(self) -> None:
        if not self.plan_pending:
            self.plan_pending = True
            t = self.clock.now if self.tick <= 0 else math.ceil(self.clock.now / self.tick) * self.tick
            self.push(t, PLAN, 0)

    def _states(self) -> list[PoolState]:
        return [PoolState(pool, self.free[i]) for i, pool in enumerate(self.ctx.pools)]

    def _running_view(self) -> list[RunningJob]:
        out = []
        for jid, r in self.running.items():
            pool = self.ctx.pools[r.pool]
            out.append(RunningJob(jid, r.job.tenant, pool.site, pool.name, r.job.spec.demand, r.start, r.end,
                                  r.job.spec.service_level))
        return out

    def _plan(self) -> int:
        if not self.queue:
            return 0
        now = self.clock.now
        self.plan_calls += 1
        plan = self.sched.plan_with_preemption(list(self.queue.values()), self._states(), now=now,
                                               running=self._running_view())
        for jid in plan.preempt:
            self._preempt(jid)
        placed = 0
        for p in plan.placements:
            n = int(p.job_id[1:])
            if p.start_at > now + 1e-6:  # deferred: stays queued, planned again each time (live-platform parity)
                if (p.start_at, n) not in self._wake:
                    self._wake.add((p.start_at, n))
                    self.push(p.start_at, WAKE, n)
                continue
            job = self.queue.pop(p.job_id)
            i = self.ctx.index[(p.site, p.pool)]
            placed += 1
            self._start(job, i, now)
        if self.queue and self.running:
            pass  # the next finish triggers a new plan
        elif self.queue:
            self.push(now + max(self.tick, 3600.0 - now % 3600.0), PLAN, 0)  # price hours change; retry hourly
            self.plan_pending = True
        return placed

    def _start(self, job: QueuedJob, i: int, now: float) -> None:
        spec = job.spec
        n = int(job.id[1:])
        net = self.ctx.network
        pool = self.ctx.pools[i]
        transfer = net.transfer_s(spec.data_site, pool.site, spec.data_gb) if spec.data_site in net.index else 0.0
        end = now + transfer + spec.duration_s / float(self.ctx.speed[i])
        self.free[i] = self.free[i] - spec.demand
        units = job_units(spec)
        self.busy[i] += units
        self.running[job.id] = _Run(job, i, now, end, units, now + transfer)
        if np.isnan(self.start[n]):
            self.start[n] = now
        self.site[n] = self.site_of_pool[i]
        self.push(end, FINISH, n)

    def _stop(self, jid: str, now: float) -> _Run:
        r = self.running.pop(jid)
        n = int(jid[1:])
        i = r.pool
        self.free[i] = self.free[i] + r.job.spec.demand
        self.busy[i] -= r.units
        speed = float(self.ctx.speed[i])
        begin = min(r.billed_from, now)
        exact = charge(self.ctx.price[i], r.units, speed, begin, now, self.ctx.grid.utc_offset_h)
        self.cost[n] += math.floor(exact + Fraction(1, 2))  # each attempt is billed in whole fen
        self.cost_exact[n] += float(exact)
        self.carbon[n] += self._carbon(i, r.units, begin, now)
        return r

    def _carbon(self, i: int, units: int, start: float, end: float) -> float:
        h0 = start / 3600.0 + self.ctx.grid.utc_offset_h
        h1 = end / 3600.0 + self.ctx.grid.utc_offset_h
        rows = np.array([i])
        kwh_ci = _integral(self.ctx.ci_cum, rows, np.array([h1])) - _integral(self.ctx.ci_cum, rows, np.array([h0]))
        return float(units * self.ctx.power[i] * kwh_ci[0])

    def _finish(self, n: int) -> None:
        jid = f"j{n}"
        r = self.running.get(jid)
        if r is None or abs(r.end - self.clock.now) > 1e-6:
            return  # a stale finish of a preempted attempt
        self._stop(jid, self.clock.now)
        self.end[n] = self.clock.now
        self.done += 1
        if self.progress and (self.done % 200 == 0 or self.done == len(self.trace)):
            self.progress(self.done, len(self.trace), self.clock.now - self.trace.t0)
        if self.queue:
            self._want_plan()

    def _preempt(self, jid: str) -> None:
        r = self._stop(jid, self.clock.now)
        self.preemptions += 1
        job = r.job
        self.queue[jid] = QueuedJob(job.id, job.spec, job.tenant, job.submitted_at, job.attempt + 1)

    def _sample(self) -> None:
        busy = np.bincount(self.site_of_pool, weights=self.busy, minlength=self.n_sites)
        cap = np.bincount(self.site_of_pool, weights=self.units_cap, minlength=self.n_sites)
        self.util_t.append(self.clock.now - self.trace.t0)
        self.util.append(np.divide(busy, cap, out=np.zeros_like(busy), where=cap > 0))

    def _result(self) -> SimResult:
        now = self.clock.now
        for jid in list(self.running):  # cut off at the end: bill what ran
            self._stop(jid, now)
        if self.progress:
            self.progress(self.done, len(self.trace), now - self.trace.t0)
        return SimResult(
            policy="", trace=self.trace.name, jobs=len(self.trace), submit=self.trace.t0 + self.trace.submit_s,
            start=self.start, end=self.end, cost_fen=self.cost, carbon_kg=self.carbon, deadline=self.deadline,
            site=self.site, preemptions=self.preemptions, sites=self.ctx.network.sites,
            cost_unrounded_fen=self.cost_exact,
            util_t=np.array(self.util_t), util=np.array(self.util).reshape(len(self.util_t), self.n_sites),
            plan_calls=self.plan_calls,
        )


def total_capacity(ctx: GridContext) -> Capacity:
    total = Capacity()
    for pool in ctx.pools:
        total = total + pool.capacity
    return total


def run_simulation(
    grid: GridModel | GridContext | GridFile | str | Path,
    trace: Trace | str | Path,
    policy: str | SchedulerFactory = "grid",
    *,
    progress: Progress | None = None,
    tenants: dict[str, TenantPolicy] | None = None,
    tick_s: float = 60.0,
    clock: SimClock | None = None,
) -> SimResult:
    """Replay ``trace`` on ``grid`` with ``policy`` (a ``POLICIES`` name or a factory of a context).

    ``grid`` may be a grid file path, ``trace`` a trace file path (``load_trace`` picks the format).
    ``progress(finished, total, simulated_seconds)`` is called every 200 finished jobs and at the end.
    """
    if isinstance(grid, (str, Path)):
        grid = load_grid(grid)
    if isinstance(grid, GridFile):
        grid = grid.model
    if isinstance(trace, (str, Path)):
        trace = load_trace(trace)
    ctx = grid if isinstance(grid, GridContext) else GridContext(grid)
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise InvalidSpec(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
        name, factory = policy, POLICIES[policy]
    else:
        name, factory = getattr(policy, "__name__", "custom"), policy
    sched = FairScheduler(factory(ctx), FairShare(total_capacity(ctx), tenants))
    result = Simulator(ctx, trace, sched, tick_s=tick_s, progress=progress, clock=clock).run()
    result.policy = name
    return result
