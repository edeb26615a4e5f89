"""Placement: which (site, pool, start time) runs a job.

This module owns the contract every scheduler fulfils and the hard rules
that no score may override (class, device model, device memory, size,
region, and price: :func:`priced_out`).  ``first_fit`` is the simple policy of the foundation; the grid
scheduler (``suanwang.domain.scheduler``) plugs in behind ``Scheduler``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from suanwang.domain.grid import Capacity, Pool, PoolId, SiteId
from suanwang.domain.job import JobId, JobSpec
from suanwang.domain.models import model_set_rule
from suanwang.domain.price_horizon import QUEUE_HORIZON
from suanwang.domain.quantum import circuit_rule
from suanwang.domain.resources import ResourceClass
from suanwang.domain.tou import CHINA_TZ
from suanwang.errors import Unplaceable


@dataclass(frozen=True, slots=True)
class PoolState:
    """A pool and what of it is free now."""

    pool: Pool
    free: Capacity
    online: bool = True
    wait_s: float = 0.0  # predicted wait in the site engine's own queue before a job that fits starts
    # Shared pools: each card fractions hold now, as (card, milli-cards held, device MiB held); ``free.devices``
    # counts only wholly free cards
    cards: tuple[tuple[int, int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A job waiting for placement, as the scheduler sees it."""

    id: JobId
    spec: JobSpec
    tenant: str
    submitted_at: float
    attempt: int = 0
    gang: str = ""  # jobs sharing a gang id are placed all together or not at all
    gang_size: int = 1  # how many members the gang has (all must be queued to place any)
    # (site, pool) -> what the job would cost there now (gross fen, before vouchers), for pools a price book
    # prices: with the job's max_price_fen the price rule (priced_out); the service quotes, the core stays pure
    prices_fen: Mapping[tuple[SiteId, PoolId], int] | None = None
    # (site, pool) -> from when (Unix seconds) a pool that prices the job out now is within its limit, for a
    # start within the queueing horizon (domain.price_horizon); a priced-out pool absent is not within it then.
    # None: not computed (only ``explain`` asks)
    within_limit_at: Mapping[tuple[SiteId, PoolId], float] | None = None


@dataclass(frozen=True, slots=True)
class Placement:
    """A decision: job -> (site, pool, start time), with its predictions."""

    job_id: JobId
    site: SiteId
    pool: PoolId
    start_at: float
    terms: dict[str, float] = field(default_factory=dict)
    card: int = -1  # a fraction of a card: which of the pool's cards it shares (the agent pins it); -1 otherwise


class Scheduler(Protocol):
    """Anything that turns queued jobs and pool states into placements."""

    def plan(self, jobs: Sequence[QueuedJob], pools: Sequence[PoolState], *, now: float) -> list[Placement]: ...


def rule_out(spec: JobSpec, pool: Pool) -> str | None:
    """Why ``pool`` can never run ``spec`` (whatever its load), or None if it could."""
    if spec.resource_class is not pool.resource_class:
        return f"class {pool.resource_class}, job needs {spec.resource_class}"
    if spec.device_model and spec.device_model.lower() != pool.device_model.lower():
        return f"device {pool.device_model or 'none'}, job needs {spec.device_model}"
    why = model_set_rule(spec.device_models, spec.exclude_device_models, pool.device_model)
    if why:
        return why
    if spec.resource_class is ResourceClass.QUANTUM:
        why = circuit_rule(spec.qubits, spec.gates, pool.quantum)
        if why:
            return why
    if spec.device_share:
        why = share_rule(spec, pool)
        if why:
            return why
    if spec.device_memory_gb_min and pool.device_memory_gb < spec.device_memory_gb_min:
        return f"device memory {pool.device_memory_gb:g} GB < {spec.device_memory_gb_min:g} GB needed"
    if spec.region and pool.labels.get("region", spec.region) != spec.region:
        return f"region {pool.labels.get('region')}, job must stay in {spec.region}"
    if not spec.demand.fits_in(pool.largest_node):
        node = pool.largest_node
        return (
            f"too small: node has {node.cores} cores, {node.memory_gb:g} GB, {node.devices} devices; "
            f"job needs {spec.cores}, {spec.memory_gb:g} GB, {spec.devices}"
        )
    return None


def priced_out(job: QueuedJob) -> dict[tuple[SiteId, PoolId], str]:
    """Pools where ``job`` would cost more than its ``max_price_fen`` now (the bound the consumer accepted at
    submit, and its hold's), with why.

    A hold is what the consumer agreed to risk; a provider's price cannot inflate it, so a pool whose
    quote is above the job's limit never runs the job, whatever its score.  Pools with no price are free.
    Under time-of-use bands a pool above the limit now may be within it in a cheaper band: the reason says
    from when, where ``within_limit_at`` knows it (the job waits for price).
    """
    limit = job.spec.max_price_fen
    if limit is None or not job.prices_fen:
        return {}
    return {key: f"price {fen} fen > the job's limit {limit} fen (its hold){_until(job, key)}"
            for key, fen in job.prices_fen.items() if fen > limit}


def _until(job: QueuedJob, key: tuple[SiteId, PoolId]) -> str:
    if job.within_limit_at is None:
        return ""
    at = job.within_limit_at.get(key)
    if at is None:
        return f"; not within it at any start in the next {QUEUE_HORIZON.total_seconds() / 3600:g} h"
    return f"; waiting for price: within it from {china_time(at)}"


def china_time(at: float) -> str:
    """Unix seconds as China time to the minute, as consumers read band hours."""
    return datetime.fromtimestamp(at, CHINA_TZ).strftime("%Y-%m-%d %H:%M China time")


def check_placeable(spec: JobSpec, pools: Sequence[Pool]) -> None:
    """Raise ``Unplaceable`` naming each pool's reason when no pool could ever run ``spec``."""
    reasons = {f"{p.site}/{p.name}": rule_out(spec, p) for p in pools}
    if not pools:
        raise Unplaceable("no pools are registered yet; no site could run this job")
    if all(reasons.values()):
        detail = "; ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))
        raise Unplaceable(f"no pool can run this job ({detail})", ruled_out=reasons)


class FirstFit:
    """Place each job, in queue order, on the first online pool with room now."""

    def plan(self, jobs: Sequence[QueuedJob], pools: Sequence[PoolState], *, now: float) -> list[Placement]:
        free: dict[tuple[SiteId, PoolId], Capacity] = {(s.pool.site, s.pool.name): s.free for s in pools}
        order = sorted(jobs, key=lambda j: (-j.spec.priority, j.submitted_at, j.id))
        placements: list[Placement] = []
        for job in order:
            if job.spec.not_before is not None and job.spec.not_before > now:
                continue
            dear = priced_out(job)
            for state in pools:
                key = (state.pool.site, state.pool.name)
                if not state.online or rule_out(job.spec, state.pool) is not None or key in dear:
                    continue
                if job.spec.demand.fits_in(free[key]):
                    free[key] = free[key] - job.spec.demand
                    placements.append(Placement(job.id, state.pool.site, state.pool.name, now))
                    break
        return placements


def share_rule(spec: JobSpec, pool: Pool) -> str | None:
    """Why ``pool`` can never hold ``spec``'s fraction of a card: it does not share, or no card (MIG profile) is
    big enough for the share and its device memory."""
    if not pool.sharing.shares:
        return "pool does not share cards (job asks for a fraction of one)"
    if spec.device_memory_gb > pool.device_memory_gb:
        return f"device memory {pool.device_memory_gb:g} GB < {spec.device_memory_gb:g} GB the fraction holds"
    if pool.sharing.granted(spec.device_share, mib(spec.device_memory_gb)) is None:
        return "no MIG profile of the pool's cards holds the fraction and its device memory"
    return None


def mib(gb: float) -> int:
    """Device memory in whole MiB, rounded up (a fraction never gets less than it asked for)."""
    return -int(-gb * 1024 // 1)
