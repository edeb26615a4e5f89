"""Jobs: submit, read, list, cancel; every state change goes through ``move``."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from suanwang.clock import SYSTEM_CLOCK, Clock
from suanwang.domain.job import JobSpec, JobState, check_transition, parse_devices
from suanwang.domain.placement import check_placeable
from suanwang.domain.resources import LostPolicy, ResourceClass, ServiceLevel
from suanwang.errors import InvalidSpec, NotFound
from suanwang.services import billing, market_reservations
from suanwang.services.attempts import AttemptOutcome, end_attempt
from suanwang.services.audit import record_audit
from suanwang.services.auth import Principal, Role, new_id
from suanwang.services.sites import cached_pools
from suanwang.services.views import Job, JobEvent, UsageRecord
from suanwang.store.tables import JobEventRow, JobRow, LogChunkRow, UsageRow

_ENUM_FIELDS = {"resource_class": ResourceClass, "service_level": ServiceLevel, "on_lost": LostPolicy}


def spec_from_json(data: dict[str, Any]) -> JobSpec:
    """Build a JobSpec from stored or submitted JSON; raise InvalidSpec with what is wrong."""
    values = dict(data)
    for key, enum_type in _ENUM_FIELDS.items():
        if key in values:
            try:
                values[key] = enum_type(values[key])
            except ValueError:
                allowed = ", ".join(m.value for m in enum_type)
                raise InvalidSpec(f"unknown {key} {values[key]!r} (one of: {allowed})") from None
    values["command"] = tuple(values.get("command") or ())
    if isinstance(values.get("devices"), float | str):  # a submission: 0.25 is a fraction of one card
        values["devices"], values["device_share"] = parse_devices(values["devices"])
    for key in _TUPLE_FIELDS:
        if key in values:
            values[key] = tuple(values[key] or ())
    if values.get("circuit") and "qubits" not in values:  # a new submission: read the circuit, never trust a count
        _read_circuit(values)
    try:
        return JobSpec(**values)
    except TypeError as exc:
        raise InvalidSpec(f"bad job spec: {exc}") from exc


_SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(JobSpec))
_TUPLE_FIELDS = ("device_models", "exclude_device_models", "gates")


def _read_circuit(values: dict[str, Any]) -> None:
    """A quantum submission: the parser's qubits and gate set go into the spec; the job holds one backend
    slot (devices 1, no cores or memory of the platform's)."""
    from suanwang.services.circuits import analyse

    if values.get("resource_class") is not ResourceClass.QUANTUM:
        raise InvalidSpec("circuit and shots are for quantum jobs (resource_class quantum)")
    needs = analyse(values["circuit"])
    values.update(qubits=needs.qubits, gates=needs.gates, devices=1, cores=0, memory_gb=0.0)


def spec_to_json(spec: JobSpec) -> dict[str, Any]:
    # Field by field rather than ``dataclasses.asdict``, whose deep copy is most of a batch submit's cost.
    data = {name: getattr(spec, name) for name in _SPEC_FIELDS}
    data["command"] = list(spec.command)
    data["env"] = dict(spec.env)
    for key in _TUPLE_FIELDS:
        data[key] = list(data[key])
    for key in _ENUM_FIELDS:
        data[key] = str(data[key])
    return data


def move(
    session: Session, job: JobRow, new: JobState, reason: str = "", *, now: float | None = None,
    clock: Clock = SYSTEM_CLOCK
) -> None:
    """Change a job's state if the lifecycle allows it, and log the event."""
    current = JobState(job.state)
    check_transition(current, new)
    at = now if now is not None else clock.time()
    job.state = new.value
    if reason:
        job.reason = reason[:2000]
    if new.is_terminal:
        job.finished_at = at
        job.lease_expires_at = None
        billing.release_job_hold(session, job, now=at)  # money: give back what remains of its hold
    session.add(JobEventRow(job_id=job.id, at=at, attempt=job.attempt, from_state=current.value, to_state=new.value,
                            reason=reason[:2000]))


def submit_jobs(
    session: Session, actor: Principal, specs: Sequence[JobSpec], *, client_keys: Sequence[str | None] | None = None,
    clock: Clock = SYSTEM_CLOCK
) -> list[Job]:
    """Accept jobs (all or none): each must be placeable on some registered pool.

    Rows are written with bulk INSERTs (one statement per table for the whole
    batch), which is what makes batched submission fast.
    """
    pools = cached_pools(session)
    keys = list(client_keys) if client_keys else [None] * len(specs)
    now = clock.time()
    rows: list[Job] = []
    new: list[dict[str, Any]] = []
    priced: list[tuple[str, JobSpec]] = []
    for spec, key in zip(specs, keys, strict=True):
        if key:
            existing = session.scalar(select(JobRow).where(JobRow.tenant_id == actor.tenant_id,
                                                           JobRow.client_key == key))
            if existing is not None:
                rows.append(Job.of(existing))
                continue
        check_placeable(spec, pools)
        if spec.contract:  # market: the caller's own contract, of this class, not over (else 404/422/409)
            market_reservations.check_contract(session, actor.tenant_id, spec, now=now)
        job_id = new_id("j")
        values: dict[str, Any] = {
            "id": job_id, "tenant_id": actor.tenant_id, "name": spec.name, "state": JobState.PENDING.value,
            "spec": spec_to_json(spec), "resource_class": spec.resource_class.value, "cores": spec.cores,
            "memory_gb": spec.memory_gb, "devices": spec.devices, "device_share": spec.device_share,
            "priority": spec.priority, "site": None,
            "pool": None, "attempt": 0, "lease_expires_at": None, "cancel_requested": False, "client_key": key,
            "submitted_at": now, "placed_at": None, "started_at": None, "finished_at": None, "exit_code": None,
            "reason": "", "placement": {},
        }
        new.append(values)
        priced.append((job_id, spec))
        rows.append(Job.of_values(values))  # shares ``spec``: the price limit set below shows in it
    limits = billing.hold_for_submit(session, actor, priced, pools, now=now)  # money: 402 if it cannot be covered
    for values in new if limits else ():  # the hold's bound becomes the job's price limit (scheduler's price rule)
        if values["id"] in limits:
            values["spec"]["max_price_fen"] = limits[values["id"]]
    if new:
        session.execute(insert(JobRow.__table__), new)  # Core: the ORM's bulk path costs more per row
        session.execute(insert(JobEventRow.__table__), [
            {"job_id": v["id"], "at": now, "attempt": 0, "from_state": "", "to_state": "pending", "reason": "submitted"}
            for v in new
        ])
    if len(rows) == 1:
        record_audit(session, actor, "job.submit", rows[0].id, count=1)
    else:  # every id of a batch stays traceable, in the detail; the object column holds one name
        record_audit(session, actor, "job.submit", f"batch of {len(rows)}", count=len(rows), jobs=[r.id for r in rows])
    return rows


def visible(actor: Principal, job: JobRow) -> bool:
    if actor.sees_all:
        return True
    if actor.role is Role.AGENT:
        return job.site == actor.site
    return job.tenant_id == actor.tenant_id


def get_job(session: Session, actor: Principal, job_id: str, *, for_update: bool = False) -> JobRow:
    query = select(JobRow).where(JobRow.id == job_id)
    if for_update:
        query = query.with_for_update()
    job = session.scalar(query)
    if job is None or not visible(actor, job):
        raise NotFound(f"job {job_id} not found")
    return job


def list_jobs(
    session: Session,
    actor: Principal,
    *,
    state: str | None = None,
    site: str | None = None,
    limit: int = 100,
    before: str | None = None,
) -> list[Job]:
    """Newest first; ``before`` is the last id of the previous page (keyset pagination)."""
    query = select(JobRow)
    if not actor.sees_all:
        query = query.where(JobRow.tenant_id == actor.tenant_id)
    if state:
        try:
            JobState(state)
        except ValueError:
            raise InvalidSpec(f"unknown state {state!r} (one of: {', '.join(s.value for s in JobState)})") from None
        query = query.where(JobRow.state == state)
    if site:
        query = query.where(JobRow.site == site)
    if before:
        anchor = get_job(session, actor, before)
        query = query.where(
            (JobRow.submitted_at < anchor.submitted_at)
            | ((JobRow.submitted_at == anchor.submitted_at) & (JobRow.id < anchor.id))
        )
    query = query.order_by(JobRow.submitted_at.desc(), JobRow.id.desc()).limit(limit)
    return [Job.of(row) for row in session.scalars(query)]


def show_job(session: Session, actor: Principal, job_id: str) -> Job:
    """The job as the caller may see it (404 otherwise)."""
    return Job.of(get_job(session, actor, job_id))


def cancel_job(session: Session, actor: Principal, job_id: str) -> Job:
    """Cancel at once in the platform; a leased attempt (queued at its site or running) is killed by its agent
    on its next heartbeat."""
    job = get_job(session, actor, job_id, for_update=True)
    if JobState(job.state).is_terminal:
        from suanwang.errors import Conflict

        raise Conflict(f"job {job_id} is already {job.state}")
    if JobState(job.state).is_leased:
        job.cancel_requested = True
    end_attempt(session, job, AttemptOutcome.CANCELLED)  # before move: the hold waits for its last usage
    move(session, job, JobState.CANCELLED, f"cancelled by {actor.role}")
    record_audit(session, actor, "job.cancel", job_id)
    return Job.of(job)


def job_events(session: Session, actor: Principal, job_id: str) -> list[JobEvent]:
    get_job(session, actor, job_id)
    query = select(JobEventRow).where(JobEventRow.job_id == job_id).order_by(JobEventRow.id)
    return [JobEvent.of(row) for row in session.scalars(query)]


def read_logs(session: Session, actor: Principal, job_id: str, *, attempt: int | None = None) -> tuple[int, bytes]:
    """The log of one attempt (default: the latest) as (attempt, bytes)."""
    job = get_job(session, actor, job_id)
    attempt = job.attempt if attempt is None else attempt
    chunks = session.scalars(
        select(LogChunkRow).where(LogChunkRow.job_id == job_id,
                                  LogChunkRow.attempt == attempt).order_by(LogChunkRow.offset)
    )
    out = bytearray()
    for chunk in chunks:
        if chunk.offset <= len(out):  # chunks may overlap after a retried upload
            out[chunk.offset :] = chunk.data
    return attempt, bytes(out)


def list_usage(
    session: Session, actor: Principal, *, job_id: str | None = None, limit: int = 1000
) -> list[UsageRecord]:
    query = select(UsageRow)
    if job_id:
        get_job(session, actor, job_id)
        query = query.where(UsageRow.job_id == job_id)
    elif actor.role is Role.AGENT:
        query = query.where(UsageRow.site == actor.site)
    elif not actor.sees_all:
        query = query.where(UsageRow.tenant_id == actor.tenant_id)
    return [UsageRecord.of(row) for row in session.scalars(query.order_by(UsageRow.id).limit(limit))]


def count_by_state(session: Session) -> dict[str, int]:
    rows = session.execute(select(JobRow.state, func.count()).group_by(JobRow.state))
    return dict(rows.all())  # a Result has keys(): dict() would read it as a mapping
