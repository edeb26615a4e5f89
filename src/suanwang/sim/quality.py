"""Cost against the HiGHS lower bound: how far a policy is from the best schedule possible.

Why apart from the engine: the bound (``domain.bound``) is an LP over every
(job, pool, start hour); it is computable for small traces only, so callers
ask for it where they can afford it and the report says when it is missing.
The bound covers the jobs the platform accepts (those ``check_submit``
passes); the ratio compares the policy's exact charge (before rounding each
attempt to whole fen) with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from suanwang.domain.bound import cost_lower_bound
from suanwang.domain.scheduler import GridContext, GridScheduler
from suanwang.errors import Unplaceable
from suanwang.sim.engine import SimResult
from suanwang.sim.traces import Trace

BOUND_JOBS = 600  # the LP stays within seconds up to about this many jobs


def accepted_rows(ctx: GridContext, trace: Trace) -> np.ndarray:
    """Indices of the jobs the platform's submit check accepts (at their submit time)."""
    gate = GridScheduler(ctx)
    keep = []
    for i in range(len(trace)):
        job = trace.job(i)
        try:
            gate.check_submit(job.spec, now=job.submitted_at)
        except Unplaceable:
            continue
        keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def cost_bound_fen(ctx: GridContext, trace: Trace, *, max_jobs: int = BOUND_JOBS,
                   time_limit_s: float = 30.0) -> float | None:
    """The HiGHS lower bound on the cost of the accepted jobs, or None (too many jobs, or no optimum)."""
    rows = accepted_rows(ctx, trace)
    if len(rows) == 0 or len(rows) > max_jobs:
        return None
    jobs = list(trace.take(rows).jobs())
    bound = cost_lower_bound(ctx, jobs, time_limit_s=time_limit_s)
    if bound.status != "Optimal":  # a loaded grid: no schedule without waiting; bound those waiting <= 48 h
        bound = cost_lower_bound(ctx, jobs, wait_h=48, time_limit_s=time_limit_s)
    return bound.cost_fen if bound.status == "Optimal" and bound.cost_fen > 0 else None


def with_bound_ratio(results: Sequence[SimResult], bound_fen: float | None) -> None:
    """Put ``cost_ratio_to_bound`` (None where there is no bound) into each result's summary."""
    for r in results:
        exact = float(r.cost_unrounded_fen.sum()) if r.cost_unrounded_fen is not None else float(r.cost_fen.sum())
        r.extra["cost_ratio_to_bound"] = round(exact / bound_fen, 4) if bound_fen else None
