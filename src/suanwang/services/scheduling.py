"""The platform's scheduling pass: requeue lost leases, then place waiting jobs.

The pure ``Scheduler`` decides; this module only loads its inputs (pool
states with free capacity derived from placed and running jobs) and applies
its plan in one transaction.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from suanwang.domain.grid import Capacity
from suanwang.domain.job import JobState, state_after_lost_lease
from suanwang.domain.placement import Placement, PoolState, QueuedJob, Scheduler
from suanwang.domain.resources import Engine, LostPolicy
from suanwang.services.jobs import move, spec_from_json
from suanwang.services.sites import all_pools, list_sites
from suanwang.store.db import is_postgres
from suanwang.store.tables import JobRow, SiteRow

_HOLDING = (JobState.PLACED.value, JobState.RUNNING.value)
# Engines with a queue of their own: work placed beyond their free capacity waits there, ready to
# start the moment a slot frees, instead of a report-place-lease round trip later.
QUEUEING_ENGINES = frozenset({Engine.SLURM, Engine.RAY})


def placeable_capacity(capacity: Capacity, engine: Engine, engine_queue: float) -> Capacity:
    """What placement may hold on a pool: its capacity, times ``engine_queue`` where the engine queues."""
    if engine not in QUEUEING_ENGINES or engine_queue <= 1.0:
        return capacity
    return Capacity(int(capacity.cores * engine_queue), capacity.memory_gb * engine_queue,
                    int(capacity.devices * engine_queue))
_WAITING = (JobState.PENDING.value, JobState.REQUEUED.value)


SCHEDULING_LOCK = 0x5357_0001  # PostgreSQL advisory lock key: one scheduling pass at a time across replicas


def claim_scheduling_pass(session: Session) -> bool:
    """On PostgreSQL, only one API replica schedules at a time; SQLite has one writer anyway."""
    if not is_postgres(session.get_bind()):
        return True
    return bool(session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": SCHEDULING_LOCK}))


def reap_expired_leases(session: Session, *, now: float) -> list[str]:
    """Jobs whose agent stopped renewing their lease: requeue or mark lost, per job policy."""
    expired = session.scalars(
        select(JobRow).where(JobRow.state == JobState.RUNNING.value, JobRow.lease_expires_at < now).with_for_update()
    ).all()
    for job in expired:
        policy = LostPolicy(job.spec.get("on_lost", LostPolicy.REQUEUE.value))
        new = state_after_lost_lease(policy)
        move(session, job, new, f"lease expired at site {job.site} (attempt {job.attempt})", now=now)
        if new is JobState.REQUEUED:
            job.site = None
            job.pool = None
            job.lease_expires_at = None
    return [j.id for j in expired]


def extend_leases_after_restart(session: Session, *, now: float, lease_s: float) -> int:
    """Give agents a full lease after the platform was down: its outage is not their fault."""
    result = session.execute(
        update(JobRow)
        .where(JobRow.state == JobState.RUNNING.value, JobRow.lease_expires_at < now + lease_s)
        .values(lease_expires_at=now + lease_s)
    )
    return int(result.rowcount or 0)


def mark_offline_sites(session: Session, *, now: float, timeout_s: float) -> list[str]:
    stale = session.scalars(select(SiteRow).where(SiteRow.online.is_(True), SiteRow.last_seen < now - timeout_s)).all()
    for site in stale:
        site.online = False
    return [s.name for s in stale]


def pool_states(session: Session, engine_queue: float = 1.0) -> list[PoolState]:
    """Every pool with its free capacity: capacity minus what placed and running jobs hold.

    With ``engine_queue`` > 1, pools whose engine queues (Slurm, Ray) count that multiple of their capacity.
    """
    held: dict[tuple[str, str], Capacity] = defaultdict(Capacity)
    rows = session.execute(
        select(JobRow.site, JobRow.pool, func.sum(JobRow.cores), func.sum(JobRow.memory_gb), func.sum(JobRow.devices))
        .where(JobRow.state.in_(_HOLDING))
        .group_by(JobRow.site, JobRow.pool)
    )
    for site, pool, cores, mem, devices in rows:
        held[(site, pool)] = Capacity(int(cores or 0), float(mem or 0.0), int(devices or 0))
    online = {s.name: s.online for s in list_sites(session)}
    return [
        PoolState(pool=p, free=placeable_capacity(p.capacity, p.engine, engine_queue) - held[(p.site, p.name)],
                  online=online.get(p.site, False))
        for p in all_pools(session)
    ]


def queued_jobs(session: Session, *, limit: int = 10_000) -> list[JobRow]:
    return list(
        session.scalars(
            select(JobRow)
            .where(JobRow.state.in_(_WAITING))
            .order_by(JobRow.priority.desc(), JobRow.submitted_at, JobRow.id)
            .limit(limit)
        )
    )


def place_waiting_jobs(
    session: Session, scheduler: Scheduler, *, now: float, engine_queue: float = 1.0
) -> list[Placement]:
    rows = queued_jobs(session)
    if not rows:
        return []
    by_id = {r.id: r for r in rows}
    queue = [
        QueuedJob(id=r.id, spec=spec_from_json(r.spec), tenant=r.tenant_id, submitted_at=r.submitted_at, attempt=r.attempt)
        for r in rows
    ]
    plan = scheduler.plan(queue, pool_states(session, engine_queue), now=now)
    for placement in plan:
        job = by_id[placement.job_id]
        job.site = placement.site
        job.pool = placement.pool
        job.placed_at = now
        job.placement = {"start_at": placement.start_at, "terms": placement.terms}
        move(session, job, JobState.PLACED, f"placed on {placement.site}/{placement.pool}", now=now)
    return plan
