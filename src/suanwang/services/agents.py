"""The platform side of the agent protocol: lease, heartbeat, status, usage and logs.

Agents pull.  A lease is renewed by heartbeats; the scheduling pass requeues
jobs whose lease lapsed.  Every report carries (job, attempt[, seq]) so a
retried or stale report changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from suanwang.domain import units
from suanwang.domain.job import JobState
from suanwang.errors import InvalidSpec
from suanwang.services.auth import Principal
from suanwang.services.jobs import move
from suanwang.services.sites import get_site
from suanwang.store.db import is_postgres
from suanwang.store.tables import JobRow, LogChunkRow, PoolRow, UnratedUsageRow, UsageRow

MAX_LOG_CHUNK = 1 << 20
_FINAL = {"succeeded": JobState.SUCCEEDED, "failed": JobState.FAILED, "cancelled": JobState.CANCELLED}


@dataclass(frozen=True, slots=True)
class UsageReport:
    job_id: str
    attempt: int
    seq: int
    pool: str
    start: float
    end: float
    wall_s: float
    cpu_s: float
    peak_memory_bytes: int
    device_s: float = 0.0


def lease_jobs(
    session: Session, agent: Principal, *, max_jobs: int, lease_s: float, request_id: str = ""
) -> list[JobRow]:
    """Hand this site's placed jobs to its agent as new attempts.

    A call repeated with the same ``request_id`` (its reply was lost: the
    platform restarted, the connection dropped) gets the attempts it leased the
    first time, still running, instead of leaving them to lapse unrun.
    """
    now = time.time()
    if request_id:
        replay = list(session.scalars(
            select(JobRow).where(JobRow.site == agent.site, JobRow.state == JobState.RUNNING.value,
                                 JobRow.lease_request == request_id).order_by(JobRow.placed_at, JobRow.id)
        ))
        if replay:
            for job in replay:
                job.lease_expires_at = now + lease_s
            return replay
    query = (
        select(JobRow)
        .where(JobRow.site == agent.site, JobRow.state == JobState.PLACED.value)
        .order_by(JobRow.placed_at, JobRow.id)
        .limit(max_jobs)
    )
    if is_postgres(session.get_bind()):
        query = query.with_for_update(skip_locked=True)
    jobs = list(session.scalars(query))
    for job in jobs:
        job.attempt += 1
        job.started_at = now
        job.lease_expires_at = now + lease_s
        job.lease_request = request_id or None
        move(session, job, JobState.RUNNING, f"leased by agent of {agent.site}", now=now)
    return jobs


def heartbeat(
    session: Session, agent: Principal, running: list[tuple[str, int]], *, lease_s: float, info: dict[str, Any]
) -> list[tuple[str, int]]:
    """Renew leases of attempts the agent still runs; return the attempts it must kill."""
    now = time.time()
    site = get_site(session, agent.site or "")
    site.online = True
    site.last_seen = now
    if info:
        site.agent_info = info
    kill: list[tuple[str, int]] = []
    for job_id, attempt in running:
        job = session.get(JobRow, job_id)
        if job is None or job.site != agent.site or job.attempt != attempt or job.state != JobState.RUNNING.value:
            kill.append((job_id, attempt))
        else:
            job.lease_expires_at = now + lease_s
    return kill


def report_status(
    session: Session, agent: Principal, *, job_id: str, attempt: int, phase: str, exit_code: int | None, reason: str
) -> bool:
    """Apply an attempt's final state; False when the report is stale (job moved on)."""
    job = session.get(JobRow, job_id)
    if job is None or job.site != agent.site:
        from suanwang.errors import NotFound

        raise NotFound(f"job {job_id} not found")
    if job.attempt != attempt or job.state != JobState.RUNNING.value:
        return False
    if phase == "lost":
        from suanwang.services.scheduling import reap_expired_leases

        job.lease_expires_at = 0.0
        reap_expired_leases(session, now=time.time())
        return True
    if phase not in _FINAL:
        raise InvalidSpec(f"unknown phase {phase!r} (one of: succeeded, failed, cancelled, lost)")
    job.exit_code = exit_code
    move(session, job, _FINAL[phase], reason or f"exit code {exit_code}")
    return True


def record_usage(session: Session, agent: Principal, reports: list[UsageReport]) -> int:
    """Store new usage records; duplicates of already stored keys are skipped.  Returns how many were new."""
    if not reports:
        return 0
    keys = [(r.job_id, r.attempt, r.seq) for r in reports]
    seen: set[tuple[str, int, int]] = set(
        session.execute(
            select(UsageRow.job_id, UsageRow.attempt, UsageRow.seq).where(
                tuple_(UsageRow.job_id, UsageRow.attempt, UsageRow.seq).in_(keys)
            )
        ).all()
    )
    pools = {p.name: p for p in session.scalars(select(PoolRow).where(PoolRow.site == agent.site))}
    now = time.time()
    added: list[UsageRow] = []
    for r in reports:
        key = (r.job_id, r.attempt, r.seq)
        if key in seen:
            continue
        seen.add(key)
        job = session.get(JobRow, r.job_id)
        if job is None or (job.site != agent.site and r.attempt >= job.attempt) or r.attempt > job.attempt:
            raise InvalidSpec(f"usage for job {r.job_id} attempt {r.attempt} does not belong to site {agent.site}")
        pool = pools.get(r.pool)
        if pool is None:
            raise InvalidSpec(f"usage names pool {r.pool!r}, which site {agent.site} does not have")
        if min(r.wall_s, r.cpu_s, r.device_s, r.peak_memory_bytes) < 0 or r.end < r.start:
            raise InvalidSpec(f"usage {key} has negative quantities or ends before it starts")
        core_s = job.cores * r.wall_s
        added.append(UsageRow(
            job_id=r.job_id, attempt=r.attempt, seq=r.seq, tenant_id=job.tenant_id, site=agent.site or "",
            pool=r.pool, resource_class=job.resource_class, start=r.start, end=r.end, wall_s=r.wall_s,
            cpu_s=r.cpu_s, core_s=core_s, device_s=r.device_s, peak_memory_bytes=r.peak_memory_bytes,
            units_nano=units_nano(pool, core_s=core_s, device_s=r.device_s), reported_at=now,
        ))
    session.add_all(added)
    session.flush()
    queue_for_rating(session, [u.id for u in added])
    return len(added)


def queue_for_rating(session: Session, usage_ids: Sequence[int]) -> None:
    """Put usage records on the rating worker's queue (in the transaction that stores them)."""
    if usage_ids:
        session.execute(insert(UnratedUsageRow), [{"id": i} for i in usage_ids])


def units_nano(pool: PoolRow, *, core_s: float, device_s: float) -> int:
    """Standard compute units of allocated core- and device-seconds, as integer nano-units."""
    cat = units.load_catalog()
    try:
        cpu = cat.get(pool.cpu_model or "cpu-core")
    except InvalidSpec:  # a CPU the catalog does not know counts as the generic core
        cpu = cat.get("cpu-core")
    per_hour = Decimal(str(core_s)) * units.scu_per_hour(cpu)
    if device_s:
        per_hour += Decimal(str(device_s)) * units.scu_per_hour(cat.get(pool.device_model))
    return int((per_hour / 3600 * 1_000_000_000).to_integral_value())


def store_log_chunk(session: Session, agent: Principal, *, job_id: str, attempt: int, offset: int, data: bytes) -> None:
    if len(data) > MAX_LOG_CHUNK:
        raise InvalidSpec(f"log chunk of {len(data)} bytes exceeds {MAX_LOG_CHUNK}")
    if offset < 0:
        raise InvalidSpec("log offset must not be negative")
    job = session.get(JobRow, job_id)
    # another site's job answers 404, as usage does (an older attempt may have run elsewhere before a requeue)
    if job is None or attempt > job.attempt or (job.site != agent.site and attempt >= job.attempt):
        from suanwang.errors import NotFound

        raise NotFound(f"job {job_id} attempt {attempt} not found")
    exists = session.scalar(
        select(LogChunkRow.id).where(LogChunkRow.job_id == job_id, LogChunkRow.attempt == attempt, LogChunkRow.offset == offset)
    )
    if exists is None:
        try:
            with session.begin_nested():
                session.add(LogChunkRow(job_id=job_id, attempt=attempt, offset=offset, data=data))
        except IntegrityError:
            pass  # a concurrent retry stored the same chunk
