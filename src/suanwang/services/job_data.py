"""The datasets a job reads and writes, declared at submit (``POST /jobs`` or a workflow step).

Inputs are resolved among the caller's datasets and those shared with it (anything else: 404) and become
the scheduler's terms (the region a hard rule, bytes and a holding site the predicted move); staging
holds the job until they are at its site.  The output gets its dataset id at submit, so the agent that
runs the job puts the verified bytes at ``<datasets root>/<id>`` and reports their hash as the job ends;
the version is numbered when the job succeeds (``settle``, in the control loop).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.domain.datasets import GB, Dataset, parse_ref
from suanwang.domain.job import JobState
from suanwang.errors import InvalidSpec
from suanwang.services import datasets, transfers
from suanwang.services.auth import Principal, Role, new_id
from suanwang.store.tables import DatasetRow, JobInputRow, JobOutputRow, JobRow


def check_output_name(name: str) -> None:
    if name:
        Dataset(name=name, version=1, size_bytes=0, sha256="0" * 64)  # the registered names' rule, as a 422


def resolve_inputs(session: Session, actor: Principal, refs: Sequence[str]) -> dict[str, DatasetRow]:
    """Each ``name[@version]`` the caller may read (own first, then shared); unknown or another's: 404."""
    return {ref: datasets.resolve(session, actor, parse_ref(ref)) for ref in refs}


def with_data_terms(body: Mapping[str, Any], inputs: Mapping[str, DatasetRow], session: Session,
                    *, label: str = "job") -> dict[str, Any]:
    """The job's JSON with its inputs as scheduler terms: their region (hard), bytes and a holding site."""
    out = dict(body)
    regions = {d.region for d in inputs.values() if d.region}
    if len(regions) > 1:
        raise InvalidSpec(f"{label}: inputs pinned to different regions ({', '.join(sorted(regions))})")
    if regions:
        region = regions.pop()
        if out.get("region") and out["region"] != region:
            raise InvalidSpec(f"{label}: region {out['region']} but its inputs must stay in {region}")
        out["region"] = region
    total = sum(d.size_bytes for d in inputs.values())
    if total:
        out["data_gb"] = total / GB
        present = datasets.present_sites(session, [d.id for d in inputs.values()])
        held = sorted(set().union(*present.values())) if present else []
        if held and not out.get("data_site"):
            out["data_site"] = held[0]
    return out


def record(session: Session, job_id: str, inputs: Sequence[DatasetRow], output: str) -> None:
    """Once per job: a submit replayed under its idempotency key finds them recorded and adds nothing."""
    if session.scalar(select(JobInputRow.job_id).where(JobInputRow.job_id == job_id).limit(1)) is None:
        transfers.record_inputs(session, job_id, [d.id for d in inputs])
    if output and session.get(JobOutputRow, job_id) is None:
        session.add(JobOutputRow(job_id=job_id, name=output, dataset_id=new_id("d"), settled=False))


def task_data(session: Session, job_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """What the agent needs per leased job: its inputs (ids, names, versions) and its output's reserved id."""
    out: dict[str, dict[str, Any]] = {}
    if not job_ids:
        return out
    ids = list(job_ids)
    q = (select(JobInputRow.job_id, DatasetRow.id, DatasetRow.name, DatasetRow.version, DatasetRow.kind,
                DatasetRow.sha256)
         .join(DatasetRow, DatasetRow.id == JobInputRow.dataset_id).where(JobInputRow.job_id.in_(ids))
         .order_by(DatasetRow.name, DatasetRow.version))
    for job_id, did, name, version, kind, sha in session.execute(q):
        item = {"dataset_id": did, "name": name, "version": version}
        if kind == "dir":  # the agent unpacks it for the job and checks the manifest hash
            item |= {"kind": "dir", "sha256": sha}
        out.setdefault(job_id, {}).setdefault("inputs", []).append(item)
    for row in session.scalars(select(JobOutputRow).where(JobOutputRow.job_id.in_(ids))):
        out.setdefault(row.job_id, {})["output"] = {"dataset_id": row.dataset_id, "name": row.name}
    return out


def settle_one(session: Session, job: JobRow, *, now: float | None = None) -> DatasetRow | None:
    """A succeeded job's declared output as a new version at its site (once); None if it reported none."""
    row = session.get(JobOutputRow, job.id)
    if row is None:
        return None
    if row.settled:
        return session.get(DatasetRow, row.dataset_id)
    if not JobState(job.state).is_terminal:
        return None
    row.settled = True
    out = (job.placement or {}).get("output") or {}
    if job.state != JobState.SUCCEEDED.value or not out.get("sha256") or job.site is None:
        return None
    owner = Principal(token_id="job-output", role=Role.CONSUMER, tenant_id=job.tenant_id)  # nosec B106  # an actor label
    ds = Dataset(name=row.name, version=datasets.next_version(session, job.tenant_id, row.name),
                 size_bytes=int(out.get("size_bytes", 0)), sha256=str(out["sha256"]))
    kind = "dir" if out.get("kind") == "dir" else "file"
    return datasets.register(session, owner, ds, sites=[job.site], source_job=job.id, dataset_id=row.dataset_id,
                             now=time.time() if now is None else now, kind=kind,
                             archive_sha256=str(out["archive_sha256"]) if kind == "dir" else None)


def settle(session: Session, *, limit: int = 200, now: float | None = None) -> int:
    """The control loop's part: settle the declared outputs of jobs that ended since the last pass."""
    q = (select(JobRow).join(JobOutputRow, JobOutputRow.job_id == JobRow.id)
         .where(JobOutputRow.settled.is_(False),
                JobRow.state.in_([s.value for s in JobState if s.is_terminal])).limit(limit))
    done = 0
    for job in list(session.scalars(q)):
        settle_one(session, job, now=now)
        done += 1
    return done
