"""Properties of deferral for price or carbon: it never costs a deadline, never defers past the latest start."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.scheduler import GridScheduler
from tests.domain.sched_helpers import T0, grid, job, pool, states

HOURS = st.lists(st.integers(50, 500), min_size=24, max_size=24)


@settings(max_examples=30, deadline=None)
@given(prices=HOURS, hour=st.integers(0, 23), run_s=st.floats(60, 8 * 3600), slack=st.floats(1.0, 12.0),
       pad_h=st.floats(0, 24))
def test_a_deadline_job_is_never_deferred_past_its_latest_start(prices, hour, run_s, slack, pad_h) -> None:
    g = grid([pool("a", "qingyang", devices=16), pool("b", "beijing", model="A100", devices=16)],
             prices={"a": tuple(prices), "b": tuple(reversed(prices))})
    now = T0 + hour * 3600 + 17.0
    deadline = now + slack * run_s + pad_h * 3600
    j = job(deadline=deadline, duration_s=run_s, submitted=now)
    [p] = GridScheduler(g).plan([j], states(g), now=now)
    run = run_s  # both pools run at speed 1
    assert p.start_at + run <= deadline + 1e-6  # the deadline is met on an idle grid
    if p.start_at > now + 1e-6:  # deferred: a margin of max(run, 1 h) is left for capacity taken meanwhile
        assert p.start_at + run + max(run, 3600.0) <= deadline + 1e-6


@settings(max_examples=20, deadline=None)
@given(prices=HOURS, hour=st.integers(0, 23), run_s=st.floats(60, 4 * 3600))
def test_a_job_without_deadline_is_never_deferred(prices, hour, run_s) -> None:
    g = grid([pool("a", "qingyang", devices=16)], prices={"a": tuple(prices)})
    now = T0 + hour * 3600 + 5.0
    [p] = GridScheduler(g).plan([job(duration_s=run_s, submitted=now)], states(g), now=now)
    assert p.start_at == now


def _one_pool(prices: list[int], free_cards: int = 1):
    from suanwang.domain.grid import Capacity
    from suanwang.domain.placement import PoolState

    g = grid([pool("a", "qingyang", devices=16)], prices={"a": tuple(prices)})
    p = g.pools[0]
    free = [PoolState(p, Capacity(p.capacity.cores, p.capacity.memory_gb, free_cards))]
    return g, free


@settings(max_examples=25, deadline=None)
@given(prices=HOURS, hour=st.integers(0, 23))
def test_no_deferral_where_work_without_a_deadline_found_no_room(prices, hour) -> None:
    g, free = _one_pool(prices)
    now = T0 + hour * 3600 + 30.0
    blocked = job("nd", devices=2, duration_s=600, submitted=now - 60)  # no deadline, does not fit
    d = job("dl", devices=1, duration_s=600, deadline=now + 40 * 3600, submitted=now)
    s = GridScheduler(g)
    out = {p.job_id: p for p in s.plan([blocked, d], free, now=now)}
    assert "nd" not in out and out["dl"].start_at == now  # the card is used now, not saved for a cheap hour
    again = {p.job_id: p for p in s.plan([d], free, now=now + 60)}  # the next pass still remembers
    assert again["dl"].start_at == now + 60


def test_deferral_returns_once_the_queue_has_drained() -> None:
    from tests.domain.sched_helpers import NOON, VALLEY

    g, free = _one_pool(list(VALLEY), free_cards=12)  # 25 % busy: under the forecast bound
    d = job("dl", devices=1, duration_s=600, deadline=NOON + 40 * 3600, submitted=NOON)
    s = GridScheduler(g)
    s.plan([job("nd", devices=13, duration_s=600, submitted=NOON), d], free, now=NOON)
    s.plan([d], free, now=NOON + 60)  # no blocked job in this pass; the last one still counts
    [p] = s.plan([d], free, now=NOON + 120)  # two passes without a blocked job: the valley hours again
    assert p.start_at > NOON + 3600
