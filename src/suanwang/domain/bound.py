"""A lower bound on total cost for small instances, by linear programming with HiGHS.

Why: a benchmark needs to say how far a heuristic is from the best possible,
not only that it beats other heuristics.  The bound solves the LP relaxation
of the scheduler's own decision space:

* each job chooses a pool that passes the hard rules and a start time: its
  submit time, or (a deferrable job: deadline, no latency bound) any later hour
  boundary such that it still finishes by its deadline;
* variables ``x[j, p, s] in [0, 1]`` with ``sum_{p,s} x[j, p, s] = 1``;
* capacity: for every pool and time slot, the units the jobs occupy in that
  slot (time-averaged over the slot) are at most the pool's units
  (devices, or cores on CPU pools); slots last the median job's run time,
  clamped to 60 s .. 1 h (``slot_s``), so short jobs are not averaged away;
* cost ``c[j, p, s]`` predicted exactly as the scheduler predicts it
  (``GridContext.evaluate``: SCU·h x ToU price over the run window).

Fractional assignment and time-averaged capacity only relax the problem, so
the optimum is a lower bound on the cost of any schedule in that space.
That space has no waiting for capacity (a job without deadline starts at
submit), so on a loaded grid it may be infeasible; ``wait_h > 0`` then adds
starts at every hour boundary up to ``wait_h`` hours after submit for every
job: the bound of schedules whose waits stay within ``wait_h``.  With
``integral=True`` the ``x`` are binary (a MIP; small instances only).  Jobs
whose deadline cannot be met anywhere may start at submit and run late.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import highspy
import numpy as np

from suanwang.domain.placement import QueuedJob
from suanwang.domain.scheduler import GridContext, job_units
from suanwang.errors import InvalidSpec


@dataclass(frozen=True, slots=True)
class Bound:
    """The bound and what it was computed over."""

    cost_fen: float
    jobs: int
    variables: int
    status: str
    integral: bool
    wait_h: int = 0


def cost_lower_bound(ctx: GridContext, jobs: Sequence[QueuedJob], *, integral: bool = False,
                     time_limit_s: float = 60.0, horizon_h: int = 24, wait_h: int = 0,
                     slot_s: float | None = None) -> Bound:
    """Minimum total predicted cost of ``jobs`` on the grid (see the module docstring)."""
    if slot_s is None:  # capacity slots no longer than a typical job: 60 s .. 1 h
        slot_s = float(np.clip(np.median([j.spec.duration_s for j in jobs]) if jobs else 3600.0, 60.0, 3600.0))
    cols_cost: list[float] = []
    col_job: list[int] = []
    occupancy: dict[tuple[int, int], list[tuple[int, float]]] = {}  # (pool, slot) -> [(col, units)]
    caps = [float(p.capacity.devices or p.capacity.cores) for p in ctx.pools]
    most = np.zeros(len(ctx.pools))  # units if every job that could use a pool ran there at once
    for job in jobs:
        most[ctx.candidates(job.spec)] += job_units(job.spec)
    tight = {i for i in range(len(ctx.pools)) if most[i] > caps[i]}
    for j, job in enumerate(jobs):
        _job_columns(ctx, job, j, horizon_h, cols_cost, col_job, occupancy, tight, wait_h, slot_s)
    n = len(cols_cost)
    if n == 0:
        return Bound(0.0, len(jobs), 0, "empty", integral)
    h = highspy.Highs()  # type: ignore[no-untyped-call]  # highspy's class has no annotated __init__
    h.setOptionValue("output_flag", False)
    # One thread, as the market's clearing runs it: HiGHS keeps one task scheduler per process, and a solve
    # asking for another thread count than the first one did fails without solving (status "not set").
    h.setOptionValue("threads", 1)
    h.setOptionValue("time_limit", float(time_limit_s))
    h.addVars(n, np.zeros(n), np.ones(n))
    h.changeColsCost(n, np.arange(n, dtype=np.int32), np.asarray(cols_cost, dtype=float))
    col_job_arr = np.asarray(col_job)
    for j in range(len(jobs)):
        idx = np.flatnonzero(col_job_arr == j).astype(np.int32)
        if len(idx) == 0:
            raise InvalidSpec(f"job {jobs[j].id} has no pool that could run it")
        h.addRow(1.0, 1.0, len(idx), idx, np.ones(len(idx)))
    for (pool, _slot), entries in occupancy.items():
        if sum(u for _, u in entries) <= caps[pool]:
            continue  # cannot bind
        idx = np.array([c for c, _ in entries], dtype=np.int32)
        h.addRow(0.0, caps[pool], len(idx), idx, np.array([u for _, u in entries]))
    if integral:
        h.changeColsIntegrality(n, np.arange(n, dtype=np.int32),
                                np.full(n, highspy.HighsVarType.kInteger))
    h.run()
    status = h.modelStatusToString(h.getModelStatus())
    value = h.getInfo().objective_function_value
    if integral:
        value = h.getInfo().mip_dual_bound
    return Bound(float(value), len(jobs), n, status, integral, wait_h)


def _job_columns(ctx: GridContext, job: QueuedJob, j: int, horizon_h: int, cols_cost: list[float],
                 col_job: list[int], occupancy: dict[tuple[int, int], list[tuple[int, float]]],
                 tight: set[int], wait_h: int, slot_s: float) -> None:
    spec = job.spec
    idx = ctx.candidates(spec)
    now = job.submitted_at
    starts = [now]
    first = math.floor(now / 3600.0) * 3600.0 + 3600.0
    if spec.deadline is not None and spec.latency_ms_max is None:
        starts += [first + 3600.0 * k for k in range(horizon_h) if first + 3600.0 * k < spec.deadline]
    if wait_h > len(starts) - 1:  # waiting for capacity (relaxed bound): any hour boundary within wait_h
        starts += [first + 3600.0 * k for k in range(len(starts) - 1, wait_h)]
    wait = np.zeros(len(ctx.pools))
    terms = ctx.evaluate(spec, idx, wait, np.asarray(starts), now, spec.duration_s)
    finish = terms["finish"]
    ok = np.isfinite(finish)
    if spec.deadline is not None:
        meets = ok & (finish <= spec.deadline + 1e-6)
        ok = meets if meets.any() else ok & (np.arange(len(starts))[None, :] == 0)
    units = job_units(spec)
    for r, c in zip(*np.nonzero(ok), strict=True):
        col = len(cols_cost)
        cols_cost.append(float(terms["cost_fen"][r, c]))
        col_job.append(j)
        begin, end = float(terms["start"][r, c]), float(finish[r, c])
        pool = int(idx[r])
        if pool not in tight:
            continue
        for slot in range(int(begin // slot_s), math.ceil(end / slot_s)):
            overlap = min(end, (slot + 1) * slot_s) - max(begin, slot * slot_s)
            if overlap > 0:
                occupancy.setdefault((pool, slot), []).append((col, units * overlap / slot_s))
