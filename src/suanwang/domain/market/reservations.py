"""Contracts honoured by placement (pure): reserved capacity, owners first, spot borrows the idle part.

A contract line reserves ``units`` of a resource class at a site for one slot.  A *unit* of a pool is one
device (a pool with devices) or one core (a CPU pool), with the pool's memory shared pro rata — the
granularity the market trades.  In the contract's slot:

* the owner's jobs that name the contract (or match it: same tenant and class) are placed first, inside
  the reservation, at the contract price; when free capacity is short, spot work running in that pool is
  preempted (the fewest jobs, ``fairness.preemption_set``) — the owner reclaims what was lent;
* every other job sees the pool with the reservation's idle part (reserved − owners' use) taken away;
* spot jobs may then borrow that idle part (lending); they are the ones preempted when the owner comes.

The scheduler is untouched: the service calls :func:`place_owners` before its pass, runs the pass on
:func:`pools_for_others`, then runs spot leftovers on :func:`lendable_pools`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from suanwang.domain.fairness import RunningJob, preemption_set
from suanwang.domain.grid import Capacity, Pool
from suanwang.domain.job import JobSpec
from suanwang.domain.placement import Placement, PoolState, QueuedJob
from suanwang.domain.resources import ResourceClass, ServiceLevel


@dataclass(frozen=True, slots=True)
class Reservation:
    """One contract line in force: ``units`` of ``resource_class`` at ``site`` for ``consumer``."""

    contract_id: str
    consumer: str
    site: str
    resource_class: ResourceClass
    units: int
    slot_start: float
    slot_end: float
    buyer_price_cf: int  # per unit-slot, centi-fen (what the buyer paid at the clear)

    def active(self, now: float) -> bool:
        return self.slot_start <= now < self.slot_end


def unit_of(pool: Pool) -> Capacity:
    """One traded unit of ``pool``: a device (with its share of cores and memory) or a core."""
    cap = pool.capacity
    if cap.devices > 0:
        return Capacity(cap.cores // cap.devices, cap.memory_gb / cap.devices, 1)
    return Capacity(1, cap.memory_gb / cap.cores if cap.cores else 0.0, 0)


def units_of(spec: JobSpec, pool: Pool) -> int:
    """How many of ``pool``'s units a job of ``spec`` takes (devices, else cores; at least one)."""
    if pool.capacity.devices > 0:
        return max(1, spec.devices)
    return max(1, spec.cores)


def _times(unit: Capacity, n: int) -> Capacity:
    return Capacity(unit.cores * n, unit.memory_gb * n, unit.devices * n)


def _fits_pool(spec: JobSpec, pool: Pool) -> bool:
    node = pool.node or pool.capacity
    models = {m for m in (spec.device_model, *spec.device_models) if m}
    return (pool.resource_class is spec.resource_class and spec.demand.fits_in(node)
            and (not models or pool.device_model in models) and pool.device_model not in spec.exclude_device_models)


def owner_use(contract_of: Mapping[str, str], running: Sequence[RunningJob],
              pools: Sequence[PoolState]) -> dict[str, int]:
    """Units each contract's jobs hold now (``contract_of``: job id -> contract id, from placements)."""
    by_key = {(p.pool.site, p.pool.name): p.pool for p in pools}
    used: dict[str, int] = {}
    for r in running:
        cid = contract_of.get(r.id)
        pool = by_key.get((r.site, r.pool))
        if cid and pool is not None:
            n = r.demand.devices if pool.capacity.devices > 0 else r.demand.cores
            used[cid] = used.get(cid, 0) + max(1, n)
    return used


def match(job: QueuedJob, reservations: Sequence[Reservation], room: Mapping[str, int],
          pools: Sequence[PoolState]) -> tuple[Reservation, PoolState] | None:
    """The reservation (and pool) a job runs in: the one it names, else the first of its tenant's that fits.

    A job naming a contract never falls back to another one; a job naming none matches automatically.
    """
    named = job.spec.contract
    for res in sorted(reservations, key=lambda r: r.contract_id):
        if res.consumer != job.tenant or (named and res.contract_id != named):
            continue
        if res.resource_class is not job.spec.resource_class:
            continue
        for ps in sorted(pools, key=lambda p: p.pool.name):
            if ps.pool.site == res.site and ps.online and _fits_pool(job.spec, ps.pool) \
                    and units_of(job.spec, ps.pool) <= room.get(res.contract_id, 0):
                return res, ps
    return None


@dataclass(frozen=True, slots=True)
class OwnerPlan:
    placements: list[Placement]
    preempt: list[str]  # spot jobs to requeue: the owner reclaims lent capacity
    free: dict[tuple[str, str], Capacity]  # each pool's free capacity after the owners' placements
    room: dict[str, int]  # units each contract still has idle after them
    contract_of: dict[str, str]  # placed job id -> the contract it runs under


def place_owners(jobs: Sequence[QueuedJob], pools: Sequence[PoolState], reservations: Sequence[Reservation],
                 running: Sequence[RunningJob], used: Mapping[str, int], *, now: float) -> OwnerPlan:
    """Place contract owners' jobs inside their reservations, preempting spot work where free capacity is short."""
    active = [r for r in reservations if r.active(now)]
    room = {r.contract_id: max(0, r.units - used.get(r.contract_id, 0)) for r in active}
    free = {(p.pool.site, p.pool.name): p.free for p in pools}
    evicted: set[str] = set()
    placements: list[Placement] = []
    preempt: list[str] = []
    contract_of: dict[str, str] = {}
    for job in sorted(jobs, key=lambda j: (j.submitted_at, j.id)):
        if job.gang:
            continue  # gangs go through the scheduler's all-together rule
        hit = match(job, active, room, pools)
        if hit is None:
            continue
        res, ps = hit
        key = (ps.pool.site, ps.pool.name)
        demand = job.spec.demand
        if not demand.fits_in(free[key]):
            victims = [r for r in running if (r.site, r.pool) == key and r.id not in evicted
                       and r.service_level is ServiceLevel.SPOT]
            chosen = preemption_set(demand, free[key], victims)
            if not chosen:
                continue
            for v in victims:
                if v.id in chosen:
                    free[key] = free[key] + v.demand
                    evicted.add(v.id)
            preempt.extend(chosen)
        free[key] = free[key] - demand
        room[res.contract_id] -= units_of(job.spec, ps.pool)
        contract_of[job.id] = res.contract_id
        placements.append(Placement(job.id, ps.pool.site, ps.pool.name, now,
                                    {"contract_price_cf": float(res.buyer_price_cf)}))
    return OwnerPlan(placements, preempt, free, room, contract_of)


def _idle(pools: Sequence[PoolState], reservations: Sequence[Reservation], room: Mapping[str, int],
          free: Mapping[tuple[str, str], Capacity]) -> dict[tuple[str, str], Capacity]:
    """The reservations' idle capacity, taken from each (site, class)'s pools in name order."""
    idle: dict[tuple[str, str], Capacity] = {}
    want: dict[tuple[str, ResourceClass], int] = {}
    for r in reservations:
        if r.contract_id in room:
            want[(r.site, r.resource_class)] = want.get((r.site, r.resource_class), 0) + room[r.contract_id]
    for ps in sorted(pools, key=lambda p: (p.pool.site, p.pool.name)):
        key = (ps.pool.site, ps.pool.resource_class)
        n = want.get(key, 0)
        if n <= 0:
            continue
        unit = unit_of(ps.pool)
        have = free[(ps.pool.site, ps.pool.name)]
        per = have.devices if unit.devices else have.cores
        take = min(n, per if unit.devices or unit.cores else 0)
        if take > 0:
            idle[(ps.pool.site, ps.pool.name)] = _times(unit, take)
            want[key] = n - take
    return idle


def pools_for_others(pools: Sequence[PoolState], reservations: Sequence[Reservation], plan: OwnerPlan
                     ) -> list[PoolState]:
    """What every non-owner job sees: free capacity less the reservations' idle part."""
    idle = _idle(pools, reservations, plan.room, plan.free)
    out = []
    for ps in pools:
        key = (ps.pool.site, ps.pool.name)
        out.append(replace(ps, free=plan.free[key] - idle.get(key, Capacity())))
    return out


def lendable_pools(pools: Sequence[PoolState], reservations: Sequence[Reservation], plan: OwnerPlan,
                   taken: Mapping[tuple[str, str], Capacity]) -> list[PoolState]:
    """What spot work may borrow after the main pass: the idle reservations (``taken``: what the main pass
    placed per pool, already out of the non-owners' view)."""
    idle = _idle(pools, reservations, plan.room, plan.free)
    out = []
    for ps in pools:
        key = (ps.pool.site, ps.pool.name)
        left = plan.free[key] - taken.get(key, Capacity())
        lend = idle.get(key, Capacity())
        out.append(replace(ps, free=Capacity(min(left.cores, lend.cores), min(left.memory_gb, lend.memory_gb),
                                             min(left.devices, lend.devices))))
    return out


def attribute_lent(lent: Sequence[tuple[str, str, ResourceClass, int]], reservations: Sequence[Reservation],
                   room: Mapping[str, int]) -> dict[str, tuple[tuple[str, int], ...]]:
    """Which contract lines' idle units each borrowing spot job runs in (what the lent credit is owed on).

    ``lent``: (job id, site, class, units) of the lending pass's placements, in placement order; ``room``:
    each line's idle units (``OwnerPlan.room``).  Lines at the same (site, class) lend in contract id order,
    each at most its idle units, so a line is never credited for more than it left idle.
    """
    left = dict(room)
    out: dict[str, tuple[tuple[str, int], ...]] = {}
    for job_id, site, cls, units in lent:
        parts: list[tuple[str, int]] = []
        for r in sorted(reservations, key=lambda r: r.contract_id):
            if units <= 0:
                break
            take = min(units, left.get(r.contract_id, 0)) if (r.site, r.resource_class) == (site, cls) else 0
            if take > 0:
                parts.append((r.contract_id, take))
                left[r.contract_id] -= take
                units -= take
        if parts:
            out[job_id] = tuple(parts)
    return out


def contract_cost_fen_per_s(price_cf: float, units: int, slot_s: float) -> float:
    """What a job of ``units`` pays per second at a contract price of ``price_cf`` centi-fen per unit-slot."""
    if slot_s <= 0 or not math.isfinite(slot_s):
        raise ValueError("slot length must be positive")
    return price_cf / 100.0 * units / slot_s
