"""Properties of the console's time-series helpers (pure)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from suanwang.web.series import counts, percentile

times = st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=200)


@given(times, st.floats(min_value=-1e9, max_value=1e9), st.floats(min_value=0.001, max_value=1e6),
       st.integers(min_value=1, max_value=100))
def test_each_time_in_the_window_counts_once_and_none_outside(ts: list[float], t0: float, bucket_s: float,
                                                             n: int) -> None:
    out = counts(ts, t0=t0, bucket_s=bucket_s, n=n)
    inside = [t for t in ts if math.isfinite(t) and math.isfinite((t - t0) / bucket_s)
              and 0 <= math.floor((t - t0) / bucket_s) < n]
    assert len(out) == n and sum(out) == len(inside)


def test_a_time_whose_offset_overflows_is_outside_not_an_error() -> None:
    assert counts([8.98846567431158e307, 1.0], t0=0.0, bucket_s=0.5, n=4) == [0, 0, 1, 0]


@given(st.lists(st.floats(min_value=-1e9, max_value=1e9), min_size=1, max_size=100),
       st.floats(min_value=0.1, max_value=100))
def test_a_percentile_is_one_of_the_values_and_ranks_right(values: list[float], q: float) -> None:
    p = percentile(values, q)
    assert p in values
    assert sum(v <= p for v in values) >= math.ceil(q / 100 * len(values))  # type: ignore[operator]


def test_fixed_cases() -> None:
    assert counts([0, 59.9, 60, -1, 1e99, float("nan")], t0=0, bucket_s=60, n=2) == [2, 1]
    assert counts([1.0], t0=0, bucket_s=0, n=2) == [0, 0]
    assert percentile([], 95) is None and percentile([3, 1, 2], 50) == 2 and percentile([1, 2], 100) == 2
