"""The grid scheduler's public names, kept here so existing imports work; the code is in ``domain.scheduling``.

The score and its maths: ``scheduling.scoring`` and ``scheduling.context``; deferral and urgency:
``scheduling.policy``; how a pass stays fast: ``scheduling.fast_paths``.
"""

from __future__ import annotations

from suanwang.domain.scheduling import (
    HOURS,
    POLICIES,
    Candidate,
    CarbonSignal,
    CheapestFirst,
    FreeState,
    GridContext,
    GridModel,
    GridScheduler,
    Guard,
    NearestSite,
    PolicyBase,
    PoolKey,
    PoolSignals,
    PriceSignal,
    RandomPolicy,
    RoundRobin,
    SchedulerFactory,
    Urgency,
    Weights,
    gang_units,
    integral,
    job_units,
    priority_order,
    score_terms,
)

# the old private names, for code not yet moved to the public ones
_FreeState = FreeState
_PolicyBase = PolicyBase
_gangs = gang_units
_integral = integral

__all__ = [
    "HOURS", "POLICIES", "Candidate", "CarbonSignal", "CheapestFirst", "FreeState", "GridContext",
    "GridModel", "GridScheduler", "Guard", "NearestSite", "PolicyBase", "PoolKey", "PoolSignals", "PriceSignal",
    "RandomPolicy", "RoundRobin", "SchedulerFactory", "Urgency", "Weights", "gang_units", "integral", "job_units",
    "priority_order", "score_terms",
]
