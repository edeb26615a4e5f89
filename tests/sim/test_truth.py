"""The simulator tells the truth: sizing per device model and busy period, refusals, waits, JSONL traces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.errors import InvalidSpec
from suanwang.sim import load_csv, load_trace, run_simulation
from suanwang.sim.matrix import Cell, half_of, losses, run_matrix
from suanwang.sim.sizing import at_load, busy_period, group_loads, offered_load
from tests.domain.sched_helpers import T0, grid, pool

HEADER = "submit_s,duration_s,cores,devices,device_model,memory_gb,deadline_s\n"


def _trace(tmp_path: Path, rows: list[str]):
    p = tmp_path / "t.csv"
    p.write_text(HEADER + "\n".join(rows) + "\n")
    return load_csv(p, t0=T0)


def test_sizing_keeps_each_models_share_and_loads_the_pinned_model(tmp_path: Path) -> None:
    g = grid([pool("big", "qingyang", model="A100", devices=800), pool("small", "beijing", model="H800", devices=80)])
    t = _trace(tmp_path, [f"{k * 60},3600,4,1,H800,16," for k in range(300)])
    sliced, _, _ = at_load(g, t, 0.8)
    caps = {p.name: p.capacity.devices for p in sliced.pools}
    assert caps["big"] / caps["small"] == pytest.approx(10, rel=0.1)  # the grid's shares are kept
    loads = {x.group: x.load for x in group_loads(sliced, t)}
    assert loads["h800"] == pytest.approx(0.8, rel=0.05)  # the binding model sees the target
    assert loads["a100"] == 0.0


def test_a_burst_at_the_end_sizes_to_the_burst(tmp_path: Path) -> None:
    g = grid([pool("a", "qingyang", devices=512)])
    early = [f"{k * 3600},600,4,1,,16," for k in range(10)]  # a trickle over 10 hours
    burst = [f"{36000 + k},600,4,1,,16," for k in range(200)]  # then 200 jobs in 200 s
    t = _trace(tmp_path, early + burst)
    assert busy_period(t) <= 600.0  # the burst, not the ten-hour span
    sliced, _, _ = at_load(g, t, 1.0)
    # 200 jobs x 600 card-s at 80 % of the work over one run time: ~160 cards busy, not 5 (the mean)
    assert sum(p.capacity.devices for p in sliced.pools) > 100


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e5), st.floats(1, 1e4), st.integers(1, 8)), min_size=1, max_size=40),
       st.floats(0.3, 1.0))
def test_offered_load_never_exceeds_the_target_after_slicing(rows, target) -> None:
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        t = _trace(Path(d), [f"{s},{dur},4,{n},,16," for s, dur, n in rows])
    g = grid([pool("a", "qingyang", devices=512), pool("b", "beijing", model="A40", devices=256)])
    sliced, packed, factor = at_load(g, t, target)
    assert factor >= 1.0
    if offered_load(g, t) > target:  # more work than the whole grid takes at the target: the grid as it is
        assert sliced.pools == g.pools and factor == 1.0
    else:  # never loaded beyond the target (arrivals all at one instant cannot be compressed up to it)
        assert offered_load(sliced, packed) <= target * 1.05


def test_jobs_no_pool_can_run_are_refused_and_counted_apart(tmp_path: Path) -> None:
    g = grid([pool("a", "qingyang", model="A100", devices=16)])
    t = _trace(tmp_path, ["0,600,4,1,A100,16,", "10,600,4,1,H800,16,", "20,600,4,64,,16,", "30,600,4,1,,16,40"])
    r = run_simulation(g, t, "cheapest-first")
    s = r.summary()
    assert r.refused.tolist() == [False, True, True, True]  # wrong model, too big, deadline no pool can meet
    assert s["refused"] == 3 and s["finished"] == 1 and s["deadline_misses"] == 0
    assert r.plan_calls <= 2  # refused jobs are not re-planned pass after pass


def test_waits_split_by_deadline_and_count_jobs_never_started(tmp_path: Path) -> None:
    g = grid([pool("a", "qingyang", devices=1, node_devices=1)])
    t = _trace(tmp_path, ["0,1000,4,1,,16,", "0,1000,4,1,,16,", "0,1000,4,1,,16,5000"])
    s = run_simulation(g, t, "cheapest-first", tick_s=0).summary()
    assert s["wait_p50_s"] > 0 and s["wait_p99_s"] >= 1000 - 1e-6
    assert s["wait_p99_deadline_s"] != s["wait_p99_no_deadline_s"]
    assert 0 < s["util_cards_mean"] <= 1 and s["util_cores_mean"] == 0.0  # no CPU pool: no core utilisation


def test_jsonl_trace_reads_like_csv_and_names_bad_lines(tmp_path: Path) -> None:
    p = tmp_path / "w.jsonl"
    first = {"submit_s": 5, "duration_s": 60, "cores": 2, "devices": 1, "device_model": "A100", "deadline_s": None}
    p.write_text(json.dumps(first) + "\n\n" + json.dumps({"submit_s": 0, "duration_s": 30, "cores": 1}) + "\n")
    t = load_trace(p)
    assert len(t) == 2 and t.submit_s.tolist() == [0, 5] and t.names[t.device_model[1]] == "A100"
    for bad, why in (('{"submit_s": 0, "duration_s": 1e999, "cores": 1}', "duration_s"), ("[1]", "JSON object"),
                     ('{"duration_s": 1, "cores": 1}', "submit_s"), ('{"submit_s": 0, "duration_s": NaN, "cores": 1}',
                                                                       "duration_s")):
        p.write_text('{"submit_s": 0, "duration_s": 1, "cores": 1}\n' + bad + "\n")
        with pytest.raises(InvalidSpec, match=rf"w.jsonl:2: .*{why}"):
            load_trace(p)


def test_halves_are_fixed_by_the_name_and_losses_follow_the_tolerances() -> None:
    names = [Cell(t, v, x, s).name for t in ("a", "b") for v in ("base", "bursty") for x in (0.5, 1.0)
             for s in (1, 2, 3)]
    halves = [half_of(n) for n in names]
    assert halves == [half_of(n) for n in names] and {"tuning", "heldout"} == set(halves)
    rows = {"grid": {"deadline_misses": 1, "wait_p99_no_deadline_s": 121.0},
            "random": {"deadline_misses": 1, "wait_p99_no_deadline_s": 100.0},
            "cheapest-first": {"deadline_misses": 3, "wait_p99_no_deadline_s": 90.0}}
    assert losses(rows) == ["wait_p99_no_deadline_s"]  # 121 > 1.2 x 90; misses tie the best
    rows["grid"]["wait_p99_no_deadline_s"] = 108.0
    rows["random"]["deadline_misses"] = 0
    assert losses(rows) == ["deadline_misses"]


def test_matrix_runs_cells_and_counts_losses_per_half() -> None:
    cells = [Cell("azure-code", "bursty", 0.9, 1), Cell("nasa", "gpu-heavy", 0.7, 2)]
    r = run_matrix(True, cells=cells, jobs=30)
    assert [c["cell"] for c in r["cells"]] == [c.name for c in cells]
    assert r["matrix_losses"] == r["matrix_losses_tuning"] + r["matrix_losses_heldout"]
    assert r["matrix_losses"] == sum(len(c["losses"]) for c in r["cells"])
    for c in r["cells"]:
        assert set(c["policies"]) >= {"grid", "cheapest-first", "nearest-site"} and c["jobs"] == 30
        assert all(np.isfinite(v["wait_p99_no_deadline_s"]) for v in c["policies"].values())


def test_an_arrival_is_planned_at_the_next_tick_even_when_a_deferred_job_waits_for_its_hour(tmp_path: Path) -> None:
    from tests.domain.sched_helpers import VALLEY

    g = grid([pool("a", "qingyang", devices=16)], prices={"a": VALLEY})
    # noon: a job with a day of slack is deferred to the valley hours; 10 minutes later one without a deadline
    t = _trace(tmp_path, [f"{12 * 3600},600,4,1,,16,{36 * 3600}", f"{12 * 3600 + 600},600,4,1,,16,"])
    r = run_simulation(g, t, "grid", tick_s=60)
    assert r.start[0] - r.submit[0] > 3600  # deferred, as the price signal asks
    assert r.start[1] - r.submit[1] <= 60  # the idle grid's hourly retry does not hold the arrival back
