"""Time series for the console's charts, from intervals the platform records (pure: no database).

Usage records cover ``[start, end)`` with an amount (core-seconds, card-seconds, kWh); a chart wants the
amount per fixed bucket, so each record is spread over the buckets it overlaps in proportion to the overlap.
Nothing is lost or counted twice: the buckets of a record sum to its amount when the window covers it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def spread(start: float, end: float, amount: float, *, t0: float, bucket_s: float, n: int) -> dict[int, float]:
    """``amount`` over ``[start, end)`` shared among buckets ``[t0 + k*bucket_s, ...)``, ``0 <= k < n``, by overlap.

    A zero-length interval puts its whole amount in the bucket holding ``start``.  Parts outside the window
    are dropped (they belong to buckets not shown)."""
    if not (math.isfinite(start) and math.isfinite(end) and math.isfinite(amount)) or bucket_s <= 0 or n <= 0:
        return {}
    if end <= start:
        k = math.floor((start - t0) / bucket_s)
        return {k: amount} if 0 <= k < n else {}
    out: dict[int, float] = {}
    first = max(0, math.floor((start - t0) / bucket_s))
    last = min(n - 1, math.floor((end - t0) / bucket_s))
    for k in range(first, last + 1):
        lo, hi = max(start, t0 + k * bucket_s), min(end, t0 + (k + 1) * bucket_s)
        if hi > lo:
            out[k] = out.get(k, 0.0) + amount * (hi - lo) / (end - start)
    return out


def bucketed(intervals: Iterable[tuple[str, float, float, float]], *, t0: float, bucket_s: float,
             n: int) -> dict[str, list[float]]:
    """Per key, the sum of its intervals' amounts in each of ``n`` buckets (see :func:`spread`)."""
    out: dict[str, list[float]] = {}
    for key, start, end, amount in intervals:
        row = out.setdefault(key, [0.0] * n)
        for k, v in spread(start, end, amount, t0=t0, bucket_s=bucket_s, n=n).items():
            row[k] += v
    return out


def counts(times: Iterable[float], *, t0: float, bucket_s: float, n: int) -> list[int]:
    """How many of ``times`` fall in each bucket (those outside the window are not counted)."""
    out = [0] * n
    for t in times:
        if math.isfinite(t):
            k = math.floor((t - t0) / bucket_s)
            if 0 <= k < n:
                out[k] += 1
    return out


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 < q <= 100), or None of nothing."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]
