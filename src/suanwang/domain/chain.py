"""Hash chains over append-only records: canonical bytes, link hashes, and the walk that checks them.

Why a chain on top of the append-only triggers: a trigger stops the platform's own code, not someone who
can drop it.  Each link's hash covers the previous hash and the record's canonical bytes, so changing,
deleting or inserting a sealed record breaks every later link; publishing the head hash lets an outsider
hold the platform to its past.

Canonical bytes are JSON with sorted keys, no spaces, UTF-8, and floats as Python writes them (``repr``,
the shortest string that reads back as the same double), so the same stored row always gives the same bytes
on SQLite and on PostgreSQL.

    hash_n = SHA-256( hash_{n-1} ‖ "\\n" ‖ canonical(record_n) ),   hash_0 = GENESIS

Pure: no database, no clock.  ``services.chain`` reads the rows and stores the links.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

GENESIS = "0" * 64  # the hash before the first link

# The columns of each sealed table that a link covers, in no particular order (the canonical form sorts).
AUDIT_FIELDS = ("id", "at", "actor", "tenant_id", "action", "object", "detail")
TRANSFER_FIELDS = ("seq", "key", "kind", "booked_us", "created_at", "request", "hold_id", "voucher_programme",
                   "voucher_fen", "reverses", "consumer", "provider", "job_id", "usage_key", "price_book_version",
                   "actor", "over_limit", "body")

# One leg as stored in ``ledger_postings``: (account, fen, currency, booked_us).
PostingTuple = tuple[str, int, str, int]


def canonical(record: Mapping[str, Any]) -> bytes:
    """The record as canonical JSON bytes (sorted keys, no whitespace, UTF-8; NaN and ±inf as JSON5 names,
    so a stored oddity is hashed, never a reason to stop sealing)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def link_hash(prev: str, record: bytes) -> str:
    """The hash of a link: SHA-256 over the previous link's hash and the record's canonical bytes."""
    return hashlib.sha256(prev.encode("ascii") + b"\n" + record).hexdigest()


def audit_record(row: Mapping[str, Any]) -> bytes:
    """Canonical bytes of one audit row (``row`` maps the audit table's column names to stored values)."""
    return canonical({name: row[name] for name in AUDIT_FIELDS})


def postings_of_body(body: Any, booked_us: int) -> list[PostingTuple]:
    """The legs a transfer's stored body declares, as the postings table must hold them.  A body that
    declares none readably (only a forged row could) gives none: its link still covers the body, and
    verify then finds the postings differ, instead of the sealer stopping on it."""
    try:
        return [(str(a), int(fen), str(cur), booked_us) for a, fen, cur in body.get("postings", ())]
    except (AttributeError, TypeError, ValueError, OverflowError):
        return []


def transfer_record(row: Mapping[str, Any], postings: Iterable[PostingTuple]) -> bytes:
    """Canonical bytes of one ledger transfer with its postings (sorted: their ids carry no meaning)."""
    record = {name: row[name] for name in TRANSFER_FIELDS}
    record["over_limit"] = bool(record["over_limit"])  # SQLite hands back 0/1
    record["postings"] = sorted([list(p) for p in postings])
    return canonical(record)


class Link(NamedTuple):
    """One stored link, and the record it points at as read now (``None``: the row is gone)."""

    seq: int
    row_id: int
    hash: str
    record: bytes | None


@dataclass(frozen=True, slots=True)
class Break:
    """The first place a chain does not hold: which link, which row, and what differs."""

    seq: int
    row_id: int
    problem: str

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "row_id": self.row_id, "problem": self.problem}


@dataclass
class ChainWalk:
    """Walks links in order, recomputing each hash; keeps the first break and counts the rest.

    After a break the walk goes on from the *stored* hash, so one changed row is reported once, not as
    every link after it.
    """

    prev: str = GENESIS
    expected_seq: int = 1
    checked: int = 0
    broken: int = 0
    first_break: Break | None = None

    def feed(self, links: Sequence[Link]) -> None:
        for link in links:
            problem = self._problem(link)
            if problem is not None:
                self.broken += 1
                if self.first_break is None:
                    self.first_break = Break(link.seq, link.row_id, problem)
            self.prev = link.hash
            self.expected_seq = link.seq + 1
            self.checked += 1

    def _problem(self, link: Link) -> str | None:
        if link.seq != self.expected_seq:
            return f"link {self.expected_seq} is missing: the chain jumps to link {link.seq}"
        if link.record is None:
            return f"row {link.row_id} was sealed at link {link.seq} and is gone (deleted)"
        recomputed = link_hash(self.prev, link.record)
        if recomputed != link.hash:
            return (f"row {link.row_id} differs from what link {link.seq} sealed (changed since sealing, or the "
                    f"link was rewritten): recomputed {recomputed[:16]}…, sealed {link.hash[:16]}…")
        return None
