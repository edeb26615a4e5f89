"""The sealer and the verifier of the audit and ledger hash chains (the hashing is ``domain.chain``).

Why a sealer after commit, not a link written by each mutation: on PostgreSQL ids come from sequences and
commit out of order, so chaining by id at insert time breaks, and locking a chain head in every mutating
transaction would serialise them all and invite deadlocks.  Instead the control loop seals rows that have
*committed*, in the order it finds them, under an advisory lock that only one replica holds at a time.

How a pass finds what to seal without rescanning the table
- New rows: ids above the highest id already sealed, in id order, up to a batch.
- Gaps: an id skipped between two found rows belongs to a transaction still open (it is sealed when it
  commits, as a later pass looks the gap up again) or to one rolled back; a gap is forgotten after
  ``GAP_HORIZON_S``.  A row whose transaction outlives the horizon is never sealed, and ``verify`` names it
  as unsealed, as it names a row inserted behind the sealer's back.

Chains: ``audit`` seals audit rows by id; ``ledger`` seals transfers by ``seq`` together with their
postings.  At sealing the postings are taken from the transfer's stored body (which declares its legs, and
which the link covers); ``verify`` reads the postings table itself, so a posting changed, added or removed
breaks the transfer's link.  Reading the postings at sealing would scan the table: it has no index by
transfer (migration 0005 dropped it to keep rating fast).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Row, Select, Table, delete, exists, func, insert, or_, select
from sqlalchemy.orm import Session

from suanwang.clock import SYSTEM_CLOCK, Clock
from suanwang.domain.chain import (
    GENESIS,
    Break,
    ChainWalk,
    Link,
    PostingTuple,
    audit_record,
    link_hash,
    postings_of_body,
    transfer_record,
)
from suanwang.store import locks
from suanwang.store.db import is_postgres
from suanwang.store.ledger_tables import PostingRow, TransferRow
from suanwang.store.tables import AuditRow, ChainGapRow, ChainLinkRow

log = logging.getLogger("suanwang.chain")

CHAIN_LOCK = 0x5357_0007  # PostgreSQL advisory lock key: one sealer at a time across replicas
GAP_HORIZON_S = 600.0  # a skipped id still unfilled after this long belongs to a rolled-back transaction
MAX_GAP = 100_000  # a jump in ids wider than this is not recorded id by id (a forged row far ahead)
LATE_S = 10.0  # unsealed for longer than this (about 20 loop passes) is reported by verify
_CHUNK = 2000

LINKS = ChainLinkRow.__table__
GAPS = ChainGapRow.__table__


@dataclass(frozen=True, slots=True)
class Source:
    """A table sealed into a chain: its id column, its wall-clock column, and how a row becomes bytes."""

    chain: str
    table: Table
    id_name: str
    at_name: str
    seal_record: Callable[[Mapping[str, Any]], bytes]  # at sealing: what the row itself declares

    @property
    def id_col(self) -> Any:
        return self.table.c[self.id_name]


def _transfer_sealed(row: Mapping[str, Any]) -> bytes:
    return transfer_record(row, postings_of_body(row["body"], row["booked_us"]))


AUDIT = Source("audit", AuditRow.__table__, "id", "at", audit_record)
LEDGER = Source("ledger", TransferRow.__table__, "seq", "created_at", _transfer_sealed)
SOURCES = (AUDIT, LEDGER)


# ---- sealing -----------------------------------------------------------------------------------------------


def claim_sealing(session: Session) -> bool:
    """On PostgreSQL only one replica seals at a time (the lock ends with the transaction)."""
    if not is_postgres(session.get_bind()):
        return True
    return bool(session.scalar(locks.TRY_XACT, {"k": CHAIN_LOCK}))


def _head(session: Session, chain: str) -> tuple[int, str, int]:
    """(last link's seq, its hash, highest row id sealed); (0, GENESIS, 0) for an empty chain."""
    last = session.execute(select(LINKS.c.seq, LINKS.c.hash).where(LINKS.c.chain == chain)
                           .order_by(LINKS.c.seq.desc()).limit(1)).first()
    top = session.scalar(select(func.max(LINKS.c.row_id)).where(LINKS.c.chain == chain)) or 0
    return (last[0], last[1], top) if last else (0, GENESIS, 0)


def _by_name(rows: Iterable[Row[Any]]) -> list[Mapping[str, Any]]:
    """Each row as a mapping of its column names (a RowMapping also takes Column keys, never used here)."""
    return [cast("Mapping[str, Any]", r._mapping) for r in rows]


def _rows_by_id(session: Session, source: Source, ids: Sequence[int]) -> list[Mapping[str, Any]]:
    rows: list[Mapping[str, Any]] = []
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        rows += _by_name(session.execute(select(source.table).where(source.id_col.in_(chunk))))
    return rows


def seal_chain(session: Session, source: Source, *, now: float, limit: int = 5000) -> int:
    """Append the committed, unsealed rows of ``source`` to its chain; returns how many were sealed.

    The caller holds the claim (``claim_sealing``) in this transaction.
    """
    seq, prev, top = _head(session, source.chain)
    gaps = dict(session.execute(
        select(GAPS.c.row_id, GAPS.c.seen_at).where(GAPS.c.chain == source.chain)).all())
    filled = sorted(_rows_by_id(session, source, sorted(gaps)), key=lambda r: r[source.id_name])
    new = _by_name(session.execute(
        select(source.table).where(source.id_col > top).order_by(source.id_col).limit(limit)))
    skipped: list[int] = []
    last = top
    for row in new:
        row_id = row[source.id_name]
        if row_id - last - 1 <= MAX_GAP:
            skipped += range(last + 1, row_id)
        else:
            log.warning("chain %s: ids %d..%d skipped unrecorded (wider than %d)", source.chain, last + 1,
                        row_id - 1, MAX_GAP)
        last = row_id
    done = {r[source.id_name] for r in filled}
    expired = [g for g, seen in gaps.items() if g not in done and seen < now - GAP_HORIZON_S]
    gone = sorted(done | set(expired))
    for i in range(0, len(gone), _CHUNK):
        session.execute(delete(GAPS).where(GAPS.c.chain == source.chain, GAPS.c.row_id.in_(gone[i : i + _CHUNK])))
    if skipped:
        session.execute(insert(GAPS), [{"chain": source.chain, "row_id": g, "seen_at": now} for g in skipped])
    links = []
    for row in (*filled, *new):
        seq += 1
        prev = link_hash(prev, source.seal_record(row))
        links.append((source.chain, seq, row[source.id_name], prev, now))
    _insert_links(session, links)
    return len(links)


def _insert_links(session: Session, links: list[tuple[Any, ...]]) -> None:
    """COPY on PostgreSQL (an executemany there cost a third of a pass), a driver executemany on SQLite."""
    if not links:
        return
    conn = session.connection()
    if is_postgres(session.get_bind()):
        with conn.connection.dbapi_connection.cursor() as cursor, cursor.copy(  # type: ignore[union-attr]
                "COPY chain_links (chain, seq, row_id, hash, sealed_at) FROM STDIN") as copy:
            for link in links:
                copy.write_row(link)
        return
    conn.exec_driver_sql("INSERT INTO chain_links (chain, seq, row_id, hash, sealed_at) VALUES (?, ?, ?, ?, ?)",
                         links)


def _anything_to_seal(session: Session, sources: Sequence[Source]) -> bool:
    """Whether a source has a row above its chain's highest sealed id, or a chain has a gap to look up.

    One query for every chain, without the claim, so an idle pass does not pay for each chain's head
    (four queries a chain).  ``seal_chain`` finds nothing to do exactly when this is false.
    """
    return bool(session.scalar(_probe(tuple(sources))))


@functools.cache
def _probe(sources: tuple[Source, ...]) -> Select[tuple[bool]]:
    """``_anything_to_seal``'s statement, built once (building it cost as much as running it)."""
    newer = [select(func.coalesce(func.max(src.id_col), 0)).scalar_subquery()
             > select(func.coalesce(func.max(LINKS.c.row_id), 0)).where(LINKS.c.chain == src.chain).scalar_subquery()
             for src in sources]
    gaps = exists().where(GAPS.c.chain.in_([src.chain for src in sources]))
    return select(or_(*newer, gaps))


def seal_all(
    db: Any, *, now: float | None = None, limit: int = 5000, max_batches: int = 2, clock: Clock = SYSTEM_CLOCK
) -> int:
    """The control loop's step: seal every chain, one transaction per batch, while this replica holds the
    claim.  Another replica sealing at the moment is not an error: this pass leaves the work to it.
    At most ``limit * max_batches`` rows a chain per pass (the loop rates at most 10,000 a pass), so a
    backlog is worked off over several passes instead of holding up the next scheduling pass."""
    total = 0
    pending = list(SOURCES)
    for batch in range(max_batches):
        with db.transaction() as s:  # both chains in one transaction: an idle pass is one query, one commit
            if batch == 0 and not _anything_to_seal(s, pending):
                return 0
            if not claim_sealing(s):
                return total
            sealed = {source: seal_chain(s, source, now=clock.time() if now is None else now, limit=limit)
                      for source in pending}
        total += sum(sealed.values())
        pending = [source for source, n in sealed.items() if n >= limit]
        if not pending:
            break
    return total


# ---- verifying ---------------------------------------------------------------------------------------------

Progress = Callable[[str, int, int], None]  # (chain, links checked, links in all)


@dataclass
class ChainReport:
    """What ``verify`` found in one chain."""

    chain: str
    links: int = 0
    checked: int = 0
    head: dict[str, Any] = field(default_factory=dict)
    first_break: Break | None = None
    broken: int = 0
    unsealed: int = 0
    unsealed_late: list[int] = field(default_factory=list)  # ids unsealed for longer than LATE_S (first 20)
    unsealed_late_count: int = 0
    unsealed_behind: list[int] = field(default_factory=list)  # ids below the sealed head the sealer will not visit
    orphan_postings: list[str] = field(default_factory=list)  # transfer keys with postings but no transfer

    @property
    def ok(self) -> bool:
        return (self.broken == 0 and self.unsealed_late_count == 0 and not self.unsealed_behind
                and not self.orphan_postings)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "chain": self.chain, "ok": self.ok, "links": self.links, "checked": self.checked, "head": self.head,
            "first_break": self.first_break.as_json() if self.first_break else None, "broken": self.broken,
            "unsealed": self.unsealed, "unsealed_late": self.unsealed_late_count,
            "unsealed_late_ids": self.unsealed_late, "unsealed_behind_ids": self.unsealed_behind}
        if self.chain == LEDGER.chain:
            out["orphan_postings"] = self.orphan_postings
        return out


@dataclass
class VerifyReport:
    chains: list[ChainReport]
    late_s: float

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.chains)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "rows_checked": sum(c.checked for c in self.chains), "late_s": self.late_s,
                "chains": [c.as_json() for c in self.chains]}


def verify(
    db: Any, *, now: float | None = None, late_s: float = LATE_S, progress: Progress | None = None,
    clock: Clock = SYSTEM_CLOCK
) -> VerifyReport:
    """Recompute both chains from the rows as stored now; name the first broken link of each.

    Reads in short transactions (links and sealed rows never change, so the chunks agree), so a long
    chain does not hold SQLite's write lock or a PostgreSQL snapshot for the whole walk.
    """
    now = clock.time() if now is None else now
    return VerifyReport([_verify_chain(db, source, now=now, late_s=late_s, progress=progress)
                         for source in SOURCES], late_s)


def _verify_chain(db: Any, source: Source, *, now: float, late_s: float, progress: Progress | None) -> ChainReport:
    report = ChainReport(source.chain)
    with db.transaction() as s:
        report.links, end = s.execute(select(func.count(), func.coalesce(func.max(LINKS.c.seq), 0))
                                      .where(LINKS.c.chain == source.chain)).one()
    # Read after the link count: every transfer sealed by links <= end had committed, with its postings.
    postings = _postings_by_key(db, report) if source is LEDGER else {}
    walk, after = ChainWalk(), 0
    while after < end:
        with db.transaction() as s:
            chunk = s.execute(
                select(LINKS.c.seq.label("link_seq"), LINKS.c.row_id.label("link_row"),
                       LINKS.c.hash.label("link_hash"), *source.table.c)
                .select_from(LINKS.outerjoin(source.table, source.id_col == LINKS.c.row_id))
                .where(LINKS.c.chain == source.chain, LINKS.c.seq > after, LINKS.c.seq <= end)
                .order_by(LINKS.c.seq).limit(_CHUNK)).all()
        walk.feed([_link(source, r._mapping, postings) for r in chunk])
        after = chunk[-1].link_seq if chunk else end
        if progress:
            progress(source.chain, walk.checked, report.links)
    report.checked, report.broken, report.first_break = walk.checked, walk.broken, walk.first_break
    report.head = {"seq": walk.expected_seq - 1, "hash": walk.prev}
    _unsealed(db, source, report, now=now, late_s=late_s)
    return report


def _link(source: Source, row: Mapping[str, Any], postings: Mapping[str, list[PostingTuple]]) -> Link:
    seq, row_id, sealed = row["link_seq"], row["link_row"], row["link_hash"]
    if row[source.id_name] is None:
        return Link(seq, row_id, sealed, None)
    if source is LEDGER:
        return Link(seq, row_id, sealed, transfer_record(row, postings.get(row["key"], ())))
    return Link(seq, row_id, sealed, source.seal_record(row))


def _postings_by_key(db: Any, report: ChainReport) -> dict[str, list[PostingTuple]]:
    """Every posting, by transfer key; keys with postings but no transfer go on the report."""
    p, t = PostingRow.__table__, TransferRow.__table__
    out: dict[str, list[PostingTuple]] = {}
    with db.transaction() as s:
        for key, account, fen, currency, booked in s.execute(
                select(p.c.transfer_key, p.c.account, p.c.fen, p.c.currency, p.c.booked_us)):
            out.setdefault(key, []).append((account, fen, currency, booked))
        orphans = s.scalars(select(p.c.transfer_key).except_(select(t.c.key)).order_by("transfer_key").limit(20)).all()
    report.orphan_postings = list(orphans)
    return out


def _unsealed(db: Any, source: Source, report: ChainReport, *, now: float, late_s: float) -> None:
    """Rows no link covers.  EXCEPT, not NOT EXISTS: on tables not yet analysed PostgreSQL planned the anti
    join as a nested loop over every link (5 s at 6,000 transfers)."""
    unsealed = select(source.id_col).except_(select(LINKS.c.row_id).where(LINKS.c.chain == source.chain))
    with db.transaction() as s:
        rows = s.execute(select(source.id_col, source.table.c[source.at_name])
                         .where(source.id_col.in_(unsealed)).order_by(source.id_col)).all()
        top = s.scalar(select(func.max(LINKS.c.row_id)).where(LINKS.c.chain == source.chain)) or 0
        watched = set(s.scalars(select(GAPS.c.row_id).where(GAPS.c.chain == source.chain)))
    late = [row_id for row_id, at in rows if at < now - late_s]
    report.unsealed, report.unsealed_late_count, report.unsealed_late = len(rows), len(late), late[:20]
    # Below the highest sealed id and not a gap the sealer still watches: no pass will ever seal it.
    report.unsealed_behind = [row_id for row_id, _ in rows if row_id < top and row_id not in watched][:20]


def seal_of(session: Session, chain: str, row_ids: Iterable[int]) -> dict[int, tuple[int, str]]:
    """row id -> (link seq, hash) for those of ``row_ids`` that are sealed."""
    ids = list(row_ids)
    if not ids:
        return {}
    rows = session.execute(select(LINKS.c.row_id, LINKS.c.seq, LINKS.c.hash)
                           .where(LINKS.c.chain == chain, LINKS.c.row_id.in_(ids)))
    return {row_id: (seq, h) for row_id, seq, h in rows}
