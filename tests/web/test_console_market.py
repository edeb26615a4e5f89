"""The market board and each role's own orders and contracts in the console (TestClient, both databases)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from suanwang.services import market
from suanwang.web import data, session
from tests.api.conftest import Grid
from tests.web.test_console_http import signed_in

API = "/api/v1"


def test_board_shows_depth_prices_and_volumes_but_never_who(grid: Grid) -> None:
    grid.register([{"name": "gpu", "resource_class": "intelligent", "engine": "local", "cores": 64,
                    "memory_gb": 256, "devices": 8, "device_model": "H800"}])
    site = grid.operator.get(f"{API}/sites").json()[0]["name"]
    sid = next(s for s in grid.consumer.get(f"{API}/market/sessions").json() if s["kind"] == "day-ahead")["id"]
    consumer = grid.consumer.get(f"{API}/whoami").json()["tenant_id"]
    assert grid.operator.post(f"{API}/topups", json={"consumer": consumer, "amount_fen": 10_000},
                              headers={"Idempotency-Key": "top"}).status_code == 201
    ask = {"session": sid, "site": site, "resource_class": "intelligent", "start_slot": 0, "end_slot": 2,
           "units_per_slot": 8, "floor_fen": 137}
    assert grid.operator.post(f"{API}/market/asks", json=ask).status_code == 201
    bid = {"session": sid, "sites": [site], "resource_class": "intelligent", "start_slot": 0, "end_slot": 2,
           "quantity": 8, "rate_per_slot": 4, "limit_fen": 300}
    bid_id = grid.consumer.post(f"{API}/market/bids", json=bid).json()["id"]
    anon = TestClient(grid.client.app, raise_server_exceptions=False)
    anon.cookies.set(session.LANG, "en")
    data._memo.clear()  # the board is memoised per process for FRESH_S; another test's grid may be in it
    page = anon.get("/market")
    assert page.status_code == 200, page.text
    assert sid in page.text and "No session has cleared yet." in page.text
    assert page.text.count(f"<td>{site}</td>") >= 2  # offered in slots 0 and 1
    assert consumer not in page.text and bid_id not in page.text
    market.clear_session(grid.platform.db, sid, now=market.session_by_id(sid).gate_at + 1)
    data._memo.clear()
    page = anon.get("/market").text
    assert "8 unit-slots traded" in page and ">137<" in page  # the uniform price: the ask's floor
    assert consumer not in page and bid_id not in page and 'data-chart="lines"' in page
    # the consumer sees its own bid and contract; another consumer sees neither
    c, _ = signed_in(grid, grid.token("consumer"))
    c.cookies.set(session.LANG, "en")
    wallet = c.get("/console/wallet").text
    assert bid_id in wallet and sid in wallet and "No contract." not in wallet
    other = grid.new_consumer("other-co")
    token = other.headers["authorization"].split()[1]
    o, _ = signed_in(grid, token)
    o.cookies.set(session.LANG, "en")
    page = o.get("/console/wallet").text
    assert bid_id not in page and "No market order." in page and "No contract." in page
    # the provider (here the operator, who owns the site) sees its ask and what it sold
    p, _ = signed_in(grid, grid.token("operator"))
    p.cookies.set(session.LANG, "en")
    assert "No contract." not in p.get("/console/provider").text
