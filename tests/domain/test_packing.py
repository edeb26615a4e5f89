"""Packing shared cards (hypothesis): never over a card's share or device memory; a whole-card job starts
within the drain bound under a stream of fractions; fragmentation measured; env/GRES for the engines."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.packing import (
    WHOLE,
    MigProfile,
    Packer,
    Request,
    Sharing,
    SharingMode,
    fragmentation,
    share_env,
    slurm_gres,
)
from suanwang.errors import InvalidSpec
from suanwang.sim.fractional import FracJob, parse_share, replay

MEM = 16_384
fraction_jobs = st.builds(
    lambda k, t, d, s, m: FracJob(f"f{k}", t, d, s, m),
    st.integers(), st.integers(0, 500), st.integers(1, 120), st.integers(1, WHOLE - 1), st.integers(0, MEM))
whole_jobs = st.builds(lambda k, t, d, n: FracJob(f"w{k}", t, d, n * WHOLE, 0),
                       st.integers(), st.integers(0, 500), st.integers(1, 120), st.integers(1, 4))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(fraction_jobs, fraction_jobs, whole_jobs), max_size=80, unique_by=lambda j: j.id),
       st.integers(1, 4), st.booleans())
def test_packing_never_exceeds_a_cards_share_or_memory(jobs: list[FracJob], cards: int, mps: bool) -> None:
    sharing = Sharing(SharingMode.MPS if mps else SharingMode.TIME_SLICING)
    report = replay(jobs, cards=cards, memory_mib=MEM, sharing=sharing, drain_after_s=30, check=True)
    assert report.placements + report.unplaced == len(jobs)
    assert 0 <= report.allocated_share <= 1 and 0 <= report.fragmentation <= 1


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 6), st.integers(1, 3), st.integers(5, 40), st.integers(0, 150), st.integers(0, 2**31))
def test_a_whole_card_job_starts_within_the_drain_bound(cards: int, want: int, max_run: int, arrive: int,
                                                        seed: int) -> None:
    """A steady stream of fractions (one every second, run times up to ``max_run``) would keep every card
    partly busy for ever; the drain rule starts the whole-card job by ``drain_after + max_run``."""
    import random

    rng = random.Random(seed)
    want = min(want, cards)
    # about 0.8 of the pool busy with fractions, arriving every second for 300 s
    every = max(1, round(0.25 * (max_run / 2) / (0.8 * cards)))
    stream = [FracJob(f"f{t}", t, rng.randint(1, max_run), rng.choice([100, 250, 400]), 0)
              for t in range(0, 300, every)]
    whole = FracJob("whole", arrive + 0.5, 10, want * WHOLE, 0)
    drain_after = 20.0
    report = replay([*stream, whole], cards=cards, memory_mib=MEM, drain_after_s=drain_after, check=True)
    assert report.unplaced == 0
    assert report.max_whole_wait_s <= drain_after + max_run + 1e-9


@given(st.lists(st.integers(0, WHOLE), min_size=1, max_size=16))
def test_fragmentation_is_the_free_share_no_whole_job_can_use(used: list[int]) -> None:
    free = sum(WHOLE - u for u in used)
    f = fragmentation(used)
    assert 0 <= f <= 1
    if free:
        assert f == pytest.approx(1 - WHOLE * used.count(0) / free)
    if all(u in (0, WHOLE) for u in used):
        assert f == 0


def test_mig_rounds_up_to_a_profile_and_memory_is_never_overcommitted() -> None:
    mig = Sharing(SharingMode.MIG, (MigProfile("1g.10gb", 142, 10_240), MigProfile("3g.40gb", 428, 40_960)))
    p = Packer(1, 81_920, mig)
    g = p.place(Request("a", 100, 9_000), now=0)
    assert g is not None and (g.share, g.memory_mib) == (142, 10_240)
    assert p.place(Request("b", 300, 50_000), now=0) is None  # no profile has 50 GB
    assert p.place(Request("c", 400, 40_000), now=0).share == 428  # type: ignore[union-attr]
    assert p.place(Request("d", 400, 40_000), now=0) is None  # 10 + 40 + 40 GB > 80 GB
    none = Packer(2, 1000, Sharing(SharingMode.NONE))
    assert none.place(Request("x", 500), now=0) is None and none.place(Request("y", 2000), now=0) is not None


def test_engines_get_the_share_their_way() -> None:
    assert share_env(SharingMode.MPS, [1], 250) == {"CUDA_VISIBLE_DEVICES": "1",
                                                    "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "25"}
    assert share_env(SharingMode.TIME_SLICING, [0], 250) == {"CUDA_VISIBLE_DEVICES": "0"}
    assert share_env(SharingMode.MIG, [0], 142, mig_uuids=["MIG-abc"]) == {"CUDA_VISIBLE_DEVICES": "MIG-abc"}
    with pytest.raises(InvalidSpec):
        share_env(SharingMode.MIG, [0], 142)
    assert slurm_gres(250, 8) == "shard:2" and slurm_gres(100, 8) == "shard:1" and slurm_gres(2000, 8) == "gpu:2"


@pytest.mark.parametrize("bad", ["0", "-0.5", "1.5", "NaN", "inf", "1e999999", "0.0001", "abc", "2000"])
def test_trace_shares_outside_the_format_are_refused(bad: str) -> None:
    with pytest.raises(InvalidSpec):
        parse_share(bad)


def test_trace_shares_parse_exactly() -> None:
    assert parse_share("0.25") == 250 and parse_share("2") == 2000 and parse_share("0.125") == 125
    with pytest.raises(InvalidSpec):
        Request("r", 1500)


def test_without_drain_a_stream_of_fractions_starves_a_whole_card_job() -> None:
    """Halves of one card, each 10 s, one every 5 s: the card is never empty, so only drain lets it through."""
    stream = [FracJob(f"f{t}", t, 10, 500, 0) for t in range(0, 600, 5)]
    whole = FracJob("whole", 12.5, 10, WHOLE, 0)
    fair = replay([*stream, whole], cards=1, memory_mib=MEM, drain_after_s=20, check=True)
    starved = replay([*stream, whole], cards=1, memory_mib=MEM, drain=False)
    assert fair.max_whole_wait_s <= 20 + 10
    assert starved.max_whole_wait_s > 500  # it ran only after the stream ended
