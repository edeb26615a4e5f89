"""Properties of the deferral bounds (``scheduling.deferral``): slack, forecast, per-pool cap, contention."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.grid import Capacity
from suanwang.domain.placement import PoolState
from suanwang.domain.scheduler import GridScheduler
from suanwang.domain.scheduling import deferral
from tests.domain.sched_helpers import NOON, T0, VALLEY, grid, job, pool, states

HOURS = st.lists(st.integers(50, 500), min_size=24, max_size=24)


def _valley_grid(devices: int = 16):
    return grid([pool("a", "qingyang", devices=devices)], prices={"a": VALLEY})


@settings(max_examples=40, deadline=None)
@given(prices=HOURS, hour=st.integers(0, 23), run_s=st.floats(60, 8 * 3600), slack_runs=st.floats(0.2, 30.0))
def test_a_deferred_job_always_keeps_slack_of_k_runs(prices, hour, run_s, slack_runs) -> None:
    g = grid([pool("a", "qingyang", devices=16)], prices={"a": tuple(prices)})
    now = T0 + hour * 3600 + 11.0
    deadline = now + run_s + slack_runs * run_s
    [p] = GridScheduler(g).plan([job(deadline=deadline, duration_s=run_s, submitted=now)], states(g), now=now)
    if p.start_at > now:
        assert deadline - now - run_s >= deferral.MIN_SLACK_RUNS * run_s  # slack measured when deferred
        assert p.start_at + run_s <= deadline
    if slack_runs < deferral.MIN_SLACK_RUNS:
        assert p.start_at == now  # idle grid: it starts now instead


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), cards=st.integers(1, 4), pool_cards=st.sampled_from([8, 16, 32]))
def test_deferred_work_per_pool_never_exceeds_its_share(n, cards, pool_cards) -> None:
    g = _valley_grid(pool_cards)
    jobs = [job(f"d{k}", devices=cards, duration_s=600, deadline=NOON + 40 * 3600, submitted=NOON)
            for k in range(n)]
    out = GridScheduler(g).plan(jobs, states(g), now=NOON)
    deferred = sum(cards for p in out if p.start_at > NOON)
    now_cards = sum(cards for p in out if p.start_at <= NOON)
    assert deferred <= deferral.SHARE * pool_cards
    assert now_cards <= pool_cards  # the rest start now while there is room
    assert len(out) >= min(n, pool_cards // cards)  # a job not deferred starts now while there is room


@settings(max_examples=25, deadline=None)
@given(busy=st.integers(0, 16))
def test_no_deferral_onto_pools_forecast_busy(busy) -> None:
    g = _valley_grid(16)
    p = g.pools[0]
    free = [PoolState(p, Capacity(p.capacity.cores - busy * 16, p.capacity.memory_gb - busy * 128, 16 - busy))]
    d = job("dl", devices=1, duration_s=600, deadline=NOON + 40 * 3600, submitted=NOON)
    out = GridScheduler(g).plan([d], free, now=NOON)
    if busy == 16:
        assert out == []
        return
    [pl] = out
    if busy / 16 > deferral.UTIL_BOUND:
        assert pl.start_at == NOON
    else:
        assert pl.start_at > NOON  # an idle-enough pool: the valley hours


@settings(max_examples=20, deadline=None)
@given(arrived=st.integers(0, 30), run_h=st.floats(0.1, 1.0))
def test_recent_arrivals_forecast_a_busy_pool(arrived, run_h) -> None:
    """Jobs that arrived within the window (seen by an earlier pass) count as expected use."""
    g = _valley_grid(16)
    s = GridScheduler(g)
    seen = [job(f"a{k}", devices=1, duration_s=run_h * 3600, submitted=NOON - 60) for k in range(arrived)]
    s.plan(seen, [PoolState(g.pools[0], Capacity(0, 0.0, 0))], now=NOON - 30)  # seen, not placed (full)
    d = job("dl", devices=1, duration_s=600, deadline=NOON + 40 * 3600, submitted=NOON)
    [pl] = s.plan([d], states(g), now=NOON)
    offered = (arrived * run_h * 3600 + 600) / 3600 / 16
    if offered > deferral.UTIL_BOUND:
        assert pl.start_at == NOON
    # the same arrivals an hour later are out of the window
    [late] = GridScheduler(g).plan([job("dl", devices=1, duration_s=600, deadline=NOON + 40 * 3600,
                                        submitted=NOON)], states(g), now=NOON)
    assert late.start_at > NOON


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 8), min_size=1, max_size=12), deadlines=st.lists(st.booleans(), min_size=12,
       max_size=12), free_cards=st.integers(0, 16))
def test_work_without_a_deadline_never_waits_on_a_deferred_job(sizes, deadlines, free_cards) -> None:
    """After a pass where a job without a deadline found no room, no job sharing its pools is deferred."""
    g = grid([pool("a", "qingyang", devices=16), pool("b", "beijing", model="A40", mem=40.0, devices=16)],
             prices={"a": VALLEY, "b": VALLEY})
    free = [PoolState(p, Capacity(free_cards * 16, free_cards * 128.0, free_cards)) for p in g.pools]
    jobs = [job(f"j{k}", devices=c, duration_s=900, submitted=NOON - k,
                deadline=NOON + 30 * 3600 if deadlines[k] else None) for k, c in enumerate(sizes)]
    s = GridScheduler(g)
    first = {p.job_id for p in s.plan(jobs, free, now=NOON)}
    waiting = [j for j in jobs if j.spec.deadline is None and j.id not in first]
    second = s.plan(jobs, free, now=NOON + 30)
    if waiting:
        assert all(p.start_at <= NOON + 30 for p in second)
