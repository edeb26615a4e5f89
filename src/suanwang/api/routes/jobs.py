"""Jobs and usage for consumers and operators."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import PlainTextResponse

from suanwang.api.deps import ClockDep, CurrentPrincipal, PlatformDep, SessionDep
from suanwang.api.schemas import INT32, JobBatchIn, JobListOut, JobOut, JobSubmitIn, UsageOut
from suanwang.services import job_data, jobs, scheduling, transfers
from suanwang.services.views import Job, UsageRecord

router = APIRouter(tags=["jobs"])


def job_out(job: Job) -> JobOut:
    return JobOut.model_validate(job, from_attributes=True)


def usage_out(record: UsageRecord) -> UsageOut:
    return UsageOut(
        **{k: getattr(record, k) for k in UsageOut.model_fields if k != "units"},
        units=f"{record.units_nano / 1_000_000_000:.9f}",
    )


@router.post("/jobs", status_code=201)
def submit_job(
    body: JobSubmitIn, actor: CurrentPrincipal, platform: PlatformDep, clock: ClockDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,  # jobs.client_key's width
) -> JobOut:
    data = body.model_dump(exclude={"inputs", "output"})
    job_data.check_output_name(body.output)
    # The transaction is opened here rather than through SessionDep: the hottest route saves
    # the generator dependency's extra threadpool round trips.
    with platform.db.transaction() as session:
        inputs = job_data.resolve_inputs(session, actor, body.inputs) if body.inputs else {}
        spec = jobs.spec_from_json(job_data.with_data_terms(data, inputs, session) if inputs else data)
        platform.check_submit(session, [spec])
        [row] = jobs.submit_jobs(session, actor, [spec], client_keys=[idempotency_key], clock=clock)
        if inputs or body.output:
            job_data.record(session, row.id, list(inputs.values()), body.output)
    platform.wake(books=False)  # work for placement only: the books (sealing its audit row) can wait
    return job_out(row)


@router.post("/jobs/batch", status_code=201)
def submit_batch(body: JobBatchIn, session: SessionDep, actor: CurrentPrincipal, platform: PlatformDep,
                 clock: ClockDep) -> list[JobOut]:
    specs = [jobs.spec_from_json(j.model_dump()) for j in body.jobs]
    platform.check_submit(session, specs)
    rows = jobs.submit_jobs(session, actor, specs, clock=clock)
    platform.wake(books=False)
    return [job_out(r) for r in rows]


@router.get("/jobs")
def list_jobs(
    session: SessionDep, actor: CurrentPrincipal, state: str | None = None, site: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100, before: str | None = None,
) -> JobListOut:
    rows = jobs.list_jobs(session, actor, state=state, site=site, limit=limit, before=before)
    return JobListOut(jobs=[job_out(r) for r in rows], next=rows[-1].id if len(rows) == limit else None)


@router.get("/jobs/{job_id}")
def get_job(job_id: str, session: SessionDep, actor: CurrentPrincipal) -> JobOut:
    return job_out(jobs.show_job(session, actor, job_id))


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: str, session: SessionDep, actor: CurrentPrincipal) -> JobOut:
    return job_out(jobs.cancel_job(session, actor, job_id))


@router.get("/jobs/{job_id}/explain")
def explain_job(job_id: str, session: SessionDep, actor: CurrentPrincipal, platform: PlatformDep,
                clock: ClockDep) -> dict[str, Any]:
    """Why a job is where it is: pools considered, ruled out and by what, and the best few scores."""
    job = jobs.show_job(session, actor, job_id)
    out = scheduling.explain_job(session, platform.planner, job, now=clock.time())
    # staged inputs: the scheduler's predicted transfer time beside the measured one (flows)
    return out | {"staging": job.placement.get("staging", ""), "transfers": transfers.for_job(session, job_id)}


@router.get("/jobs/{job_id}/events")
def job_events(job_id: str, session: SessionDep, actor: CurrentPrincipal) -> list[dict[str, object]]:
    return [
        {"at": e.at, "attempt": e.attempt, "from": e.from_state, "to": e.to_state, "reason": e.reason}
        for e in jobs.job_events(session, actor, job_id)
    ]


@router.get("/jobs/{job_id}/logs", response_class=PlainTextResponse)
def job_logs(
    job_id: str, session: SessionDep, actor: CurrentPrincipal,
    attempt: Annotated[int | None, Query(ge=1, le=INT32)] = None,
) -> PlainTextResponse:
    used, data = jobs.read_logs(session, actor, job_id, attempt=attempt)
    return PlainTextResponse(data.decode("utf-8", "replace"), headers={"X-Attempt": str(used)})


@router.get("/jobs/{job_id}/usage")
def job_usage(job_id: str, session: SessionDep, actor: CurrentPrincipal) -> list[UsageOut]:
    return [usage_out(r) for r in jobs.list_usage(session, actor, job_id=job_id)]


@router.get("/usage")
def usage(
    session: SessionDep, actor: CurrentPrincipal, job_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[UsageOut]:
    return [usage_out(r) for r in jobs.list_usage(session, actor, job_id=job_id, limit=limit)]
