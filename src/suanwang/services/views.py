"""What the API and the console show of jobs, usage and sites: plain frozen values, no session behind them.

Rows stay in the services and the store (STYLE #12): a service that answers a route returns one of these,
built here from its row in one place, so a route or a page never holds a mapped object (nor lazy-loads
through one after its transaction ended).  Each mirrors its row's columns that callers read; the API
schemas (``api/schemas.py``) pick what goes on the wire.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

_T = TypeVar("_T")


def _of(cls: type[_T], source: object) -> _T:
    """An instance of the dataclass ``cls`` from the same-named attributes of ``source`` (a row)."""
    return cls(**{name: getattr(source, name) for name in _FIELDS[cls]})


@dataclass(frozen=True, slots=True)
class Job:
    """A job: what it asked for (``spec``), where the scheduler put it (``placement``) and how it stands."""

    id: str
    tenant_id: str
    name: str
    state: str
    spec: dict[str, Any]
    resource_class: str
    cores: int
    memory_gb: float
    devices: int
    device_share: int  # milli-cards of one card; 0 for whole cards
    priority: int
    site: str | None
    pool: str | None
    attempt: int
    cancel_requested: bool
    submitted_at: float
    placed_at: float | None
    started_at: float | None
    finished_at: float | None
    exit_code: int | None
    reason: str
    placement: dict[str, Any]

    @classmethod
    def of(cls, row: object) -> Job:
        return _of(cls, row)

    @classmethod
    def of_values(cls, values: Mapping[str, Any]) -> Job:
        """From the column values a bulk INSERT wrote (submit), without building an ORM object."""
        return cls(**{name: values[name] for name in _FIELDS[cls]})


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One state change of a job."""

    at: float
    attempt: int
    from_state: str
    to_state: str
    reason: str

    @classmethod
    def of(cls, row: object) -> JobEvent:
        return _of(cls, row)


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One usage report of an attempt over ``[start, end)``; ``units_nano`` is standard compute units × 1e9."""

    id: int
    job_id: str
    attempt: int
    seq: int
    tenant_id: str
    site: str
    pool: str
    resource_class: str
    start: float
    end: float
    wall_s: float
    cpu_s: float
    core_s: float
    device_s: float
    peak_memory_bytes: int
    units_nano: int
    reported_at: float
    unbilled_reason: str | None  # set when rating charged the consumer nothing (lost_attempt)
    shots: int

    @classmethod
    def of(cls, row: object) -> UsageRecord:
        return _of(cls, row)


@dataclass(frozen=True, slots=True)
class SiteView:
    """A site as listed: where it is, its power, and whether its agent is online."""

    name: str
    tenant_id: str
    region: str
    province: str
    lat: float
    lon: float
    green_share: float
    carbon_kg_per_kwh: float
    online: bool
    last_seen: float
    agent_info: dict[str, Any]
    created_at: float

    @classmethod
    def of(cls, row: object) -> SiteView:
        return _of(cls, row)


@dataclass(frozen=True, slots=True)
class PoolView:
    """A pool as listed: its size and hardware, and what it is worth in standard compute units per hour."""

    site: str
    name: str
    resource_class: str
    engine: str
    tier: str
    cores: int
    memory_gb: float
    devices: int
    device_model: str
    device_memory_gb: float
    cpu_model: str
    scu_per_hour: str  # exact decimal, as text
    quantum: list[Any] | None  # a quantum pool's backends: qubits, basis gates, coupling
    sharing: dict[str, Any] | None  # how its cards are shared among fractions (None: whole cards only)
    catalogue_warning: str | None  # a model the catalogue does not know, and the rate it is metered at


_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in (Job, JobEvent, UsageRecord, SiteView)
}
