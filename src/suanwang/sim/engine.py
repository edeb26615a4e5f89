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

A job no pool can run, or whose deadline no pool can meet, is refused at its
submit as the platform's ``check_submit`` refuses it (the same gate for every
policy), counted in ``refused`` and never queued: it is not re-planned every
pass and is left out of waits and misses.

Billing is exact: ``fen = round_half_up(sum_h price_h * SCU-seconds_h / 3600)``
with SCU-seconds = units x speed x seconds in each local hour, using integers
and fractions; carbon is kg CO2 = units x power_kw x hours x kg/kWh.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from suanwang.domain.fairness import FairScheduler, FairShare, RunningJob, TenantPolicy
from suanwang.domain.grid import Capacity
from suanwang.domain.job import JobSpec
from suanwang.domain.packing import WHOLE, Sharing, SharingMode, fragmentation
from suanwang.domain.placement import PoolState, QueuedJob, mib
from suanwang.domain.scheduler import (
    POLICIES,
    GridContext,
    GridModel,
    GridScheduler,
    SchedulerFactory,
    _integral,
    job_units,
)
from suanwang.errors import InvalidSpec, Unplaceable
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
    refused: np.ndarray | None = None  # bool per job: refused at submit (no pool can run it / meet its deadline)
    util_cards: np.ndarray | None = None  # [samples] busy share of the grid's cards
    util_cores: np.ndarray | None = None  # [samples] busy share of the cores of CPU pools (cards' cores go with them)
    frag_cards: np.ndarray | None = None  # [samples] GPU fragmentation of the shared pools (0 without any)
    ended_at: float = math.nan  # simulated time the replay stopped (s, Unix)
    cost_unrounded_fen: np.ndarray | None = None  # per job, before rounding each attempt to whole fen
    extra: dict[str, float | None] = field(default_factory=dict)

    @property
    def accepted(self) -> np.ndarray:
        """Jobs the platform accepted at submit (bool per job)."""
        return np.ones(self.jobs, dtype=bool) if self.refused is None else ~self.refused

    @property
    def wait_s(self) -> np.ndarray:
        """Wait of each started job (nan: refused, or never started)."""
        return self.start - self.submit

    @property
    def censored_wait_s(self) -> np.ndarray:
        """Wait of every accepted job; one never started counts its wait so far, to the end of the replay."""
        end = self.ended_at if not math.isnan(self.ended_at) else float(np.nanmax(self.start, initial=0.0))
        w = np.where(np.isnan(self.start), end - self.submit, self.start - self.submit)
        return np.where(self.accepted, w, np.nan)

    @property
    def deadline_misses(self) -> int:
        has = ~np.isnan(self.deadline) & self.accepted
        late = np.isnan(self.end) | (self.end > self.deadline + 1e-6)
        return int(np.sum(has & late))

    def summary(self) -> dict[str, Any]:  # numbers and names; None where a figure is not computable
        """Figures of the replay; waits count accepted jobs, those never started with their wait so far."""
        w = self.censored_wait_s
        ok = ~np.isnan(w)
        has = ~np.isnan(self.deadline)
        cards = self.util_cards if self.util_cards is not None and len(self.util_cards) else np.zeros(1)
        cores = self.util_cores if self.util_cores is not None and len(self.util_cores) else np.zeros(1)
        return {
            "policy": self.policy,
            "trace": self.trace,
            "jobs": self.jobs,
            "refused": int(self.jobs - self.accepted.sum()),
            "finished": int(np.sum(~np.isnan(self.end))),
            "never_started": int(np.sum(self.accepted & np.isnan(self.start))),
            "cost_fen": int(self.cost_fen.sum()),
            "cost": int(self.cost_fen.sum()),
            "carbon_kg": round(float(self.carbon_kg.sum()), 3),
            "wait_mean_s": _stat(w[ok], None),
            "wait_p50_s": _stat(w[ok], 50),
            "wait_p99_s": _stat(w[ok], 99),
            "wait_p50_deadline_s": _stat(w[ok & has], 50),
            "wait_p99_deadline_s": _stat(w[ok & has], 99),
            "wait_p50_no_deadline_s": _stat(w[ok & ~has], 50),
            "wait_p99_no_deadline_s": _stat(w[ok & ~has], 99),
            "deadline_misses": self.deadline_misses,
            "preemptions": self.preemptions,
            "util_cards_mean": round(float(np.mean(cards)), 4),
            "util_cores_mean": round(float(np.mean(cores)), 4),
            "gpu_fragmentation_mean": round(float(np.mean(self.frag_cards)), 4)
            if self.frag_cards is not None and len(self.frag_cards) else 0.0,
            "makespan_s": round(float(np.nanmax(self.end) - self.submit.min()), 1) if np.any(~np.isnan(self.end))
            else 0.0,
            **self.extra,
        }


def _stat(x: np.ndarray, q: float | None) -> float:
    if not len(x):
        return 0.0
    return round(float(x.mean() if q is None else np.percentile(x, q)), 3)


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
        self.cards_cap = float(sum(pool.capacity.devices for pool in ctx.pools))
        self.cores_cap = float(sum(pool.capacity.cores for pool in ctx.pools if pool.capacity.devices == 0))
        self.busy_cards = 0.0
        self.busy_cores = 0.0
        self.util_cards: list[float] = []
        self.util_cores: list[float] = []
        self.frag_cards: list[float] = []  # GPU fragmentation of the shared pools (domain.packing.fragmentation)
        self.cards: dict[int, dict[int, list[int]]] = {i: {} for i, p in enumerate(ctx.pools) if p.sharing.shares}
        self.card_of: dict[str, int] = {}
        self.refused = np.zeros(n, dtype=bool)
        self._gate = GridScheduler(ctx)  # the submit check the platform runs, the same for every policy
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
        self.plan_at = math.inf  # when the next plan is due; a submit or a finish brings it forward
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
                job = tr.job(arg)
                try:
                    self._gate.check_submit(job.spec, now=t)
                except Unplaceable:
                    self.refused[arg] = True  # refused as submit refuses it: never queued
                    self.done += 1
                    continue
                self.queue[job.id] = job
                self._want_plan()
            elif kind == WAKE:
                self._wake.discard((t, arg))
                if f"j{arg}" in self.queue:  # its planned start: plan again (it may have started earlier)
                    idle_plans = 0
                    self._want_plan()
            elif kind == PLAN:
                if t != self.plan_at:
                    continue  # superseded by an earlier plan
                self.plan_at = math.inf
                placed = self._plan()
                idle_plans = 0 if placed or self.running else idle_plans + 1
            elif kind == SAMPLE:
                self._sample()
                if self.running or self.queue or self.events:
                    self.push(t + self.sample_every, SAMPLE, 0)
            if idle_plans > 2 and not self.running and not any(k in (SUBMIT, WAKE, FINISH)
                                                               for _, k, _, _ in self.events):
                break  # what is left in the queue can run nowhere
        return self._result()

    def _want_plan(self, at: float | None = None) -> None:
        """A plan at the next tick (or ``at``), unless one is due sooner.

        A later retry (the hourly one of an idle grid) never holds back the
        plan a new submit or a finish asks for: that would leave arrivals
        waiting for the next hour on an idle grid.
        """
        now = self.clock.now
        t = at if at is not None else now if self.tick <= 0 else math.ceil(now / self.tick) * self.tick
        if t < self.plan_at:
            self.plan_at = t
            self.push(t, PLAN, 0)

    def _states(self) -> list[PoolState]:
        return [PoolState(pool, self.free[i], cards=tuple((c, u, m) for c, (u, m) in sorted(self.cards[i].items()))
                          if i in self.cards else ()) for i, pool in enumerate(self.ctx.pools)]

    def _hold_card(self, i: int, spec: JobSpec, card: int, sign: int) -> None:
        """A fraction joins (+1) or leaves (-1) its card; a card that opens or empties is one whole card less or
        more (``FreeState``'s bookkeeping, as services.scheduling rebuilds it from the jobs)."""
        cards = self.cards[i]
        granted = self.ctx.pools[i].sharing.granted(spec.device_share, mib(spec.device_memory_gb))
        share, held = granted if granted is not None else (spec.device_share, 0)
        f = self.free[i]
        if sign > 0 and card not in cards:
            cards[card] = [0, 0]
            self.free[i] = Capacity(f.cores, f.memory_gb, f.devices - 1)
        cards[card][0] += sign * share
        cards[card][1] += sign * held
        if cards[card][0] <= 0:
            del cards[card]
            self.free[i] = Capacity(f.cores, f.memory_gb, f.devices + 1)

    def gpu_fragmentation(self) -> float:
        """Share of the shared pools' free card capacity a whole-card job cannot use (domain.packing)."""
        used: list[int] = []
        for i, cards in self.cards.items():
            used += [u for u, _ in cards.values()] + [0] * int(self.free[i].devices)
        return fragmentation(used)

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
            self._start(job, i, now, p.card)
        if self.queue and self.running:
            pass  # the next finish triggers a new plan
        elif self.queue:
            self._want_plan(now + max(self.tick, 3600.0 - now % 3600.0))  # price hours change; retry hourly
        return placed

    def _start(self, job: QueuedJob, i: int, now: float, card: int = -1) -> None:
        spec = job.spec
        if spec.device_share:
            self._hold_card(i, spec, card, +1)
            self.card_of[job.id] = card
        n = int(job.id[1:])
        net = self.ctx.network
        pool = self.ctx.pools[i]
        transfer = net.transfer_s(spec.data_site, pool.site, spec.data_gb) if spec.data_site in net.index else 0.0
        end = now + transfer + spec.duration_s / float(self.ctx.speed[i])
        if not spec.device_share:
            self.free[i] = self.free[i] - spec.demand
        else:  # the card's share is booked above; cores and memory as any job's
            self.free[i] = self.free[i] - Capacity(spec.cores, spec.memory_gb, 0)
        units = job_units(spec)
        self.busy[i] += units
        self.busy_cards += spec.milli_devices / WHOLE
        self.busy_cores += spec.cores if spec.devices == 0 else 0
        self.running[job.id] = _Run(job, i, now, end, units, now + transfer)
        if np.isnan(self.start[n]):
            self.start[n] = now
        self.site[n] = self.site_of_pool[i]
        self.push(end, FINISH, n)

    def _stop(self, jid: str, now: float) -> _Run:
        r = self.running.pop(jid)
        n = int(jid[1:])
        i = r.pool
        spec = r.job.spec
        if spec.device_share:
            self.free[i] = self.free[i] + Capacity(spec.cores, spec.memory_gb, 0)
            self._hold_card(i, spec, self.card_of.pop(jid), -1)
        else:
            self.free[i] = self.free[i] + spec.demand
        self.busy[i] -= r.units
        self.busy_cards -= spec.milli_devices / WHOLE
        self.busy_cores -= r.job.spec.cores if r.job.spec.devices == 0 else 0
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
        self.util_cards.append(self.busy_cards / self.cards_cap if self.cards_cap else 0.0)
        self.frag_cards.append(self.gpu_fragmentation() if self.cards else 0.0)
        self.util_cores.append(self.busy_cores / self.cores_cap if self.cores_cap else 0.0)

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
            plan_calls=self.plan_calls, refused=self.refused, util_cards=np.array(self.util_cards),
            util_cores=np.array(self.util_cores), ended_at=now, frag_cards=np.array(self.frag_cards),
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
    if not isinstance(grid, GridContext):
        grid = shared_for(grid, trace)
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


def shared_for(grid: GridModel, trace: Trace) -> GridModel:
    """A trace that asks for fractions of cards replays on a grid whose card pools share them (time-slicing),
    unless the grid file already says how a pool shares."""
    frac = trace.devices[(trace.devices > 0) & (trace.devices < 1)]
    if not len(frac) or any(p.sharing.shares for p in grid.pools):
        return grid
    ts = Sharing(SharingMode.TIME_SLICING)
    pools = tuple(dataclasses.replace(p, sharing=ts) if p.capacity.devices > 0 and p.device_memory_gb > 0 else p
                  for p in grid.pools)
    return dataclasses.replace(grid, pools=pools)
