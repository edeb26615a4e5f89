"""Datasets at sites: register a version, read, list, share; agents report the replicas they hold."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from suanwang.api.deps import ClockDep, CurrentPrincipal, PlatformDep, SessionDep
from suanwang.api.schemas import INT32, In
from suanwang.domain.datasets import MAX_SIZE_BYTES, Dataset
from suanwang.services import datasets, replica_gc, transfers
from suanwang.store.tables import DatasetRow

router = APIRouter(tags=["datasets"])

SITE = Field(min_length=1, max_length=100)


class DatasetIn(In):
    name: str = Field(min_length=1, max_length=100)
    version: int | None = Field(default=None, ge=1, le=INT32)  # None: the next version of this name
    size_bytes: int = Field(ge=0, le=MAX_SIZE_BYTES)
    sha256: str = Field(min_length=64, max_length=64)
    region: str = Field(default="", max_length=100)
    sites: list[Annotated[str, SITE]] = Field(default_factory=list, max_length=100)


class ShareIn(In):
    tenant: str = Field(min_length=1, max_length=200)


class HeldIn(In):
    dataset_id: str = Field(min_length=1, max_length=40)
    sha256: str = Field(min_length=64, max_length=64)


class ReplicasIn(In):
    held: list[HeldIn] = Field(max_length=10_000)


class ReplicaOut(BaseModel):
    site: str
    state: str
    reported_at: float


class DatasetOut(BaseModel):
    id: str
    tenant_id: str
    name: str
    version: int
    size_bytes: int
    sha256: str
    region: str
    source_job: str | None
    created_at: float
    kind: str  # "file", or "dir": a set of files (sha256 its manifest hash, size_bytes its archive's length)
    archive_sha256: str | None
    replicas: list[ReplicaOut]


def dataset_out(session: Any, row: DatasetRow) -> DatasetOut:
    reps = [ReplicaOut(site=r.site, state=r.state, reported_at=r.reported_at)
            for r in datasets.replicas(session, row.id)]
    return DatasetOut(**{k: getattr(row, k) for k in DatasetOut.model_fields if k != "replicas"}, replicas=reps)


@router.post("/datasets", status_code=201)
def register_dataset(body: DatasetIn, session: SessionDep, actor: CurrentPrincipal) -> DatasetOut:
    version = body.version or datasets.next_version(session, actor.tenant_id, body.name)
    ds = Dataset(name=body.name, version=version, size_bytes=body.size_bytes, sha256=body.sha256.lower(),
                 region=body.region)
    return dataset_out(session, datasets.register(session, actor, ds, sites=body.sites))


@router.get("/datasets")
def list_datasets(
    session: SessionDep, actor: CurrentPrincipal, name: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DatasetOut]:
    return [dataset_out(session, r) for r in datasets.list_datasets(session, actor, name=name, limit=limit)]


@router.get("/datasets/{dataset_id}")
def get_dataset(dataset_id: str, session: SessionDep, actor: CurrentPrincipal) -> DatasetOut:
    return dataset_out(session, datasets.get(session, actor, dataset_id))


@router.post("/datasets/{dataset_id}/shares")
def share_dataset(dataset_id: str, body: ShareIn, session: SessionDep, actor: CurrentPrincipal) -> DatasetOut:
    return dataset_out(session, datasets.share(session, actor, dataset_id, body.tenant))


@router.post("/agent/replicas")
def report_replicas(body: ReplicasIn, session: SessionDep, actor: CurrentPrincipal,
                    clock: ClockDep) -> dict[str, int]:
    rows = datasets.report_replicas(session, actor, [(h.dataset_id, h.sha256) for h in body.held], now=clock.time())
    return {"present": sum(r.state == "present" for r in rows)}


class DeletedIn(In):
    generation: int = Field(ge=0, le=INT32)


@router.post("/agent/replicas/{dataset_id}/deleted")
def replica_deleted(dataset_id: str, body: DeletedIn, session: SessionDep, actor: CurrentPrincipal,
                    clock: ClockDep) -> dict[str, Any]:
    """The agent deleted a staged replica the platform collected (its transfer poll's ``delete``)."""
    rep = replica_gc.deleted(session, actor, dataset_id, body.generation, now=clock.time())
    return {"dataset_id": rep.dataset_id, "site": rep.site, "state": rep.state, "generation": rep.generation}


class OutputIn(In):
    attempt: int = Field(ge=1, le=INT32)
    size_bytes: int = Field(ge=0, le=MAX_SIZE_BYTES)  # a directory: its archive's length
    sha256: str = Field(min_length=64, max_length=64, pattern="^[0-9a-f]{64}$")  # a directory: its manifest hash
    kind: Literal["file", "dir"] = "file"
    archive_sha256: str = Field(default="", max_length=64, pattern="^$|^[0-9a-f]{64}$")
    files: int = Field(default=1, ge=0, le=10**7)


@router.post("/agent/jobs/{job_id}/output")
def report_output(job_id: str, body: OutputIn, session: SessionDep, actor: CurrentPrincipal) -> dict[str, bool]:
    datasets.report_output(session, actor, job_id, body.attempt, body.size_bytes, body.sha256, kind=body.kind,
                           archive_sha256=body.archive_sha256, files=body.files)
    return {"applied": True}


class TransferPollIn(In):
    serve_url: str = Field(default="", max_length=500, pattern=r"^$|^https?://[^\s]+$")


class TransferDoneIn(In):
    sha256: str = Field(min_length=64, max_length=64)
    seconds: float = Field(ge=0, le=366 * 86_400)
    generation: int | None = Field(default=None, ge=0, le=INT32)  # the order fetched (a late report of an old one)


class TransferFailedIn(In):
    reason: str = Field(min_length=1, max_length=2000)


@router.post("/agent/transfers")
def transfer_orders(body: TransferPollIn, session: SessionDep, actor: CurrentPrincipal) -> dict[str, Any]:
    """An agent's poll for staged transfers: what to fetch (its site is the target) and what to serve."""
    return transfers.orders_for(session, actor, body.serve_url)


@router.post("/agent/transfers/{transfer_id}/done")
def transfer_done(transfer_id: str, body: TransferDoneIn, session: SessionDep, actor: CurrentPrincipal,
                  platform: PlatformDep, clock: ClockDep) -> dict[str, Any]:
    t = transfers.complete(session, actor, transfer_id, sha256=body.sha256, seconds=body.seconds,
                           now=clock.time(), generation=body.generation)
    platform.wake()  # jobs waiting on it may be placed now
    return transfers.view(t)


@router.post("/agent/transfers/{transfer_id}/failed")
def transfer_failed(transfer_id: str, body: TransferFailedIn, session: SessionDep,
                    actor: CurrentPrincipal, clock: ClockDep) -> dict[str, bool]:
    transfers.fail(session, actor, transfer_id, body.reason, now=clock.time())
    return {"applied": True}


@router.get("/transfers")
def list_transfers(session: SessionDep, actor: CurrentPrincipal,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    return transfers.list_for(session, actor, limit=limit)
