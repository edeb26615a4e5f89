"""The grid scheduler, split by responsibility.

- ``signals``: the grid model and its price, speed, power and carbon signals;
- ``context``: static arrays over the pools, hard rules, predicted terms;
- ``scoring``: the score terms and weights;
- ``base``: what every policy shares (free capacity, order, gangs, the pass interface ``FairScheduler`` uses);
- ``fast_paths``: per-shape caches and walks that keep a pass fast;
- ``policy``: ``GridScheduler``, the policy;
- ``baselines``: the policies it is measured against.
"""

from __future__ import annotations

from collections.abc import Callable

from suanwang.domain.scheduling.base import FreeState, Guard, PolicyBase, Urgency, gang_units, priority_order
from suanwang.domain.scheduling.baselines import CheapestFirst, NearestSite, RandomPolicy, RoundRobin
from suanwang.domain.scheduling.context import GridContext, integral
from suanwang.domain.scheduling.policy import GridScheduler
from suanwang.domain.scheduling.scoring import Candidate, Weights, score_terms
from suanwang.domain.scheduling.signals import (
    HOURS,
    CarbonSignal,
    GridModel,
    PoolKey,
    PoolSignals,
    PriceSignal,
    job_units,
)

SchedulerFactory = Callable[[GridContext], PolicyBase]

POLICIES: dict[str, SchedulerFactory] = {
    "grid": lambda ctx: GridScheduler(ctx),
    "random": lambda ctx: RandomPolicy(ctx, seed=0),
    "round-robin": RoundRobin,
    "nearest-site": NearestSite,
    "cheapest-first": CheapestFirst,
}

__all__ = [
    "HOURS", "POLICIES", "Candidate", "CarbonSignal", "CheapestFirst", "FreeState", "GridContext",
    "GridModel", "GridScheduler", "Guard", "NearestSite", "PolicyBase", "PoolKey", "PoolSignals", "PriceSignal",
    "RandomPolicy", "RoundRobin", "SchedulerFactory", "Urgency", "Weights", "gang_units", "integral", "job_units",
    "priority_order", "score_terms",
]
