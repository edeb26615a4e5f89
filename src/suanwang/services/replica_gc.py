"""Staged replicas nobody needs: collected after a grace period, their storage metered by the hour until then.

A *staged* replica is one a transfer made at a site that is not one of the dataset's home sites (those it
was registered or reported at, or where a job wrote it); home replicas are never collected.  A staged
replica is *needed* while a job that has not ended reads its dataset and runs (or is placed, or waits to
be placed) at that site, or waits for a site still to be chosen.  Each sweep of the control loop stamps a
needed replica's ``last_used_at``; one unneeded for ``grace_s`` since is *collected*: its state becomes
``deleting``, ``gc_at`` is set, and the site's agent is told to delete it on its next transfer poll
(``delete`` in ``POST /agent/transfers``).  Its report (``POST /agent/replicas/{id}/deleted``) marks it
``gone``; a job needing it later stages it again — the transfer's next generation, billed anew.

Storage is usage in the native unit ``gb_hour_storage``: one row per hour from arrival
(:func:`suanwang.domain.datasets.storage_periods`), the last one cut at ``gc_at``.  The consumer pays until
the platform ordered the deletion, not until the agent got round to it.  Each hour is recorded in
``storage_usage`` (keyed transfer, generation, hour) and charged under ``usage:<transfer>:<generation>:
<hour + 1>`` in the same transaction that moves ``metered_until`` on: a crash anywhere repeats a sweep that
finds both keys taken, so no hour is lost or billed twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from suanwang.domain.datasets import GB, HOUR_S, collectable, storage_periods
from suanwang.domain.job import TERMINAL_STATES
from suanwang.domain.pricing import PriceUnit
from suanwang.errors import Conflict, NotFound
from suanwang.services.audit import record_audit
from suanwang.services.auth import Principal
from suanwang.services.transfers import DELETING, FREE, GONE, PRESENT, UNPRICED, charge
from suanwang.store.ledger_tables import PostingRow as LedgerPostingRow
from suanwang.store.ledger_tables import TransferRow as LedgerTransferRow
from suanwang.store.tables import DatasetRow, JobInputRow, JobRow, ReplicaRow, StorageUsageRow

DEFAULT_GRACE_S = 86_400.0  # a day after the last job at the site that read it
_BOOKED = frozenset({"created", "exists", FREE, UNPRICED})  # the hour is done with (unpriced: audited, free)
STORAGE_POOL = "storage"  # the pool a ``gb_hour_storage`` price may scope to (``site`` = the holding site)


@dataclass
class Sweep:
    """What one sweep did: replicas ordered deleted (dataset id, site), storage hours recorded and charged."""

    collected: list[tuple[str, str]] = field(default_factory=list)
    hours: int = 0
    charged: int = 0


def _needed(session: Session, dataset_ids: list[str]) -> set[tuple[str, str | None]]:
    """(dataset, site) pairs some live job reads; site None: a job still waiting for its site."""
    ended = [str(s) for s in TERMINAL_STATES]
    rows = session.execute(select(JobInputRow.dataset_id, JobRow.site).join(JobRow, JobRow.id == JobInputRow.job_id)
                           .where(JobInputRow.dataset_id.in_(dataset_ids), JobRow.state.not_in(ended)))
    return {(d, s) for d, s in rows}


def sweep(session: Session, *, now: float, grace_s: float = DEFAULT_GRACE_S, limit: int = 1000) -> Sweep:
    """Stamp the staged replicas still needed, collect those past their grace, meter the storage hours ended.

    At most ``limit`` storage hours per call (a platform back from a long stop catches up over a few passes).
    """
    out = Sweep()
    staged = list(session.scalars(
        select(ReplicaRow).where(ReplicaRow.transfer_id.is_not(None),
                                 or_(ReplicaRow.state == PRESENT, ReplicaRow.gc_at.is_(None),
                                     ReplicaRow.metered_until < ReplicaRow.gc_at))
        .order_by(ReplicaRow.dataset_id, ReplicaRow.site).with_for_update()))
    if not staged:
        return out
    needed = _needed(session, sorted({r.dataset_id for r in staged if r.state == PRESENT}))
    for rep in staged:
        if rep.state == PRESENT:
            if (rep.dataset_id, rep.site) in needed or (rep.dataset_id, None) in needed:
                rep.last_used_at = now
            elif collectable(rep.last_used_at or rep.arrived_at or now, now, grace_s, needed=False):
                rep.state, rep.gc_at = DELETING, now
                out.collected.append((rep.dataset_id, rep.site))
                record_audit(session, None, "replica.collect", rep.dataset_id, site=rep.site,
                             transfer=rep.transfer_id, generation=rep.generation)
        hours, charged = _meter(session, rep, now=now, limit=limit - out.hours)
        out.hours, out.charged = out.hours + hours, out.charged + charged
        if out.hours >= limit:
            break
    return out


def _meter(session: Session, rep: ReplicaRow, *, now: float, limit: int) -> tuple[int, int]:
    if rep.arrived_at is None or rep.transfer_id is None or limit <= 0:
        return 0, 0
    ds = session.get(DatasetRow, rep.dataset_id)
    assert ds is not None
    periods = storage_periods(rep.arrived_at, rep.metered_until or rep.arrived_at, now, rep.gc_at, limit=limit)
    charged = 0
    for p in periods:
        key = (rep.transfer_id, rep.generation, p.hour)
        fresh = session.get(StorageUsageRow, key) is None
        if fresh:
            session.add(StorageUsageRow(transfer_id=rep.transfer_id, generation=rep.generation, hour=p.hour,
                                        dataset_id=ds.id, tenant_id=ds.tenant_id, site=rep.site,
                                        size_bytes=ds.size_bytes, start=p.start, end=p.end, recorded_at=now))
        gb_hours = Decimal(ds.size_bytes) / GB * _seconds(p.end - p.start) / Decimal(int(HOUR_S))
        code = charge(session, rep.transfer_id, rep.generation, p.hour + 1, ds.tenant_id, rep.site, STORAGE_POOL,
                      datetime.fromtimestamp(p.start, UTC), datetime.fromtimestamp(p.end, UTC),
                      (PriceUnit.GB_HOUR_STORAGE, gb_hours))
        if code not in _BOOKED:  # refused (a wallet past its credit): this hour is charged again next sweep
            if fresh:  # said once, not every sweep
                record_audit(session, None, "storage.unbilled", rep.transfer_id, hour=p.hour, code=code)
            return p.hour - periods[0].hour, charged
        charged += code == "created"
        rep.metered_until = p.end
    return len(periods), charged


def _seconds(x: float) -> Decimal:
    """A period's length, to the microsecond: the same float always gives the same quantity (and charge)."""
    return Decimal(str(round(x, 6)))


def deletions_for(session: Session, site: str) -> list[dict[str, Any]]:
    """The staged replicas ``site``'s agent must delete (its transfer poll's ``delete``)."""
    rows = session.scalars(select(ReplicaRow).where(ReplicaRow.site == site, ReplicaRow.state == DELETING)
                           .order_by(ReplicaRow.dataset_id))
    return [{"dataset_id": r.dataset_id, "generation": r.generation} for r in rows]


def deleted(session: Session, agent: Principal, dataset_id: str, generation: int, *, now: float) -> ReplicaRow:
    """The agent deleted a collected replica: it is ``gone``.  A repeated report changes nothing; a replica not
    ordered deleted (a home copy, one still needed, another site's) is refused."""
    rep = session.get(ReplicaRow, (dataset_id, agent.site or ""), with_for_update=True)
    if rep is None or rep.transfer_id is None:
        raise NotFound(f"staged replica of {dataset_id} at {agent.site} not found")
    if generation != rep.generation:
        raise Conflict(f"replica of {dataset_id}: generation {generation} is not its current {rep.generation}")
    if rep.state == GONE:
        return rep
    if rep.state != DELETING:
        raise Conflict(f"replica of {dataset_id} at {rep.site} was not ordered deleted")
    rep.state, rep.reported_at = GONE, now
    record_audit(session, agent, "replica.deleted", dataset_id, site=rep.site, generation=generation)
    return rep


def storage_fen(session: Session, transfer_ids: list[str]) -> dict[str, int]:
    """Gross fen charged for storage per transfer (its charges with seq > 0; seq 0 is the move itself)."""
    if not transfer_ids:
        return {}
    q = (select(LedgerTransferRow.key, LedgerTransferRow.job_id, func.sum(LedgerPostingRow.fen))
         .join(LedgerPostingRow, LedgerPostingRow.transfer_key == LedgerTransferRow.key)
         .where(LedgerTransferRow.job_id.in_(transfer_ids), LedgerTransferRow.kind == "charge",
                LedgerPostingRow.fen > 0)
         .group_by(LedgerTransferRow.key, LedgerTransferRow.job_id))
    out: dict[str, int] = {}
    for key, tid, fen in session.execute(q):
        if not key.endswith(":0"):
            out[tid] = out.get(tid, 0) + int(fen or 0)
    return out
