"""Transfers as store rows and canonical JSON, and back: the one encoding every store adapter writes
(the request text is what L5's idempotency compares)."""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Iterable, Mapping
from dataclasses import fields
from datetime import datetime
from typing import Any

from suanwang.domain.ledger.core import _INT, Account, Audit, Posting, Transfer, TransferKind
from suanwang.domain.money import Fen

_AUDIT_TIMES = ("usage_start", "usage_end")


_AUDIT_FIELDS = tuple(f.name for f in fields(Audit))


def transfer_to_row(t: Transfer) -> dict[str, Any]:
    """A JSON-ready dict of ``t`` (ints, strings, lists): what a store persists.  Inverse: transfer_from_row."""
    audit = {name: getattr(t.audit, name) for name in _AUDIT_FIELDS}
    for name in _AUDIT_TIMES:
        audit[name] = audit[name].isoformat() if audit[name] else None
    return {
        "key": t.key,
        "kind": t.kind.value,
        "booked_at": t.booked_at.isoformat(),
        "request": t.request,
        "postings": [[str(p.account), p.fen, p.currency] for p in t.postings],
        "audit": audit,
        "hold_id": t.hold_id,
        "hold_fen": t.hold_fen,
        "voucher_programme": t.voucher_programme,
        "voucher_fen": t.voucher_fen,
        "voucher_cap_fen": t.voucher_cap_fen,
        "reverses": t.reverses,
        "hold_expires_at": t.hold_expires_at.isoformat() if t.hold_expires_at else None,
    }


def transfer_json(t: Transfer) -> str:
    """``json.dumps(transfer_to_row(t))``, written directly: a store encodes one per transfer it books, and
    the dict plus the general encoder cost more than checking the transfer.  A field of a type the
    writer does not know (say a str subclass) sends the whole transfer down the general path."""
    try:
        return _transfer_json(t)
    except _Unwritable:
        return json.dumps(transfer_to_row(t))


class _Unwritable(Exception):
    """A value the direct writer does not write as json.dumps would."""


_json_ascii = json.encoder.encode_basestring_ascii  # a str as json.dumps (ensure_ascii) writes it


_STR = {str}


def _json_time(at: datetime | None, *known: tuple[datetime | None, str]) -> str:
    """A time as transfer_to_row stores it (isoformat in its own zone), reusing one already written."""
    if at is None:
        return "null"
    for other, text in known:
        if at is other:
            return text
    if type(at) is not datetime:
        raise _Unwritable
    return f'"{at.isoformat()}"'


def _transfer_json(t: Transfer) -> str:
    a = t.audit
    texts = (t.key, t.request, t.hold_id, t.voucher_programme, t.reverses,
             a.actor, a.reason, a.consumer, a.provider, a.job_id, a.usage_key, a.resource_class, a.pool)
    ints = (t.hold_fen, t.voucher_fen, t.voucher_cap_fen)
    version = a.price_book_version
    if (type(t.kind) is not TransferKind or set(map(type, texts)) != _STR or set(map(type, ints)) != _INT
            or not (version is None or type(version) is int)):
        raise _Unwritable
    legs = []
    for p in t.postings:
        if type(p.fen) is not int or type(p.currency) is not str or type(p.account.owner) is not str:
            raise _Unwritable
        legs.append((str(p.account), p.fen, p.currency))
    booked = _json_time(t.booked_at)
    start = _json_time(a.usage_start, (t.booked_at, booked))
    end = _json_time(a.usage_end, (t.booked_at, booked), (a.usage_start, start))
    expires = _json_time(t.hold_expires_at, (t.booked_at, booked))
    return transfer_text(t.kind, t.key, booked, t.request, legs, a.actor, a.reason, a.consumer, a.provider, a.job_id,
                         a.usage_key, version, a.resource_class, a.pool, start, end, t.hold_id, t.hold_fen,
                         t.voucher_programme, t.voucher_fen, t.voucher_cap_fen, t.reverses, expires)


def transfer_text(kind: TransferKind, key: str, booked: str, request: str, legs: Iterable[tuple[str, Fen, str]],
                  actor: str, reason: str, consumer: str, provider: str, job_id: str, usage_key: str,
                  version: int | None, resource_class: str, pool: str, start: str, end: str, hold_id: str,
                  hold_fen: Fen, programme: str, voucher_fen: Fen, cap: Fen, reverses: str, expires: str) -> str:
    """The stored body (``json.dumps(transfer_to_row(...))``) from plain values: strs and ints as they
    are, times already written as JSON (``"<isoformat>"`` or ``null``).  Rating writes its charges'
    bodies with this directly, without building a Transfer (domain.rating_batch)."""
    e = _json_ascii
    postings = ", ".join(f"[{e(account)}, {fen}, {e(currency)}]" for account, fen, currency in legs)
    return (  # the key order of transfer_to_row, and of Audit's fields
        f'{{"key": {e(key)}, "kind": "{kind}", "booked_at": {booked}, "request": {e(request)}, '
        f'"postings": [{postings}], "audit": {{"actor": {e(actor)}, "reason": {e(reason)}, '
        f'"consumer": {e(consumer)}, "provider": {e(provider)}, "job_id": {e(job_id)}, "usage_key": {e(usage_key)}, '
        f'"price_book_version": {"null" if version is None else version}, "resource_class": {e(resource_class)}, '
        f'"pool": {e(pool)}, "usage_start": {start}, "usage_end": {end}}}, "hold_id": {e(hold_id)}, '
        f'"hold_fen": {hold_fen}, "voucher_programme": {e(programme)}, "voucher_fen": {voucher_fen}, '
        f'"voucher_cap_fen": {cap}, "reverses": {e(reverses)}, "hold_expires_at": {expires}}}'
    )


def transfer_from_row(row: Mapping[str, Any]) -> Transfer:
    """Rebuild a transfer persisted by :func:`transfer_to_row` (validating it again)."""
    audit = dict(row["audit"])
    for name in _AUDIT_TIMES:
        audit[name] = datetime.fromisoformat(audit[name]) if audit[name] else None
    postings = tuple(Posting(Account.parse(a), fen, cur) for a, fen, cur in row["postings"])
    expires = row.get("hold_expires_at")
    return Transfer(
        row["key"],
        TransferKind(row["kind"]),
        postings,
        datetime.fromisoformat(row["booked_at"]),
        Audit(**audit),
        request=row["request"],
        hold_id=row["hold_id"],
        hold_fen=row["hold_fen"],
        voucher_programme=row["voucher_programme"],
        voucher_fen=row["voucher_fen"],
        voucher_cap_fen=row["voucher_cap_fen"],
        reverses=row["reverses"],
        hold_expires_at=datetime.fromisoformat(expires) if expires else None,
    )
