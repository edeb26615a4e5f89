"""Sizing a grid to a trace: a slice of the grid that a trace loads to a chosen utilisation.

Why: real traces come from clusters far smaller (or larger) than the grid
they are replayed on; comparing policies means nothing on a grid the trace
leaves idle, or on one where a queue never drains.  The load is taken from
the trace itself, so no constant is tuned to one trace.

*Groups.*  Pools are grouped by what they offer: one group per device model
(cards), one for CPU pools (cores).  A job pinned to a device model loads
only that model's group; a device job with no model loads every device group
in proportion to its cards; a CPU job loads the CPU group.  Offered load of a
group = its work per second (card-seconds or core-seconds) over its capacity;
the trace's offered load is the largest over groups (the binding one).

*Busy period.*  Work per second is measured over each group's busy period,
not over the trace's whole submit span: the shortest submit interval that
holds ``BUSY_SHARE`` (80 %) of the work that group is offered, at least one
median run time (of those jobs) long.  A
trace whose jobs mostly arrive near its end is then sized to that burst (its
queue drains), and a steady trace gets its mean (0.8 of the work over 0.8
of the span).

*Slicing.*  ``at_load`` multiplies every pool by one share, so each device
model keeps its share of the grid (a pool keeps at least one node); the
binding group then sees the target load and the others less.  When even one
node per pool is too much for the trace, its arrivals are compressed in time
(inter-arrival times divided by the missing factor, deadlines kept relative
to submission), the usual way to raise a trace's load without changing its
jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from suanwang.domain.grid import Capacity
from suanwang.domain.scheduler import GridModel
from suanwang.sim.traces import Trace

BUSY_SHARE = 0.8
CPU = "(cores)"


@dataclass(frozen=True)
class GroupLoad:
    """Offered load of one group of pools (a device model, or CPU pools)."""

    group: str
    capacity: int  # cards, or cores
    work_per_s: float  # card-seconds (or core-seconds) per second over the busy period
    load: float


def scaled(model: GridModel, factor: float) -> GridModel:
    """The same grid with every pool's capacity times ``factor`` (at least one node): shares of models kept."""
    pools = []
    for p in model.pools:
        node = p.largest_node
        cap = Capacity(max(node.cores, round(p.capacity.cores * factor)),
                       max(node.memory_gb, round(p.capacity.memory_gb * factor)),
                       max(node.devices, round(p.capacity.devices * factor)))
        pools.append(replace(p, capacity=cap))
    return replace(model, pools=tuple(pools))


def busy_period(trace: Trace) -> float:
    """Length (s) of the shortest submit interval holding ``BUSY_SHARE`` of the work (>= a median run time)."""
    if len(trace) == 0:
        return 1.0
    work = np.maximum(trace.devices, 0).astype(float)
    work = np.where(work > 0, work, trace.cores) * trace.duration_s
    return _busy(trace.submit_s, work, trace.duration_s)


def _busy(submit: np.ndarray, work: np.ndarray, duration: np.ndarray) -> float:
    keep = work > 0
    submit, work, duration = submit[keep], work[keep], duration[keep]
    n = len(submit)
    if n == 0:
        return 1.0
    floor = max(float(np.median(duration)), 1.0)
    order = np.argsort(submit, kind="stable")
    t = submit[order].astype(float)
    cum = np.concatenate(([0.0], np.cumsum(work[order])))
    need = BUSY_SHARE * cum[-1]
    if need <= 0:
        return floor
    # for each first job i, the first j with work[i..j] >= need: interval t[j] - t[i]
    j = np.searchsorted(cum, cum[:-1] + need, side="left") - 1
    ok = j < n
    if not ok.any():
        return max(float(t[-1] - t[0]), floor)
    width = t[np.minimum(j, n - 1)] - t
    return max(float(width[ok].min()), floor)


def _group_of_pools(model: GridModel) -> dict[str, int]:
    caps: dict[str, int] = {}
    for p in model.pools:
        if p.capacity.devices > 0:
            key = (p.device_model or "").lower()
            caps[key] = caps.get(key, 0) + p.capacity.devices
        else:
            caps[CPU] = caps.get(CPU, 0) + p.capacity.cores
    return caps


def group_loads(model: GridModel, trace: Trace) -> list[GroupLoad]:
    """Offered load of each group of pools over the trace's busy period (see the module docstring)."""
    caps = _group_of_pools(model)
    dev_total = sum(c for g, c in caps.items() if g != CPU)
    share = BUSY_SHARE if len(trace) else 1.0
    models = np.array([trace.names[c].lower() for c in trace.device_model]) if len(trace) else np.array([])
    dev = trace.devices > 0
    out = []
    card_s = (trace.devices * trace.duration_s).astype(float)
    core_s = (trace.cores * trace.duration_s).astype(float)
    for g, cap in caps.items():
        if g == CPU:
            w = np.where(~dev, core_s, 0.0)
        else:  # pinned to this model, plus this model's share of the jobs that take any model
            w = np.where(dev & (models == g), card_s, 0.0)
            if dev_total:
                w = w + np.where(dev & (models == ""), card_s * cap / dev_total, 0.0)
        total = float(w.sum()) if len(trace) else 0.0
        rate = total * share / _busy(trace.submit_s, w, trace.duration_s) if total > 0 else 0.0
        out.append(GroupLoad(g or "(any model)", cap, rate, rate / cap if cap else 0.0))
    return out


def offered_load(model: GridModel, trace: Trace) -> float:
    """Work offered per second over capacity in the busy period, for the binding group of pools."""
    return max((g.load for g in group_loads(model, trace)), default=0.0)


def capacity_share(model: GridModel, trace: Trace, target: float) -> float:
    """The share of the grid at which the trace's offered load is ``target`` (binding group)."""
    return min(1.0, offered_load(model, trace) / target)


def compressed(trace: Trace, factor: float) -> Trace:
    """The trace with arrivals ``factor`` times closer together; run times, and deadlines relative to submit, kept."""
    start = float(trace.submit_s.min()) if len(trace) else 0.0
    submit = start + (trace.submit_s - start) / factor
    return replace(trace, submit_s=submit, deadline_s=trace.deadline_s - trace.submit_s + submit)


def at_load(model: GridModel, trace: Trace, target: float) -> tuple[GridModel, Trace, float]:
    """A slice of ``model`` and the trace (arrivals compressed if even one node per pool is too much) at ``target``.

    Returns the grid, the trace and the compression factor (1: arrivals as recorded).
    """
    grid = scaled(model, capacity_share(model, trace, target))
    load = offered_load(grid, trace)
    if load <= 0 or load >= target * 0.99:  # within rounding to whole units: as sliced
        return grid, trace, 1.0
    factor, packed = 1.0, trace
    for _ in range(8):  # the busy period's floor (a median run time) can make compression less than linear
        factor *= target / load
        packed = compressed(trace, factor)
        load = offered_load(grid, packed)
        if abs(load - target) <= target * 1e-3:
            break
    return grid, packed, factor
