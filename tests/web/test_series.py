"""Properties of the console's time-series bucketing (pure)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from suanwang.web.series import bucketed, counts, percentile, spread

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(finite, st.floats(min_value=0, max_value=1e5), st.floats(min_value=0, max_value=1e6),
       st.floats(min_value=1, max_value=1e4))
def test_an_interval_inside_the_window_is_neither_lost_nor_doubled(start: float, length: float, amount: float,
                                                                   bucket_s: float) -> None:
    t0 = start - bucket_s * 3
    n = math.ceil((length + 6 * bucket_s) / bucket_s) + 1
    parts = spread(start, start + length, amount, t0=t0, bucket_s=bucket_s, n=n)
    assert math.isclose(sum(parts.values()), amount, rel_tol=1e-9, abs_tol=1e-6)
    assert all(0 <= k < n and v >= 0 for k, v in parts.items())


@given(finite, finite, st.floats(min_value=0, max_value=1e6))
def test_parts_outside_the_window_are_dropped_never_invented(start: float, end: float, amount: float) -> None:
    parts = spread(start, end, amount, t0=0.0, bucket_s=60.0, n=10)
    assert sum(parts.values()) <= amount * (1 + 1e-9) + 1e-9
    assert all(0 <= k < 10 for k in parts)


def test_buckets_share_by_overlap_and_absurd_input_gives_nothing() -> None:
    assert spread(30, 90, 6, t0=0, bucket_s=60, n=2) == {0: 3.0, 1: 3.0}
    assert spread(float("nan"), 1, 1, t0=0, bucket_s=60, n=2) == {}
    assert spread(0, float("inf"), 1, t0=0, bucket_s=60, n=2) == {}
    assert bucketed([("a", 0, 120, 4), ("a", 60, 60, 1)], t0=0, bucket_s=60, n=2) == {"a": [2.0, 3.0]}
    assert counts([0, 59.9, 60, -1, 1e99, float("nan")], t0=0, bucket_s=60, n=2) == [2, 1]
    assert percentile([], 95) is None and percentile([3, 1, 2], 50) == 2 and percentile([1, 2], 100) == 2
