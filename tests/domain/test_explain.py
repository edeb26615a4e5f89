from __future__ import annotations

from suanwang.domain.explain import explain
from suanwang.domain.grid import Capacity
from suanwang.domain.placement import PoolState
from suanwang.domain.scheduler import GridScheduler
from tests.domain.sched_helpers import NOON, grid, job, pool, states


def test_explanation_names_considered_ruled_out_and_best_terms() -> None:
    g = grid([pool("a100", "qingyang"), pool("a40", "beijing", model="A40", mem=40.0), pool("u", "ulanqab")],
             prices={"u": (100,) * 24})
    sched = GridScheduler(g)
    j = job(device_memory_gb_min=80.0)
    [placed] = sched.plan([j], states(g), now=NOON)
    e = explain(sched, j, states(g), now=NOON, placed=placed)
    assert set(e.considered) == {"qingyang/a100", "ulanqab/u"}
    assert "device memory 40 GB < 80 GB" in e.ruled_out["beijing/a40"]
    assert (e.best[0].site, e.best[0].pool) == (placed.site, placed.pool) == ("ulanqab", "u")
    assert {"cost_fen", "carbon_kg", "finish_at", "latency_ms", "score"} <= set(e.best[0].terms)
    assert e.best[0].score <= e.best[1].score
    assert "ulanqab/u" in e.summary and e.as_dict()["placed"]["pool"] == "u"


def test_pending_job_explanation_shows_full_and_offline_pools() -> None:
    g = grid([pool("a", "qingyang", devices=8), pool("b", "beijing", devices=8)])
    st_ = [PoolState(g.pools[0], Capacity(0, 0.0, 0)), PoolState(g.pools[1], g.pools[1].capacity, online=False)]
    e = explain(GridScheduler(g), job(), st_, now=NOON)
    assert e.full_now == ("qingyang/a",)
    assert e.ruled_out["beijing/b"].startswith("offline")
    assert "not placed yet" in e.summary


def test_latency_rule_is_explained_with_the_measured_latency() -> None:
    g = grid([pool("far", "qingyang"), pool("near", "ulanqab")])
    e = explain(GridScheduler(g), job(consumer_site="beijing", latency_ms_max=5.0), states(g), now=NOON)
    assert "latency 12 ms from beijing > bound 5 ms" in e.ruled_out["qingyang/far"]
