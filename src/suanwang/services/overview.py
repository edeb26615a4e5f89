"""Public aggregates: what anyone may see without a token (the page at /), and the gauges /metrics reads.

Nothing here names a job, a command or a tenant: only sites, pools, free
capacity per resource class and counts of jobs by state.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suanwang.clock import SYSTEM_CLOCK, Clock
from suanwang.domain.job import JobState
from suanwang.services.jobs import count_by_state
from suanwang.services.scheduling import pool_states
from suanwang.store.tables import JobRow, UnratedUsageRow, UsageRow


@dataclass(frozen=True, slots=True)
class ClassCapacity:
    """One resource class over the online pools: what is free now of what there is."""

    resource_class: str
    free_cores: int
    cores: int
    free_devices: int
    devices: int


def free_capacity_by_class(session: Session) -> list[ClassCapacity]:
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for state in pool_states(session):
        if not state.online:
            continue
        t = totals[state.pool.resource_class.value]
        t[0] += max(0, state.free.cores)
        t[1] += state.pool.capacity.cores
        t[2] += max(0, state.free.devices)
        t[3] += state.pool.capacity.devices
    return [ClassCapacity(k, *v) for k, v in sorted(totals.items())]


def job_counts(session: Session) -> dict[str, int]:
    return dict(sorted(count_by_state(session).items()))


_QUEUE_STATES = {JobState.PENDING.value: "pending", JobState.REQUEUED.value: "pending",
                 JobState.PLACED.value: "placed", JobState.QUEUED_AT_SITE.value: "queued_at_site",
                 JobState.RUNNING.value: "running"}


def queue_depth(session: Session) -> list[tuple[tuple[str, str, str], float]]:
    """Jobs pending (requeued counts as pending), placed, queued at the site and running, by (class, site, state)."""
    rows = session.execute(select(JobRow.resource_class, JobRow.site, JobRow.state, func.count())
                           .where(JobRow.state.in_(list(_QUEUE_STATES)))
                           .group_by(JobRow.resource_class, JobRow.site, JobRow.state))
    depth: dict[tuple[str, str, str], float] = defaultdict(float)
    for resource_class, site, state, n in rows:
        depth[(resource_class, site or "", _QUEUE_STATES[state])] += n
    return sorted(depth.items())


def rating_lag(session: Session, *, now: float | None = None, clock: Clock = SYSTEM_CLOCK) -> tuple[int, float]:
    """(usage records waiting to be rated, age in seconds of the oldest one; 0 when none)."""
    backlog = session.scalar(select(func.count()).select_from(UnratedUsageRow)) or 0
    if not backlog:
        return 0, 0.0
    oldest_id = session.scalar(select(func.min(UnratedUsageRow.id)))
    reported = session.scalar(select(UsageRow.reported_at).where(UsageRow.id == oldest_id))
    now = clock.time() if now is None else now
    return int(backlog), max(0.0, now - reported) if reported is not None else 0.0
