"""Workflow runs: submit a DAG of steps, follow it, cancel it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field, ValidationError

from suanwang.api.deps import CurrentPrincipal, PlatformDep, SessionDep
from suanwang.api.schemas import In, JobIn
from suanwang.domain.workflow import MAX_RETRIES, MAX_STEPS
from suanwang.errors import InvalidSpec
from suanwang.services import workflows

router = APIRouter(tags=["workflows"])

NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$"  # no '.': "step.output" names an earlier step's output


class StepIn(In):
    name: str = Field(pattern=NAME)
    job: dict[str, Any]  # a job body as POST /jobs takes it (checked by the same rules)
    inputs: list[Annotated[str, Field(min_length=1, max_length=220)]] = Field(default_factory=list, max_length=100)
    output: str = Field(default="", max_length=100, pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    retries: int = Field(default=0, ge=0, le=MAX_RETRIES)
    after: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=MAX_STEPS)


class WorkflowIn(In):
    name: str = Field(default="", max_length=200)
    steps: list[StepIn] = Field(min_length=1, max_length=MAX_STEPS)


@router.post("/workflows", status_code=201)
def submit_workflow(body: WorkflowIn, session: SessionDep, actor: CurrentPrincipal,
                    platform: PlatformDep) -> dict[str, Any]:
    data = body.model_dump()
    for s in data["steps"]:  # the same checks as POST /jobs (carry rules, widths), naming the step
        try:
            s["job"] = JobIn.model_validate(s["job"]).model_dump()
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise InvalidSpec(f"step {s['name']}: job: {problems}"[:2000]) from None
    run = workflows.submit_run(session, actor, data)
    platform.wake()
    return workflows.run_view(session, run)


@router.get("/workflows")
def list_workflows(session: SessionDep, actor: CurrentPrincipal,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    return [{"id": r.id, "name": r.name, "state": r.state, "created_at": r.created_at, "finished_at": r.finished_at}
            for r in workflows.list_runs(session, actor, limit=limit)]


@router.get("/workflows/{run_id}")
def get_workflow(run_id: str, session: SessionDep, actor: CurrentPrincipal, platform: PlatformDep) -> dict[str, Any]:
    run = workflows.get_run(session, actor, run_id, advance_it=False)
    if workflows.advance(session, actor, run):  # reading a run moves it on; jobs it submitted are placed soon
        platform.wake()
    return workflows.run_view(session, run)


@router.post("/workflows/{run_id}/cancel")
def cancel_workflow(run_id: str, session: SessionDep, actor: CurrentPrincipal) -> dict[str, Any]:
    return workflows.run_view(session, workflows.cancel_run(session, actor, run_id))


