"""Sizing a grid to a trace: a slice of the grid that a trace window loads to a chosen utilisation.

Why: real traces come from clusters far smaller (or larger) than the grid
they are replayed on; comparing policies means nothing on a grid the trace
leaves idle.  These take the load from the trace itself, so no constant is
tuned to one trace.

Offered load = work per second over the submit span (device-seconds for
device jobs, core-seconds for CPU-only jobs), divided by the grid's devices
(or the cores of its CPU pools), whichever class binds.  ``at_load`` slices
every pool to a share; a pool keeps at least one node, so when a trace is
too small for even that slice its arrivals are compressed in time
(inter-arrival times divided by the missing factor, deadlines kept relative
to submission), the usual way to raise the load of a trace without changing
its jobs.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from suanwang.domain.grid import Capacity
from suanwang.domain.scheduler import GridModel
from suanwang.sim.traces import Trace


def scaled(model: GridModel, factor: float) -> GridModel:
    """The same grid with every pool's capacity times ``factor`` (at least one node): a slice a trace window loads."""
    pools = []
    for p in model.pools:
        node = p.largest_node
        cap = Capacity(max(node.cores, round(p.capacity.cores * factor)),
                       max(node.memory_gb, round(p.capacity.memory_gb * factor)),
                       max(node.devices, round(p.capacity.devices * factor)))
        pools.append(replace(p, capacity=cap))
    return replace(model, pools=tuple(pools))


def _span(trace: Trace) -> float:
    """The submit span; a burst submitted at once offers its work over about one median run time."""
    if len(trace) == 0:
        return 1.0
    return max(float(trace.submit_s.max() - trace.submit_s.min()), float(np.median(trace.duration_s)), 1.0)


def _work(trace: Trace) -> tuple[float, float]:
    """Device-seconds of device jobs and core-seconds of CPU-only jobs."""
    dev = float(np.sum(trace.devices * trace.duration_s))
    core = float(np.sum(np.where(trace.devices > 0, 0, trace.cores) * trace.duration_s))
    return dev, core


def _capacity(model: GridModel) -> tuple[int, int]:
    devs = sum(p.capacity.devices for p in model.pools)
    cores = sum(p.capacity.cores for p in model.pools if p.capacity.devices == 0)
    return devs, cores


def offered_load(model: GridModel, trace: Trace) -> float:
    """Work offered per second over capacity, for the binding class (devices or CPU-pool cores)."""
    dev, core = _work(trace)
    devs, cores = _capacity(model)
    span = _span(trace)
    return max(dev / span / devs if devs else 0.0, core / span / cores if cores else 0.0)


def capacity_share(model: GridModel, trace: Trace, target: float) -> float:
    """The share of the grid at which the trace's offered load is ``target`` of capacity (binding class)."""
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
    factor = target / load
    return grid, compressed(trace, factor), factor
