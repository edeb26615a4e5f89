"""The scheduler's fast paths: per-shape caches, the ranked walk, score matrices for many jobs at once.

The cost, carbon and latency terms of a job starting now depend on its
candidate set, its latency origin and its run time, not on its size: one
table per (candidate set, origin, weights) holds them for run times in 25 %
log steps clamped to 5 min..2 days, from per-pool cost and carbon computed
once for a window starting at the middle of the current quarter hour (plus
the engine wait, if any; the data transfer, seconds to minutes, does not
move it), reused across passes in that quarter hour.  Without engine waits
and data transfer the time term is speed_max / speed - 1 whatever the run
time, so all such jobs of a group and step rank the candidates alike: the
ranking is sorted once and each job walks it from the first pool not yet
found full for its demand (most jobs take this path).  Jobs with input data
elsewhere get exact score rows, one matrix per group for the next 16,384
jobs.  A deadline job is scored over a shortlist: the best 8 pools by cost,
carbon and latency terms at each start hour, and the 8 fastest (run time in
factor-2 steps), one matrix per group and step.  The chosen placements'
terms are computed exactly, for all placements of a pass in one pass at its
end.

With ``best_fit`` the pool chosen is then the tightest fit among the first
with room and the next ``PACK_LOOK`` with room that run the job no slower
(``_tightest_walk`` along a walk, ``_tightest`` over score rows).

``FastPaths`` holds these caches; ``policy.GridScheduler`` decides with them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from suanwang.domain.grid import Capacity
from suanwang.domain.job import JobSpec
from suanwang.domain.placement import Placement, QueuedJob
from suanwang.domain.scheduling.base import FreeState, Guard, PolicyBase
from suanwang.domain.scheduling.context import GridContext, integral, shape_key
from suanwang.domain.scheduling.scoring import (
    LOG_STEP,
    Q_HIGH,
    Q_LOW,
    Weights,
    bucket,
    ratio,
    ratio_many,
    score_many,
)
from suanwang.domain.scheduling.signals import GridModel, job_units

PACK_LOOK = 8  # best fit looks at this many pools with room past the first (a shortlist, as ``_short``'s 8)
# ... and only at those scored within this share of the best pool with room: packing may move a job to a pool
# somewhat dearer (or dirtier) for the holes it saves, never to one the price book makes much dearer (unbounded,
# a job went to a pool 3x the price of an idle one; bounded at 5 %, two more matrix cells lost a tick of wait).
PACK_SLACK = 0.25


def within_slack(score: float, best: float) -> bool:
    """``score`` (lower is better) is near enough to ``best`` for best fit to pick it."""
    return score <= best + PACK_SLACK * abs(best) + 1e-9


@dataclass(slots=True)
class _Shape:
    """What the scheduler works out once per job shape (the fields ``shape_key`` reads)."""

    idx: np.ndarray  # pools that could ever run it
    group: int  # id of (candidate set, latency origin): all its static terms, ranking and shortlist depend on
    demand: int  # id of (group, cores, memory, devices): what "found full" is remembered for
    data: bool  # input data elsewhere: a transfer time per pool
    bounded: bool  # a latency bound: never deferred
    fastest: float  # the highest speed among the candidates (0 without any)
    idx_list: list[int]


@dataclass(slots=True)
class _Walk:
    """One demand's walk down its group's ranking for one run-time step (the score is the same for every job)."""

    order: list[int]  # positions into idx, best first (finite scores only)
    idx: list[int]
    static: list[float]  # static terms per position
    dead: bytearray  # per position: full for this demand in this plan call (shared with ``_choose_ranked``)
    cursor: int = 0  # order[:cursor] is all full
    blocked: bytearray = field(default_factory=bytearray)  # guard: per position, refused to every job
    gives: int = -1  # ``FreeState.gives`` when ``blocked`` was started
    bcursor: int = 0  # order[:bcursor] is all full or blocked


@dataclass(slots=True)
class _Timed:
    """A deadline job's scores over its shortlist: starting now per pool, and the best later start."""

    idx: np.ndarray
    starts: np.ndarray
    now_score: np.ndarray  # per candidate, starting now (inf: not a candidate for this deadline)
    finish_now: np.ndarray  # per candidate, finish when starting now
    later: tuple[float, int, int]  # best (score, row, column) over later starts (inf: none)
    meets: bool  # some cell meets the deadline




class FastPaths(PolicyBase):
    """Caches and walks a scoring policy uses to place many jobs fast (see the module docstring)."""

    weights: Weights
    horizon_h: int
    best_fit: bool = False  # pack best fit among the near-best pools (``_tightest``; the policy decides)

    def __init__(self, grid: GridModel | GridContext) -> None:
        super().__init__(grid)
        self._static: dict[tuple[Any, ...], Any] = {}
        self._shortlist: dict[tuple[Any, ...], np.ndarray] = {}
        self._full: dict[tuple[Any, ...], Capacity] = {}
        self._transfer: dict[tuple[str, float], np.ndarray] = {}
        self._shapes: dict[tuple[Any, ...], _Shape] = {}
        self._ids: dict[object, int] = {}  # interned keys: candidate sets, groups, demands
        self._wkeys: dict[int, tuple[Weights, int]] = {}
        self._names = [(p.site, p.name) for p in self.ctx.pools]
        self._begin(0.0)

    def weights_for(self, job: QueuedJob) -> Weights:
        """The weights ``job`` is scored with (the policy decides)."""
        raise NotImplementedError

    def start_times(self, spec: JobSpec, now: float, *, all_hours: bool = False) -> np.ndarray:
        """The start times a job is scored for (the policy decides)."""
        raise NotImplementedError

    def _wk(self, w: Weights) -> int:
        """A small key for a weights object (hashing a dataclass per job is slow)."""
        hit = self._wkeys.get(id(w))  # holding ``w`` keeps its id from being reused
        if hit is None:
            hit = self._wkeys[id(w)] = (w, len(self._wkeys))
        return hit[1]
    def _intern(self, key: object) -> int:
        hit = self._ids.get(key)
        if hit is None:
            hit = self._ids[key] = len(self._ids)
        return hit

    def _info(self, spec: JobSpec) -> _Shape:
        hit = self._by_spec.get(id(spec))  # per plan call: the same spec object is asked about several times
        if hit is not None and hit[0] is spec:
            return hit[1]
        key = shape_key(spec)
        info = self._shapes.get(key)
        if info is None:
            if len(self._shapes) > 100_000:
                self._shapes.clear()
            idx = self.ctx.candidates(spec)
            net = self.ctx.network
            origin = spec.consumer_site if spec.consumer_site in net.index else ""
            group = self._intern(("group", self._intern(idx.tobytes()), origin))
            demand = self._intern(("demand", group, spec.cores, spec.memory_gb, spec.devices, spec.device_share,
                                   spec.device_memory_gb))
            data = bool(spec.data_site and spec.data_gb > 0 and spec.data_site in net.index)
            fastest = float(self.ctx.speed[idx].max()) if len(idx) else 0.0
            info = self._shapes[key] = _Shape(idx, group, demand, data, spec.latency_ms_max is not None, fastest,
                                              idx.tolist())
        self._by_spec[id(spec)] = (spec, info)
        return info

    def can_ever_run(self, spec: JobSpec) -> bool:
        """``PolicyBase.can_ever_run`` through the per-pass shape lookup (the pass asks about the spec again)."""
        return len(self._info(spec).idx) > 0

    def _begin(self, now: float) -> None:
        if len(self._static) > 50_000 or getattr(self, "_static_waits", False):
            self._static.clear()
        if len(self._ids) > 200_000 or len(self._wkeys) > 10_000:  # the cached tables' keys are renumbered
            self._ids.clear()
            self._wkeys.clear()
            self._shapes.clear()
            self._static.clear()
        self._static_waits = False  # set when a plan call sees engine waits: those make static terms per call
        self._shortlist.clear()
        self._full.clear()
        self._by_spec: dict[int, tuple[JobSpec, _Shape]] = {}
        self._pre: dict[str, np.ndarray] = {}
        self._timed: dict[str, _Timed] = {}
        # per group and weights: orders; per step too: rows as lists
        self._ranks: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._walks: dict[tuple[Any, ...], _Walk] = {}
        # per demand (cores, memory, devices) and pool: (its bookings, guard version, the guard's latest end)
        self._latest_end: dict[tuple[int, float, int], dict[int, tuple[int, int, float]]] = {}
        self._dead: dict[tuple[Any, ...], bytearray] = {}
        self._ordered: Sequence[QueuedJob] = ()
        self._pos: dict[str, int] = {}
        self._scanned = 0
        self._wk_plain = -1
        self._pending: tuple[list[Any], ...] = ([], [], [], [], [], [])  # terms, spec, pool, begin, transfer, score

    def _prepare(self, ordered: Sequence[QueuedJob]) -> None:
        """Remember the order so scores can be computed for many upcoming jobs at once."""
        self._ordered = ordered
        self._pos = {j.id: k for k, j in enumerate(ordered)}

    def _precompute(self, pos: int, free: FreeState, now: float, chunk: int = 16384) -> None:
        """Scores of the next ``chunk`` jobs, one matrix per group of jobs with the same candidates and weights.

        Jobs without a deadline whose score is the same for their whole group (no data transfer, no engine
        waits) need none: they walk their group's ranking (``_choose_fast``).
        """
        if pos < self._scanned:
            return
        end = min(len(self._ordered), pos + chunk)
        self._scanned = end
        ranked: dict[tuple[Any, ...], list[QueuedJob]] = {}
        timed: dict[tuple[Any, ...], list[QueuedJob]] = {}
        for job in self._ordered[pos:end]:
            spec = job.spec
            if job.gang or (spec.deadline is None and not free.any_wait and not (spec.data_site and spec.data_gb)):
                continue  # a gang member is scored alone; most jobs walk a ranking
            info = self._info(spec)
            if len(info.idx) == 0:
                continue
            w = self.weights_for(job)
            if spec.deadline is not None:
                timed.setdefault((info.group, self._wk(w), info.bounded, bucket(spec.duration_s, 2.0)),
                                 []).append(job)
            elif info.data or free.any_wait:
                ranked.setdefault((info.group, self._wk(w)), []).append(job)
        for js in ranked.values():
            rows = self._ranked_rows(js, self._info(js[0].spec), free, now)
            for k, job in enumerate(js):
                self._pre[job.id] = rows[k]
        for js in timed.values():
            for k in range(0, len(js), 256):  # bounded matrices: jobs x candidates x start times
                part = js[k:k + 256]
                for job, t in zip(part, self._timed_rows(part, self._info(part[0].spec), free, now), strict=True):
                    self._timed[job.id] = t

    def _ranked_rows(self, js: Sequence[QueuedJob], info: _Shape, free: FreeState, now: float) -> np.ndarray:
        """Score rows (jobs x candidates) for starting now: static terms per run-time step, exact time term."""
        w = self.weights_for(js[0])
        idx = info.idx
        dur = np.array([j.spec.duration_s for j in js])
        qs = [bucket(d, 1.25) for d in dur]
        first: dict[int, int] = {}
        for k, q in enumerate(qs):
            first.setdefault(q, k)
        table = np.stack([self._static_terms(js[k].spec, info, free, now, w) for k in first.values()])
        row_of = {q: r for r, q in enumerate(first)}
        statics = table[np.array([row_of[q] for q in qs])]
        t = free.wait[idx][None, :] + dur[:, None] / self.ctx.speed[idx][None, :]
        if any(self._info(j.spec).data for j in js):
            t = t + np.stack([self._transfer_s(j.spec, idx) for j in js])
        if w.time:
            statics = statics + w.time * (t / np.maximum(t.min(axis=1, keepdims=True), 1e-9) - 1.0)
        statics[~np.isfinite(t)] = np.inf
        out: np.ndarray = statics
        return out

    def _timed_rows(self, js: Sequence[QueuedJob], info: _Shape, free: FreeState, now: float,
                    idx: np.ndarray | None = None, gang: bool = False) -> list[_Timed]:
        """Scores of deadline jobs with the same candidates, weights and run-time step over their shortlist."""
        spec = js[0].spec
        w = self.weights_for(js[0])
        short = self._short(spec, info, info.idx if idx is None else idx, free, now, w, cache=idx is None)
        starts = self.start_times(spec, now, all_hours=True) if not gang else np.array([now])
        deadline = np.array([j.spec.deadline for j in js], dtype=float)
        dur = np.array([j.spec.duration_s for j in js])
        run = dur / float(self.ctx.speed[short].max())  # a later start meets its deadline only if it keeps
        valid = starts[None, :] + run[:, None] + np.maximum(run, 3600.0)[:, None] <= deadline[:, None] + 1e-6
        valid[:, 0] = True  # its margin even on the fastest pool
        starts = starts[:int(np.flatnonzero(valid.any(axis=0))[-1]) + 1]
        valid = valid[:, :len(starts)]
        units = np.array([job_units(j.spec) for j in js], dtype=float)
        transfer = (np.stack([self._transfer_s(j.spec, short) for j in js])
                    if any(self._info(j.spec).data for j in js) else np.zeros((len(js), len(short))))
        terms = self.ctx.evaluate_many(spec, short, free.wait, starts, now, dur, transfer, units)
        score, _, met = score_many(terms, deadline, valid, now, w)
        finish = terms["finish"][:, :, 0]
        later: list[tuple[float, int, int]] = [(math.inf, 0, 0)] * len(js)
        if len(starts) > 1:
            rest = score[:, :, 1:].reshape(len(js), -1)
            at = rest.argmin(axis=1)
            best = rest[np.arange(len(js)), at]
            s = len(starts) - 1
            later = list(zip(best.tolist(), (at // s).tolist(), (at % s + 1).tolist(), strict=True))
        return [_Timed(short, starts, score[k, :, 0], finish[k], later[k], bool(met[k])) for k in range(len(js))]

    def _transfer_s(self, spec: JobSpec, idx: np.ndarray) -> np.ndarray:
        if not (spec.data_site and spec.data_gb > 0 and spec.data_site in self.ctx.network.index):
            return np.zeros(len(idx))
        k = (spec.data_site, spec.data_gb)
        row = self._transfer.get(k)
        if row is None:
            row = self._transfer[k] = self.ctx.network.transfer_row(spec.data_site, spec.data_gb)
        out: np.ndarray = row[self.ctx.site_idx[idx]]
        return out

    def _static_terms(self, spec: JobSpec, info: _Shape, free: FreeState, now: float, w: Weights) -> np.ndarray:
        """w_cost T_cost + w_carbon T_carbon + w_latency T_lat for starting now, run time in 25 % log steps."""
        out: np.ndarray = self._static_table(spec, info, free, now, w)[bucket(spec.duration_s, 1.25) - Q_LOW]
        return out

    def _static_table(self, spec: JobSpec, info: _Shape, free: FreeState, now: float, w: Weights) -> np.ndarray:
        """Static terms of a group for every run-time step (rows), reused within a quarter hour.

        The terms are ratios to the best candidate, so they depend on the candidate set, the latency origin and
        the run time, not on the job's size: one table serves every shape of the group, and the per-pool cost
        and carbon behind it serve every group.
        """
        k = (info.group, self._wk(w), math.floor(now / 900.0))
        hit: np.ndarray | None = self._static.get(k)
        if hit is not None:
            return hit
        cost, carbon, ok = self._pool_table(spec, free, now)
        idx = info.idx
        cost, carbon, ok = cost[:, idx], carbon[:, idx], ok[:, idx]
        table = w.cost * ratio_many(cost, ok) + w.carbon * ratio_many(carbon, ok)
        if w.latency and spec.consumer_site in self.ctx.network.index:
            net = self.ctx.network
            latency = net.latency_ms[net.index[spec.consumer_site], self.ctx.site_idx[idx]]
            table = table + w.latency * ratio_many(np.broadcast_to(latency, cost.shape), ok)
        self._static[k] = table
        return table

    def _pool_table(self, spec: JobSpec, free: FreeState, now: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cost and carbon of one unit on every pool for every run-time step, starting now (or mid-quarter hour)."""
        if free.any_wait:
            self._static_waits = True
        k = ("pools", math.floor(now / 900.0))
        hit = self._static.get(k)
        if hit is None:
            at = now if free.any_wait else math.floor(now / 900.0) * 900.0 + 450.0
            every = np.arange(len(self.ctx.pools))
            steps = 1.25 ** np.arange(Q_LOW, Q_HIGH + 1, dtype=float)
            terms = self.ctx.evaluate_many(spec, every, free.wait, np.array([at]), at, steps,
                                           np.zeros((len(steps), len(every))), np.ones(len(steps)))
            hit = self._static[k] = (terms["cost_fen"][:, :, 0], terms["carbon_kg"][:, :, 0],
                                     np.isfinite(terms["finish"][:, :, 0]))
        return hit

    def _dead_for(self, info: _Shape, wk: int) -> bytearray:
        """Per demand and weights: candidates found full for that demand in this plan call."""
        dead = self._dead.get((info.demand, wk))
        if dead is None:
            dead = self._dead[(info.demand, wk)] = bytearray(len(info.idx))
        return dead

    def _choose_fast(self, job: QueuedJob, info: _Shape, free: FreeState, now: float, w: Weights,
                     wk: int, guard: Guard | None = None) -> tuple[int, Placement] | None:
        """The best candidate with room (and the guard's leave), walking the group's ranking (its score is the
        same for every job)."""
        spec = job.spec
        q = round(math.log(min(max(spec.duration_s, 300.0), 172800.0)) / LOG_STEP[1.25])  # bucket, inlined
        walk = self._walks.get((info.demand, wk, q))
        if walk is None:
            walk = self._walks[(info.demand, wk, q)] = self._new_walk(spec, info, free, now, w, wk, q)
        order, idx, dead = walk.order, walk.idx, walk.dead
        n = len(order)
        c = walk.cursor
        while c < n and dead[order[c]]:
            c += 1
        walk.cursor = c
        if guard is not None:
            return self._walk_guarded(job, info, walk, free, now, w, guard)
        cores, mem, dev = free.cores, free.mem, free.dev
        need_c, need_m, need_d = spec.cores, spec.memory_gb - 1e-9, spec.devices
        for pos in range(c, n):
            r = order[pos]
            if dead[r]:
                continue
            i = idx[r]
            if cores[i] >= need_c and mem[i] >= need_m and dev[i] >= need_d:
                if self.best_fit:
                    r = self._tightest_walk(spec, walk, pos, r, free, now)
                    i = idx[r]
                return i, self._walk_placement(job, info, walk, r, i, now, w)
            dead[r] = 1
        return None

    def _tightest_walk(self, spec: JobSpec, walk: _Walk, pos: int, r: int, free: FreeState, now: float,
                       guard: Guard | None = None, ends: dict[int, tuple[int, int, float]] | None = None) -> int:
        """Best fit along the walk: from the first pool with room (``order[pos]`` = ``r``) and the next
        ``PACK_LOOK`` pools with room that run the job no slower, the one that leaves room for the fewest further
        copies of the job's demand (ties: the better ranked).  Inlined: it runs once per placement."""
        order, idx, dead = walk.order, walk.idx, walk.dead
        speed = self.ctx.speed_list
        cores, mem, dev = free.cores, free.mem, free.dev
        c, m, g = spec.cores, spec.memory_gb, spec.devices
        inf = math.inf

        def left(i: int) -> float:
            k = (float(cores[i]) - c) // c if c else inf
            if m > 0:
                k = min(k, (float(mem[i]) - m + 1e-9) // m)
            if g:
                k = min(k, (float(dev[i]) - g) // g)
            return k

        best_r, best_k = r, left(idx[r])
        if best_k <= 0:
            return r
        floor = speed[idx[r]]
        static, best = walk.static, walk.static[r]
        seen = 0
        d = spec.duration_s
        need_m = m - 1e-9
        for p in range(pos + 1, len(order)):
            q = order[p]
            if dead[q]:
                continue
            i = idx[q]
            if not (cores[i] >= c and mem[i] >= need_m and dev[i] >= g):
                dead[q] = 1  # full for this demand for the rest of the plan call, as the walk itself marks it
                continue
            if speed[i] < floor:
                continue
            if not within_slack(static[q], best):
                continue
            if guard is not None and ends is not None:  # the guard's leave, cached as the guarded walk caches it
                hit = ends.get(i)
                if hit is None or hit[0] != free.changes[i] or hit[1] != guard.version:
                    hit = ends[i] = (free.changes[i], guard.version, guard.latest_end(spec, i))
                if now + d / speed[i] > hit[2]:
                    continue
            seen += 1
            k = left(i)
            if k < best_k:
                best_r, best_k = q, k
                if k <= 0:
                    break
            if seen >= PACK_LOOK:
                break
        return best_r

    def _walk_guarded(self, job: QueuedJob, info: _Shape, walk: _Walk, free: FreeState, now: float, w: Weights,
                      guard: Guard) -> tuple[int, Placement] | None:
        """``_choose_fast`` under a guard.  A pool the guard refuses is skipped for this job only, not marked full;
        one it refuses to every job of the demand (latest end not after now) is skipped by the walk's own
        cursor until capacity is given back (``FreeState.gives``): taking capacity and adding heads only ever
        make the guard stricter."""
        spec = job.spec
        order, idx, dead = walk.order, walk.idx, walk.dead
        n = len(order)
        if walk.gives != free.gives:
            walk.blocked, walk.gives, walk.bcursor = bytearray(len(idx)), free.gives, 0
        blocked = walk.blocked
        d = spec.duration_s
        sure = now + d / info.fastest > now  # every candidate's end is after now: a "not after now" refuses it
        c = max(walk.cursor, walk.bcursor) if sure else walk.cursor
        if sure:
            while c < n and (dead[order[c]] or blocked[order[c]]):
                c += 1
            walk.bcursor = c
        cores, mem, dev = free.cores, free.mem, free.dev
        need_c, need_m, need_d = spec.cores, spec.memory_gb - 1e-9, spec.devices
        ends = self._latest_end.get((spec.cores, spec.memory_gb, spec.devices))  # shared by the demand's walks
        if ends is None:
            ends = self._latest_end[(spec.cores, spec.memory_gb, spec.devices)] = {}
        changes, version, speed = free.changes, guard.version, self.ctx.speed_list
        for pos in range(c, n):
            r = order[pos]
            if dead[r] or (sure and blocked[r]):
                continue
            i = idx[r]
            if cores[i] >= need_c and mem[i] >= need_m and dev[i] >= need_d:
                hit = ends.get(i)  # the demand's latest end there, kept while the pool and the guard stay
                if hit is None or hit[0] != changes[i] or hit[1] != version:
                    hit = ends[i] = (changes[i], version, guard.latest_end(spec, i))
                if now + d / speed[i] > hit[2]:
                    if hit[2] <= now:
                        blocked[r] = 1
                    continue  # not for this job; a shorter one may start there
                if self.best_fit:
                    r = self._tightest_walk(spec, walk, pos, r, free, now, guard, ends)
                    i = idx[r]
                return i, self._walk_placement(job, info, walk, r, i, now, w)
            dead[r] = 1
        return None

    def _walk_placement(self, job: QueuedJob, info: _Shape, walk: _Walk, r: int, i: int, now: float,
                        w: Weights) -> Placement:
        """``_pending_placement`` for a start now without transfer or wait, with the walk's score."""
        spec = job.spec
        score = walk.static[r]
        if w.time:
            d = spec.duration_s
            score += w.time * ((d / self.ctx.speed_list[i]) / max(d / info.fastest, 1e-9) - 1.0)
        terms: dict[str, float] = {}
        all_terms, specs, pools, begins, transfers, scores = self._pending
        all_terms.append(terms)
        specs.append(spec)
        pools.append(i)
        begins.append(now)
        transfers.append(0.0)
        scores.append(score)
        site, name = self._names[i]
        return Placement(job.id, site, name, now, terms)

    def _new_walk(self, spec: JobSpec, info: _Shape, free: FreeState, now: float, w: Weights, wk: int,
                  q: int) -> _Walk:
        rows = self._ranks.get((info.group, wk, q))
        if rows is None:
            table = self._static_table(spec, info, free, now, w)
            hit = self._ranks.get((info.group, wk))
            if hit is None:  # every run-time step of the group at once
                score = table
                if w.time:  # without waits or transfers the time term is speed_max / speed - 1 for any run time
                    t = 1.0 / self.ctx.speed[info.idx]
                    score = table + w.time * (t / t.min() - 1.0)[None, :]
                hit = self._ranks[(info.group, wk)] = (np.argsort(score, axis=1, kind="stable"),
                                                       np.isfinite(score).sum(axis=1))
            order, finite = hit
            row = q - Q_LOW
            rows = self._ranks[(info.group, wk, q)] = (order[row, :finite[row]].tolist(), table[row].tolist())
        return _Walk(rows[0], info.idx_list, rows[1], self._dead_for(info, wk))

    def _choose_ranked(
        self, job: QueuedJob, info: _Shape, free: FreeState, now: float, wk: int, allowed: np.ndarray | None,
    ) -> tuple[int, Placement] | None:
        spec = job.spec
        idx = info.idx
        score = self._pre.pop(job.id, None)
        if score is None and job.id in self._pos:
            self._precompute(self._pos[job.id], free, now)
            score = self._pre.pop(job.id, None)
        if score is None:
            score = self._ranked_rows([job], info, free, now)[0]
        dead = np.frombuffer(self._dead_for(info, wk), dtype=bool)
        if dead.any():
            score = np.where(dead, np.inf, score)
        if allowed is not None:
            score = np.where(allowed, score, np.inf)
        packing = self.best_fit and not spec.device_share
        for _ in range(8):
            r = int(np.argmin(score))
            if not np.isfinite(score[r]):
                return None
            i = int(idx[r])
            if free.fits_one(i, spec):
                if packing:
                    r = self._tightest(spec, idx, free, score, r)
                    i = int(idx[r])
                return i, self._pending_placement(job, i, free, now, now, self._transfer_one(spec, i), float(score[r]))
            score[r] = np.inf
            dead[r] = True  # full for this demand for the rest of this plan call
        fits = free.fits(idx, spec)
        dead |= ~fits
        score = np.where(fits, score, np.inf)
        r = int(np.argmin(score))
        if not np.isfinite(score[r]):
            return None
        if packing:
            r = self._tightest(spec, idx, free, score, r)
        i = int(idx[r])
        return i, self._pending_placement(job, i, free, now, now, self._transfer_one(spec, i), float(score[r]))

    def _tightest(self, spec: JobSpec, idx: np.ndarray, free: FreeState, score: np.ndarray, r: int,
                  finish: np.ndarray | None = None) -> int:
        """Best fit among the ``PACK_LOOK`` + 1 best-scored candidates with room that finish no later than
        candidate ``r`` (the best one with room): the one leaving room for the fewest
        further copies of the job's demand; ties go to the better score."""
        if finish is None:
            finish = free.wait[idx] + self._transfer_s(spec, idx) + spec.duration_s / self.ctx.speed[idx]
        ok = np.isfinite(score) & (finish <= finish[r] + 1e-6) & (score <= score[r] + PACK_SLACK * abs(score[r]) + 1e-9)
        ok[r] = True
        rows = np.flatnonzero(ok)
        if len(rows) > 1:
            rows = rows[free.fits(idx[rows], spec)]
        if len(rows) <= 1:
            return r
        rows = rows[np.argsort(score[rows], kind="stable")[:PACK_LOOK + 1]]
        i = idx[rows]
        left = np.full(len(rows), np.inf)
        if spec.cores:
            left = np.minimum(left, (free.cores[i] - spec.cores) // spec.cores)
        if spec.memory_gb > 0:
            left = np.minimum(left, (free.mem[i] - spec.memory_gb + 1e-9) // spec.memory_gb)
        if spec.devices:
            left = np.minimum(left, (free.dev[i] - spec.devices) // spec.devices)
        return int(rows[int(np.argmin(left))])  # argmin: the first (best-scored) of the tightest

    def _transfer_one(self, spec: JobSpec, i: int) -> float:
        if not (spec.data_site and spec.data_gb > 0 and spec.data_site in self.ctx.network.index):
            return 0.0
        return float(self._transfer_s(spec, np.array([i]))[0])

    def _pending_placement(self, job: QueuedJob, i: int, free: FreeState, now: float, start: float,
                           transfer: float, score: float) -> Placement:
        """The placement now; its predicted terms are filled in for all placements at once at the end (``_end``)."""
        begin = max(start, now + (float(free.wait[i]) if free.any_wait else 0.0) + transfer)
        terms: dict[str, float] = {}
        all_terms, specs, pools, begins, transfers, scores = self._pending
        all_terms.append(terms)
        specs.append(job.spec)
        pools.append(i)
        begins.append(begin)
        transfers.append(transfer)
        scores.append(score)
        pool = self.ctx.pools[i]
        return Placement(job.id, pool.site, pool.name, start, terms)

    def _end(self) -> None:
        """Exact predicted terms of this call's placements (one vectorised pass instead of one per job)."""
        self._by_spec.clear()
        (all_terms, specs, pools, begins, transfers, scores), self._pending = self._pending, ([], [], [], [], [], [])
        if not all_terms:
            return
        ctx = self.ctx
        net = ctx.network
        m = len(all_terms)
        i = np.array(pools, dtype=np.int64)
        begin = np.array(begins, dtype=float)
        dur = np.fromiter((s.duration_s for s in specs), dtype=float, count=m)
        units = np.fromiter((job_units(s) for s in specs), dtype=float, count=m)
        origin = np.fromiter((net.index.get(s.consumer_site, -1) for s in specs), dtype=np.int64, count=m)
        run = dur / ctx.speed[i]
        finish = begin + run
        off = ctx.grid.utc_offset_h
        h0, h1 = begin / 3600.0 + off, finish / 3600.0 + off
        rows = np.concatenate((i, i + len(ctx.pools)))
        diff = (integral(ctx.both_cum, rows, np.concatenate((h1, h1)))
                - integral(ctx.both_cum, rows, np.concatenate((h0, h0))))
        cost = units * dur / 3600.0 * diff[:m] / np.maximum(h1 - h0, 1e-12)
        carbon = units * ctx.power[i] * diff[m:]
        latency = np.where(origin >= 0, net.latency_ms[np.maximum(origin, 0), ctx.site_idx[i]], 0.0)
        for terms, spec, c, k, lat, tr, rn, f, sc in zip(all_terms, specs, cost.tolist(), carbon.tolist(),
                                                          latency.tolist(), transfers, run.tolist(), finish.tolist(),
                                                          scores, strict=True):
            terms.update(cost_fen=c, carbon_kg=k, latency_ms=lat, transfer_s=tr, run_s=rn, finish_at=f, score=sc)
            if spec.deadline is not None:
                terms["deadline_miss"] = 1.0 if f > spec.deadline + 1e-6 else 0.0

    def _short(self, spec: JobSpec, info: _Shape, idx: np.ndarray, free: FreeState, now: float, w: Weights,
               *, cache: bool, k: int = 8) -> np.ndarray:
        """For deferrable jobs on large grids: the best ``k`` pools at each start hour, and the ``k`` fastest."""
        if len(idx) <= 4 * k:
            return idx
        q = bucket(spec.duration_s, 2.0)
        ck = (info.group, self._wk(w), q) if cache else None
        hit = self._shortlist.get(ck) if ck is not None else None
        if hit is not None:
            return hit
        starts = now + 3600.0 * np.arange(self.horizon_h + 1)
        terms = self.ctx.evaluate(spec, idx, free.wait, starts, now, 2.0**q, transfer=np.zeros(len(idx)))
        keep = np.zeros(len(idx), dtype=bool)
        ok = np.isfinite(terms["finish"])
        static = (w.cost * ratio(terms["cost_fen"], ok) + w.carbon * ratio(terms["carbon_kg"], ok)
                  + w.latency * ratio(np.asarray(terms["latency_ms"], dtype=float), ok))
        keep[np.argpartition(static, k - 1, axis=0)[:k].ravel()] = True  # best k at each start hour
        keep[np.argpartition(terms["finish"][:, 0], k - 1)[:k]] = True  # and the k fastest
        short = idx[keep]
        if ck is not None:
            self._shortlist[ck] = short
        return short
