"""The score: each predicted term made dimensionless against the best candidate, weighted, lowest wins.

No constant depends on a trace's scale::

    T_cost = cost_p / min(cost) - 1        T_carbon = carbon_p / min(carbon) - 1
    T_lat  = latency_p / min(latency) - 1  (0 when all are 0)
    T_time = (finish_p - now) / min(finish - now) - 1                  without deadline
    T_time = (finish_p - min(finish)) / (deadline - now)               with a deadline
    score  = w_cost T_cost + w_time T_time + w_carbon T_carbon + w_latency T_lat

and the lowest score wins (ties: the earlier pool in grid order).  With a
deadline the time term is the share of the slack used; a start later than
now is kept only when ``finish + max(run_p, 1 h) <= deadline`` (see
``policy`` for deferral).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from suanwang.domain.grid import PoolId, SiteId
from suanwang.domain.job import JobSpec


@dataclass(frozen=True, slots=True)
class Weights:
    """Weights of the score terms (see the module docstring)."""

    cost: float = 1.0
    time: float = 0.5
    carbon: float = 0.3
    latency: float = 0.1


DEFAULT_WEIGHTS = Weights()



@dataclass(frozen=True, slots=True)
class Candidate:
    """One scored option for a job (used by ``explain``)."""

    site: SiteId
    pool: PoolId
    start_at: float
    score: float
    terms: dict[str, float]
    fits_now: bool



def is_deferrable(spec: JobSpec) -> bool:
    return spec.deadline is not None and spec.latency_ms_max is None



Q_LOW, Q_HIGH = round(math.log(300.0) / math.log(1.25)), round(math.log(172800.0) / math.log(1.25))


LOG_STEP = {1.25: math.log(1.25), 2.0: math.log(2.0)}


def bucket(duration_s: float, step: float) -> int:
    """Run time in log steps, clamped to 5 min .. 2 days (outside, the hourly means barely change)."""
    return round(math.log(min(max(duration_s, 300.0), 172800.0)) / (LOG_STEP.get(step) or math.log(step)))



def ratio(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """x / min(x over mask) - 1, or zeros when that minimum is 0 or nothing is masked."""
    if not mask.any():
        return np.zeros_like(x)
    low = float(x[mask].min())
    if low <= 0:
        return np.zeros_like(x) if float(x[mask].max()) <= 0 else x / max(float(x[mask].max()), 1e-12)
    return x / low - 1.0


def ratio_many(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``ratio`` for each job (axis 0) separately."""
    axes = tuple(range(1, x.ndim))
    every = bool(mask.all())
    low = (x if every else np.where(mask, x, np.inf)).min(axis=axes, keepdims=True)
    if every and bool((low > 0).all()):
        out: np.ndarray = x / low - 1.0
        return out
    high = np.where(mask, x, -np.inf).max(axis=axes, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(low > 0, x / low - 1.0, np.where(high > 0, x / np.maximum(high, 1e-12), 0.0))
    return np.where(np.isfinite(low), out, 0.0)


def score_terms(terms: dict[str, np.ndarray], spec: JobSpec, now: float, w: Weights) -> tuple[np.ndarray, np.ndarray]:
    """Score (lower is better) and deadline-feasibility mask for evaluated candidates."""
    deadline = np.array([math.nan if spec.deadline is None else spec.deadline])
    score, ok, _ = score_many({k: v[None] for k, v in terms.items()}, deadline, None, now, w)
    return score[0], ok[0]


def score_many(
    terms: dict[str, np.ndarray], deadline: np.ndarray, valid: np.ndarray | None, now: float, w: Weights
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``score_terms`` for jobs of one shape at once (deadlines nan for none; ``valid``: [job, start] cells to use).

    Returns the scores, the cells they are relative to (those meeting the deadline where any does; starting now
    where none does), and per job whether any cell meets its deadline.
    """
    finish = terms["finish"]
    ok = np.isfinite(finish)
    if valid is not None:
        ok &= valid[:, None, :]
    has = ~np.isnan(deadline)
    due = np.where(has, deadline, np.inf)[:, None, None] + 1e-6
    meets = ok & (finish <= due)
    if finish.shape[2] > 1:  # a shifted start keeps a margin: its run time again, at least an hour
        margin = np.maximum(terms["run_s"][:, :, 1:], 3600.0)
        meets[:, :, 1:] &= finish[:, :, 1:] + margin <= due
    met = meets.any(axis=(1, 2))
    ok = np.where((has & met)[:, None, None], meets, ok)
    late = has & ~met
    if late.any() and finish.shape[2] > 1:  # it can no longer make it: starting now is all that counts
        ok[late, :, 1:] = False
    timed = has & (np.where(has, deadline, -np.inf) > now)
    best = np.where(ok, finish, np.inf).min(axis=(1, 2), keepdims=True)
    best = np.where(np.isfinite(best), best, now)
    slack = np.where(timed, np.where(has, deadline, now) - now, 1.0)[:, None, None]
    t_time = np.where(timed[:, None, None], (finish - best) / slack, ratio_many(finish - now, ok))
    score = (
        w.cost * ratio_many(terms["cost_fen"], ok)
        + w.time * t_time
        + w.carbon * ratio_many(terms["carbon_kg"], ok)
        + w.latency * ratio_many(np.asarray(terms["latency_ms"], dtype=float), ok)
    )
    return np.where(ok, score, np.inf), ok, has & met



def public_terms(flat: dict[str, float], spec: JobSpec) -> dict[str, float]:
    out = {
        "cost_fen": flat["cost_fen"],
        "carbon_kg": flat["carbon_kg"],
        "latency_ms": flat["latency_ms"],
        "transfer_s": flat["transfer_s"],
        "run_s": flat["run_s"],
        "finish_at": flat["finish"],
    }
    if "score" in flat:
        out["score"] = flat["score"]
    if spec.deadline is not None:
        out["deadline_miss"] = 1.0 if flat["finish"] > spec.deadline + 1e-6 else 0.0
    return out
