"""Sizing a grid to a trace: a slice of the grid that a trace window loads to a chosen utilisation.

Why: real traces come from clusters far smaller (or larger) than the grid
they are replayed on; comparing policies means nothing on a grid the trace
leaves idle.  These take the load from the trace itself, so no constant is
tuned to one trace.
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


def capacity_share(model: GridModel, trace: Trace, target: float) -> float:
    """The share of the grid at which the trace's offered load is ``target`` of capacity (binding class)."""
    span = max(float(trace.submit_s.max() - trace.submit_s.min()), 3600.0)
    dev_load = float(np.sum(trace.devices * trace.duration_s)) / span
    core_load = float(np.sum(np.where(trace.devices > 0, 0, trace.cores) * trace.duration_s)) / span
    devs = sum(p.capacity.devices for p in model.pools)
    cores = sum(p.capacity.cores for p in model.pools if p.capacity.devices == 0)
    return min(1.0, max(dev_load / devs, core_load / cores) / target)
