"""Idempotency keys: what a retried request gets (Stripe's rules, in plain data).

A client that lost the answer to a POST sends it again with the same
``Idempotency-Key``.  Same key and same request: the first answer, and nothing
happens twice.  Same key and another request: a conflict, because the client
has mixed up its keys and guessing which request it meant would be wrong.  A
first request still running: come back later.  A first request that never
finished (its process died) may run again; what it moves is itself keyed, so
the second run cannot move it twice.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

MAX_KEY = 200  # characters: the width of the stored key
STALE_S = 60.0  # a first request "running" longer than this died with its process


class Decision(enum.Enum):
    RUN = "run"  # new key: run the request, then store its answer
    REPLAY = "replay"  # same request, answered before: send that answer again
    MISMATCH = "mismatch"  # same key, another request: 409
    IN_PROGRESS = "in_progress"  # same request, first one still running: 409 with Retry-After
    TAKE_OVER = "take_over"  # same request, first one died unanswered: run it again


@dataclass(frozen=True, slots=True)
class Claim:
    """A stored key: the request it was first used for and, once answered, the answer's status."""

    fingerprint: str
    status: int  # 0 while the first request runs
    created_at: float


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What makes two requests "the same": method, path and exact body bytes."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def check_key(key: str) -> str | None:
    """Why ``key`` is unusable, or None: 1..200 printable ASCII characters."""
    if not key or len(key) > MAX_KEY:
        return f"Idempotency-Key must be 1 to {MAX_KEY} characters"
    if not all(" " < c <= "~" for c in key):
        return "Idempotency-Key must be printable ASCII without spaces"
    return None


def decide(stored: Claim | None, fp: str, *, now: float, stale_s: float = STALE_S) -> Decision:
    if stored is None:
        return Decision.RUN
    if stored.fingerprint != fp:
        return Decision.MISMATCH
    if stored.status:
        return Decision.REPLAY
    if now - stored.created_at > stale_s:
        return Decision.TAKE_OVER
    return Decision.IN_PROGRESS
