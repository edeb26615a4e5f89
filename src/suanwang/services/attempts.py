"""Attempts: each lease of a job to a site's agent, where it ran and how it ended.

Why: the job row only knows its latest attempt and its current site (a
requeued job moves on).  Usage and logs must be traced to the attempt that
produced them: an agent may report only for attempts leased to its own site
and pool, and usage of an attempt the platform declared lost is rated with no
charge to the consumer (``billing.rate_pending_usage``).

``record_attempt`` is called once per lease; ``end_attempt`` wherever an
attempt ends (agent's final status, lost lease, preemption, cancel).  The
first outcome recorded wins: ending an attempt that already ended, or a job
with no open attempt, changes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from sqlalchemy import select, tuple_, update
from sqlalchemy.orm import Session

from suanwang.clock import SYSTEM_CLOCK, Clock
from suanwang.store.db import is_postgres
from suanwang.store.sql_ledger import among
from suanwang.store.tables import AttemptRow, JobRow


@enum.unique
class AttemptOutcome(enum.StrEnum):
    SUCCEEDED = "succeeded"  # its agent reported exit 0
    FAILED = "failed"  # its agent reported a failure
    CANCELLED = "cancelled"  # the consumer, operator or credit line cancelled it (or its agent did)
    LOST = "lost"  # the platform declared it lost: the lease lapsed or its agent said so
    PREEMPTED = "preempted"  # the scheduler took its place for guaranteed work


def record_attempt(session: Session, job: JobRow, *, now: float) -> None:
    """Record that ``job``'s current attempt was just leased to its site and pool."""
    session.add(AttemptRow(job_id=job.id, attempt=job.attempt, site=job.site or "", pool=job.pool or "",
                           leased_at=now, ended_at=None, outcome=None))


def end_attempt(
    session: Session, job: JobRow, outcome: AttemptOutcome, *, now: float | None = None, clock: Clock = SYSTEM_CLOCK
) -> None:
    """Record how ``job``'s current attempt ended, if it is still open (a no-op otherwise)."""
    if not job.attempt:
        return
    session.execute(
        update(AttemptRow)
        .where(AttemptRow.job_id == job.id, AttemptRow.attempt == job.attempt, AttemptRow.outcome.is_(None))
        .values(outcome=outcome.value, ended_at=now if now is not None else clock.time())
        .execution_options(synchronize_session=False)
    )


def record_final_report(session: Session, job_id: str, attempt: int, *, now: float) -> None:
    """Record that the agent sent its final status for an attempt: none of its usage is still on the way."""
    session.execute(
        update(AttemptRow)
        .where(AttemptRow.job_id == job_id, AttemptRow.attempt == attempt, AttemptRow.final_report_at.is_(None))
        .values(final_report_at=now)
        .execution_options(synchronize_session=False)
    )


def may_still_report(session: Session, job: JobRow, *, now: float, grace_s: float) -> bool:
    """Whether usage of ``job``'s latest attempt may still arrive: the platform ended it (cancel) while it
    ran, its agent has not sent its final status yet, and ``grace_s`` has not passed since."""
    if not job.attempt:
        return False
    row = session.get(AttemptRow, (job.id, job.attempt))
    return (row is not None and row.outcome == AttemptOutcome.CANCELLED.value and row.final_report_at is None
            and (row.ended_at or 0.0) > now - grace_s)


def attempts_by_key(session: Session, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], AttemptRow]:
    """The recorded attempts among ``keys`` ((job_id, attempt) pairs), by key."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = session.scalars(select(AttemptRow).where(tuple_(AttemptRow.job_id, AttemptRow.attempt).in_(wanted)))
    return {(r.job_id, r.attempt): r for r in rows}


def lost_attempts(session: Session, job_ids: Iterable[str]) -> set[tuple[str, int]]:
    """The attempts of ``job_ids`` that the platform declared lost."""
    ids = sorted(set(job_ids))
    if not ids:
        return set()
    pg = is_postgres(session.get_bind())  # ``among``: one parameter for thousands of ids
    query = select(AttemptRow.job_id, AttemptRow.attempt).where(
        among(AttemptRow.job_id, ids, pg=pg), AttemptRow.outcome == AttemptOutcome.LOST.value)
    return {(j, a) for j, a in session.execute(query)}
