"""Best fit among the near-best pools (``GridScheduler(best_fit=True)``, the default): no slower, tighter; and
gangs pick their site as a whole."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.grid import Capacity
from suanwang.domain.placement import PoolState
from suanwang.domain.scheduler import GridContext, GridModel, GridScheduler, PoolSignals, PriceSignal
from suanwang.domain.scheduling.fast_paths import PACK_LOOK
from tests.domain.sched_helpers import NOON, grid, job, pool

SITES = ["beijing", "ulanqab", "qingyang", "shanghai"]


def best_fit_grid(prices: list[int], speeds: list[float]) -> GridModel:
    pools = [pool(f"p{k}", SITES[k % 4], devices=16) for k in range(len(prices))]
    g = grid(pools)
    signals = {(p.site, p.name): PoolSignals(PriceSignal((prices[k],) * 24), speeds[k])
               for k, p in enumerate(pools)}
    return GridModel(g.sites, g.pools, g.links, signals, g.carbon)


def _left(free: Capacity, d: Capacity) -> float:
    """Further copies of ``d`` that ``free`` holds after one (the best-fit measure)."""
    return min((free.cores - d.cores) // d.cores, (free.memory_gb - d.memory_gb + 1e-9) // d.memory_gb,
               (free.devices - d.devices) // d.devices)


def test_a_job_fills_the_tight_pool_and_keeps_the_empty_one_whole() -> None:
    g = best_fit_grid([100, 100], [1.0, 1.0])
    states = [PoolState(g.pools[0], g.pools[0].capacity), PoolState(g.pools[1], Capacity(32, 256.0, 2))]
    j = job("j", devices=2, cores=32, memory_gb=256.0, duration_s=3600.0)
    [p] = GridScheduler(g).plan([j], states, now=NOON)
    assert p.pool == "p1"  # fills the 2-card hole and keeps the 16-card pool whole for a larger job
    [q] = GridScheduler(g, best_fit=False).plan([j], states, now=NOON)
    assert q.pool == "p0"  # score order alone: a tie, the first pool


def test_best_fit_never_picks_a_slower_pool() -> None:
    g = best_fit_grid([100, 120], [2.0, 1.0])
    states = [PoolState(g.pools[0], g.pools[0].capacity), PoolState(g.pools[1], Capacity(32, 256.0, 2))]
    [p] = GridScheduler(g).plan([job("j", devices=2, cores=32, memory_gb=256.0, duration_s=3600.0)], states,
                                now=NOON)
    assert p.pool == "p0"  # the tight pool runs it at half the speed: it would hold capacity twice as long


@settings(max_examples=60, deadline=None)
@given(prices=st.lists(st.integers(50, 400), min_size=6, max_size=6),
       speeds=st.lists(st.sampled_from([0.5, 1.0, 2.0]), min_size=6, max_size=6),
       free_dev=st.lists(st.integers(0, 16), min_size=6, max_size=6), devices=st.integers(1, 4),
       data=st.booleans(), deadline_h=st.one_of(st.none(), st.integers(3, 48)))
def test_best_fit_is_no_slower_and_no_looser_than_the_best_scored_pool(
    prices: list[int], speeds: list[float], free_dev: list[int], devices: int, data: bool, deadline_h: int | None,
) -> None:
    g = best_fit_grid(prices, speeds)
    states = [PoolState(p, Capacity(16 * f, 128.0 * f, f)) for p, f in zip(g.pools, free_dev, strict=True)]
    j = job("j", devices=devices, cores=16 * devices, memory_gb=128.0 * devices, duration_s=5400.0,
            data_site="shanghai" if data else "", data_gb=20.0 if data else 0.0,
            deadline=None if deadline_h is None else NOON + deadline_h * 3600.0)
    ctx = GridContext(g)
    fit = [p for p in GridScheduler(ctx).plan([j], states, now=NOON) if p.start_at <= NOON]
    plain = [p for p in GridScheduler(ctx, best_fit=False).plan([j], states, now=NOON) if p.start_at <= NOON]
    if not plain:
        return  # nothing starts now (no room, or deferred): best fit changes nothing
    assert len(fit) == 1
    free = {s.pool.name: s.free for s in states}
    assert fit[0].terms["finish_at"] <= plain[0].terms["finish_at"] + 1e-6  # never finishes later
    d = j.spec.demand
    assert _left(free[fit[0].pool], d) <= _left(free[plain[0].pool], d)  # never leaves a looser fit
    assert PACK_LOOK >= 1


def test_a_gang_takes_the_site_that_holds_it_whole_when_its_first_members_best_fit_does_not() -> None:
    g = best_fit_grid([100, 100], [1.0, 1.0])
    states = [PoolState(p, p.capacity) for p in g.pools]
    states[1] = PoolState(g.pools[1], Capacity(64, 512.0, 4))  # the tighter site, too small for the gang
    members = [job(f"g{k}", devices=2, cores=32, memory_gb=256.0, duration_s=600.0) for k in range(3)]
    gang = [type(m)(m.id, m.spec, m.tenant, m.submitted_at, gang="G", gang_size=3) for m in members]
    placed = GridScheduler(g).plan(gang, states, now=NOON)
    assert len(placed) == 3 and {p.pool for p in placed} == {"p0"}
