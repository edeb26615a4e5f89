from __future__ import annotations

import pytest

from suanwang.domain.bound import cost_lower_bound
from suanwang.domain.scheduler import GridContext, GridScheduler
from tests.domain.sched_helpers import NOON, VALLEY, grid, job, pool, states


def test_bound_is_below_every_schedule_and_tight_when_capacity_is_ample() -> None:
    g = grid([pool("a", "qingyang"), pool("b", "beijing")], prices={"a": VALLEY, "b": (250,) * 24})
    jobs = [job(f"j{i}", duration_s=3600.0, deadline=NOON + 20 * 3600 if i % 2 else None) for i in range(6)]
    ctx = GridContext(g)
    bound = cost_lower_bound(ctx, jobs)
    placed = GridScheduler(ctx).plan(jobs, states(g), now=NOON)
    cost = sum(p.terms["cost_fen"] for p in placed)
    assert bound.status == "Optimal"
    assert bound.cost_fen <= cost + 1e-6
    # deferrable ones at valley 100, the rest now at 250: the scheduler finds the optimum here
    assert bound.cost_fen == pytest.approx(3 * 100 + 3 * 250)
    assert cost == pytest.approx(bound.cost_fen)


def test_capacity_makes_the_bound_pay_for_the_dearer_pool() -> None:
    g = grid([pool("cheap", "qingyang", devices=2), pool("dear", "beijing", devices=8)],
             prices={"cheap": (100,) * 24, "dear": (300,) * 24})
    jobs = [job(f"j{i}", duration_s=3600.0) for i in range(4)]
    lp = cost_lower_bound(GridContext(g), jobs)
    mip = cost_lower_bound(GridContext(g), jobs, integral=True)
    assert lp.cost_fen == pytest.approx(2 * 100 + 2 * 300)
    assert mip.cost_fen == pytest.approx(lp.cost_fen)
