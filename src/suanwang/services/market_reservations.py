"""Contracts honoured by placement: the rows the pure rules (``domain/market/reservations.py``) need.

The scheduling pass (``services.scheduling.place_waiting_jobs``) calls :func:`reservations_now`; when a
contract is in force it places owners first (:func:`reservations.place_owners`), gives everyone else the
pools less the idle reservations, and lets leftover spot work borrow them.  Submit calls
:func:`check_contract` for a job that names a contract.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.domain.fairness import RunningJob
from suanwang.domain.grid import Capacity
from suanwang.domain.job import JobSpec
from suanwang.domain.market.reservations import Reservation
from suanwang.domain.resources import ResourceClass
from suanwang.errors import Conflict, InvalidSpec, NotFound
from suanwang.store.market_tables import MarketContractRow
from suanwang.store.tables import JobRow


def _reservation(row: MarketContractRow) -> Reservation:
    return Reservation(row.id, row.consumer, row.site, ResourceClass(row.resource_class), row.units,
                       row.slot_start, row.slot_end, row.buyer_price_cf)


def check_contract(session: Session, tenant: str, spec: JobSpec, *, now: float) -> None:
    """A job naming a contract: it must be the submitter's (else 404, never another tenant's), of the job's
    class, and not over (its slot has not ended)."""
    if not spec.contract:
        return
    row = session.get(MarketContractRow, spec.contract)
    if row is None or row.consumer != tenant:
        raise NotFound(f"contract {spec.contract} not found")
    if row.resource_class != spec.resource_class.value:
        raise InvalidSpec(f"contract: {spec.contract} is for class {row.resource_class}, "
                          f"the job is {spec.resource_class.value}")
    if row.slot_end <= now:
        raise Conflict(f"contract: {spec.contract} ended (its slot closed)")


def reservations_now(session: Session, *, now: float) -> list[Reservation]:
    """Contract lines whose slot contains ``now`` (indexed by (site, slot_start))."""
    rows = session.scalars(select(MarketContractRow).where(MarketContractRow.slot_start <= now,
                                                           MarketContractRow.slot_end > now))
    return [_reservation(r) for r in rows]


def contract_jobs(session: Session, states: Sequence[str], sites: set[str]) -> tuple[dict[str, str], list[RunningJob]]:
    """Jobs holding capacity at ``sites`` under a contract (placed ones too): job id -> contract id, and the
    jobs as ``owner_use`` counts them."""
    rows = session.execute(select(JobRow.id, JobRow.placement, JobRow.tenant_id, JobRow.site, JobRow.pool,
                                  JobRow.cores, JobRow.memory_gb, JobRow.devices)
                           .where(JobRow.state.in_(states), JobRow.site.in_(sorted(sites))))
    of: dict[str, str] = {}
    held: list[RunningJob] = []
    for jid, placement, tenant, site, pool, cores, mem, devices in rows:
        if isinstance(placement, dict) and placement.get("contract"):
            of[jid] = str(placement["contract"])
            held.append(RunningJob(jid, tenant, site or "", pool or "", Capacity(cores, mem, devices), 0.0, 0.0))
    return of, held
