"""The CLI is the SDK's client: a refused call is the API's own error in one line, exit 1; an unreachable
platform says so, exit 1; no token at all, exit 2."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from suanwang.cli.main import app
from tests.api.conftest import Grid
from tests.api.test_billing_cli import cli  # noqa: F401  (the fixture: the CLI against the in-process platform)


def test_a_refused_call_is_one_line_and_exit_1(grid: Grid, cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    grid.register()
    runner = CliRunner()
    result = runner.invoke(app, ["show", "j-nope", "--url", "http://x", "--token", grid.token("consumer")])
    assert result.exit_code == 1 and "error 404: job j-nope not found" in " ".join(result.output.split())
    result = runner.invoke(app, ["submit", "--cores", str(2**70), "--url", "http://x", "--token",
                                 grid.token("consumer"), "--", "true"])
    assert result.exit_code == 1 and "error 422" in result.output
    job = json.loads(cli("consumer", "submit", "--json", "--", "true"))
    assert json.loads(cli("consumer", "jobs", "--json"))["jobs"][0]["id"] == job["id"]
    assert json.loads(cli("consumer", "cancel", job["id"], "--json"))["state"] == "cancelled"


def test_an_unreachable_platform_and_no_token(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SUANWANG_HOME", str(tmp_path))
    monkeypatch.delenv("SUANWANG_TOKEN", raising=False)
    monkeypatch.delenv("SUANWANG_URL", raising=False)
    runner = CliRunner()
    result = runner.invoke(app, ["runs", "--url", "http://127.0.0.1:9", "--token", "t"])
    assert result.exit_code == 1 and "cannot reach http://127.0.0.1:9" in result.output
    result = runner.invoke(app, ["datasets", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and "no token" in result.output
