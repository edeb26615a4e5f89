"""Time series for the console's charts: counts per fixed bucket and percentiles (pure: no database)."""

from __future__ import annotations

import math
from collections.abc import Iterable


def counts(times: Iterable[float], *, t0: float, bucket_s: float, n: int) -> list[int]:
    """How many of ``times`` fall in each bucket ``[t0 + k*bucket_s, ...)`` (those outside are not counted)."""
    out = [0] * n
    if bucket_s <= 0 or not math.isfinite(t0):
        return out
    for t in times:
        x = (t - t0) / bucket_s if math.isfinite(t) else math.nan
        if math.isfinite(x):  # a huge t over a small bucket overflows to infinity: outside the window
            k = math.floor(x)
            if 0 <= k < n:
                out[k] += 1
    return out


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 < q <= 100), or None of nothing."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]
