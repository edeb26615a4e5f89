"""`suanwang run workflow.yaml`, `run show ID`, `run cancel ID`, `runs`, `datasets` against the in-process platform."""

from __future__ import annotations

import json
from pathlib import Path

from tests.api.conftest import Grid
from tests.api.test_billing_cli import cli  # noqa: F401  (the fixture)

FLOW = """\
name: demo
steps:
  - name: a
    job: {command: ["true"]}
  - name: b
    job: {command: ["true"]}
    after: [a]
"""


def test_run_show_runs_cancel(grid: Grid, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    grid.register()
    path = tmp_path / "flow.yaml"
    path.write_text(FLOW)
    run = json.loads(cli("consumer", "run", str(path), "--json"))
    assert [s["state"] for s in run["steps"]] == ["submitted", "waiting"]
    assert run["id"] in cli("consumer", "run", "show", run["id"])  # the table (narrow terminal: columns folded)
    shown = json.loads(cli("consumer", "run", "show", run["id"], "--json"))
    assert [s["state"] for s in shown["steps"]] == ["submitted", "waiting"]
    assert [r["id"] for r in json.loads(cli("consumer", "runs", "--json"))] == [run["id"]]
    assert json.loads(cli("consumer", "run", "cancel", run["id"], "--json"))["state"] == "cancelled"
    assert json.loads(cli("consumer", "datasets", "--json")) == []
