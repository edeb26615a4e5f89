from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from suanwang.sim import load_csv
from suanwang.sim.sizing import at_load, offered_load
from tests.domain.sched_helpers import T0, grid, pool

HEADER = "submit_s,duration_s,cores,devices,memory_gb,tenant,deadline_s\n"


def _trace(tmp_path: Path, rows: list[str]):
    p = tmp_path / "t.csv"
    p.write_text(HEADER + "\n".join(rows) + "\n")
    return load_csv(p, t0=T0)


def test_a_big_trace_is_loaded_by_slicing_the_grid(tmp_path: Path) -> None:
    g = grid([pool("a", "qingyang", devices=512), pool("b", "beijing", devices=512)])
    t = _trace(tmp_path, [f"{k * 60},7200,4,4,16,x," for k in range(600)])
    busy = 600 * 4 * 7200 / (599 * 60)  # devices busy on average over the submit span
    sliced, same, factor = at_load(g, t, 0.8)
    assert factor == 1.0 and same is t
    assert offered_load(sliced, t) == pytest.approx(0.8, rel=0.02)
    assert sum(p.capacity.devices for p in sliced.pools) == pytest.approx(busy / 0.8, rel=0.01)


def test_a_small_trace_is_loaded_by_compressing_its_arrivals(tmp_path: Path) -> None:
    g = grid([pool("a", "qingyang", devices=512, node_devices=8), pool("b", "beijing", devices=512, node_devices=8)])
    t = _trace(tmp_path, [f"{k * 3600},600,4,1,16,x,{k * 3600 + 5000 if k % 2 else ''}" for k in range(50)])
    sliced, packed, factor = at_load(g, t, 1.0)
    assert sum(p.capacity.devices for p in sliced.pools) == 16  # one node per pool is the smallest slice
    assert factor > 1 and offered_load(sliced, packed) == pytest.approx(1.0, rel=1e-6)
    assert np.array_equal(packed.duration_s, t.duration_s)  # the same jobs, closer together
    assert np.allclose(np.diff(packed.submit_s), np.diff(t.submit_s) / factor)
    has = ~np.isnan(t.deadline_s)
    assert np.allclose((packed.deadline_s - packed.submit_s)[has], (t.deadline_s - t.submit_s)[has])
