"""Storage hours of a staged replica: the same hours, with the same bounds, however often or late the sweeps run."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.domain.datasets import HOUR_S, StoragePeriod, collectable, storage_periods

ARRIVED = 1_767_225_600.5


def _run(sweeps: list[float], end_at: float | None, limit: int) -> list[StoragePeriod]:
    """What a sequence of sweeps meters, each resuming from where the last stopped (``metered_until``)."""
    got: list[StoragePeriod] = []
    mark = ARRIVED
    for now in sweeps:
        cut = end_at if end_at is not None and end_at <= now else None  # collection is decided at a sweep
        for p in storage_periods(ARRIVED, mark, now, cut, limit=limit):
            got.append(p)
            mark = p.end
    return got


@given(st.lists(st.floats(0, 50 * HOUR_S), min_size=1, max_size=30), st.none() | st.floats(0, 40 * HOUR_S),
       st.integers(1, 5))
def test_sweeps_meter_each_hour_once_and_contiguously(offsets: list[float], end: float | None, limit: int) -> None:
    times = sorted(ARRIVED + o for o in offsets)
    end_at = None if end is None else ARRIVED + end
    got = _run(times, end_at, limit)
    assert [p.hour for p in got] == list(range(len(got)))  # no hour twice, none skipped
    assert all(a.end == b.start for a, b in itertools.pairwise(got))
    assert all(p.start == ARRIVED + p.hour * HOUR_S and p.end - p.start <= HOUR_S for p in got)
    assert all(p.end <= times[-1] for p in got)  # nothing metered ahead of the clock
    if end_at is not None:
        assert all(p.end <= end_at for p in got)
    # a sweep with no limit, long after, completes exactly what the schedule left: the same bounds
    final = end_at if end_at is not None else times[-1]
    rest = storage_periods(ARRIVED, got[-1].end if got else ARRIVED, final + 100 * HOUR_S, end_at, limit=10**6)
    whole = got + rest if end_at is not None else got
    if end_at is not None and end_at > ARRIVED:
        assert sum(p.end - p.start for p in whole) == pytest.approx(end_at - ARRIVED)
        assert storage_periods(ARRIVED, end_at, end_at + HOUR_S, end_at) == []  # metered to the end: nothing more


def test_a_replica_is_collected_only_when_unneeded_past_its_grace() -> None:
    assert not collectable(0.0, 10.0, 10.0, needed=True)
    assert not collectable(0.0, 9.9, 10.0, needed=False)
    assert collectable(0.0, 10.0, 10.0, needed=False)
