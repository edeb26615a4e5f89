"""The money CLI against the in-process platform: quote, topup, wallet, price-book, voucher, settle, ledger."""

from __future__ import annotations

import json
import time
import types
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from suanwang.cli.main import app
from tests.api.conftest import Grid
from tests.api.test_billing_api import BOOK, JOB, run_with_usage


@pytest.fixture
def cli(grid: Grid, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def client(base_url: str, headers: dict[str, str], timeout: float) -> TestClient:
        c = TestClient(grid.client.app, base_url="http://testserver/api/v1", raise_server_exceptions=False)
        c.headers.update(headers)
        return c

    monkeypatch.setattr("suanwang.cli.client.httpx", types.SimpleNamespace(Client=client, HTTPError=httpx.HTTPError))
    runner = CliRunner()

    def run(role: str, *args: str) -> str:
        cut = args.index("--") if "--" in args else len(args)
        result = runner.invoke(app, [*args[:cut], "--url", "http://x", "--token", grid.token(role), *args[cut:]])
        assert result.exit_code == 0, result.output
        return result.output

    return run


def test_money_commands_end_to_end(grid: Grid, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    grid.register()
    book = tmp_path / "book.json"
    # Usage must lie in the past to be settled: 1000 fen of it in a millisecond, at a price to match.
    book.write_text(json.dumps({"entries": [BOOK["entries"][0] | {"unit_price_fen": 1_800_000_000}]}))
    assert "price book operator v1" in cli("operator", "price-book", "set", str(book))
    assert json.loads(cli("operator", "price-book", "list", "--json"))[0]["version"] == 1
    consumer = json.loads(cli("consumer", "wallet", "--json"))["consumer"]
    quote = json.loads(cli("consumer", "quote", "--cores", "2", "--json", "--", "true"))
    assert quote["hold"]["fen"] == 3_600_000_000  # 2 core-hours
    assert "balance 100.00" in cli("operator", "topup", consumer, "10000", "--key", "first")
    again = " ".join(cli("operator", "topup", consumer, "10000", "--key", "first").split())  # unwrapped
    assert "nothing moved now" in again and "balance 100.00" in again
    now = time.time()
    out = cli("operator", "voucher", "create", "starter", "10", "300", "--valid-from", str(now - 5),
              "--valid-until", str(now + 3600), "--fund-fen", "1000")
    assert "starter: 10% up to 3.00" in out
    job_id = run_with_usage(grid, 1 / 1_800_000, job=JOB | {"duration_s": 0.002})
    trail = json.loads(cli("consumer", "ledger", "--job-id", job_id, "--json"))
    assert [t["kind"] for t in trail] == ["hold_place", "charge", "hold_release"]
    assert "reconciled: True" in cli("operator", "ledger", "--reconcile")
    csv = cli("operator", "settle", "--start", "0", "--end", str(time.time()), "--csv")
    assert f"consumer,{consumer},,,charged,900,9.00" in csv  # 1000 fen less the 10% voucher
