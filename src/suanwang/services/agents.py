"""The platform side of the agent protocol: lease, heartbeat, status, usage and logs.

Agents pull.  A lease is renewed by heartbeats; the scheduling pass requeues
jobs whose lease lapsed.  Every report carries (job, attempt[, seq]) so a
retried or stale report changes nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from suanwang.domain import units
from suanwang.domain.catalogue import rate_cpu, rate_device
from suanwang.domain.job import LEASED_STATES, JobState
from suanwang.domain.packing import WHOLE
from suanwang.errors import InvalidSpec, NotFound
from suanwang.services.attempts import (
    AttemptOutcome,
    attempts_by_key,
    end_attempt,
    record_attempt,
    record_final_report,
)
from suanwang.services.auth import Principal
from suanwang.services.jobs import move
from suanwang.services.sites import get_site
from suanwang.store.db import is_postgres
from suanwang.store.tables import JobEventRow, JobRow, LogChunkRow, PoolRow, UnratedUsageRow, UsageRow

MAX_LOG_CHUNK = 1 << 20
MAX_LOG_BYTES = 1 << 28  # per attempt: a log chunk may not start or end past this offset
MAX_PEAK_MEMORY_BYTES = (1 << 63) - 1
CLOCK_SKEW_S = 120.0  # an agent's clock may differ from the platform's by this much (Settings.usage_clock_skew_s)
WALL_TOLERANCE_S = 1.0  # measured wall time may pass its report window by this, plus WALL_TOLERANCE_RATIO
WALL_TOLERANCE_RATIO = 0.01
_FINAL = {"succeeded": JobState.SUCCEEDED, "failed": JobState.FAILED, "cancelled": JobState.CANCELLED}
_PHASES = ("started", *_FINAL, "lost")
_LEASED = tuple(s.value for s in LEASED_STATES)


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
    shots: int = 0  # quantum: circuit executions done in this window


def lease_jobs(
    session: Session, agent: Principal, *, max_jobs: int, lease_s: float, request_id: str = "",
    now: float | None = None,
) -> list[JobRow]:
    """Hand this site's placed jobs to its agent as new attempts.

    A leased attempt is ``queued_at_site`` until the agent reports that its
    engine started it.  A call repeated with the same ``request_id`` (its reply
    was lost: the platform restarted, the connection dropped) gets the attempts
    it leased the first time, still leased, instead of leaving them to lapse unrun.
    ``now`` (epoch seconds) is the caller's clock; by default the system's.
    """
    now = time.time() if now is None else now
    if request_id:
        replay = list(session.scalars(
            select(JobRow).where(JobRow.site == agent.site, JobRow.state.in_(_LEASED),
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
        job.started_at = None  # set when the engine starts it (report_status phase "started")
        job.lease_expires_at = now + lease_s
        job.lease_request = request_id or None
        record_attempt(session, job, now=now)
        move(session, job, JobState.QUEUED_AT_SITE, f"leased by agent of {agent.site}", now=now)
    return jobs


def heartbeat(
    session: Session, agent: Principal, running: list[tuple[str, int]], *, lease_s: float, info: dict[str, Any],
    now: float | None = None,
) -> list[tuple[str, int]]:
    """Renew leases of attempts the agent still runs; return the attempts it must kill."""
    now = time.time() if now is None else now
    site = get_site(session, agent.site or "")
    site.online = True
    site.last_seen = now
    if info:
        site.agent_info = info
    kill: list[tuple[str, int]] = []
    for job_id, attempt in running:
        job = session.get(JobRow, job_id)
        if job is None or job.site != agent.site or job.attempt != attempt or job.state not in _LEASED:
            kill.append((job_id, attempt))
        else:
            job.lease_expires_at = now + lease_s
    return kill


def report_status(
    session: Session, agent: Principal, *, job_id: str, attempt: int, phase: str, exit_code: int | None, reason: str,
    started_at: float | None = None, now: float | None = None,
) -> bool:
    """Apply an attempt's start or final state; False when the report is stale (job moved on).

    ``started`` (the engine started the process at ``started_at``) makes a
    ``queued_at_site`` job ``running``.  A final report may come without it
    (the job finished between two polls); its ``started_at`` then dates the
    start.  The start time is bounded to the lease's time .. now: an agent's
    clock cannot date work before the platform handed it out, or in the future.
    """
    if phase not in _PHASES:
        raise InvalidSpec(f"unknown phase {phase!r} (one of: {', '.join(_PHASES)})")
    job = session.get(JobRow, job_id, with_for_update=True)  # a reaping pass must not move it under us
    if job is None or job.site != agent.site:

        raise NotFound(f"job {job_id} not found")
    now = time.time() if now is None else now
    if attempt <= job.attempt and phase != "started":
        # A final report: its usage was sent before it, so the hold of a cancelled job need not wait for more
        # (billing).  "started" is not final: the attempt may still run and report usage after it.
        record_final_report(session, job_id, attempt, now=now)
    if job.attempt != attempt or job.state not in _LEASED:
        return False
    if phase == "started":
        if job.state == JobState.QUEUED_AT_SITE.value:
            job.started_at = _bounded_start(session, job, started_at, now=now)
            move(session, job, JobState.RUNNING, "started by the site's engine", now=now)
        return True
    if job.started_at is None and started_at is not None and phase != "lost":
        job.started_at = _bounded_start(session, job, started_at, now=now)  # it finished between two polls
    if phase == "lost":
        from suanwang.services.scheduling import reap_expired_leases

        job.lease_expires_at = 0.0  # reaping records the attempt as lost
        reap_expired_leases(session, now=now)
        return True
    job.exit_code = exit_code
    end_attempt(session, job, AttemptOutcome(phase), now=now)
    move(session, job, _FINAL[phase], reason or f"exit code {exit_code}", now=now)
    return True


def _bounded_start(session: Session, job: JobRow, reported: float | None, *, now: float) -> float:
    """The engine's start time, clamped to when this attempt was leased .. now (a missing one reads as now)."""
    leased = session.scalar(
        select(JobEventRow.at).where(JobEventRow.job_id == job.id, JobEventRow.attempt == job.attempt,
                                     JobEventRow.to_state == JobState.QUEUED_AT_SITE.value)
        .order_by(JobEventRow.id.desc()).limit(1)
    )
    if reported is None or not math.isfinite(reported):
        return now
    return min(max(reported, leased if leased is not None else now), now)


def record_usage(session: Session, agent: Principal, reports: list[UsageReport], *,
                 clock_skew_s: float = CLOCK_SKEW_S, now: float | None = None) -> int:
    """Store new usage records; duplicates of already stored keys are skipped.  Returns how many were new.

    Every record must belong to an attempt leased to the agent's own site and
    pool (else NotFound), and measure what could have happened (else
    InvalidSpec): see :func:`check_usage_bounds` and :func:`_check_no_overlap`.
    One bad record refuses the whole batch, and nothing is stored.
    """
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
    leased = attempts_by_key(session, [(r.job_id, r.attempt) for r in reports])
    jobs = {j.id: j for j in session.scalars(select(JobRow).where(JobRow.id.in_({r.job_id for r in reports})))}
    pools = {p.name: p for p in session.scalars(select(PoolRow).where(PoolRow.site == agent.site))}
    now = time.time() if now is None else now
    fresh: list[UsageReport] = []
    for r in reports:
        key = (r.job_id, r.attempt, r.seq)
        if key in seen:
            continue
        seen.add(key)
        attempt = leased.get((r.job_id, r.attempt))
        if attempt is None or attempt.site != agent.site or r.job_id not in jobs:
            raise NotFound(f"usage refused: job {r.job_id} has no attempt {r.attempt} leased to site {agent.site}")
        if attempt.pool != r.pool or r.pool not in pools:
            raise NotFound(f"usage refused: attempt {r.attempt} of job {r.job_id} was leased to pool "
                           f"{attempt.pool!r}, not {r.pool!r}")
        job = jobs[r.job_id]
        check_usage_bounds(r, cores=job.cores, devices=job.devices, leased_at=attempt.leased_at, now=now,
                           skew_s=clock_skew_s)
        if r.shots and not 0 <= r.shots <= int(job.spec.get("shots") or 0):
            raise InvalidSpec(f"usage of job {r.job_id}: {r.shots} shots, more than the job's "
                              f"{job.spec.get('shots') or 0}")
        fresh.append(r)
    _check_no_overlap(session, fresh, leased)
    added: list[UsageRow] = []
    for r in fresh:
        job = jobs[r.job_id]
        core_s = job.cores * r.wall_s
        share = job.device_share or WHOLE  # a fraction of a card is metered by the fraction held
        device_s = r.device_s if share == WHOLE else float(held_device_s(r.device_s, share))
        added.append(UsageRow(
            job_id=r.job_id, attempt=r.attempt, seq=r.seq, tenant_id=job.tenant_id, site=agent.site or "",
            pool=r.pool, resource_class=job.resource_class, start=r.start, end=r.end, wall_s=r.wall_s,
            cpu_s=r.cpu_s, core_s=core_s, device_s=device_s, peak_memory_bytes=r.peak_memory_bytes,
            units_nano=units_nano(pools[r.pool], core_s=core_s, device_s=r.device_s, share=share), reported_at=now,
            shots=r.shots,
        ))
    session.add_all(added)
    session.flush()
    queue_for_rating(session, [u.id for u in added])
    return len(added)


def check_usage_bounds(r: UsageReport, *, cores: int, devices: int, leased_at: float, now: float,
                       skew_s: float = CLOCK_SKEW_S) -> None:
    """Refuse (InvalidSpec) a record that measures more than its attempt could have used.

    Bounds: every number finite; ``leased_at - skew <= start <= end <= now + skew``;
    ``0 <= wall_s <= (end - start) + tolerance``; ``cpu_s <= wall_s x cores`` and
    ``device_s <= wall_s x devices`` (each + tolerance).  The tolerance covers an
    engine that measures wall time apart from the report window (Slurm rounds to
    whole seconds); the skew, agents' clocks that differ from the platform's.
    """
    what = f"usage {r.job_id}/{r.attempt}/{r.seq}"
    numbers = {"start": r.start, "end": r.end, "wall_s": r.wall_s, "cpu_s": r.cpu_s, "device_s": r.device_s}
    for name, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidSpec(f"{what}: {name} must be a finite number, got {value!r}")
        if value < 0:
            raise InvalidSpec(f"{what}: {name} must not be negative, got {value!r}")
    if isinstance(r.peak_memory_bytes, bool) or not isinstance(r.peak_memory_bytes, int) or not (
            0 <= r.peak_memory_bytes <= MAX_PEAK_MEMORY_BYTES):
        raise InvalidSpec(f"{what}: peak_memory_bytes must be an integer within 0..{MAX_PEAK_MEMORY_BYTES}")
    if r.end < r.start:
        raise InvalidSpec(f"{what} ends before it starts ({r.end} < {r.start})")
    if r.start < leased_at - skew_s:
        raise InvalidSpec(f"{what} starts at {r.start}, before its attempt was leased at {leased_at}")
    if r.end > now + skew_s:
        raise InvalidSpec(f"{what} ends at {r.end}, in the future (now is {now:.0f})")
    slack = wall_tolerance_s(r.end - r.start)
    if r.wall_s > (r.end - r.start) + slack:
        raise InvalidSpec(f"{what}: wall_s {r.wall_s} exceeds its interval of {r.end - r.start} s")
    if r.cpu_s > (r.wall_s + slack) * max(cores, 1):
        raise InvalidSpec(f"{what}: cpu_s {r.cpu_s} exceeds wall_s x {cores} allocated cores")
    if r.device_s > (r.wall_s + slack) * devices:
        raise InvalidSpec(f"{what}: device_s {r.device_s} exceeds wall_s x {devices} allocated devices")


def wall_tolerance_s(interval_s: float) -> float:
    """How far measured wall time may pass its report window: 1 s plus 1 %."""
    return WALL_TOLERANCE_S + interval_s * WALL_TOLERANCE_RATIO


def _check_no_overlap(session: Session, fresh: Sequence[UsageReport], leased: dict[tuple[str, int], Any]) -> None:
    """Refuse records of one attempt whose intervals overlap (the same seconds billed twice), and an
    attempt whose records together claim more wall time than their span (tolerance counted once)."""
    if not fresh:
        return
    by_attempt: dict[tuple[str, int], list[tuple[float, float, str]]] = {}  # (start, end, which record)
    for r in fresh:
        by_attempt.setdefault((r.job_id, r.attempt), []).append((r.start, r.end, f"seq {r.seq}"))
    lo, hi = min(r.start for r in fresh), max(r.end for r in fresh)
    stored = session.execute(
        select(UsageRow.job_id, UsageRow.attempt, UsageRow.seq, UsageRow.start, UsageRow.end).where(
            UsageRow.job_id.in_({k[0] for k in by_attempt}), UsageRow.end > lo, UsageRow.start < hi))
    for job_id, attempt, seq, start, end in stored:
        if (job_id, attempt) in by_attempt:
            by_attempt[(job_id, attempt)].append((start, end, f"stored seq {seq}"))
    for (job_id, attempt), spans in by_attempt.items():
        latest: tuple[float, float, str] | None = None  # the span reaching furthest so far
        for span in sorted(s for s in spans if s[1] > s[0]):  # an empty interval overlaps nothing
            if latest is not None and span[0] < latest[1]:
                raise InvalidSpec(f"usage of job {job_id} attempt {attempt}: {span[2]} [{span[0]}, {span[1]}) "
                                  f"overlaps {latest[2]} [{latest[0]}, {latest[1]}): the same seconds twice")
            if latest is None or span[1] > latest[1]:
                latest = span
    totals = session.execute(
        select(UsageRow.job_id, UsageRow.attempt, func.sum(UsageRow.wall_s), func.min(UsageRow.start),
               func.max(UsageRow.end))
        .where(tuple_(UsageRow.job_id, UsageRow.attempt).in_(sorted(by_attempt)))
        .group_by(UsageRow.job_id, UsageRow.attempt))
    claimed = {(j, a): (float(w or 0.0), [s] if s is not None else [], [e] if e is not None else [])
               for j, a, w, s, e in totals}
    for r in fresh:
        wall, starts, ends = claimed.setdefault((r.job_id, r.attempt), (0.0, [], []))
        claimed[(r.job_id, r.attempt)] = (wall + r.wall_s, [*starts, r.start], [*ends, r.end])
    for (job_id, attempt), (wall, starts, ends) in claimed.items():
        reach_s = max(ends) - min(starts)
        if wall > reach_s + wall_tolerance_s(reach_s):
            raise InvalidSpec(f"usage of job {job_id} attempt {attempt} claims {wall:.3f} s of wall time "
                              f"within {reach_s:.3f} s")


def queue_for_rating(session: Session, usage_ids: Sequence[int]) -> None:
    """Put usage records on the rating worker's queue (in the transaction that stores them)."""
    if usage_ids:
        session.execute(insert(UnratedUsageRow), [{"id": i} for i in usage_ids])


def held_device_s(device_s: float, share: int) -> Decimal:
    """Device-seconds of a card times the share of it held (milli-cards), exactly."""
    return Decimal(str(device_s)) * share / WHOLE


def units_nano(pool: PoolRow, *, core_s: float, device_s: float, share: int = WHOLE) -> int:
    """Standard compute units of allocated core- and device-seconds, as integer nano-units.

    ``share``: the milli-cards of each card held (a fraction of a card earns that fraction of the card's units;
    core-seconds are unchanged).

    A quantum pool earns none: the SCU is FP32 throughput, which a qubit has not; its usage is
    metered in shots and circuit-seconds (``device_s``) and priced by the shot."""
    if pool.resource_class == "quantum":
        return 0
    cat = units.load_catalog()
    # A model the catalogue does not know is metered at its stated conservative rate (flagged at register).
    per_hour = Decimal(str(core_s)) * units.scu_per_hour(rate_cpu(cat, pool.cpu_model or "").spec)
    if device_s:
        per_hour += held_device_s(device_s, share) * units.scu_per_hour(rate_device(cat, pool.device_model or "").spec)
    return int((per_hour / 3600 * 1_000_000_000).to_integral_value())


def store_log_chunk(session: Session, agent: Principal, *, job_id: str, attempt: int, offset: int, data: bytes) -> None:
    """Store one chunk of an attempt's log: only the agent of the site that ran the attempt may."""
    if len(data) > MAX_LOG_CHUNK:
        raise InvalidSpec(f"log chunk of {len(data)} bytes exceeds {MAX_LOG_CHUNK}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidSpec(f"log offset must be an integer >= 0, got {offset!r}")
    if offset + len(data) > MAX_LOG_BYTES:
        raise InvalidSpec(f"log chunk at offset {offset} would pass the {MAX_LOG_BYTES}-byte limit of an attempt's log")
    leased = attempts_by_key(session, [(job_id, attempt)]).get((job_id, attempt))
    if leased is None or leased.site != agent.site:
        raise NotFound(f"log refused: job {job_id} has no attempt {attempt} leased to site {agent.site}")
    exists = session.scalar(
        select(LogChunkRow.id).where(LogChunkRow.job_id == job_id, LogChunkRow.attempt == attempt,
                                     LogChunkRow.offset == offset)
    )
    if exists is None:
        try:
            with session.begin_nested():
                session.add(LogChunkRow(job_id=job_id, attempt=attempt, offset=offset, data=data))
        except IntegrityError:
            pass  # a concurrent retry stored the same chunk
