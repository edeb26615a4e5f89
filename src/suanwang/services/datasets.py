"""Datasets: register a version, read it (its tenant, or tenants it is shared with), list, share, and
agents' reports of the replicas they hold.

Another tenant's dataset answers 404 as if it did not exist.  A replica at a site outside the
dataset's sovereignty region is refused (422), whoever reports it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suanwang.domain.datasets import Dataset, DatasetRef, parse_ref, site_allowed
from suanwang.errors import Conflict, InvalidSpec, NotFound
from suanwang.services.audit import record_audit
from suanwang.services.auth import Principal, Role, new_id
from suanwang.store.tables import DatasetRow, JobRow, ReplicaRow, SiteRow, TenantRow

MAX_SHARES = 100


def _readable(actor: Principal, row: DatasetRow) -> bool:
    if actor.sees_all:
        return True
    if actor.role is Role.AGENT:
        return False  # agents name datasets by id in their reports, never read them through this
    return row.tenant_id == actor.tenant_id or actor.tenant_id in (row.shared_with or [])


def _check_sites(session: Session, sites: Sequence[str], region: str) -> None:
    for name in sites:
        site = session.get(SiteRow, name)
        if site is None:
            raise InvalidSpec(f"unknown site {name!r}")
        if not site_allowed(region, site.region):
            raise InvalidSpec(f"site {name} is in region {site.region or '(none)'}; "
                              f"the dataset must stay in {region}")


def register(
    session: Session, actor: Principal, ds: Dataset, *, sites: Sequence[str] = (), source_job: str | None = None,
    dataset_id: str | None = None, now: float | None = None, kind: str = "file", archive_sha256: str | None = None,
) -> DatasetRow:
    """Register one version.  ``sites`` hold a replica already (the consumer uploaded it there)."""
    at = time.time() if now is None else now
    if session.scalar(select(DatasetRow.id).where(DatasetRow.tenant_id == actor.tenant_id,
                                                  DatasetRow.name == ds.name, DatasetRow.version == ds.version)):
        raise Conflict(f"dataset {ds.name}@{ds.version} already exists")
    _check_sites(session, sites, ds.region)
    row = DatasetRow(id=dataset_id or new_id("d"), tenant_id=actor.tenant_id, name=ds.name, version=ds.version,
                     size_bytes=ds.size_bytes, sha256=ds.sha256, region=ds.region, shared_with=[],
                     source_job=source_job, created_at=at, kind=kind, archive_sha256=archive_sha256)
    session.add(row)
    session.flush()
    for name in sorted(set(sites)):
        session.add(ReplicaRow(dataset_id=row.id, site=name, state="present", reported_at=at))
    record_audit(session, actor, "dataset.register", row.id, name=ds.name, version=ds.version)
    return row


def next_version(session: Session, tenant_id: str, name: str) -> int:
    top = session.scalar(select(func.max(DatasetRow.version)).where(DatasetRow.tenant_id == tenant_id,
                                                                   DatasetRow.name == name))
    return int(top or 0) + 1


def get(session: Session, actor: Principal, dataset_id: str) -> DatasetRow:
    row = session.get(DatasetRow, dataset_id)
    if row is None or not _readable(actor, row):
        raise NotFound(f"dataset {dataset_id} not found")
    return row


def resolve(session: Session, actor: Principal, ref: DatasetRef | str) -> DatasetRow:
    """A reference ``name[@version]`` among the caller's own datasets, then those shared with it."""
    r = parse_ref(ref) if isinstance(ref, str) else ref
    query = select(DatasetRow).where(DatasetRow.name == r.name)
    if r.version is not None:
        query = query.where(DatasetRow.version == r.version)
    rows = [row for row in session.scalars(query.order_by(DatasetRow.version.desc())) if _readable(actor, row)]
    own = [row for row in rows if row.tenant_id == actor.tenant_id]
    found = (own or rows)[:1]
    if not found:
        raise NotFound(f"dataset {r} not found")
    return found[0]


def list_datasets(session: Session, actor: Principal, *, name: str | None = None, limit: int = 100) -> list[DatasetRow]:
    query = select(DatasetRow)
    if name:
        query = query.where(DatasetRow.name == name)
    if not actor.sees_all:
        query = query.where(DatasetRow.tenant_id == actor.tenant_id)
    own = list(session.scalars(query.order_by(DatasetRow.created_at.desc(), DatasetRow.id).limit(limit)))
    if actor.sees_all or len(own) >= limit:
        return own
    # datasets shared with the caller: JSON membership is not portable SQL, so filter the (few) shared ones here
    shared = [r for r in session.scalars(select(DatasetRow).where(DatasetRow.tenant_id != actor.tenant_id))
              if actor.tenant_id in (r.shared_with or []) and (not name or r.name == name)]
    return (own + shared)[:limit]


def share(session: Session, actor: Principal, dataset_id: str, tenant_name: str) -> DatasetRow:
    """Let another tenant read this version (only its owner may share it)."""
    row = get(session, actor, dataset_id)
    if row.tenant_id != actor.tenant_id and not actor.sees_all:
        raise NotFound(f"dataset {dataset_id} not found")
    tenant = session.scalar(select(TenantRow).where(TenantRow.name == tenant_name))
    if tenant is None:
        raise InvalidSpec(f"unknown tenant {tenant_name!r}")
    shared = list(row.shared_with or [])
    if tenant.id not in shared and tenant.id != row.tenant_id:
        if len(shared) >= MAX_SHARES:
            raise InvalidSpec(f"a dataset is shared with at most {MAX_SHARES} tenants")
        row.shared_with = [*shared, tenant.id]
    record_audit(session, actor, "dataset.share", dataset_id, tenant=tenant.id)
    return row


def replicas(session: Session, dataset_id: str) -> list[ReplicaRow]:
    return list(session.scalars(select(ReplicaRow).where(ReplicaRow.dataset_id == dataset_id)
                                .order_by(ReplicaRow.site)))


def present_sites(session: Session, dataset_ids: Sequence[str]) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {d: set() for d in dataset_ids}
    if dataset_ids:
        for r in session.scalars(select(ReplicaRow).where(ReplicaRow.dataset_id.in_(list(dataset_ids)),
                                                          ReplicaRow.state == "present")):
            out[r.dataset_id].add(r.site)
    return {k: frozenset(v) for k, v in out.items()}


def report_replicas(session: Session, agent: Principal, held: Sequence[tuple[str, str]], *,
                    now: float | None = None) -> list[ReplicaRow]:
    """An agent's report of the dataset versions its site holds, each ``(dataset id, sha256)``.

    A hash that differs from the registered one is refused (the bytes are not that version); an unknown id,
    a 404; a site outside the dataset's region, 422.  Nothing is stored unless every entry is good.
    """
    at = time.time() if now is None else now
    site = session.get(SiteRow, agent.site)
    if site is None:
        raise NotFound(f"site {agent.site} not found")
    out: list[ReplicaRow] = []
    for dataset_id, sha in held:
        ds = session.get(DatasetRow, dataset_id)
        if ds is None:
            raise NotFound(f"dataset {dataset_id} not found")
        if sha not in (ds.sha256, ds.archive_sha256):
            raise InvalidSpec(f"dataset {dataset_id}: reported sha256 does not match the registered one")
        if not site_allowed(ds.region, site.region):
            raise InvalidSpec(f"dataset {dataset_id} must stay in region {ds.region}; site {site.name} is not")
        row = session.get(ReplicaRow, (dataset_id, site.name))
        if row is None:
            row = ReplicaRow(dataset_id=dataset_id, site=site.name, state="present", reported_at=at)
            session.add(row)
        if row.transfer_id is not None and row.state != "present":
            row.state = "deleting"  # a collected staged copy the agent still holds: deleted again, not billed
        else:
            row.state = "present"
        row.reported_at = at
        out.append(row)
    if out:
        record_audit(session, agent, "dataset.replicas", agent.site or "", datasets=[d for d, _ in held])
    return out


def wire_sha256(ds: DatasetRow) -> str:
    """What the stored bytes hash to (a directory's archive; a file's own hash): what a transfer verifies."""
    return ds.archive_sha256 or ds.sha256


def report_output(session: Session, agent: Principal, job_id: str, attempt: int, size_bytes: int, sha256: str,
                  *, kind: str = "file", archive_sha256: str = "", files: int = 1) -> None:
    """An agent's word on what an attempt it ran wrote as its output (size and content hash, verified at the site).

    Kept with the job until the job succeeds; the workflow then registers it as a new dataset version at
    that site.  Only the agent of the site that ran the attempt may say so (another site's job → 404).
    """
    job = session.get(JobRow, job_id, with_for_update=True)
    if job is None or job.site != agent.site:
        raise NotFound(f"job {job_id} not found")
    if attempt != job.attempt:
        raise Conflict(f"job {job_id}: attempt {attempt} is not its current attempt {job.attempt}")
    Dataset("output", 1, size_bytes, sha256)  # the same bounds as a registered version
    if kind == "dir":
        Dataset("output", 1, size_bytes, archive_sha256)  # a directory comes with its archive's hash
    elif archive_sha256:
        raise InvalidSpec("archive_sha256 is for a directory output (kind dir) only")
    out: dict[str, object] = {"size_bytes": size_bytes, "sha256": sha256, "attempt": attempt}
    if kind == "dir":
        out |= {"kind": "dir", "archive_sha256": archive_sha256, "files": files}
    job.placement = {**(job.placement or {}), "output": out}
    record_audit(session, agent, "dataset.output", job_id, size_bytes=size_bytes)
