"""The market CLI against the in-process platform: sessions, ask, bid, book, clear, result, contracts (--json)."""

from __future__ import annotations

import json

from suanwang.cli.market import yuan_cf
from suanwang.services import market
from tests.api.conftest import Grid
from tests.api.test_billing_cli import cli  # noqa: F401  (the fixture)


def test_market_commands_end_to_end(grid: Grid, cli) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    grid.register([{"name": "gpu", "resource_class": "intelligent", "engine": "local", "cores": 64,
                    "memory_gb": 256, "devices": 8, "device_model": "H800"}])
    site = grid.operator.get("/api/v1/sites").json()[0]["name"]
    consumer = grid.consumer.get("/api/v1/whoami").json()["tenant_id"]
    grid.operator.post("/api/v1/topups", json={"consumer": consumer, "amount_fen": 10_000},
                       headers={"Idempotency-Key": "cli-top"})
    sessions = json.loads(cli("consumer", "market", "sessions", "--json"))
    sid = next(s["id"] for s in sessions if s["kind"] == "day-ahead")
    ask = json.loads(cli("operator", "market", "ask", "--session", sid, "--site", site, "--slots", "0", "2",
                         "--units", "8", "--floor-fen", "100", "--json"))
    assert ask["side"] == "ask"
    bid = json.loads(cli("consumer", "market", "bid", "--session", sid, "--site", site, "--slots", "0", "2",
                         "--quantity", "8", "--rate", "4", "--limit-fen", "300", "--json"))
    assert bid["state"] == "live"
    book = json.loads(cli("consumer", "market", "book", sid, "--json"))
    assert book["offered"][0]["units"] == 8 and not book["cleared"]
    assert market.clear_session(grid.platform.db, sid, now=market.session_by_id(sid).gate_at + 1)
    result = json.loads(cli("consumer", "market", "result", sid, "--json"))
    assert result["bids"][0]["filled"] == 8
    contracts = json.loads(cli("consumer", "market", "contracts", "--json"))
    assert sum(c["units"] for c in contracts) == 8
    table = cli("consumer", "market", "result", sid)  # the Rich tables render, money in yuan
    assert "prices" in table and "price (yuan)" in table and "pays (yuan)" in table
    price = result["prices"][0]["price_cf"]
    assert yuan_cf(price) in table and str(price) not in table
    assert str(result["bids"][0]["pays_fen"]) == str(int(result["bids"][0]["pays_fen"]))  # --json: exact fen
    said = cli("operator", "market", "ask", "--session", sid, "--site", site, "--slots", "0", "1", "--units", "1",
               "--floor-fen", "12345")
    assert "123.45 yuan per unit-slot" in " ".join(said.split())  # the console may wrap the line


def test_centi_fen_print_as_yuan_to_the_tick() -> None:
    assert [yuan_cf(v) for v in (0, 1, 99, 100, 12_345, 10**9, -250)] == [
        "0.0000", "0.0001", "0.0099", "0.0100", "1.2345", "100000.0000", "-0.0250"]
