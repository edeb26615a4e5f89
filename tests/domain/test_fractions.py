"""Fractions of a card in the job spec and in the scheduler's capacity check (FairScheduler and GridScheduler)."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.fairness import FairScheduler, FairShare
from suanwang.domain.grid import Capacity, Pool
from suanwang.domain.job import JobSpec, parse_devices
from suanwang.domain.packing import WHOLE, MigProfile, Sharing, SharingMode
from suanwang.domain.placement import PoolState, QueuedJob, mib, rule_out
from suanwang.domain.resources import Engine, ResourceClass
from suanwang.domain.scheduler import GridScheduler
from suanwang.domain.scheduling.base import DRAIN_AFTER_S
from suanwang.errors import InvalidSpec
from tests.domain.sched_helpers import NOON, grid

INT = ResourceClass.INTELLIGENT
CARD_GB = 40.0


def shared_pool(cards: int = 4, mode: SharingMode = SharingMode.MPS, name: str = "gpu") -> Pool:
    return Pool(name, "qingyang", INT, Engine.LOCAL, Capacity(cards * 64, cards * 512.0, cards), "A100", CARD_GB,
                node=Capacity(cards * 64, cards * 512.0, cards), sharing=Sharing(mode))


def frac(jid: str, share: int, mem_gb: float, at: float, duration: float = 600.0) -> QueuedJob:
    spec = JobSpec(("run",), INT, devices=1, device_share=share, device_memory_gb=mem_gb, cores=0, memory_gb=0.0,
                   duration_s=duration)
    return QueuedJob(jid, spec, "t", at)


def whole(jid: str, devices: int, at: float, duration: float = 600.0) -> QueuedJob:
    return QueuedJob(jid, JobSpec(("run",), INT, devices=devices, cores=0, memory_gb=0.0, duration_s=duration),
                     "t", at)


@pytest.mark.parametrize(("value", "want"), [(0.25, (1, 250)), (2, (2, 0)), ("0.5", (1, 500)), (0.001, (1, 1)),
                                             (3.0, (3, 0)), (0, (0, 0))])
def test_devices_parse_as_whole_cards_or_a_fraction_of_one(value: float | str, want: tuple[int, int]) -> None:
    assert parse_devices(value) == want


@pytest.mark.parametrize("bad", [1.5, -0.25, math.nan, math.inf, 1e999, 0.0001, "x", 2**40, 0.2505])
def test_devices_outside_the_rule_are_refused(bad: float | str) -> None:
    with pytest.raises(InvalidSpec):
        parse_devices(bad)


def test_spec_validates_the_share_and_its_memory() -> None:
    with pytest.raises(InvalidSpec, match="of one card"):
        JobSpec(("x",), INT, devices=2, device_share=250)
    with pytest.raises(InvalidSpec, match="device_share"):
        JobSpec(("x",), INT, devices=1, device_share=1000)
    with pytest.raises(InvalidSpec, match="device_memory_gb"):
        JobSpec(("x",), INT, devices=1, device_share=250, device_memory_gb=math.nan)
    with pytest.raises(InvalidSpec, match="for a fraction"):
        JobSpec(("x",), INT, devices=1, device_memory_gb=8.0)
    assert JobSpec(("x",), INT, devices=1, device_share=250, device_memory_gb=8).milli_devices == 250
    assert JobSpec(("x",), INT, devices=3).milli_devices == 3 * WHOLE


def test_hard_rules_keep_fractions_off_pools_that_cannot_hold_them() -> None:
    spec = frac("f", 250, 8.0, NOON).spec
    assert rule_out(spec, shared_pool(mode=SharingMode.NONE)) == (
        "pool does not share cards (job asks for a fraction of one)")
    assert rule_out(spec, shared_pool()) is None
    big = frac("f", 250, 41.0, NOON).spec
    assert "device memory" in (rule_out(big, shared_pool()) or "")
    mig = Pool("mig", "qingyang", INT, Engine.LOCAL, Capacity(64, 512.0, 1), "A100", CARD_GB,
               sharing=Sharing(SharingMode.MIG, (MigProfile("1g.5gb", 142, 5 * 1024),)))
    assert rule_out(frac("f", 100, 4.0, NOON).spec, mig) is None
    assert "MIG profile" in (rule_out(frac("f", 300, 4.0, NOON).spec, mig) or "")


def test_fractions_share_a_card_and_the_placement_names_it() -> None:
    g = grid([shared_pool(cards=2)])
    sched = GridScheduler(g)
    jobs = [frac(f"f{i}", 250, 8.0, NOON + i) for i in range(6)]
    plan = sched.plan(jobs, [PoolState(g.pools[0], g.pools[0].capacity)], now=NOON + 10)
    cards = [p.card for p in plan]
    assert len(plan) == 6
    assert sorted(cards) == [0, 0, 0, 0, 1, 1]  # best fit: the first card fills before the second opens


def test_candidates_see_room_for_a_fraction_on_a_partly_used_card() -> None:
    g = grid([shared_pool(cards=1)])
    state = PoolState(g.pools[0], Capacity(64, 512.0, 0), cards=((0, 250, mib(8.0)),))  # no wholly free card
    [c] = GridScheduler(g).candidates(frac("f", 250, 8.0, NOON), [state], now=NOON)
    assert c.fits_now  # three quarters of the card are free: the fraction fits now
    [w] = GridScheduler(g).candidates(whole("w", 1, NOON), [state], now=NOON)
    assert not w.fits_now


class Live:
    """A pool over time: running fractions and whole jobs, PoolStates built as services.scheduling builds them."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.running: dict[str, tuple[float, int, int, int]] = {}  # id -> (end, card, share, MiB) or whole

    def state(self) -> PoolState:
        per: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        whole_cards = 0
        for _, card, share, m in self.running.values():
            if card < 0:
                whole_cards += share // WHOLE
            else:
                per[card][0] += share
                per[card][1] += m
        free = Capacity(self.pool.capacity.cores, self.pool.capacity.memory_gb,
                        self.pool.capacity.devices - whole_cards - len(per))
        return PoolState(self.pool, free, cards=tuple((c, u, mm) for c, (u, mm) in sorted(per.items())))

    def check(self) -> None:
        per: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        whole_cards = 0
        for _, card, share, m in self.running.values():
            if card < 0:
                whole_cards += share // WHOLE
            else:
                per[card][0] += share
                per[card][1] += m
        for used, m in per.values():
            assert used <= WHOLE and m <= mib(self.pool.device_memory_gb)
        assert whole_cards + len(per) <= self.pool.capacity.devices


fractions = st.lists(st.tuples(st.sampled_from([100, 125, 250, 300, 500, 750]), st.sampled_from([0.0, 4.0, 10.0, 20.0]),
                               st.integers(60, 900)), min_size=5, max_size=60)


@settings(max_examples=25, deadline=None)
@given(fractions, st.integers(1, 4), st.booleans())
def test_a_pass_never_overcommits_a_cards_share_or_memory(jobs: list[tuple[int, float, int]], cards: int,
                                                        fair: bool) -> None:
    g = grid([shared_pool(cards)])
    inner = GridScheduler(g)
    sched = FairScheduler(inner, FairShare(g.pools[0].capacity)) if fair else inner
    live = Live(g.pools[0])
    queue = {f"f{k}": frac(f"f{k}", s, m, NOON, d) for k, (s, m, d) in enumerate(jobs)}
    now = NOON
    for _ in range(40):
        for p in sched.plan(list(queue.values()), [live.state()], now=now):
            spec = queue.pop(p.job_id).spec
            assert p.card >= 0
            live.running[p.job_id] = (now + spec.duration_s, p.card, spec.device_share, mib(spec.device_memory_gb))
        live.check()
        assert not queue or live.running  # work-conserving: waiting work never leaves the cards idle after a pass
        now += 60.0
        live.running = {k: v for k, v in live.running.items() if v[0] > now}


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 4), st.integers(1, 2), st.integers(120, 900), st.integers(20, 120), st.booleans())
def test_a_whole_card_job_starts_within_bounded_delay_under_a_stream_of_fractions(
        cards: int, want: int, max_run: int, every: int, fair: bool) -> None:
    g = grid([shared_pool(cards)])
    inner = GridScheduler(g)
    sched = FairScheduler(inner, FairShare(g.pools[0].capacity)) if fair else inner
    live = Live(g.pools[0])
    queue: dict[str, QueuedJob] = {}
    now, tick, k = NOON, 10.0, 0
    big = whole("W", want, NOON + 100.0)
    started = None
    while now < NOON + 100.0 + DRAIN_AFTER_S + want * max_run + 20 * tick and started is None:
        if (now - NOON) % every < tick:  # a new fraction every ``every`` s, forever
            k += 1
            queue[f"f{k}"] = frac(f"f{k}", 250 + 250 * (k % 3), 8.0, now, max_run)
        if now >= big.submitted_at and big.id not in live.running:
            queue["W"] = big
        for p in sched.plan(list(queue.values()), [live.state()], now=now):
            spec = queue.pop(p.job_id).spec
            if p.job_id == "W":
                started = now
                live.running["W"] = (now + 600, -1, want * WHOLE, 0)
            else:
                live.running[p.job_id] = (now + spec.duration_s, p.card, spec.device_share, mib(spec.device_memory_gb))
        live.check()
        now += tick
        live.running = {j: v for j, v in live.running.items() if v[0] > now}
    assert started is not None
    assert started - big.submitted_at <= DRAIN_AFTER_S + want * max_run + 2 * tick
