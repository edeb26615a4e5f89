from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from suanwang.domain.scheduler import POLICIES, GridContext
from suanwang.errors import InvalidSpec
from suanwang.sim import SimClock, load_csv, run_simulation
from suanwang.sim.engine import bill_fen
from suanwang.sim.report import write_report
from tests.domain.sched_helpers import T0, VALLEY, grid, pool

HEADER = "submit_s,duration_s,cores,devices,memory_gb,tenant,deadline_s,service_level,region\n"


def trace(tmp_path: Path, rows: list[str]):
    p = tmp_path / "t.csv"
    p.write_text(HEADER + "\n".join(rows) + "\n")
    return load_csv(p, t0=T0)


def test_bill_is_exact_integer_fen_split_at_hour_boundaries() -> None:
    price = np.array(VALLEY, dtype=float)  # 100 fen before 07:00, 300 after (local = UTC+8)
    start = T0 + 6.5 * 3600
    assert bill_fen(price, 2, 1.0, start, start + 3600, 8.0) == 2 * (50 + 150)
    assert bill_fen(price, 1, 0.5, start, start + 1800, 8.0) == 25
    assert isinstance(bill_fen(price, 3, 1.0 / 3, start, start + 7, 8.0), int)


def test_a_deferrable_job_runs_in_valley_hours_and_meets_its_deadline(tmp_path: Path) -> None:
    g = grid([pool("a", "qingyang")], prices={"a": VALLEY})
    t = trace(tmp_path, [f"{12 * 3600},3600,4,1,16,x,{32 * 3600},standard,"])
    r = run_simulation(g, t, "grid")
    hour = ((r.start[0] - T0) / 3600) % 24
    assert hour >= 23 or hour < 7
    assert r.deadline_misses == 0
    assert r.cost_fen[0] == 100  # one SCU·h at the valley price
    cheap = run_simulation(g, t, "cheapest-first")
    assert cheap.cost_fen[0] == 300 and cheap.start[0] == T0 + 12 * 3600


def test_spot_work_is_preempted_requeued_and_billed_only_for_what_ran(tmp_path: Path) -> None:
    g = grid([pool("a", "qingyang", devices=8)])  # flat 200 fen per SCU·h
    t = trace(tmp_path, ["0,7200,32,8,64,s,,spot,", "1800,600,32,8,64,g,,guaranteed,"])
    r = run_simulation(g, t, "grid", tick_s=0)
    assert r.preemptions == 1
    # spot: 0.5 h then requeued; reruns 2 h after the guaranteed job's 10 min
    assert r.start[0] == T0 and r.end[0] == pytest.approx(T0 + 1800 + 600 + 7200)
    assert r.cost_fen[0] == 8 * 200 * 0.5 + 8 * 200 * 2
    assert r.cost_fen[1] == round(8 * 200 * 600 / 3600)


def test_every_policy_keeps_hard_rules_in_the_simulator(tmp_path: Path) -> None:
    g = grid([pool("e", "shanghai"), pool("n", "beijing", devices=64)], prices={"n": (10,) * 24})
    t = trace(tmp_path, [f"{i * 60},1800,4,1,16,x,,standard,cn-east" for i in range(30)])
    for name in POLICIES:
        r = run_simulation(g, t, name)
        sites = {r.sites[k] for k in r.site}
        assert sites == {"shanghai"}, name


def test_simulation_is_deterministic_and_uses_the_injected_clock(tmp_path: Path) -> None:
    g = grid([pool("a", "qingyang", devices=4), pool("b", "beijing", devices=4)])
    rows = [f"{i * 97 % 5000},{600 + i * 37 % 3000},4,{1 + i % 3},16,t{i % 3},,standard," for i in range(60)]
    t = trace(tmp_path, rows)
    calls: list[tuple[int, int, float]] = []
    clock = SimClock()
    a = run_simulation(g, t, "grid", progress=lambda d, n, s: calls.append((d, n, s)), clock=clock)
    b = run_simulation(GridContext(g), t, "grid")
    assert np.array_equal(a.start, b.start) and np.array_equal(a.cost_fen, b.cost_fen)
    assert calls[-1][:2] == (60, 60)
    assert clock.now == pytest.approx(np.nanmax(a.end))
    assert a.summary()["finished"] == 60 and (a.wait_s >= 0).all()
    assert a.util.shape == (len(a.util_t), len(a.sites)) and a.util.max() <= 1.0


def test_unknown_policy_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec, match="unknown policy"):
        run_simulation(grid(), trace(tmp_path, ["0,60,1,1,1,x,,standard,"]), "magic")


def test_report_writes_html_and_pngs(tmp_path: Path) -> None:
    g = grid([pool("a", "qingyang", devices=4)])
    t = trace(tmp_path, [f"{i * 300},1200,4,1,16,x,,standard," for i in range(10)])
    results = [run_simulation(g, t, name) for name in ("grid", "cheapest-first")]
    html = write_report(results, tmp_path / "out", title="tiny")
    text = html.read_text()
    assert "cheapest-first" in text and "deadline misses" in text and "¥" in text
    for png in ("utilisation.png", "wait_cdf.png", "cost_carbon_misses.png"):
        assert (tmp_path / "out" / png).read_bytes()[:4] == b"\x89PNG"


def test_run_simulation_accepts_file_paths(tmp_path: Path) -> None:
    grid_file = Path(__file__).resolve().parents[2] / "src/suanwang/grids/east_data_west.yaml"
    p = tmp_path / "jobs.csv"
    p.write_text("submit_s,duration_s,cores,devices,tenant\n0,600,8,1,a\n60,1200,64,0,b\n")
    r = run_simulation(grid_file, p, "grid")
    assert r.summary()["finished"] == 2 and r.cost_fen.min() > 0


def test_a_deferred_job_whose_hour_is_taken_is_planned_again_and_still_meets_its_deadline(tmp_path: Path) -> None:
    # 4 devices: the deferral cap (a quarter of a pool's cards per pass) allows one card deferred
    g = grid([pool("a", "qingyang", devices=4, node_devices=2)], prices={"a": VALLEY})
    h = 3600
    rows = [f"0,{48 * h},8,2,32,x,,standard,"]  # x holds 2 of 4 devices: its dominant share stays above y's
    rows.append(f"{12 * h},{h},4,1,16,x,{27 * h},standard,")  # j1: due 03:00; the valley starts at 23:00
    rows += [f"{22 * h + 1800 + k * 900},{h},4,1,16,y,,standard," for k in range(48)]  # y keeps the last devices busy
    r = run_simulation(g, trace(tmp_path, rows), "grid")
    assert r.start[1] >= T0 + 22 * h  # held for the valley at noon (given up once y fills the pool past 70 %)
    assert r.end[1] <= T0 + 27 * h  # y's stream took its hour; planned again, it went first once its slack ran low
    assert r.deadline_misses == 0
