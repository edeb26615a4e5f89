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
then use a pool only if the head could never run there, or the later job
ends before the shadow time, or what it takes leaves enough for the head at
the shadow time.

Preemption.  A guaranteed job that cannot be placed may evict spot jobs on a
pool where free capacity plus the spot jobs' capacity covers it.  The victims
are the most recently started spot jobs (least work lost), then pruned so
that no victim could be spared: exactly what the job needs, no more.  The
caller requeues the victims and bills them only for what ran.

Gangs are placed all-or-nothing by the inner scheduler (``QueuedJob.gang``).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from suanwang.domain.grid import Capacity, PoolId, SiteId
from suanwang.domain.placement import Placement, PoolState, QueuedJob
from suanwang.domain.resources import ServiceLevel
from suanwang.domain.scheduler import _FreeState, _gangs, _PolicyBase
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
    out: dict[str, Capacity] = defaultdict(Capacity)
    for r in running:
        out[r.tenant] = out[r.tenant] + r.demand
    return dict(out)


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
        used = dict(usage or {})
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
                held = used.get(job.tenant, Capacity())
                if self.within_quota(job.tenant, held, job.spec.demand):
                    out.append(job)
                    used[job.tenant] = held + job.spec.demand
            out.extend(self._drf(tiers.get(tier, []), queues, used))
        return out

    def _drf(
        self, tenants: list[str], queues: dict[str, list[QueuedJob]], used: dict[str, Capacity]
    ) -> list[QueuedJob]:
        heap = [(self._ds(t, used), t, 0) for t in tenants]
        heapq.heapify(heap)
        out: list[QueuedJob] = []
        while heap:
            _, tenant, k = heapq.heappop(heap)
            q = queues[tenant]
            while k < len(q) and not self.within_quota(tenant, used.get(tenant, Capacity()), q[k].spec.demand):
                k += 1  # over quota: this job waits; a smaller one may still fit
            if k >= len(q):
                continue
            job = q[k]
            out.append(job)
            used[tenant] = used.get(tenant, Capacity()) + job.spec.demand
            if k + 1 < len(q):
                heapq.heappush(heap, (self._ds(tenant, used), tenant, k + 1))
        return out

    def _ds(self, tenant: str, used: Mapping[str, Capacity]) -> float:
        return dominant_share(used.get(tenant, Capacity()), self.total, self.policy(tenant).share)

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


class FairScheduler:
    """Fair ordering, backfill guard and preemption around a grid scheduler (or any policy)."""

    def __init__(self, inner: _PolicyBase, fair: FairShare, *, backfill_heads: int = 8) -> None:
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
        free = _FreeState(ctx, pools)
        self.inner._begin(now)
        releases = _releases(ctx.index, running)
        by_pool: dict[int, list[RunningJob]] = defaultdict(list)
        for r in running:
            i = ctx.index.get((r.site, r.pool))
            if i is not None:
                by_pool[i].append(r)
        heads: list[_Head] = []
        placements: list[Placement] = []
        preempt: list[str] = []
        evicted: set[str] = set()
        ordered = self.fair.order(jobs, usage_by_tenant(running), self.inner.urgency(now))
        self.inner._prepare(ordered)

        def allow(job: QueuedJob) -> np.ndarray | None:
            if not heads:
                return None
            return self._backfill_mask(job, heads, free, now)

        for unit in _gangs(ordered):
            if unit[0].gang and len(unit) < unit[0].gang_size:
                continue
            placed = self.inner._place_unit(unit, free, now, allow)
            if not placed and len(unit) == 1 and unit[0].spec.service_level is ServiceLevel.GUARANTEED:
                placed, victims = self._preempt(unit[0], free, by_pool, evicted, now)
                preempt.extend(victims)
            if placed:
                placements.extend(placed)
            elif len(heads) < self.backfill_heads:
                heads.append(self._shadow(unit[0], free, releases, now))
        self.inner._end()
        self.preemptions = preempt
        return Plan(placements, preempt)

    def _shadow(self, job: QueuedJob, free: _FreeState, releases: dict[int, list[tuple[float, Capacity]]],
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
            for t, cap in releases.get(int(i), []):
                got = got + cap
                if d.fits_in(have + got):
                    shadow[i] = t
                    rel[:, i] = (got.cores, got.memory_gb, got.devices)
                    break
        return _Head(job, shadow, rel)

    def _backfill_mask(self, job: QueuedJob, heads: list[_Head], free: _FreeState, now: float) -> np.ndarray:
        """Pools where ``job`` may start now without delaying any blocked head (vectorised over pools)."""
        ctx = self.inner.ctx
        ends = now + job.spec.duration_s / ctx.speed
        jd = job.spec.demand
        ok = np.ones(len(ctx.pools), dtype=bool)
        for h in heads:
            hd = h.job.spec.demand
            never = ~np.isfinite(h.shadow)  # the head can never run there: it cannot be delayed there
            spare = ((free.cores - jd.cores + h.released[0] >= hd.cores)
                     & (free.mem - jd.memory_gb + h.released[1] >= hd.memory_gb - 1e-9)
                     & (free.dev - jd.devices + h.released[2] >= hd.devices))
            ok &= never | (ends <= h.shadow) | spare
        return ok

    def _preempt(self, job: QueuedJob, free: _FreeState, by_pool: dict[int, list[RunningJob]], evicted: set[str],
                 now: float) -> tuple[list[Placement], list[str]]:
        ctx = self.inner.ctx
        idx = ctx.candidates(job.spec)
        priced = self.inner.price_mask(job)  # the price rule holds for preemption too
        if priced is not None:
            idx = idx[priced[idx]]
        options: list[tuple[int, int, list[str]]] = []
        for i in idx:
            i = int(i)
            victims = [v for v in by_pool.get(i, []) if v.id not in evicted]
            have = Capacity(int(free.cores[i]), float(free.mem[i]), int(free.dev[i]))
            chosen = preemption_set(job.spec.demand, have, victims)
            if chosen:
                options.append((len(chosen), i, chosen))
        if not options:
            return [], []
        _, i, chosen = min(options)
        for v in by_pool[i]:
            if v.id in chosen:
                free.give(i, v.demand)
                evicted.add(v.id)
        free.take(i, job.spec.demand)
        pool = ctx.pools[i]
        return [Placement(job.id, pool.site, pool.name, now, {"preempted": float(len(chosen))})], chosen


def _releases(
    index: Mapping[tuple[str, str], int], running: Sequence[RunningJob]
) -> dict[int, list[tuple[float, Capacity]]]:
    out: dict[int, list[tuple[float, Capacity]]] = defaultdict(list)
    for r in running:
        i = index.get((r.site, r.pool))
        if i is not None:
            out[i].append((r.expected_end, r.demand))
    for v in out.values():
        v.sort(key=lambda x: x[0])
    return dict(out)
