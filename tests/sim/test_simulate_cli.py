"""`suanwang simulate` replays a real trace per policy and writes a report with plots."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from suanwang.cli.main import app


def test_simulate_compares_policies_and_writes_a_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["simulate", "--limit", "120", "--policy", "grid", "--policy", "cheapest-first",
                                      "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert [p["policy"] for p in summary["policies"]] == ["grid", "cheapest-first"]
    assert all(p["finished"] == p["jobs"] == 120 for p in summary["policies"])
    html = (out / "index.html").read_text()
    assert "utilisation.png" in html and (out / "utilisation.png").stat().st_size > 1000


def test_simulate_names_a_missing_trace_column(tmp_path: Path) -> None:
    bad = tmp_path / "trace.csv"
    bad.write_text("submit_s,cores\n0,1\n")
    result = CliRunner().invoke(app, ["simulate", "--trace", str(bad), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "duration_s" in result.output and "Traceback" not in result.output
