"""The pure rule of idempotency keys, over random claims."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from suanwang.domain.idempotency import STALE_S, Claim, Decision, check_key, decide, fingerprint

bodies = st.binary(max_size=64)


@given(bodies, bodies)
def test_fingerprints_differ_exactly_when_requests_do(a: bytes, b: bytes) -> None:
    assert (fingerprint("POST", "/x", a) == fingerprint("POST", "/x", b)) == (a == b)
    # the length prefix keeps path and body apart: "/x" + "y..." is not "/xy" + "..."
    assert fingerprint("POST", "/x", b"y" + a) != fingerprint("POST", "/xy", a)


@given(st.text(max_size=8), st.integers(0, 599), st.floats(0, 1e6), st.floats(0, 1e6))
def test_decide_only_replays_the_same_request(fp: str, status: int, created: float, now: float) -> None:
    stored = Claim(fp, status, created)
    assert decide(stored, fp + "!", now=now) is Decision.MISMATCH
    same = decide(stored, fp, now=now)
    if status:
        assert same is Decision.REPLAY
    else:
        assert same is (Decision.TAKE_OVER if now - created > STALE_S else Decision.IN_PROGRESS)
    assert decide(None, fp, now=now) is Decision.RUN


@given(st.text(max_size=300))
def test_check_key_accepts_only_short_printable_ascii(key: str) -> None:
    ok = 1 <= len(key) <= 200 and all(" " < c <= "~" for c in key)
    assert (check_key(key) is None) == ok
