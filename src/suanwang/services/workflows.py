"""Workflow runs: submit a DAG of steps, start each step's job once its inputs exist, retry or fail,
cancel the whole run, and sum its cost and carbon.

The decisions (validation, readiness, retry, run state) are ``domain.workflow``'s; this module applies
them, one transaction per call.  ``advance_all`` runs in the control loop; every read of a run also
advances it, so a run moves even between passes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suanwang.domain.datasets import GB, parse_ref
from suanwang.domain.job import JobSpec, JobState
from suanwang.domain.workflow import (
    RunState,
    Step,
    StepState,
    Workflow,
    after_job_end,
    dependencies,
    ready_steps,
    run_state,
    validate,
)
from suanwang.errors import Conflict, InvalidSpec, NotFound
from suanwang.services import datasets, job_data, jobs, replica_gc
from suanwang.services.audit import record_audit, record_audits
from suanwang.services.auth import Principal, Role, new_id
from suanwang.store.ledger_tables import PostingRow as LedgerPostingRow
from suanwang.store.ledger_tables import TransferRow as LedgerTransferRow
from suanwang.store.tables import DatasetRow, DataTransferRow, JobRow, WorkflowRunRow, WorkflowStepRow

_LIVE = RunState.RUNNING.value


def workflow_from_json(data: Mapping[str, Any]) -> Workflow:
    """A workflow from its JSON or YAML form (``{"name", "steps": [{"name", "job", "inputs", ...}]}``)."""
    try:
        steps = tuple(
            Step(name=str(s["name"]), job=dict(s["job"]), inputs=tuple(str(i) for i in s.get("inputs", ())),
                 output=str(s.get("output", "")), retries=int(s.get("retries", 0)),
                 after=tuple(str(a) for a in s.get("after", ())))
            for s in data.get("steps", ())
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidSpec(f"bad workflow: {exc}") from exc
    return Workflow(name=str(data.get("name", "")), steps=steps)


def _known(session: Session, actor: Principal, wf: Workflow) -> frozenset[str]:
    known: set[str] = set()
    for s in wf.steps:
        for ref in s.inputs:
            try:
                datasets.resolve(session, actor, ref)
            except (NotFound, InvalidSpec):
                continue
            known.add(ref)
    return frozenset(known)


def submit_run(session: Session, actor: Principal, data: Mapping[str, Any], *,
               now: float | None = None) -> WorkflowRunRow:
    """Validate the DAG (a 422 naming each step at fault), store the run, and start the steps that are ready."""
    at = time.time() if now is None else now
    wf = workflow_from_json(data)
    problems = validate(wf, _known(session, actor, wf))
    for s in wf.steps:  # each step's job body must be a job the API would take
        try:
            jobs.spec_from_json(_job_body(s, {}))
        except InvalidSpec as exc:
            problems.append(f"step {s.name}: {exc}")
    if problems:
        raise InvalidSpec("; ".join(problems))
    run = WorkflowRunRow(id=new_id("r"), tenant_id=actor.tenant_id, name=wf.name[:200], state=_LIVE,
                         spec=dict(data), created_at=at, reason="")
    session.add(run)
    session.flush()  # the run's row before its steps' (their foreign key)
    rows = {s.name: WorkflowStepRow(run_id=run.id, name=s.name, state=StepState.WAITING.value, attempts=0,
                                    jobs=[], reason="") for s in wf.steps}
    session.add_all(rows.values())
    record_audit(session, actor, "workflow.submit", run.id, steps=len(wf.steps))
    with session.no_autoflush:  # the steps are written once, already started, in one INSERT at commit
        _advance(session, run, wf, rows, at)
    return run


def _job_body(step: Step, inputs: Mapping[str, DatasetRow]) -> dict[str, Any]:
    """The step's job: its own body, with the name, and the data it reads as the scheduler's terms:
    its inputs' sovereignty region is a hard rule, their bytes and site the transfer time it predicts."""
    body = dict(step.job)
    body.setdefault("name", step.name)
    regions = {d.region for d in inputs.values() if d.region}
    if len(regions) > 1:
        raise InvalidSpec(f"step {step.name}: inputs pinned to different regions ({', '.join(sorted(regions))})")
    if regions:
        body["region"] = regions.pop()
    total = sum(d.size_bytes for d in inputs.values())
    if total:
        body["data_gb"] = total / GB
    return body


def _steps(session: Session, run_id: str) -> dict[str, WorkflowStepRow]:
    rows = session.scalars(select(WorkflowStepRow).where(WorkflowStepRow.run_id == run_id))
    return {r.name: r for r in rows}


def _owner(session: Session, run: WorkflowRunRow) -> Principal:
    # acts for the run's owner; "workflow" is the audit label of this principal, not a credential
    return Principal(token_id="workflow", role=Role.CONSUMER, tenant_id=run.tenant_id)  # nosec B106


def advance(session: Session, actor: Principal | None, run: WorkflowRunRow, *, now: float | None = None) -> int:
    """Move one run on: end steps whose jobs ended (retry or fail), start steps now ready, close the run.
    How many steps' jobs it submitted."""
    if run.state != _LIVE:
        return 0
    session.refresh(run, with_for_update=True)  # one advance of a run at a time: a step is never started twice
    if run.state != _LIVE:
        return 0
    return _advance(session, run, workflow_from_json(run.spec), _steps(session, run.id),
                    time.time() if now is None else now)


def _advance(session: Session, run: WorkflowRunRow, wf: Workflow, rows: Mapping[str, WorkflowStepRow],
             at: float) -> int:
    by_name = {s.name: s for s in wf.steps}
    owner = _owner(session, run)
    live = [r.job_id for r in rows.values() if r.state == StepState.SUBMITTED.value and r.job_id]
    step_jobs = _jobs(session, live)
    for name, row in rows.items():
        job = step_jobs.get(row.job_id or "") if row.state == StepState.SUBMITTED.value else None
        if job is None or not JobState(job.state).is_terminal:
            continue
        ok = job.state == JobState.SUCCEEDED.value
        step = by_name[name]
        why = f"job {job.id} {job.state}: {job.reason}"
        if ok and step.output and not _register_output(session, owner, run, step, job, at):
            ok, why = False, f"job {job.id} succeeded but its agent reported no output {step.output}"
        row.state = after_job_end(step, row.attempts, ok).value
        row.reason = "" if ok else why[:2000]
    states = {n: StepState(r.state) for n, r in rows.items()}
    ready = ready_steps(dependencies(wf), states)
    if ready:
        _start(session, owner, run, [(by_name[n], rows[n]) for n in ready], frozenset(by_name), at)
        states.update((n, StepState(rows[n].state)) for n in ready)
    started = sum(states[n] is StepState.SUBMITTED for n in ready)
    final = run_state(list(states.values()))
    if final is not RunState.RUNNING:
        if final is RunState.FAILED:
            _stop_live(session, owner, rows, StepState.CANCELLED, "another step failed")
            run.reason = "; ".join(f"step {n}: {r.reason}" for n, r in rows.items() if r.state == "failed")[:2000]
        run.state, run.finished_at = final.value, at
    return started


def _jobs(session: Session, job_ids: list[str]) -> dict[str, JobRow]:
    """The jobs of these ids, in one query (a run's steps are read together, not one SELECT each)."""
    if not job_ids:
        return {}
    return {j.id: j for j in session.scalars(select(JobRow).where(JobRow.id.in_(job_ids)))}


def _register_output(session: Session, owner: Principal, run: WorkflowRunRow, step: Step, job: JobRow,
                     at: float) -> bool:
    """The step's output is its job's declared output (``job_data``): a new dataset version at its job's site,
    as its agent reported it (size and hash); without that report the output is unknown: False."""
    return job_data.settle_one(session, job, now=at) is not None


def _start(session: Session, owner: Principal, run: WorkflowRunRow, ready: list[tuple[Step, WorkflowStepRow]],
           step_names: frozenset[str], at: float) -> None:
    """Submit the jobs of the steps now ready, together: one submit (one hold, bulk inserts) for all of them."""
    starting: list[tuple[Step, WorkflowStepRow, dict[str, DatasetRow], JobSpec]] = []
    for step, row in ready:
        inputs: dict[str, DatasetRow] = {}
        for ref in step.inputs:
            up = ref.partition(".")[0] if "." in ref else ""
            name = ref[len(up) + 1:] if up and up in step_names else ref
            try:
                inputs[ref] = datasets.resolve(session, owner, parse_ref(name))
            except NotFound:
                row.state, row.reason = StepState.FAILED.value, f"input {ref} does not exist"
                break
        if row.state == StepState.FAILED.value:
            continue
        spec = jobs.spec_from_json(_job_body(step, inputs))
        present = datasets.present_sites(session, [d.id for d in inputs.values()]) if inputs else {}
        if inputs and not any(present.values()):
            row.reason = "waiting: no site holds its inputs yet"
            continue
        held = sorted(set().union(*present.values())) if present else []
        if held and spec.data_gb > 0:  # the scheduler prices the move from where the data is
            spec = jobs.spec_from_json({**jobs.spec_to_json(spec), "data_site": held[0]})
        starting.append((step, row, inputs, spec))
    if not starting:
        return
    submitted = jobs.submit_jobs(session, owner, [spec for *_, spec in starting])
    audit = []
    for (step, row, inputs, _), job in zip(starting, submitted, strict=True):
        if inputs or step.output:
            job_data.record(session, job.id, list(inputs.values()), step.output)
        row.job_id = job.id
        row.jobs = [*(row.jobs or []), job.id]
        row.attempts += 1
        row.state, row.reason = StepState.SUBMITTED.value, ""
        audit.append((run.id, {"step": step.name, "job": job.id,
                               "inputs": {ref: d.id for ref, d in inputs.items()}}))
    record_audits(session, owner, "workflow.step", audit)


def _stop_live(session: Session, owner: Principal, rows: Mapping[str, WorkflowStepRow], to: StepState,
               why: str) -> None:
    for row in rows.values():
        if StepState(row.state).is_terminal:
            continue
        if row.state == StepState.SUBMITTED.value and row.job_id:
            job = session.get(JobRow, row.job_id)
            if job is not None and not JobState(job.state).is_terminal:
                jobs.cancel_job(session, owner, job.id)
        row.state, row.reason = to.value, why


def cancel_run(session: Session, actor: Principal, run_id: str, *, now: float | None = None) -> WorkflowRunRow:
    run = get_run(session, actor, run_id, advance_it=False)
    session.refresh(run, with_for_update=True)  # not while a pass is starting its steps
    if run.state != _LIVE:
        raise Conflict(f"workflow run {run_id} is already {run.state}")
    _stop_live(session, _owner(session, run), _steps(session, run.id), StepState.CANCELLED,
               f"run cancelled by {actor.role}")
    run.state, run.finished_at = RunState.CANCELLED.value, time.time() if now is None else now
    run.reason = f"cancelled by {actor.role}"
    record_audit(session, actor, "workflow.cancel", run_id)
    return run


def get_run(session: Session, actor: Principal, run_id: str, *, advance_it: bool = True) -> WorkflowRunRow:
    run = session.get(WorkflowRunRow, run_id)
    if run is None or not (actor.sees_all or run.tenant_id == actor.tenant_id):
        raise NotFound(f"workflow run {run_id} not found")
    if advance_it:
        advance(session, actor, run)
    return run


def list_runs(session: Session, actor: Principal, *, limit: int = 100) -> list[WorkflowRunRow]:
    query = select(WorkflowRunRow)
    if not actor.sees_all:
        query = query.where(WorkflowRunRow.tenant_id == actor.tenant_id)
    return list(session.scalars(query.order_by(WorkflowRunRow.created_at.desc(), WorkflowRunRow.id).limit(limit)))


def advance_all(session: Session, *, limit: int = 100) -> int:
    """The control loop's part: advance every live run (oldest first).  How many steps' jobs it submitted:
    the loop then runs its next pass at once to place them, rather than a safety tick later."""
    runs = session.scalars(select(WorkflowRunRow).where(WorkflowRunRow.state == _LIVE)
                           .order_by(WorkflowRunRow.created_at).limit(limit)
                           .with_for_update(skip_locked=True))  # one being advanced elsewhere: its turn comes
    return sum(_advance(session, run, workflow_from_json(run.spec), _steps(session, run.id), time.time())
               for run in list(runs))


def charged_fen(session: Session, job_ids: list[str]) -> dict[str, int]:
    """Gross fen charged per job (what its charges moved: the positive side of each balanced transfer)."""
    if not job_ids:
        return {}
    q = (select(LedgerTransferRow.job_id, func.sum(LedgerPostingRow.fen))
         .join(LedgerPostingRow, LedgerPostingRow.transfer_key == LedgerTransferRow.key)
         .where(LedgerTransferRow.job_id.in_(job_ids), LedgerTransferRow.kind == "charge", LedgerPostingRow.fen > 0)
         .group_by(LedgerTransferRow.job_id))
    return {j: int(f or 0) for j, f in session.execute(q)}


def run_view(session: Session, run: WorkflowRunRow) -> dict[str, Any]:
    """The run with each step's state, job, site, cost and predicted carbon, and their sums."""
    rows = _steps(session, run.id)
    all_jobs = [j for r in rows.values() for j in (r.jobs or [])]
    moved: dict[str | None, list[str]] = {}  # job -> the transfers ordered for it (billed under the transfer's id)
    if all_jobs:
        for tid, job_id in session.execute(select(DataTransferRow.id, DataTransferRow.job_id)
                                           .where(DataTransferRow.job_id.in_(all_jobs))):
            moved.setdefault(job_id, []).append(tid)
    fen = charged_fen(session, all_jobs + [t for ts in moved.values() for t in ts])
    held = replica_gc.storage_fen(session, [t for ts in moved.values() for t in ts])  # in fen, apart from the move
    step_jobs = _jobs(session, [r.job_id for r in rows.values() if r.job_id])
    steps = []
    total_fen, total_kg = 0, 0.0
    for name in (s.name for s in workflow_from_json(run.spec).steps):
        r = rows[name]
        job = step_jobs.get(r.job_id) if r.job_id else None
        step_fen = sum(fen.get(j, 0) for j in (r.jobs or []))
        terms = (job.placement or {}).get("terms", {}) if job is not None else {}
        kg = float(terms.get("carbon_kg", 0.0) or 0.0)
        step_tids = [t for j in (r.jobs or []) for t in moved.get(j, [])]
        storage_fen = sum(held.get(t, 0) for t in step_tids)
        transfer_fen = sum(fen.get(t, 0) for t in step_tids) - storage_fen
        total_fen += step_fen + transfer_fen + storage_fen
        total_kg += kg
        steps.append({"name": name, "state": r.state, "job_id": r.job_id, "jobs": list(r.jobs or []),
                      "attempts": r.attempts, "site": job.site if job else None,
                      "job_state": job.state if job else None, "reason": r.reason,
                      "compute_fen": step_fen, "transfer_fen": transfer_fen, "storage_fen": storage_fen,
                      "transfers": step_tids,
                      "carbon_kg": kg})
    return {"id": run.id, "name": run.name, "state": run.state, "created_at": run.created_at,
            "finished_at": run.finished_at, "reason": run.reason, "steps": steps,
            "cost_fen": total_fen, "carbon_kg": total_kg}
