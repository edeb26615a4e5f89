"""Contract-price rating: usage that ran inside a market contract's reservation is not priced by the books.

Take-or-pay (docs/market.md): the buyer paid for the whole contract line at the clear, at the contract
price, used or not, so the usage of a job placed under the contract (``placement.contract``, at the
contract's site) owes nothing more.  The rating path (``rating.rate_pending_usage``) calls
:func:`contract_covered` once per batch and marks those usage records ``unbilled_reason = "contract"``,
as it marks usage of lost attempts; nothing is charged twice.  Kept apart from the price-book fast path.

Lent capacity: a spot job the scheduling pass placed in contracts' idle units records them by the attempt
its lease starts (``placement.lent``: ``{attempt: [[contract line, units], ...]}``, kept across requeues);
once that attempt's usage is charged by the price books, :func:`book_lent_credits` credits each line's
buyer ``LENT_SHARE_BPS`` of the part of that charge that paid for the line's units within its slot, from
the line's provider, one transfer per (line, usage record).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.domain.ledger import ResultCode, Transfer
from suanwang.domain.market.contract import lent_revenue_fen
from suanwang.domain.market.money import plan_lent_credit
from suanwang.domain.rating import usage_key
from suanwang.services.audit import record_audit
from suanwang.store.ledger_tables import TransferRow
from suanwang.store.market_tables import MarketContractRow
from suanwang.store.sql_ledger import SqlLedger
from suanwang.store.tables import JobRow

COVERED_BY_CONTRACT = "contract"  # usage rated at the contract price: paid at the clear (take-or-pay)


def contract_covered(session: Session, rows: Sequence[Any], job_ids: Iterable[str]) -> set[int]:
    """Ids of the usage rows (``(id, job_id, attempt, seq, consumer, site, pool, class, start_s, end_s, ...)``)
    that ran under a contract: the job was placed under one, at its site, and the usage lies in its slot."""
    if session.scalar(select(MarketContractRow.id).limit(1)) is None:
        return set()  # no market contracts at all: the common case costs one indexed look
    placed = {jid: p["contract"] for jid, p in session.execute(select(JobRow.id, JobRow.placement)
                                                                .where(JobRow.id.in_(sorted(set(job_ids)))))
              if isinstance(p, dict) and p.get("contract")}
    if not placed:
        return set()
    lines = {c.id: c for c in session.scalars(select(MarketContractRow)
                                              .where(MarketContractRow.id.in_(sorted(set(placed.values())))))}
    covered = set()
    for row in rows:
        line = lines.get(placed.get(row[1], ""))
        if line is not None and row[5] == line.site and line.slot_start - 1.0 <= row[8] < line.slot_end:
            covered.add(row[0])
    return covered


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def book_lent_credits(session: Session, charged: Sequence[tuple[Any, int]]) -> list[str]:
    """Credit contract buyers their share of spot revenue on lent capacity (docs/market.md, take-or-pay).

    ``charged``: (usage row, what its consumer was charged in fen) for this batch's price-book charges.  Only
    rows whose charge is booked count; each credit's key names the line and the usage record, so a retried
    batch (or another worker) books nothing twice.  A credit the provider's earnings cannot cover (already paid
out) is refused by the ledger and audited (``market.lent_refused``), never failing the batch.  Returns the
keys created now.
    """
    if not charged or session.scalar(select(MarketContractRow.id).limit(1)) is None:
        return []
    jobs = select(JobRow.id, JobRow.placement).where(JobRow.id.in_(sorted({row[1] for row, _ in charged})))
    lent = {jid: p["lent"] for jid, p in session.execute(jobs)
            if isinstance(p, dict) and isinstance(p.get("lent"), dict)}
    if not lent:
        return []
    wanted = {cid for by_attempt in lent.values() for parts in by_attempt.values() for cid, _ in parts}
    lines = {c.id: c for c in session.scalars(select(MarketContractRow)
                                              .where(MarketContractRow.id.in_(sorted(wanted))))}
    keys = {usage_key(*row[1:4]) for row, _ in charged if str(row[2]) in lent.get(row[1], {})}
    booked = set(session.scalars(select(TransferRow.key).where(TransferRow.key.in_(sorted(keys)))))
    transfers: list[Transfer] = []
    for row, paid in charged:
        parts = lent.get(row[1], {}).get(str(row[2]))  # what the attempt that reported this usage borrowed
        if not parts or usage_key(*row[1:4]) not in booked:
            continue
        units = sum(int(u) for _, u in parts)
        for cid, part in parts:
            line = lines.get(cid)
            if line is None or line.site != row[5]:
                continue
            revenue = lent_revenue_fen(paid, lent_units=int(part), job_units=units, start_ms=_ms(row[8]),
                                       end_ms=_ms(row[9]), slot_start_ms=_ms(line.slot_start),
                                       slot_end_ms=_ms(line.slot_end))
            t = plan_lent_credit(line.session_id, line.id, consumer=line.consumer, provider=line.provider,
                                 usage_ref=str(row[0]), spot_revenue_fen=revenue,
                                 at=datetime.fromtimestamp(row[9], UTC), actor="system:market")
            if t is not None:
                transfers.append(t)
    if not transfers:
        return []
    results = SqlLedger(session).apply_many(transfers)
    for r in results:  # never fail the rating batch: a refused credit (earnings already paid out) is audited
        if not r.ok:
            record_audit(session, None, "market.lent_refused", r.key, code=r.code.value)
    return [r.key for r in results if r.code is ResultCode.CREATED]
