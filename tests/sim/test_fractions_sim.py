"""The main simulator replays fractional GPU requests: packed onto shared cards, reported with GPU fragmentation
next to utilisation; the generic trace format's devices column takes a fraction of one card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from suanwang.errors import InvalidSpec
from suanwang.sim import load_csv, run_simulation
from tests.domain.sched_helpers import grid, pool

HEADER = "submit_s,duration_s,cores,devices,memory_gb,tenant\n"


def _trace(tmp_path: Path, rows: list[str]) -> Path:
    p = tmp_path / "t.csv"
    p.write_text(HEADER + "\n".join(rows) + "\n")
    return p


def test_fractions_replay_packed_and_fragmentation_is_reported(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    rows = []
    for k in range(120):
        dev = rng.choice(["0.25", "0.5", "0.125", "1", "2"], p=[0.35, 0.2, 0.15, 0.2, 0.1])
        rows.append(f"{k * 30},{int(rng.integers(300, 3000))},1,{dev},4,t{k % 3}")
    g = grid([pool("a100", "qingyang", devices=4, node_devices=4)])
    r = run_simulation(g, load_csv(_trace(tmp_path, rows)), "grid")
    s = r.summary()
    assert s["refused"] == 0 and s["finished"] == 120
    assert r.frag_cards is not None and len(r.frag_cards) == len(r.util_cards)
    assert float(r.frag_cards.min()) >= 0.0 and float(r.frag_cards.max()) <= 1.0
    assert s["gpu_fragmentation_mean"] > 0  # slivers of shared cards were free at some sample
    assert float(np.max(r.util_cards)) <= 1.0 + 1e-9  # the share held never exceeds the cards
    # packing: more jobs ran at once than there are cards (whole-card replay could not)
    start, end = r.start, r.end
    at = start[:, None]
    concurrent = ((start[None, :] <= at) & (end[None, :] > at)).sum(axis=1)
    assert concurrent.max() > 4


@pytest.mark.parametrize("bad", ["1.5", "0.0001", "-0.5"])
def test_fractions_outside_the_rule_are_refused_with_the_line(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidSpec, match=r"t\.csv:2"):
        load_csv(_trace(tmp_path, [f"0,60,1,{bad},1,a"]))
