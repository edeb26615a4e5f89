"""The market over HTTP on SQLite and PostgreSQL: post, bad input by field, 402, public data, clear, result."""

from __future__ import annotations

import json
import time

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanwang.services import market
from tests.api.conftest import Grid

API = "/api/v1"


def _setup(grid: Grid) -> tuple[str, str, str]:
    grid.register([{"name": "gpu", "resource_class": "intelligent", "engine": "local", "cores": 64,
                    "memory_gb": 256, "devices": 8, "device_model": "H800"}])
    site = grid.operator.get(f"{API}/sites").json()[0]["name"]
    session = next(s for s in grid.consumer.get(f"{API}/market/sessions").json() if s["kind"] == "day-ahead")
    consumer = grid.consumer.get(f"{API}/whoami").json()["tenant_id"]
    r = grid.operator.post(f"{API}/topups", json={"consumer": consumer, "amount_fen": 10_000},
                           headers={"Idempotency-Key": "top"})
    assert r.status_code == 201, r.text
    return site, session["id"], consumer


def test_orders_clear_and_the_public_sees_prices_but_not_who(grid: Grid) -> None:
    site, sid, consumer = _setup(grid)
    ask = {"session": sid, "site": site, "resource_class": "intelligent", "start_slot": 0, "end_slot": 2,
           "units_per_slot": 8, "floor_fen": 100}
    r = grid.operator.post(f"{API}/market/asks", json=ask)
    assert r.status_code == 201, r.text
    bid = {"session": sid, "sites": [site], "resource_class": "intelligent", "start_slot": 0, "end_slot": 2,
           "quantity": 8, "rate_per_slot": 4, "limit_fen": 300}
    r = grid.consumer.post(f"{API}/market/bids", json=bid)
    assert r.status_code == 201, r.text
    assert grid.consumer.get(f"{API}/wallet").json()["balance"]["fen"] == 10_000 - 8 * 300  # the hold
    public = TestClient(grid.client.app, raise_server_exceptions=False).get(f"{API}/market/data/{sid}")
    assert public.status_code == 200
    assert public.json()["offered"][0]["units"] == 8 and consumer not in public.text
    gate = market.session_by_id(sid).gate_at
    assert market.clear_session(grid.platform.db, sid, now=gate + 1) is True
    result = grid.consumer.get(f"{API}/market/sessions/{sid}/result").json()
    assert result["bids"][0]["filled"] == 8 and result["prices"][0]["price_cf"] == 10_000
    assert grid.consumer.get(f"{API}/wallet").json()["balance"]["fen"] == 10_000 - 8 * 100
    contracts = grid.consumer.get(f"{API}/market/contracts").json()
    assert sum(c["units"] for c in contracts) == 8
    other = grid.new_consumer("other-co")
    assert other.get(f"{API}/market/contracts").json() == []
    assert other.get(f"{API}/market/sessions/{sid}/result").json()["bids"] == []


def test_bad_bids_are_4xx_naming_the_field_and_write_nothing(grid: Grid) -> None:
    site, sid, _ = _setup(grid)
    base = {"session": sid, "sites": [site], "resource_class": "intelligent", "start_slot": 0, "end_slot": 2,
            "quantity": 8, "rate_per_slot": 4, "limit_fen": 300}
    cases = [({"quantity": 0}, 422, "quantity"), ({"quantity": -1}, 422, "quantity"),
             ({"quantity": 2**70}, 422, "quantity"), ({"limit_fen": 1.5}, 422, "limit_fen"),
             ({"start_slot": 3, "end_slot": 1}, 422, "end_slot"), ({"sites": ["atlantis"]}, 422, "site"),
             ({"resource_class": "psychic"}, 422, "resource_class"), ({"limit_fen": 10**13}, 422, "limit_fen"),
             ({"session": "da-2020-01-01"}, 409, "gate closed"), ({"quantity": 10_000, "rate_per_slot": 5000}, 402,
                                                                  "hold of limit x quantity")]
    for change, status, word in cases:
        r = grid.consumer.post(f"{API}/market/bids", json={**base, **change})
        assert r.status_code == status, (change, r.text)
        assert word in r.text, (change, r.text)
    assert grid.consumer.get(f"{API}/market/orders").json() == []
    assert grid.consumer.get(f"{API}/wallet").json()["balance"]["fen"] == 10_000
    assert grid.consumer.post(f"{API}/market/asks", json={**base}).status_code == 403


_scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**80, 2**80), st.floats(), st.text(max_size=30),
                    st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=3), st.none(),
                                                                               max_size=2))
_OPEN = market.sessions_json(time.time())[0]["id"]  # the day-ahead session open now: fuzz past the first check
_VALID = {"session": st.just(_OPEN), "resource_class": st.just("intelligent"), "site": st.just("local"),
          "sites": st.just(["local"]), "start_slot": st.integers(0, 30), "end_slot": st.integers(-1, 30)}
_FIELDS = ("session", "site", "sites", "resource_class", "start_slot", "end_slot", "units_per_slot", "floor_fen",
           "quantity", "rate_per_slot", "limit_fen", "all_or_nothing", "data_site", "data_gb_per_unit", "bogus")
_bodies = st.fixed_dictionaries({}, optional={k: st.one_of(_VALID[k], _scalar) if k in _VALID else _scalar
                                              for k in _FIELDS})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(body=_bodies, side=st.sampled_from(["asks", "bids"]))
def test_no_order_body_however_odd_answers_5xx(grid: Grid, body: dict[str, object], side: str) -> None:
    client = grid.operator if side == "asks" else grid.consumer
    r = client.post(f"{API}/market/{side}", content=json.dumps(body, allow_nan=True),
                    headers={"Content-Type": "application/json"})
    assert r.status_code < 500, (body, r.text)
