"""Idempotency keys in the database: claim a key, store the answer, forget a failed attempt.

Each step is its own short transaction, outside the request's: the key must be
claimed before the request runs (so a concurrent twin waits) and answered after
it committed.  A crash between the two leaves a claim without an answer, which
``domain.idempotency.decide`` lets a retry take over once it is stale.
"""

from __future__ import annotations

import json

from sqlalchemy import delete, select, update

from suanwang.clock import SYSTEM_CLOCK, Clock
from suanwang.domain.idempotency import Claim, Decision, decide
from suanwang.errors import StoreConflict
from suanwang.store.db import Database
from suanwang.store.tables import IdempotencyRow

SECRET_PREFIX = "sw_"  # token plaintexts: shown once, never stored, so never replayed  # nosec B105  # a prefix to recognise, not a secret


def claim(
    db: Database, tenant_id: str, key: str, fp: str, *, now: float | None = None,
    clock: Clock = SYSTEM_CLOCK
) -> tuple[Decision, IdempotencyRow | None]:
    """Claim ``key`` for the request ``fp``; returns the decision and the stored row (for a replay)."""
    now = clock.time() if now is None else now
    for _ in range(2):  # a lost race on the unique key is read back once
        try:
            with db.transaction() as s:
                row = s.scalar(select(IdempotencyRow).where(IdempotencyRow.tenant_id == tenant_id,
                                                            IdempotencyRow.key == key).with_for_update())
                stored = None if row is None else Claim(row.fingerprint, row.status, row.created_at)
                decision = decide(stored, fp, now=now)
                if decision is Decision.RUN:
                    s.add(IdempotencyRow(tenant_id=tenant_id, key=key, fingerprint=fp, created_at=now, status=0,
                                         content_type="", body=b""))
                elif decision is Decision.TAKE_OVER:
                    assert row is not None
                    row.created_at = now
                return decision, row
        except StoreConflict:  # a concurrent first claim of the key won: read it on the next turn
            continue
    return Decision.IN_PROGRESS, None


def answer(db: Database, tenant_id: str, key: str, status: int, content_type: str, body: bytes) -> None:
    """Store the first answer (a 5xx is not an answer: the key is released so a retry runs again)."""
    with db.transaction() as s:
        where = (IdempotencyRow.tenant_id == tenant_id, IdempotencyRow.key == key)
        if status >= 500:
            s.execute(delete(IdempotencyRow).where(*where))
            return
        s.execute(update(IdempotencyRow).where(*where).values(status=status, content_type=content_type[:100],
                                                              body=without_secrets(body, content_type)))


def without_secrets(body: bytes, content_type: str) -> bytes:
    """The body as stored: a token's plaintext is replaced by a note (it is shown once, to the first caller)."""
    if SECRET_PREFIX.encode() not in body or "json" not in content_type:
        return body
    try:
        data = json.loads(body)
    except ValueError:
        return b'{"detail": "the first answer held a secret and is not kept"}'
    if isinstance(data, dict):
        for name, value in list(data.items()):
            if isinstance(value, str) and value.startswith(SECRET_PREFIX):
                data[name] = None
                data[f"{name}_note"] = "shown once, in the first answer; this is a replay"
    return json.dumps(data).encode()
