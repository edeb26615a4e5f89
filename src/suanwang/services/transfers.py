"""Staged transfers: order them when a job is placed away from its inputs, hand them to the two sites'
agents, record the verified arrival, and bill the bytes moved once.

The scheduling pass asks :func:`staging_gate` before placing a job: a job whose inputs are all at the
site chosen for it is placed; otherwise the transfers it needs are ordered (one per dataset and target
site, however many jobs wait on it) and the job waits, with the reason readable in its placement
record.  A transfer is billed in the price books' native unit ``gb_transfer``, keyed
``usage:<transfer id>:<generation>:0`` in the ledger: a repeated completion report, a retry after a crash or a
resumed transfer all end in one charge, for the bytes of the dataset.  A staged replica collected as unused
(:mod:`suanwang.services.replica_gc`) and staged again is the transfer's next generation: a new charge.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.domain.datasets import GB, predicted_transfer_s, site_allowed, staging_plan
from suanwang.domain.pricing import BooksInForce, PriceUnit
from suanwang.domain.rating import ProviderContract, UsageRecord, plan_charge, rate_usage
from suanwang.domain.resources import ResourceClass, ServiceLevel
from suanwang.errors import Conflict, InvalidSpec, NotFound
from suanwang.services.audit import record_audit
from suanwang.services.auth import Principal, new_id
from suanwang.services.datasets import wire_sha256
from suanwang.store.tables import DatasetRow, DataTransferRow, JobInputRow, LinkRow, ReplicaRow, SiteRow

ORDERED, DONE, FAILED = "ordered", "done", "failed"
PRESENT, DELETING, GONE = "present", "deleting", "gone"  # a replica's states
MAX_TRIES = 5
FREE, UNPRICED = "free", "unpriced"  # charge(): nothing to book


def record_inputs(session: Session, job_id: str, dataset_ids: Iterable[str]) -> None:
    for d in sorted(set(dataset_ids)):
        session.add(JobInputRow(job_id=job_id, dataset_id=d))


def link_pool(source: str, target: str) -> str:
    """The pool name a price entry scopes to one link (``site`` = the source, ``pool`` = this)."""
    return f"{source}>{target}"


def _links(session: Session) -> dict[tuple[str, str], tuple[float, float]]:
    out: dict[tuple[str, str], tuple[float, float]] = {}
    for r in session.scalars(select(LinkRow)):
        out[(r.a, r.b)] = out[(r.b, r.a)] = (r.latency_ms, r.bandwidth_gbps)
    return out


def staging_gate(session: Session, placements: Mapping[str, str], *, now: float) -> dict[str, str]:
    """For jobs about to be placed (job id → site), the ones that must wait for their inputs, with why.

    Orders each missing transfer once.  Jobs with no declared inputs are never held (one query).
    """
    if not placements:
        return {}
    wanted: dict[str, list[str]] = {}
    for job_id, dataset_id in session.execute(select(JobInputRow.job_id, JobInputRow.dataset_id)
                                              .where(JobInputRow.job_id.in_(list(placements)))):
        wanted.setdefault(job_id, []).append(dataset_id)
    if not wanted:
        return {}
    ids = sorted({d for ds in wanted.values() for d in ds})
    data = {d.id: d for d in session.scalars(select(DatasetRow).where(DatasetRow.id.in_(ids)))}
    replicas: dict[str, set[str]] = {d: set() for d in ids}
    for r in session.scalars(select(ReplicaRow).where(ReplicaRow.dataset_id.in_(ids), ReplicaRow.state == "present")):
        replicas[r.dataset_id].add(r.site)
    sites = {s.name: s for s in session.scalars(select(SiteRow))}
    online = frozenset(n for n, s in sites.items() if s.online)
    links = _links(session)
    waiting: dict[str, str] = {}
    for job_id, dataset_ids in wanted.items():
        site = placements[job_id]
        region = sites[site].region if site in sites else ""
        refused = [f"input {data[d].name}@{data[d].version} must stay in region {data[d].region}; site {site} is in "
                   f"{region or 'no region'}" for d in dataset_ids if not site_allowed(data[d].region, region)]
        if refused:
            waiting[job_id] = "; ".join(refused)
            continue
        inputs = [(d, f"{data[d].name}@{data[d].version}", data[d].size_bytes) for d in dataset_ids]
        needs, blocked = staging_plan(inputs, {k: frozenset(v) for k, v in replicas.items()}, site, online,
                                      latency_ms={k: v[0] for k, v in links.items()})
        reasons = list(blocked)
        for need in needs:
            ds = data[need.dataset_id]
            t = _order(session, ds, need.source, need.target, job_id, links, now)
            if t.state == DONE:  # its replica is being collected: staged again once the agent has deleted it
                reasons.append(f"{ds.name}@{ds.version} at {site} is being deleted as unused; staged again "
                               "once it is gone")
                continue
            reasons.append(f"staging {ds.name}@{ds.version} from {t.source} "
                           f"({t.state}{': ' + t.reason if t.reason else ''})")
        if reasons:
            waiting[job_id] = "waiting for inputs: " + "; ".join(reasons)
    return waiting


def _order(session: Session, ds: DatasetRow, source: str, target: str, job_id: str,
           links: Mapping[tuple[str, str], tuple[float, float]], now: float) -> DataTransferRow:
    existing = session.scalar(select(DataTransferRow).where(DataTransferRow.dataset_id == ds.id,
                                                            DataTransferRow.target == target))
    if existing is not None:
        if existing.state == FAILED and existing.attempts < MAX_TRIES:  # try again, perhaps from another source
            existing.state, existing.source = ORDERED, source
        if existing.state == DONE:
            rep = session.get(ReplicaRow, (ds.id, target))
            if rep is not None and rep.state == GONE:  # collected, needed again: a new generation, a new charge
                existing.generation += 1
                existing.state, existing.source, existing.attempts = ORDERED, source, 0  # job: still the first's
                existing.bytes_moved, existing.measured_s, existing.finished_at, existing.reason = 0, None, None, ""
                existing.created_at, existing.secret = now, secrets.token_urlsafe(32)
                record_audit(session, None, "transfer.order", existing.id, dataset=ds.id, source=source,
                             target=target, job=job_id, generation=existing.generation)
        return existing
    latency, bandwidth = links.get((source, target), (0.0, 0.0))
    t = DataTransferRow(id=new_id("x"), dataset_id=ds.id, tenant_id=ds.tenant_id, job_id=job_id, source=source,
                        target=target, state=ORDERED, size_bytes=ds.size_bytes, bytes_moved=0,
                        predicted_s=predicted_transfer_s(ds.size_bytes, bandwidth, latency) if bandwidth else 0.0,
                        measured_s=None, reason="", secret=secrets.token_urlsafe(32), attempts=0, created_at=now)
    session.add(t)
    session.flush()
    record_audit(session, None, "transfer.order", t.id, dataset=ds.id, source=source, target=target, job=job_id)
    return t


def orders_for(session: Session, agent: Principal, serve_url: str) -> dict[str, list[dict[str, Any]]]:
    """An agent's poll: the transfers it must fetch (it is the target), those it must serve (the source), and
    the staged replicas it must delete (collected as unused: :func:`replica_gc.deletions_for`).

    The agent's serving address is recorded with its site, so the other end can reach it.
    """
    from suanwang.services import replica_gc

    site = session.get(SiteRow, agent.site)
    if site is None:
        raise NotFound(f"site {agent.site} not found")
    if serve_url and site.agent_info.get("serve_url") != serve_url:
        site.agent_info = {**(site.agent_info or {}), "serve_url": serve_url}
    live = list(session.scalars(select(DataTransferRow).where(
        DataTransferRow.state == ORDERED,
        (DataTransferRow.target == site.name) | (DataTransferRow.source == site.name)).order_by(DataTransferRow.id)))
    urls = {s.name: (s.agent_info or {}).get("serve_url", "") for s in session.scalars(select(SiteRow))}
    fetch, serve = [], []
    for t in live:
        ds = session.get(DatasetRow, t.dataset_id)
        assert ds is not None
        if t.source == site.name:
            serve.append({"transfer_id": t.id, "dataset_id": t.dataset_id, "secret": t.secret})
        if t.target == site.name and urls.get(t.source):
            fetch.append({"transfer_id": t.id, "dataset_id": t.dataset_id, "sha256": wire_sha256(ds),
                          "size_bytes": ds.size_bytes, "secret": t.secret, "generation": t.generation,
                          "url": f"{urls[t.source].rstrip('/')}/datasets/{t.dataset_id}"})
    return {"fetch": fetch, "serve": serve, "delete": replica_gc.deletions_for(session, site.name)}


def _mine(session: Session, agent: Principal, transfer_id: str) -> DataTransferRow:
    t = session.get(DataTransferRow, transfer_id, with_for_update=True)
    if t is None or t.target != agent.site:
        raise NotFound(f"transfer {transfer_id} not found")
    return t


def complete(session: Session, agent: Principal, transfer_id: str, *, sha256: str, seconds: float,
             now: float | None = None, generation: int | None = None) -> DataTransferRow:
    """The target agent verified the bytes and renamed them into place: the replica is present, the transfer
    billed (once per generation).  A repeated report changes nothing, nor does a late one for an earlier
    generation (``generation``, when the agent says which order it fetched)."""
    at = time.time() if now is None else now
    t = _mine(session, agent, transfer_id)
    ds = session.get(DatasetRow, t.dataset_id)
    assert ds is not None
    if t.state == DONE or (generation is not None and generation < t.generation):
        return t
    if generation is not None and generation > t.generation:
        raise Conflict(f"transfer {transfer_id}: generation {generation} was never ordered")
    if sha256 != wire_sha256(ds):
        raise InvalidSpec(f"transfer {transfer_id}: sha256 does not match dataset {ds.id}")
    if not 0 <= seconds <= 366 * 86_400:
        raise InvalidSpec("seconds must be within 0..31622400")
    t.state, t.bytes_moved, t.measured_s, t.finished_at, t.reason = DONE, ds.size_bytes, seconds, at, ""
    rep = session.get(ReplicaRow, (ds.id, t.target))
    fresh = rep is None
    if rep is None:
        rep = ReplicaRow(dataset_id=ds.id, site=t.target, state=PRESENT, reported_at=at)
        session.add(rep)
    if fresh or rep.transfer_id is not None or rep.state != PRESENT:  # staged here (not a home copy): metered
        rep.transfer_id, rep.generation, rep.arrived_at, rep.last_used_at = t.id, t.generation, at, at
        rep.metered_until, rep.gc_at = at, None
    rep.state, rep.reported_at = PRESENT, at
    bill(session, t)
    record_audit(session, agent, "transfer.done", t.id, bytes=ds.size_bytes, seconds=seconds)
    return t


def fail(session: Session, agent: Principal, transfer_id: str, reason: str, *, now: float | None = None) -> None:
    """A try failed (the source unreachable, a checksum mismatch): ordered again by the next pass, up to
    MAX_TRIES; then the jobs waiting on it say why."""
    t = _mine(session, agent, transfer_id)
    if t.state == DONE:
        raise Conflict(f"transfer {transfer_id} is already done")
    t.attempts += 1
    t.state, t.reason = FAILED, reason[:2000]
    record_audit(session, agent, "transfer.failed", t.id, reason=reason[:500])


def bill(session: Session, t: DataTransferRow) -> str:
    """Book the transfer's charge in the ledger under its usage key (``usage:<transfer>:<generation>:0``) (what
    :func:`charge` answers).  No book in force (the free platform), or no ``gb_transfer`` price: nothing."""
    start = datetime.fromtimestamp(t.created_at, UTC)
    end = datetime.fromtimestamp(max(t.finished_at or t.created_at, t.created_at), UTC)
    return charge(session, t.id, t.generation, 0, t.tenant_id, t.source, link_pool(t.source, t.target), start, end,
                  (PriceUnit.GB_TRANSFER, Decimal(t.size_bytes) / GB))


def charge(session: Session, key_id: str, generation: int, seq: int, consumer: str, site: str, pool: str,
           start: datetime, end: datetime, quantity: tuple[PriceUnit, Decimal]) -> str:
    """Rate one usage record of staged data (``usage:<key_id>:<generation>:<seq>``) and book it once; the
    provider is the tenant of ``site``.  What happened: ``created``, ``exists`` (booked before), ``free`` (no
    book in force), ``unpriced`` (no price for the unit: audited), or the ledger's refusal."""
    from suanwang.services.billing import contracts, load_books  # public functions; billing imports services
    from suanwang.services.ledger_store import SqlLedger

    books = BooksInForce(load_books(session))
    first = books.first_effective()
    if first is None or start < first:
        return FREE
    src = session.get(SiteRow, site)
    provider = src.tenant_id if src is not None else site
    record = UsageRecord(key_id, generation, seq, consumer, provider, site, pool, ResourceClass.GENERAL, "standard",
                         ServiceLevel.STANDARD, start, end, (quantity,))
    try:
        charge = rate_usage(record, books.at(start), contract=ProviderContract(provider, contracts(session).get(
            provider, 0)), settled_until=SqlLedger(session).settled_until())
    except InvalidSpec as exc:
        record_audit(session, None, "transfer.unpriced", key_id, reason=exc.message, unit=quantity[0].value)
        return UNPRICED
    return str(SqlLedger(session).apply(plan_charge(charge, hold=None, actor="system")).code.value)


def view(t: DataTransferRow) -> dict[str, Any]:
    return {"id": t.id, "dataset_id": t.dataset_id, "job_id": t.job_id, "source": t.source, "target": t.target,
            "state": t.state, "size_bytes": t.size_bytes, "bytes_moved": t.bytes_moved, "predicted_s": t.predicted_s,
            "measured_s": t.measured_s, "reason": t.reason, "attempts": t.attempts, "created_at": t.created_at,
            "finished_at": t.finished_at, "generation": t.generation}


def for_job(session: Session, job_id: str) -> list[dict[str, Any]]:
    """The transfers a job's inputs needed (ordered for it or for another job first), predicted vs measured."""
    ids = list(session.scalars(select(JobInputRow.dataset_id).where(JobInputRow.job_id == job_id)))
    if not ids:
        return []
    rows = session.scalars(select(DataTransferRow).where(DataTransferRow.dataset_id.in_(ids))
                           .order_by(DataTransferRow.created_at))
    return [view(t) for t in rows]


def list_for(session: Session, actor: Principal, *, limit: int = 100) -> list[dict[str, Any]]:
    q = select(DataTransferRow)
    if not actor.sees_all:
        q = q.where(DataTransferRow.tenant_id == actor.tenant_id)
    return [view(t) for t in session.scalars(q.order_by(DataTransferRow.created_at.desc()).limit(limit))]
