"""Reads that only the console's pages need (the API has no route for them), as plain values.

The web layer shapes and caches these; the SQL stays here, beside the other services (STYLE #9, #12).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, cast, func, select
from sqlalchemy.orm import Session

from suanwang.store.market_tables import MarketClearRow
from suanwang.store.tables import JobEventRow, JobRow, UnratedUsageRow, UsageRow

HOUR = 3600
_ACTIVE = ("placed", "queued_at_site", "running")


@dataclass(frozen=True, slots=True)
class HourUsage:
    """Core- and card-seconds of one (site, pool, class) in one whole hour since the epoch."""

    site: str
    pool: str
    resource_class: str
    hour: int
    core_s: float
    device_s: float


@dataclass(frozen=True, slots=True)
class PlacementEvent:
    """One placement of a job: when, which attempt, and when the job was submitted."""

    at: float
    attempt: int
    submitted_at: float


@dataclass(frozen=True, slots=True)
class Accruing:
    """A tenant's spend accruing now: usage not yet rated, and its jobs that hold capacity."""

    unrated_records: int
    unrated_units_nano: int
    active_jobs: int


def _hour_of(session: Session, column: Any) -> Any:
    """The whole hour (since the epoch) of a time column, in SQL: floor on PostgreSQL; SQLite's CAST truncates,
    which is the floor for the positive times stored here."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.floor(column / HOUR), Integer)
    return cast(column / HOUR, Integer)


def usage_by_hour(session: Session, since: float) -> list[HourUsage]:
    """Core- and card-seconds per (site, pool, class, hour) since ``since``, summed in the database.

    A record counts in the hour it starts: agents report every ``usage_interval_s`` (10 s by default), so a
    record rarely spans an hour's end and the error is at most one report."""
    hour = _hour_of(session, UsageRow.start).label("hour")
    query = (select(UsageRow.site, UsageRow.pool, UsageRow.resource_class, hour,
                    func.sum(UsageRow.core_s), func.sum(UsageRow.device_s))
             .where(UsageRow.start >= since)
             .group_by(UsageRow.site, UsageRow.pool, UsageRow.resource_class, hour))
    return [HourUsage(site, pool, cls, int(h), float(core_s or 0), float(device_s or 0))
            for site, pool, cls, h, core_s, device_s in session.execute(query)]


def recent_placements(session: Session, *, limit: int) -> list[PlacementEvent]:
    """The newest ``limit`` placements, newest first."""
    rows = session.execute(select(JobEventRow.at, JobEventRow.attempt, JobRow.submitted_at)
                           .join(JobRow, JobRow.id == JobEventRow.job_id)
                           .where(JobEventRow.to_state == "placed").order_by(JobEventRow.id.desc())
                           .limit(limit))
    return [PlacementEvent(at, attempt, submitted_at) for at, attempt, submitted_at in rows]


def accruing(session: Session, tenant_id: str) -> Accruing:
    """Usage the tenant's jobs reported that rating has not priced yet, and its jobs placed or running."""
    records, units = session.execute(
        select(func.count(), func.sum(UsageRow.units_nano)).join(UnratedUsageRow, UnratedUsageRow.id == UsageRow.id)
        .where(UsageRow.tenant_id == tenant_id)).one()
    running = session.scalar(select(func.count()).select_from(JobRow).where(
        JobRow.tenant_id == tenant_id, JobRow.state.in_(_ACTIVE)))
    return Accruing(int(records or 0), int(units or 0), int(running or 0))


def cleared_sessions(session: Session, *, limit: int) -> list[str]:
    """The ids of the market sessions cleared last, newest first."""
    query = select(MarketClearRow.session_id).order_by(MarketClearRow.cleared_at.desc()).limit(limit)
    return list(session.scalars(query))
