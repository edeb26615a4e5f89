"""Contracts honoured by placement: the rows the pure rules (``domain/market/reservations.py``) need.

The scheduling pass (``services.scheduling.place_waiting_jobs``) calls :func:`reservations_now`; when a
contract is in force it places owners first (:func:`reservations.place_owners`), gives everyone else the
pools less the idle reservations, and lets leftover spot work borrow them.  Submit calls
:func:`check_contract` for a job that names a contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.domain.fairness import RunningJob
from suanwang.domain.grid import Capacity
from suanwang.domain.job import JobSpec
from suanwang.domain.ledger import ResultCode
from suanwang.domain.market.contract import ContractLine, settle_line
from suanwang.domain.market.money import plan_line_settlement
from suanwang.domain.market.reservations import Reservation
from suanwang.domain.resources import ResourceClass
from suanwang.errors import Conflict, InvalidSpec, NotFound
from suanwang.services.ledger_store import SqlLedger
from suanwang.store.market_tables import MarketContractRow
from suanwang.store.tables import JobRow, SiteRow


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


def lent_use(session: Session, states: Sequence[str], sites: set[str], contracts: set[str]) -> dict[str, int]:
    """Units of each contract line that spot jobs holding capacity at ``sites`` borrow now
    (``placement.lent_now``), so the next lending pass attributes only what is still idle."""
    rows = session.scalars(select(JobRow.placement).where(JobRow.state.in_(states), JobRow.site.in_(sorted(sites))))
    used: dict[str, int] = {}
    for placement in rows:
        for cid, units in (placement.get("lent_now") or ()) if isinstance(placement, dict) else ():
            if cid in contracts:
                used[cid] = used.get(cid, 0) + int(units)
    return used


def settle_failed_contracts(session: Session, *, now: float) -> list[str]:
    """Refund and penalty for contract lines whose site is offline during their slot (delivery failed).

    Triggered by the site status the control loop keeps (``scheduling.mark_offline_sites``): a line whose
    site is seen offline while its slot runs counts as not delivered in full (the slot is the unit of
    delivery).  The transfers are keyed by the line (``market:<session>:failed:<line>``), so a retry, a
    second replica or a later pass in the same slot books nothing again (the ledger answers EXISTS).
    """
    offline = set(session.scalars(select(SiteRow.name).where(SiteRow.online.is_(False))))
    if not offline:
        return []
    rows = session.scalars(select(MarketContractRow).where(MarketContractRow.slot_start <= now,
                                                           MarketContractRow.slot_end > now,
                                                           MarketContractRow.site.in_(sorted(offline))))
    at = datetime.fromtimestamp(now, UTC)
    transfers = []
    lines = []
    for row in rows:
        line = ContractLine(row.id, row.bid_id, row.consumer, row.ask_id, row.provider, row.site,
                            ResourceClass(row.resource_class), 0, row.units, row.buyer_price_cf, row.seller_price_cf)
        transfers += plan_line_settlement(row.session_id, line, settle_line(line, delivered=0), at=at,
                                          actor="system:market")
        lines.append(row.id)
    if not transfers:
        return []
    results = SqlLedger(session).apply_many(transfers, atomic=True)
    bad = [r for r in results if not r.ok]
    if bad:
        raise Conflict(f"contract failure settlement refused: {bad[0].key} {bad[0].code.value}")
    return [r.key for r in results if r.code is ResultCode.CREATED]
