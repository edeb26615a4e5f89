"""Work without a deadline is never starved: not by deferral, urgent deadline work, nor best-fit packing."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.sim.engine import run_simulation
from suanwang.sim.traces import _Builder
from tests.domain.sched_helpers import NOON
from tests.domain.test_best_fit import best_fit_grid


@settings(max_examples=25, deadline=None)
@given(rows=st.lists(st.tuples(st.floats(0, 20_000), st.floats(60, 20_000), st.integers(1, 8),
                               st.booleans(), st.sampled_from(["a", "b", "c"])), min_size=5, max_size=40))
def test_work_without_a_deadline_is_never_starved(rows: list[tuple[float, float, int, bool, str]]) -> None:
    """Whatever the mix of deadline and best-effort work, every accepted job without a deadline starts, and waits
    no longer than all the work run one job after another (no job is passed over
    forever by deferral, urgency or packing)."""
    b = _Builder()
    for submit, run, cards, has_deadline, tenant in rows:
        b.add(submit_s=submit, duration_s=run, cores=16 * cards, devices=cards, memory_gb=128.0 * cards,
              deadline_s=submit + 4 * run + 3600.0 if has_deadline else math.nan, tenant=tenant)
    tr = b.build("starve", t0=NOON)
    g = best_fit_grid([100, 300, 200], [1.0, 1.0, 2.0])
    r = run_simulation(g, tr, "grid", tick_s=60.0)
    nd = np.isnan(r.deadline) & r.accepted
    assert not np.isnan(r.start[nd]).any()  # every one started
    serial = float(np.sum(tr.duration_s))  # every job run one after another on the slowest pool
    assert float(np.max(r.wait_s[nd], initial=0.0)) <= serial + 3600.0 + 60.0  # + the idle grid's hourly retry
