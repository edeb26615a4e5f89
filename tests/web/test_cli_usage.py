"""``suanwang usage`` at 80 columns (COLUMNS=80): every line fits and no figure is cut, cards included."""

from __future__ import annotations

import time
import types

import httpx
import pytest
from fastapi.testclient import TestClient
from rich.console import Console
from typer.testing import CliRunner

from suanwang.cli.main import app
from tests.api.conftest import Grid

API = "/api/v1"


def test_usage_fits_80_columns_and_keeps_every_figure(grid: Grid, monkeypatch: pytest.MonkeyPatch) -> None:
    grid.register([{"name": "h800-training-partition-east", "resource_class": "intelligent", "engine": "local",
                    "cores": 64, "memory_gb": 512, "devices": 8, "device_model": "H800"}])
    job = grid.consumer.post(f"{API}/jobs", json={"command": ["true"], "cores": 8, "memory_gb": 64, "devices": 4,
                                                  "resource_class": "intelligent"}).json()
    grid.tick()
    [task] = grid.agent.post(f"{API}/agent/lease", json={"max_jobs": 1}).json()
    start = time.time()
    for seq in range(2):
        usage = {"job_id": job["id"], "attempt": task["attempt"], "seq": seq, "pool": "h800-training-partition-east",
                 "start": start + seq * 5000, "end": start + (seq + 1) * 5000, "wall_s": 5000, "cpu_s": 39_999.5,
                 "device_s": 19_999.25, "peak_memory_bytes": 61 * 2**30}
        assert grid.agent.post(f"{API}/agent/usage", json={"records": [usage]}).status_code == 200

    def client(base_url: str, headers: dict[str, str], timeout: float) -> TestClient:
        c = TestClient(grid.client.app, base_url="http://testserver/api/v1", raise_server_exceptions=False)
        c.headers.update(headers)
        return c

    monkeypatch.setattr("suanwang.cli.client.httpx", types.SimpleNamespace(Client=client, HTTPError=httpx.HTTPError))
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr("suanwang.cli.jobs.console", Console())  # made as at start-up in an 80-column terminal
    result = CliRunner().invoke(app, ["usage", "--url", "http://x", "--token", grid.token("consumer")],
                                env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80, result.output
    assert f"{job['id']}#{task['attempt']}.0" in result.output and f"{job['id']}#{task['attempt']}.1" in result.output
    assert "card s" in result.output and "40000" in result.output and "19999" in result.output  # cpu, card s
    assert "62464" in result.output  # peak MB
    assert "…" not in result.output and "2 records" in result.output
    # site/pool folds onto a second line rather than losing characters
    at = lines[0].index("site/pool")
    row = next(line for line in lines if line.startswith(job["id"]))
    folded = lines[lines.index(row):lines.index(row) + 3]
    text = "".join(line[at:].split(" ")[0] for line in folded if line[:at].strip() in ("", row[:at].strip()))
    assert "/h800-training-partition-east" in text, result.output
