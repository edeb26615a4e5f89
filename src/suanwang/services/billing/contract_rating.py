"""Contract-price rating: usage that ran inside a market contract's reservation is not priced by the books.

Take-or-pay (docs/market.md): the buyer paid for the whole contract line at the clear, at the contract
price, used or not, so the usage of a job placed under the contract (``placement.contract``, at the
contract's site) owes nothing more.  The rating path (``rating.rate_pending_usage``) calls
:func:`contract_covered` once per batch and marks those usage records ``unbilled_reason = "contract"``,
as it marks usage of lost attempts; nothing is charged twice.  Kept apart from the price-book fast path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.store.market_tables import MarketContractRow
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
