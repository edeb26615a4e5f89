"""Queues and fairness: who goes next, who may backfill, whom to preempt.

Queues.  Each tenant has one queue; its jobs wait in (job priority desc,
latest start time for jobs with a deadline — earliest deadline first —, then
submit time, id) order.  A tenant's ``TenantPolicy.priority`` puts its queue
in a tier: every job of a higher tier is offered capacity before any job of a
lower tier.

Fair share: weighted Dominant Resource Fairness (Ghodsi et al., NSDI 2011).
A tenant's dominant share is the largest fraction it uses of any resource
(cores, memory, devices) of the grid's total, divided by its configured
``share``::

    ds(t) = max(used_cores/total_cores, used_mem/total_mem, used_dev/total_dev) / share(t)

Within a tier, the next job offered comes from the tenant with the lowest
``ds`` (ties by tenant name), and that tenant's ``ds`` grows by the job's
demand before the next pick (progressive filling).  Urgent jobs come first
within their tier: jobs the inner policy marks urgent (the grid scheduler:
deadline jobs whose slack is down to their margin, see its ``urgency``),
across tenants, earliest latest start first, within quota; their demand
counts toward their tenants' shares before the DRF picks.  Deadline-unaware
policies mark none.  Over a long run each
tenant's dominant share tends to ``share / sum(shares)`` of the grid while
all are backlogged.  ``quota`` caps what a tenant may use at once; a job that
would exceed it waits.

Backfill that never delays the head of a higher queue.  When a job cannot be
placed, it becomes a *blocked head*; for each pool that could ever run it we
compute its shadow time (EASY backfilling): the earliest time the pool's free
capacity plus the running jobs' releases cover its demand.  A later job may
then start now on a pool only if the head could never run there, or the later
job ends before the shadow time, or what it takes leaves enough for the head
at the shadow time.  The guard filters starts now, as room now does: a start
later than now takes nothing now and is not guarded.  A job no pool can ever
run is left out of the pass (``Plan.unrunnable``): it is neither a head nor
counted toward its tenant's share.

Preemption.  A guaranteed job that cannot be placed may evict spot jobs on a
pool where free capacity plus the spot jobs' capacity covers it.  The victims
are the most recently started spot jobs (least work lost), then pruned so
that no victim could be spared: exactly what the job needs, no more.  The
caller requeues the victims and bills them only for what ran.

Gangs are placed all-or-nothing by the inner scheduler (``QueuedJob.gang``).
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from suanwang.domain.grid import Capacity, PoolId, SiteId
from suanwang.domain.job import JobSpec
from suanwang.domain.placement import Placement, PoolState, QueuedJob
from suanwang.domain.resources import ServiceLevel
from suanwang.domain.scheduling.base import FreeState, PolicyBase, gang_units
from suanwang.errors import InvalidSpec


@dataclass(frozen=True, slots=True)
class TenantPolicy:
    """A tenant's fair-share weight, queue tier and optional quota."""

    share: float = 1.0
    priority: int = 0
    quota: Capacity | None = None

    def __post_init__(self) -> None:
        if self.share <= 0:
            raise InvalidSpec("a tenant's share must be positive")


@dataclass(frozen=True, slots=True)
class RunningJob:
    """A job holding capacity now, as fairness and preemption see it."""

    id: str
    tenant: str
    site: SiteId
    pool: PoolId
    demand: Capacity
    started_at: float
    expected_end: float
    service_level: ServiceLevel = ServiceLevel.STANDARD


@dataclass(frozen=True, slots=True)
class _Head:
    """A blocked job: per pool its shadow start time (inf: never) and the releases counted by then."""

    job: QueuedJob
    shadow: np.ndarray
    released: np.ndarray  # [cores, memory, devices] x pools


@dataclass(frozen=True, slots=True)
class Plan:
    """Placements, and the running jobs to preempt first (requeue them, bill what ran)."""

    placements: list[Placement]
    preempt: list[str] = field(default_factory=list)
    unrunnable: list[str] = field(default_factory=list)  # queued jobs no pool can ever run (left out)


def _queue_key(job: QueuedJob) -> tuple[int, float, float, str]:
    """A tenant's queue: priority, then jobs with deadlines by latest start (EDF), then submit time."""
    latest = job.spec.deadline - job.spec.duration_s if job.spec.deadline is not None else float("inf")
    return (-job.spec.priority, latest, job.submitted_at, job.id)


def dominant_share(used: Capacity, total: Capacity, share: float = 1.0) -> float:
    """Weighted dominant share of ``used`` in ``total`` (resources with zero total are ignored)."""
    parts = [
        used.cores / total.cores if total.cores else 0.0,
        used.memory_gb / total.memory_gb if total.memory_gb else 0.0,
        used.devices / total.devices if total.devices else 0.0,
    ]
    return max(parts) / share


def usage_by_tenant(running: Sequence[RunningJob]) -> dict[str, Capacity]:
    sums: dict[str, list[float]] = {}
    for r in running:  # plain sums, in the order ``Capacity.__add__`` would add them (many running jobs a pass)
        d = r.demand
        s = sums.get(r.tenant)
        if s is None:
            sums[r.tenant] = [d.cores, d.memory_gb, d.devices]
        else:
            s[0] += d.cores
            s[1] += d.memory_gb
            s[2] += d.devices
    return {t: Capacity(int(s[0]), s[1], int(s[2])) for t, s in sums.items()}


class FairShare:
    """Per-tenant queues, tiers, quotas and weighted DRF ordering (see the module docstring)."""

    def __init__(self, total: Capacity, tenants: Mapping[str, TenantPolicy] | None = None) -> None:
        self.total = total
        self.tenants = dict(tenants or {})

    def policy(self, tenant: str) -> TenantPolicy:
        return self.tenants.get(tenant) or TenantPolicy()

    def order(self, jobs: Sequence[QueuedJob], usage: Mapping[str, Capacity] | None = None,
              urgent: Callable[[QueuedJob], bool] | None = None) -> list[QueuedJob]:
        """Jobs in the order they are offered capacity: tiers, then urgent jobs (EDF), then DRF, then each queue."""
        used: dict[str, list[float]] = {t: [c.cores, c.memory_gb, c.devices] for t, c in (usage or {}).items()}
        queues: dict[str, list[QueuedJob]] = defaultdict(list)
        first: dict[int, list[QueuedJob]] = defaultdict(list)
        for job in jobs:
            if urgent is not None and urgent(job):
                first[self.policy(job.tenant).priority].append(job)
            else:
                queues[job.tenant].append(job)
        tiers: dict[int, list[str]] = defaultdict(list)
        for tenant, q in queues.items():
            q.sort(key=_queue_key)
            tiers[self.policy(tenant).priority].append(tenant)
        out: list[QueuedJob] = []
        for tier in sorted(set(tiers) | set(first), reverse=True):
            for job in sorted(first.get(tier, ()), key=_queue_key):
                if self._take(job, used):
                    out.append(job)
            out.extend(self._drf(tiers.get(tier, []), queues, used))
        return out

    def _take(self, job: QueuedJob, used: dict[str, list[float]]) -> bool:
        """Count ``job`` toward its tenant's use when it is within the tenant's quota (``within_quota``)."""
        s = job.spec
        held = used.get(job.tenant)
        if held is None:
            held = used[job.tenant] = [0, 0.0, 0]
        quota = self.policy(job.tenant).quota
        if quota is not None and not (held[0] + s.cores <= quota.cores and held[1] + s.memory_gb <= quota.memory_gb
                                      and held[2] + s.devices <= quota.devices):
            return False
        held[0] += s.cores
        held[1] += s.memory_gb
        held[2] += s.devices
        return True

    def _drf(
        self, tenants: list[str], queues: dict[str, list[QueuedJob]], used: dict[str, list[float]]
    ) -> list[QueuedJob]:
        heap = [(self._ds(t, used), t, 0) for t in tenants]
        heapq.heapify(heap)
        out: list[QueuedJob] = []
        while heap:
            _, tenant, k = heapq.heappop(heap)
            q = queues[tenant]
            while k < len(q) and not self._take(q[k], used):
                k += 1  # over quota: this job waits; a smaller one may still fit
            if k >= len(q):
                continue
            out.append(q[k])
            if k + 1 < len(q):
                heapq.heappush(heap, (self._ds(tenant, used), tenant, k + 1))
        return out

    def _ds(self, tenant: str, used: Mapping[str, list[float]]) -> float:
        """``dominant_share`` of the tenant's use so far (the same arithmetic, on plain numbers)."""
        c, m, d = used.get(tenant) or (0, 0.0, 0)
        t = self.total
        parts = [c / t.cores if t.cores else 0.0, m / t.memory_gb if t.memory_gb else 0.0,
                 d / t.devices if t.devices else 0.0]
        return max(parts) / self.policy(tenant).share

    def within_quota(self, tenant: str, used: Capacity, demand: Capacity) -> bool:
        quota = self.policy(tenant).quota
        return quota is None or (used + demand).fits_in(quota)


def preemption_set(demand: Capacity, free: Capacity, victims: Sequence[RunningJob]) -> list[str] | None:
    """The fewest-work-lost spot jobs whose capacity plus ``free`` covers ``demand``, none spare; None if impossible."""
    spot = sorted(
        (v for v in victims if v.service_level is ServiceLevel.SPOT), key=lambda v: (-v.started_at, v.id)
    )
    chosen: list[RunningJob] = []
    have = free
    for v in spot:
        if demand.fits_in(have):
            break
        chosen.append(v)
        have = have + v.demand
    if not demand.fits_in(have):
        return None
    for v in list(reversed(chosen)):
        without = _minus(have, v.demand)
        if demand.fits_in(without):
            chosen.remove(v)
            have = without
    return [v.id for v in chosen]


def _minus(a: Capacity, b: Capacity) -> Capacity:
    return Capacity(a.cores - b.cores, a.memory_gb - b.memory_gb, a.devices - b.devices)


class _Running:
    """The running jobs of one pass, indexed by pool when first needed (a pass that blocks and preempts
    nothing never indexes them)."""

    def __init__(self, index: Mapping[tuple[str, str], int], running: Sequence[RunningJob], n: int) -> None:
        self._index = index
        self._running = running
        self._n = n
        self._by_pool: dict[int, list[RunningJob]] | None = None
        self._releases: dict[int, list[tuple[float, Capacity]]] | None = None
        self._spot: np.ndarray | None = None  # [cores, memory, devices] x pools held by spot jobs not evicted
        self.hopeless: dict[int, list[tuple[int, float, int]]] = {}  # candidate set -> demands no preemption serves
        self.keep: list[np.ndarray] = []

    def by_pool(self) -> dict[int, list[RunningJob]]:
        if self._by_pool is None:
            self._by_pool = defaultdict(list)
            for r in self._running:
                i = self._index.get((r.site, r.pool))
                if i is not None:
                    self._by_pool[i].append(r)
        return self._by_pool

    def releases(self, i: int) -> list[tuple[float, Capacity]]:
        """Pool i's running jobs as (expected end, capacity), earliest first (sorted when first asked)."""
        if self._releases is None:
            self._releases = {}
        hit = self._releases.get(i)
        if hit is None:
            hit = self._releases[i] = sorted(((r.expected_end, r.demand) for r in self.by_pool().get(i, ())),
                                             key=lambda x: x[0])
        return hit

    def spot(self) -> np.ndarray:
        if self._spot is None:
            self._spot = np.zeros((3, self._n))
            for i, rs in self.by_pool().items():
                for r in rs:
                    if r.service_level is ServiceLevel.SPOT:
                        self._spot[:, i] += (r.demand.cores, r.demand.memory_gb, r.demand.devices)
        return self._spot

    def evict(self, i: int, victim: RunningJob) -> None:
        spot = self.spot()
        spot[:, i] -= (victim.demand.cores, victim.demand.memory_gb, victim.demand.devices)


class _Backfill:
    """The backfill guard of one pass (``scheduling.Guard``): a job may start on pool i now only if no blocked
    head is delayed there (EASY backfilling, see the module docstring).

    Only heads that could run somewhere are kept: a head no pool can ever run cannot be delayed, so it
    neither costs later jobs anything nor takes one of the ``backfill_heads`` places.  For a demand and a
    pool the rule reduces to one threshold: the job may start there iff it ends by the earliest shadow
    time of the heads its demand would leave short (``latest_end``), which the policy's walk caches until
    the pool's free capacity changes or a head is added (``version``).
    """

    def __init__(self, speed: np.ndarray, free: FreeState, now: float) -> None:
        self.speed = speed
        self.speed_list: list[float] = speed.tolist()
        self.free = free
        self.now = now
        self.heads: list[_Head] = []
        n = len(speed)
        # per pool: (shadow, released cores, memory, devices, needed cores, memory, devices) of the heads that could
        # start there, earliest shadow first; most pools have none, and ``latest_end`` stops at the first it leaves
        # short
        self._at: list[list[tuple[float, float, float, float, int, float, int]]] = [[] for _ in range(n)]
        self._min_shadow = np.full(n, np.inf)  # earliest shadow over the heads, per pool
        self._shadow = np.empty((0, n))
        self._released = np.empty((3, 0, n))
        self._need = np.empty((3, 0, 1))
        self.version = 0

    def add(self, head: _Head) -> None:
        self.heads.append(head)
        d = head.job.spec
        at = self._at
        rc, rm, rd = head.released.tolist()
        shadow = head.shadow
        for i in np.flatnonzero(np.isfinite(shadow)).tolist():
            row = at[i]
            row.append((float(shadow[i]), rc[i], rm[i], rd[i], d.cores, d.memory_gb, d.devices))
            if len(row) > 1:
                row.sort(key=lambda x: x[0])  # stable: equal shadows keep the heads' order
        np.minimum(self._min_shadow, shadow, out=self._min_shadow)
        self._shadow = np.stack([h.shadow for h in self.heads])
        self._released = np.stack([h.released for h in self.heads], axis=1)
        self._need = np.array([[h.job.spec.cores, h.job.spec.memory_gb - 1e-9, h.job.spec.devices]
                               for h in self.heads], dtype=float).T[:, :, None]
        self.version += 1

    def latest_end(self, spec: JobSpec, i: int) -> float:
        """The latest end a job of ``spec``'s demand may have on pool i: for every head it would leave short
        at the head's shadow time, the job must end by that shadow time (inf: it may run as long as it likes)."""
        row = self._at[i]
        if not row:
            return math.inf  # no head could start here: nothing to delay
        free = self.free
        c, m, d = float(free.cores[i]) - spec.cores, float(free.mem[i]) - spec.memory_gb, \
            float(free.dev[i]) - spec.devices
        for at, rc, rm, rd, hc, hm, hd in row:  # earliest shadow first: the first head left short decides
            if not (c + rc >= hc and m + rm >= hm - 1e-9 and d + rd >= hd):
                return at
        return math.inf

    def mask(self, job: QueuedJob, idx: np.ndarray) -> np.ndarray | None:
        if not self.heads:
            return None
        spec = job.spec
        ends = self.now + spec.duration_s / self.speed[idx]
        if not (ends > self._min_shadow[idx]).any():
            return None  # the job ends before every head's shadow wherever it could start
        shadow = self._shadow[:, idx]
        ok = ~np.isfinite(shadow) | (ends <= shadow)
        free = self.free
        rel = self._released[:, :, idx]
        left = np.stack((free.cores[idx] - spec.cores, free.mem[idx] - spec.memory_gb, free.dev[idx] - spec.devices))
        ok |= ((left[:, None, :] + rel) >= self._need).all(axis=0)
        allowed = ok.all(axis=0)
        return None if allowed.all() else allowed


class FairScheduler:
    """Fair ordering, backfill guard and preemption around a grid scheduler (or any policy).

    It drives the policy through its public pass interface (``PolicyBase.start_pass``, ``set_order``,
    ``place_unit``, ``end_pass``).  Jobs no pool can ever run are left out of the pass before anything else
    (``Plan.unrunnable``): they take no place in the order, no share, no backfill head.
    """

    def __init__(self, inner: PolicyBase, fair: FairShare, *, backfill_heads: int = 8) -> None:
        self.inner = inner
        self.inner.keep_order = True
        self.fair = fair
        self.backfill_heads = backfill_heads
        self.preemptions: list[str] = []

    def plan(self, jobs: Sequence[QueuedJob], pools: Sequence[PoolState], *, now: float) -> list[Placement]:
        result = self.plan_with_preemption(jobs, pools, now=now, running=())
        return result.placements

    def plan_with_preemption(
        self, jobs: Sequence[QueuedJob], pools: Sequence[PoolState], *, now: float, running: Sequence[RunningJob]
    ) -> Plan:
        ctx = self.inner.ctx
        free = self.inner.start_pass(pools, now)
        runnable: list[QueuedJob] = []
        unrunnable: list[str] = []
        can_run = self.inner.can_ever_run
        for j in jobs:
            if can_run(j.spec):
                runnable.append(j)
            else:
                unrunnable.append(j.id)
        held = _Running(ctx.index, running, len(ctx.pools))
        guard = _Backfill(ctx.speed, free, now)
        placements: list[Placement] = []
        preempt: list[str] = []
        evicted: set[str] = set()
        ordered = self.fair.order(runnable, usage_by_tenant(running), self.inner.urgency(now))
        self.inner.set_order(ordered)
        for unit in gang_units(ordered):
            if unit[0].gang and len(unit) < unit[0].gang_size:
                continue
            placed = self.inner.place_unit(unit, free, now, guard if guard.heads else None)
            if not placed and len(unit) == 1 and unit[0].spec.service_level is ServiceLevel.GUARANTEED:
                placed, victims = self._preempt(unit[0], free, held, evicted, now)
                preempt.extend(victims)
            if placed:
                placements.extend(placed)
            elif len(guard.heads) < self.backfill_heads:
                head = self._shadow(unit[0], free, held, now)
                if np.isfinite(head.shadow).any():
                    guard.add(head)
        self.inner.end_pass()
        self.preemptions = preempt
        return Plan(placements, preempt, unrunnable)

    def _shadow(self, job: QueuedJob, free: FreeState, held: _Running,
                now: float) -> _Head:
        """When the blocked ``job`` could start on each pool, and what will have been released by then."""
        ctx = self.inner.ctx
        n = len(ctx.pools)
        shadow = np.full(n, np.inf)
        rel = np.zeros((3, n))  # cores, memory, devices released by the shadow time
        d = job.spec.demand
        for i in ctx.candidates(job.spec):
            have = Capacity(int(free.cores[i]), float(free.mem[i]), int(free.dev[i]))
            if d.fits_in(have):
                shadow[i] = now
                continue
            got = Capacity()
            for t, cap in held.releases(int(i)):
                got = got + cap
                if d.fits_in(have + got):
                    shadow[i] = t
                    rel[:, i] = (got.cores, got.memory_gb, got.devices)
                    break
        return _Head(job, shadow, rel)

    def _preempt(self, job: QueuedJob, free: FreeState, held: _Running, evicted: set[str],
                 now: float) -> tuple[list[Placement], list[str]]:
        """The pool where evicting the fewest spot jobs (then the first in grid order) makes room for ``job``."""
        ctx = self.inner.ctx
        if job.spec.device_share:
            return [], []  # fractions do not preempt (a spot job's card is not known here)
        idx = ctx.candidates(job.spec)
        priced = self.inner.price_mask(job)  # the price rule holds for preemption too
        d = job.spec.demand
        # free plus spot capacity only shrinks during a pass, so a demand that free plus spot covers on none of its
        # candidates rules out every no-smaller demand over the same candidates for the rest of the pass
        key = id(idx) if priced is None else None
        if key is not None and any(c <= d.cores and m <= d.memory_gb and v <= d.devices
                                   for c, m, v in held.hopeless.get(key, ())):
            return [], []
        cands = idx
        idx = idx[[i not in free.shared for i in idx.tolist()]] if free.shared else idx  # nor on shared pools
        if priced is not None:
            idx = idx[priced[idx]]
        spot = held.spot()  # free plus every spot job left must cover the job, or preemption_set finds none
        could = ((free.cores[idx] + spot[0, idx] >= d.cores - 1e-6)
                 & (free.mem[idx] + spot[1, idx] >= d.memory_gb - 1e-6)
                 & (free.dev[idx] + spot[2, idx] >= d.devices - 1e-6))
        by_pool = held.by_pool()
        best: tuple[int, int, list[str]] | None = None
        for i in idx[could].tolist():
            victims = [v for v in by_pool.get(i, []) if v.id not in evicted]
            have = Capacity(int(free.cores[i]), float(free.mem[i]), int(free.dev[i]))
            chosen = preemption_set(d, have, victims)
            if chosen and (best is None or len(chosen) < best[0]):
                best = (len(chosen), i, chosen)
                if len(chosen) == 1:
                    break  # no pool needs fewer; ties go to the first in grid order
        if best is None:
            if key is not None and not could.any():  # free plus spot covers it nowhere (a pool it fits as is may
                held.hopeless.setdefault(key, []).append((d.cores, d.memory_gb, d.devices))  # need eviction later)
                held.keep.append(cands)  # its id stays its own for the pass
            return [], []
        _, i, chosen = best
        for v in by_pool[i]:
            if v.id in chosen:
                free.give(i, v.demand)
                evicted.add(v.id)
                held.evict(i, v)
        free.take(i, d)
        pool = ctx.pools[i]
        return [Placement(job.id, pool.site, pool.name, now, {"preempted": float(len(chosen))})], chosen
