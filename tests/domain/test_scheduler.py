from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.grid import Capacity
from suanwang.domain.placement import FirstFit, PoolState
from suanwang.domain.resources import ResourceClass
from suanwang.domain.scheduler import (
    POLICIES,
    GridContext,
    GridScheduler,
    PriceSignal,
    Weights,
)
from suanwang.errors import InvalidSpec, Unplaceable
from tests.domain.sched_helpers import NOON, T0, VALLEY, grid, job, pool, states


def test_job_needing_80gb_devices_never_lands_on_40gb_ones() -> None:
    g = grid([pool("a40", "beijing", model="A40", mem=40.0), pool("a100", "qingyang")],
             prices={"a40": (50,) * 24, "a100": (900,) * 24})
    jobs = [job(f"j{i}", device_memory_gb_min=80.0) for i in range(20)]
    for name, factory in POLICIES.items():
        placed = factory(GridContext(g)).plan(jobs, states(g), now=NOON)
        assert placed, name
        assert {p.pool for p in placed} == {"a100"}, name


def test_latency_bound_job_never_lands_beyond_its_bound() -> None:
    g = grid([pool("near", "ulanqab"), pool("far", "qingyang")], prices={"near": (900,) * 24, "far": (10,) * 24})
    jobs = [job(f"j{i}", consumer_site="beijing", latency_ms_max=5.0) for i in range(40)]
    for name, factory in POLICIES.items():
        placed = factory(GridContext(g)).plan(jobs, states(g), now=NOON)
        assert {p.site for p in placed} == {"ulanqab"}, name
        assert len(placed) == 16  # the near pool's 16 devices; the rest wait rather than go far


def test_data_sovereign_job_never_leaves_its_region() -> None:
    g = grid([pool("east", "shanghai"), pool("cheap", "qingyang"), pool("north", "beijing")],
             prices={"cheap": (10,) * 24})
    jobs = [job(f"j{i}", region="cn-east") for i in range(30)]
    for name, factory in POLICIES.items():
        placed = factory(GridContext(g)).plan(jobs, states(g), now=NOON)
        assert placed and all(p.site == "shanghai" for p in placed), name


def test_gang_gets_all_or_nothing() -> None:
    g = grid([pool("a", "qingyang", devices=8), pool("b", "beijing", devices=8)])
    members = [job(f"g{i}", devices=4) for i in range(3)]
    gang = [type(m)(m.id, m.spec, m.tenant, m.submitted_at, gang="G", gang_size=3) for m in members]
    sched = GridScheduler(g)
    # 3 x 4 devices do not fit on one site of 8: nothing is placed
    assert sched.plan(gang, states(g), now=NOON) == []
    # with room for all three on one site, all three land there together
    g2 = grid([pool("a", "qingyang", devices=16), pool("b", "beijing", devices=8)])
    placed = GridScheduler(g2).plan(gang, states(g2), now=NOON)
    assert len(placed) == 3 and len({p.site for p in placed}) == 1
    # a gang whose members are not all queued yet waits
    assert GridScheduler(g2).plan(gang[:2], states(g2), now=NOON) == []


def test_gang_failure_gives_back_what_members_took() -> None:
    g = grid([pool("a", "qingyang", devices=8)])
    gang = [job(f"g{i}", devices=4) for i in range(3)]
    gang = [type(m)(m.id, m.spec, m.tenant, m.submitted_at - 10, gang="G", gang_size=3) for m in gang]
    single = job("solo", devices=8)
    placed = GridScheduler(g).plan([*gang, single], states(g), now=NOON)
    assert [p.job_id for p in placed] == ["solo"]


def test_deferrable_job_moves_to_valley_hours_when_its_deadline_allows() -> None:
    g = grid([pool("a", "qingyang")], prices={"a": VALLEY})
    roomy = job(deadline=NOON + 20 * 3600, duration_s=3600.0)
    [p] = GridScheduler(g).plan([roomy], states(g), now=NOON)
    local_hour = ((p.start_at - T0) / 3600.0) % 24
    assert p.start_at > NOON and (local_hour >= 23 or local_hour < 7)
    assert p.terms["finish_at"] <= roomy.spec.deadline


def test_deferrable_job_stays_now_when_its_deadline_does_not_allow() -> None:
    g = grid([pool("a", "qingyang")], prices={"a": VALLEY})
    tight = job(deadline=NOON + 5 * 3600, duration_s=3600.0)  # valley starts 11 h from noon
    [p] = GridScheduler(g).plan([tight], states(g), now=NOON)
    assert p.start_at == NOON


@settings(max_examples=30, deadline=None)
@given(slack_h=st.floats(min_value=1.2, max_value=23.0), run_h=st.floats(min_value=0.1, max_value=2.0))
def test_a_shifted_job_always_finishes_by_its_deadline(slack_h: float, run_h: float) -> None:
    g = grid([pool("a", "qingyang")], prices={"a": VALLEY})
    j = job(deadline=NOON + slack_h * 3600, duration_s=run_h * 3600)
    [p] = GridScheduler(g).plan([j], states(g), now=NOON)
    if run_h > slack_h:  # nothing can make it: start now, flagged
        assert p.start_at == NOON and p.terms["deadline_miss"] == 1.0
        return
    assert p.start_at + run_h * 3600 <= j.spec.deadline + 1e-6
    margin = max(run_h * 3600, 3600)
    latest_start = NOON + math.floor((j.spec.deadline - run_h * 3600 - margin - NOON) / 3600) * 3600
    whole_run_in_valley = latest_start >= NOON + 11 * 3600  # it may start at 23:00, when the valley begins
    no_valley_at_all = latest_start < NOON + 3600 or latest_start + run_h * 3600 <= NOON + 11 * 3600
    if whole_run_in_valley:
        assert p.start_at > NOON
    if no_valley_at_all:  # shifting could not touch a cheaper hour: start now
        assert p.start_at == NOON
    # in between (part of the run could reach the valley) either choice is the score's to make


def test_latency_bound_jobs_are_not_deferred() -> None:
    g = grid([pool("a", "beijing")], prices={"a": VALLEY})
    j = job(deadline=NOON + 20 * 3600, consumer_site="beijing", latency_ms_max=10.0)
    [p] = GridScheduler(g).plan([j], states(g), now=NOON)
    assert p.start_at == NOON


def test_score_prefers_cheaper_pool_and_weights_can_flip_it_to_greener() -> None:
    g = grid([pool("dirty", "beijing"), pool("green", "qingyang")], prices={"dirty": (100,) * 24,
             "green": (120,) * 24}, carbon={"beijing": (0.9,) * 24, "qingyang": (0.1,) * 24})
    [p] = GridScheduler(g, weights=Weights(cost=1.0, time=0.0, carbon=0.0, latency=0.0)).plan(
        [job()], states(g), now=NOON)
    assert p.pool == "dirty"
    green = GridScheduler(g, tenant_weights={"t": Weights(cost=1.0, time=0.0, carbon=1.0, latency=0.0)})
    [p] = green.plan([job()], states(g), now=NOON)
    assert p.pool == "green"
    assert p.terms["cost_fen"] == pytest.approx(120.0)


def test_data_transfer_time_counts_in_finish_and_prefers_the_data_site() -> None:
    g = grid([pool("far", "qingyang"), pool("home", "shanghai")])
    j = job(data_site="shanghai", data_gb=2000.0, duration_s=600.0)
    [p] = GridScheduler(g, weights=Weights(cost=0.0, time=1.0, carbon=0.0)).plan([j], states(g), now=NOON)
    assert p.site == "shanghai" and p.terms["transfer_s"] == 0.0
    c = GridScheduler(g).candidates(j, states(g), now=NOON)
    far = next(x for x in c if x.site == "qingyang")
    assert far.terms["transfer_s"] == pytest.approx(0.011 + 2000 * 8 / 200.0)  # direct link beats the backbone


def test_full_pools_are_skipped_and_offline_pools_never_used() -> None:
    g = grid([pool("a", "qingyang", devices=8), pool("b", "beijing", devices=8)])
    st_ = [PoolState(g.pools[0], Capacity(0, 0.0, 0)), PoolState(g.pools[1], g.pools[1].capacity, online=False)]
    assert GridScheduler(g).plan([job()], st_, now=NOON) == []
    st2 = [PoolState(g.pools[0], Capacity(64, 512.0, 2)), PoolState(g.pools[1], g.pools[1].capacity)]
    placed = GridScheduler(g, weights=Weights(cost=1.0, time=0.0, carbon=0.0)).plan(
        [job(f"j{i}") for i in range(5)], st2, now=NOON)
    assert sum(p.pool == "a" for p in placed) == 2 and len(placed) == 5


def test_check_submit_reports_unmeetable_deadline_and_ruled_out_pools() -> None:
    g = grid([pool("a", "qingyang")])
    sched = GridScheduler(g)
    with pytest.raises(Unplaceable, match="deadline"):
        sched.check_submit(job(deadline=NOON + 60, duration_s=3600.0).spec, now=NOON)
    with pytest.raises(Unplaceable, match="device memory"):
        sched.check_submit(job(device_memory_gb_min=160.0).spec, now=NOON)
    sched.check_submit(job(deadline=NOON + 7200, duration_s=3600.0).spec, now=NOON)


def test_placements_report_deadline_miss_when_no_pool_can_make_it() -> None:
    g = grid([pool("a", "qingyang")])
    [p] = GridScheduler(g).plan([job(deadline=NOON + 60, duration_s=3600.0)], states(g), now=NOON)
    assert p.terms["deadline_miss"] == 1.0 and p.start_at == NOON


@settings(max_examples=60, deadline=None)
@given(
    cls=st.sampled_from([ResourceClass.INTELLIGENT, ResourceClass.GENERAL]),
    model=st.sampled_from(["", "A100", "a40", "H800"]),
    mem=st.sampled_from([0.0, 40.0, 80.0]),
    region=st.sampled_from(["", "cn-north", "cn-east"]),
    devices=st.integers(0, 12),
    latency=st.sampled_from([None, 2.0, 10.0, 50.0]),
)
def test_vectorised_rules_agree_with_rule_out(cls, model, mem, region, devices, latency) -> None:
    g = grid([pool("a100", "qingyang"), pool("a40", "beijing", model="A40", mem=40.0), pool("u", "ulanqab"),
              pool("cpu", "shanghai", cls=ResourceClass.GENERAL)])
    ctx = GridContext(g)
    kw = {"resource_class": cls, "device_model": model, "device_memory_gb_min": mem, "region": region,
              "devices": devices if cls is ResourceClass.INTELLIGENT else 0, "cores": 4}
    if latency is not None:
        kw |= {"consumer_site": "beijing", "latency_ms_max": latency}
    if cls is ResourceClass.INTELLIGENT and devices == 0:
        kw["devices"] = 1
    spec = job(**kw).spec
    expected = [i for i in range(len(g.pools)) if ctx.hard_rule(spec, i) is None]
    assert list(ctx.candidates(spec)) == expected
    assert set(ctx.ruled_out(spec)) == set(range(len(g.pools))) - set(expected)


def test_price_signal_rejects_wrong_length_and_fractional_fen() -> None:
    with pytest.raises(InvalidSpec):
        PriceSignal((1,) * 23)
    with pytest.raises(InvalidSpec):
        PriceSignal((1.5,) * 24)  # type: ignore[arg-type]


def test_first_fit_still_works_with_extended_pool_state() -> None:
    g = grid()
    placed = FirstFit().plan([job()], states(g), now=NOON)
    assert len(placed) == 1


def test_grid_scheduler_is_deterministic() -> None:
    g = grid([pool("a", "qingyang"), pool("b", "beijing"), pool("c", "shanghai")])
    jobs = [job(f"j{i}", devices=1 + i % 3, duration_s=600.0 * (1 + i)) for i in range(30)]
    a = GridScheduler(g).plan(jobs, states(g), now=NOON)
    b = GridScheduler(g).plan(list(reversed(jobs)), states(g), now=NOON)
    assert [(p.job_id, p.pool) for p in a] == [(p.job_id, p.pool) for p in b]
    assert np.isfinite([p.terms["score"] for p in a]).all()


def test_gang_members_with_deadlines_start_together_now() -> None:
    g = grid([pool("a", "qingyang", devices=16)], prices={"a": VALLEY})
    members = [job(f"g{i}", devices=4, deadline=NOON + 20 * 3600) for i in range(3)]
    gang = [type(m)(m.id, m.spec, m.tenant, m.submitted_at, gang="G", gang_size=3) for m in members]
    placed = GridScheduler(g).plan(gang, states(g), now=NOON)
    assert len(placed) == 3 and {p.start_at for p in placed} == {NOON}


# ---- deadlines under pressure ------------------------------------------------------------------


def test_a_deadline_job_leaves_a_cheap_pool_whose_queue_would_make_it_miss() -> None:
    g = grid([pool("cheap", "qingyang"), pool("dear", "beijing")], prices={"cheap": (100,) * 24, "dear": (300,) * 24})
    busy = [PoolState(g.pools[0], g.pools[0].capacity, wait_s=3 * 3600.0), PoolState(g.pools[1], g.pools[1].capacity)]
    tight = job("tight", deadline=NOON + 2 * 3600, duration_s=3600.0)
    roomy = job("roomy", deadline=NOON + 6 * 3600, duration_s=3600.0)
    # score order alone (best fit would put roomy beside tight: the dear pool finishes sooner and fits tighter)
    placed = {p.job_id: p for p in GridScheduler(g, best_fit=False).plan([tight, roomy], busy, now=NOON)}
    assert placed["tight"].pool == "dear" and placed["tight"].terms["deadline_miss"] == 0.0
    assert placed["roomy"].pool == "cheap"  # the queue leaves it time: the cheap pool still wins
    assert placed["roomy"].terms["finish_at"] <= roomy.spec.deadline


def test_a_job_that_can_no_longer_be_deferred_goes_before_earlier_jobs_of_its_priority() -> None:
    g = grid([pool("a", "qingyang", devices=1, node_devices=1)])
    early = job("early", submitted=NOON - 600)  # no deadline, submitted first
    late = job("late", submitted=NOON - 60, deadline=NOON + 5000, duration_s=1800.0)  # slack 3200 s < margin 1 h
    vip = job("vip", submitted=NOON - 30, priority=5)
    sched = GridScheduler(g)
    assert [p.job_id for p in sched.plan([early, late], states(g), now=NOON)] == ["late"]
    assert [p.job_id for p in sched.plan([early, late, vip], states(g), now=NOON)] == ["vip"]  # priority first
    relaxed = job("late", submitted=NOON - 60, deadline=NOON + 20 * 3600, duration_s=1800.0, latency_ms_max=50.0,
                  consumer_site="qingyang")  # plenty of slack: submit order stands
    assert [p.job_id for p in sched.plan([early, relaxed], states(g), now=NOON)] == ["early"]


def test_a_deferred_job_is_released_when_its_slack_shrinks() -> None:
    g = grid([pool("a", "qingyang")], prices={"a": VALLEY})
    j = job(deadline=T0 + 26 * 3600, duration_s=3600.0)  # 02:00 next day: the valley starts at 23:00
    sched = GridScheduler(g)
    [p] = sched.plan([j], states(g), now=NOON)
    assert p.start_at == T0 + 23 * 3600  # held for the valley, keeping a margin of its run time
    assert not sched.urgency(NOON)(j)
    # 23:00 came and the pool was full: each plan decides again; once the slack is below the margin the job
    # is urgent and starts as soon as there is room, never deferred again
    at = T0 + 24.5 * 3600
    assert sched.urgency(at)(j)
    [p] = sched.plan([j], states(g), now=at)
    assert p.start_at == at and p.terms["deadline_miss"] == 0.0


def test_a_job_that_cannot_meet_its_deadline_is_never_deferred() -> None:
    g = grid([pool("a", "qingyang"), pool("b", "beijing")], prices={"a": VALLEY, "b": VALLEY})
    hopeless = job(deadline=NOON + 2 * 3600, duration_s=3 * 3600.0)
    full = [PoolState(g.pools[0], Capacity(0, 0.0, 0)), PoolState(g.pools[1], Capacity(0, 0.0, 0))]
    assert GridScheduler(g).plan([hopeless], full, now=NOON) == []  # waits for room; no valley start
    one = [PoolState(g.pools[0], Capacity(0, 0.0, 0)), PoolState(g.pools[1], g.pools[1].capacity)]
    [p] = GridScheduler(g).plan([hopeless], one, now=NOON)
    assert (p.pool, p.start_at, p.terms["deadline_miss"]) == ("b", NOON, 1.0)  # the earliest finish, flagged


def test_placements_are_identical_with_precomputed_and_single_job_scores() -> None:
    g = grid([pool("a", "qingyang"), pool("b", "beijing", model="A100"), pool("c", "shanghai"),
              pool("u", "ulanqab", devices=4)], prices={"a": VALLEY, "b": (150,) * 24, "u": (90,) * 24})
    jobs = [job(f"j{i}", devices=1 + i % 3, duration_s=900.0 * (1 + i % 7), submitted=NOON - i,
                deadline=NOON + (3 + i % 20) * 3600 if i % 3 == 0 else None,
                data_site="shanghai" if i % 4 == 0 else "", data_gb=50.0 if i % 4 == 0 else 0.0)
            for i in range(60)]
    together = GridScheduler(g).plan(jobs, states(g), now=NOON)
    alone = GridScheduler(g)
    alone._precompute = lambda *a, **k: None  # every job scored on its own
    one_by_one = alone.plan(jobs, states(g), now=NOON)
    assert [(p.job_id, p.pool, p.start_at) for p in together] == [(p.job_id, p.pool, p.start_at) for p in one_by_one]
    for a, b in zip(together, one_by_one, strict=True):
        assert a.terms == pytest.approx(b.terms)


def test_a_job_never_lands_where_its_price_exceeds_its_limit() -> None:
    """The price rule: a provider pricing its pool at 10^15 fen gets none of the jobs it would otherwise win."""
    from dataclasses import replace

    from suanwang.domain.fairness import FairScheduler, FairShare
    from suanwang.domain.placement import priced_out

    # the dear pool looks cheapest to the scheduler's signals: only the rule keeps jobs away from it
    g = grid([pool("dear", "qingyang"), pool("fair", "beijing")], prices={"dear": (1,) * 24, "fair": (900,) * 24})
    quotes = {("qingyang", "dear"): 10**15, ("beijing", "fair"): 2_000}
    jobs = [replace(job(f"j{i}", max_price_fen=5_000), prices_fen=quotes) for i in range(20)]
    assert priced_out(jobs[0]) == {("qingyang", "dear"): "price 1000000000000000 fen > the job's limit 5000 fen "
                                                          "(its hold)"}
    fair = FairScheduler(GridScheduler(g), FairShare(Capacity(10_000, 10**6, 100)))
    for name, sched in [*((n, f(GridContext(g))) for n, f in POLICIES.items()), ("fair", fair), ("first", FirstFit())]:
        placed = sched.plan(jobs, states(g), now=NOON)
        assert len(placed) == 16 and {p.pool for p in placed} == {"fair"}, name  # the rest wait for room
    unlimited = [job(f"u{i}") for i in range(4)]  # no limit (a free platform): the signals decide alone
    assert {p.pool for p in GridScheduler(g).plan(unlimited, states(g), now=NOON)} == {"dear"}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 10**15), min_size=3, max_size=3), st.integers(0, 10**6), st.integers(1, 30))
def test_no_policy_places_a_job_above_its_price_limit(quotes: list[int], limit: int, n: int) -> None:
    from dataclasses import replace

    names = [("qingyang", "a"), ("beijing", "b"), ("shanghai", "c")]
    g = grid([pool(p, s) for s, p in names])
    prices = dict(zip(names, quotes, strict=True))
    jobs = [replace(job(f"j{i}", max_price_fen=limit), prices_fen=prices) for i in range(n)]
    allowed = {p for (s, p), q in prices.items() if q <= limit}
    for name, factory in POLICIES.items():
        placed = factory(GridContext(g)).plan(jobs, states(g), now=NOON)
        assert {p.pool for p in placed} <= allowed, name
        assert bool(placed) == bool(allowed), name  # room is plenty: only the price rule keeps a job waiting
