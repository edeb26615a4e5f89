"""The market end to end with real processes and a real session: a provider's ask, two consumers' bids (one
whose data sits across a narrow link), the control loop clearing the session at its gate, contracts, the
consumers' jobs in the reserved capacity at the contract price, spot work borrowing the idle part and
preempted when the owners come, the buyers credited half of what the lent spot work paid, the ledger
reconciled and the statement's market lines (contract charges, congestion rent, lent credit).

The server runs a short intraday schedule (platform settings ``market_intraday_*``: a gate every 15 s, one
120 s slot starting at the gate), so the session's gate closes and its slot starts within seconds; nothing
is moved by hand.
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from suanwang.store.db import Database
from suanwang.store.tables import JobEventRow
from tests.e2e.conftest import LivePlatform

pytestmark = pytest.mark.e2e
CORES = os.cpu_count() or 1  # the local agent's pool: this machine's cores; one contract unit is one core
SCHEDULE = {"SUANWANG_MARKET_INTRADAY_EVERY_S": "15", "SUANWANG_MARKET_INTRADAY_SLOT_S": "120",
            "SUANWANG_MARKET_INTRADAY_SLOTS": "1"}
PRICE = 36_000  # fen per core-hour (10 fen a core-second), standard and spot alike
BOOK = {"entries": [{"resource_class": "general", "tier": "standard", "service_level": level, "unit": "core_hour",
                     "unit_price_fen": PRICE} for level in ("standard", "spot")]}


def _consumer(live: LivePlatform, name: str, fen: int = 100_000) -> tuple[str, str]:
    with live.client(live.token("operator")) as op:
        tenant = op.post("/tenants", json={"name": name, "kind": "consumer"}).json()["id"]
        token = op.post("/tokens", json={"role": "consumer", "tenant_id": tenant}).json()["token"]
        assert op.post("/topups", json={"consumer": tenant, "amount_fen": fen},
                       headers={"Idempotency-Key": f"top-{name}"}).status_code == 201
    return tenant, token


def _wait(live: LivePlatform, token: str, job: str, state: str) -> dict[str, Any]:
    with live.client(token) as c:
        deadline = time.time() + 60
        while (j := c.get(f"/jobs/{job}").json())["state"] != state and time.time() < deadline:
            time.sleep(0.1)
    assert j["state"] == state, j
    return j  # type: ignore[no-any-return]


def _session_with_time_to_post(op: httpx.Client, margin_s: float = 8.0) -> dict[str, Any]:
    """The next intraday session whose gate is at least ``margin_s`` away (posting takes well under that)."""
    while True:
        session = next(s for s in op.get("/market/sessions").json() if s["kind"] == "intraday")
        wait = session["gate_at"] - time.time()
        if wait >= margin_s:
            return session  # type: ignore[no-any-return]
        time.sleep(max(wait, 0) + 0.2)


def _lent_credits(op: httpx.Client) -> dict[str, int]:
    """Lent-capacity credits booked so far, per buyer wallet (from the ledger's transfers)."""
    out: dict[str, int] = {}
    for t in op.get("/ledger/transfers", params={"limit": 10_000}).json():
        if ":lent:" in t["key"]:
            for leg in t["postings"].split("; "):  # "wallet:c +25; earnings:p -25"
                account, fen = leg.rsplit(" ", 1)
                if account.startswith("wallet:"):
                    out[account] = out.get(account, 0) + int(fen)
    return out


def test_a_real_session_clears_at_its_gate_prices_congestion_and_its_contracts_are_honoured(
        live: LivePlatform, db_url: str) -> None:
    live.start_server(env=SCHEDULE)
    if CORES < 2:
        pytest.skip("two contract units need a pool of at least 2 cores")
    live.start_agent("a")  # site "local"
    c1, t1 = _consumer(live, "buyer-one")
    c2, t2 = _consumer(live, "buyer-two")
    _, spot_token = _consumer(live, "spotter", 10**7)
    with live.client(live.token("operator")) as op:
        assert op.post("/price-books", json=BOOK).status_code == 201
        assert op.post("/sites", json={"name": "remote", "region": "cn-west"}).status_code == 201
        # 0.07 Gbit/s x 120 s / 8 = 1.05: one whole GB a slot crosses local-remote
        r = op.post("/links", json={"a": "local", "b": "remote", "latency_ms": 30, "bandwidth_gbps": 0.07})
        assert r.status_code == 201, r.text
        intraday = _session_with_time_to_post(op)
        sid = intraday["id"]
        assert intraday["slot_s"] == 120 and intraday["first_slot_at"] == intraday["gate_at"]
        r = op.post("/market/asks", json={"session": sid, "site": "local", "resource_class": "general",
                                         "start_slot": 0, "end_slot": 1, "units_per_slot": 3, "floor_fen": 100})
        assert r.status_code == 201, r.text
    bid = {"session": sid, "sites": ["local"], "resource_class": "general", "start_slot": 0, "end_slot": 1,
           "limit_fen": 500}
    with live.client(t1) as c:  # buyer one: one unit, data local
        r = c.post("/market/bids", json=bid | {"quantity": 1, "rate_per_slot": 1})
        assert r.status_code == 201, r.text
    with live.client(t2) as c:  # buyer two wants two units but its data is at remote: 1 GB a unit over the link
        r = c.post("/market/bids", json=bid | {"quantity": 2, "rate_per_slot": 2, "data_site": "remote",
                                               "data_gb_per_unit": 1})
        assert r.status_code == 201, r.text
    with live.client(t1) as c:  # the control loop clears the session at its gate (no hand-run clear)
        deadline = intraday["gate_at"] + 60
        while (res := c.get(f"/market/sessions/{sid}/result")).status_code == 404 and time.time() < deadline:
            time.sleep(0.2)
        assert res.status_code == 200, res.text
        result = res.json()
    assert result["congestion"] and all(p["price_cf"] > 0 for p in result["congestion"])  # the link binds
    with live.client(t2) as c:
        (mine2,) = c.get("/market/contracts").json()
        assert mine2["units"] == 1  # the link let one unit's data through, not two
    with live.client(t1) as c:
        (mine,) = c.get("/market/contracts").json()
        paid_at_clear = 100_000 - c.get(f"/wallets/{c1}").json()["balance"]["fen"]
    assert paid_at_clear > 0 and mine["slot_start"] <= time.time() < mine["slot_end"]  # in force now
    with live.client(spot_token) as c:  # spot work fills the pool: the free cores and both idle reserved ones
        spot = [c.post("/jobs", json={"command": ["sleep", "300"], "cores": 1, "memory_gb": 0.1, "duration_s": 60,
                                      "service_level": "spot"}).json()["id"] for _ in range(CORES)]
    for j in spot:
        _wait(live, spot_token, j, "running")
    time.sleep(2)  # the lent spot work runs a while in the reserved cores
    owners = []
    for token, contract in ((t1, mine["id"]), (t2, "")):  # one names its contract, the other is matched
        with live.client(token) as c:
            body = {"command": ["sleep", "2"], "cores": 1, "memory_gb": 0.1, "duration_s": 10}
            body |= {"contract": contract} if contract else {}
            r = c.post("/jobs", json=body)
            assert r.status_code == 201, r.text
            owners.append((token, r.json()["id"]))
    for token, job in owners:
        assert _wait(live, token, job, "succeeded")["placement"]["contract"]
    db = Database(db_url)
    with db.transaction() as s:
        preempted = set(s.scalars(select(JobEventRow.job_id).where(JobEventRow.job_id.in_(spot),
                                                                    JobEventRow.reason.like("preempted%"))))
    assert len(preempted) == 2  # each owner reclaimed one lent core, no more
    with live.client(live.token("operator")) as op:
        deadline = time.time() + 60  # the preempted attempts' last usage is reported, rated, then credited
        while set(credits := _lent_credits(op)) != {f"wallet:{c1}", f"wallet:{c2}"} and time.time() < deadline:
            time.sleep(0.5)
        assert set(credits) == {f"wallet:{c1}", f"wallet:{c2}"} and all(v > 0 for v in credits.values())
        for j in spot:  # stop the spot work: its charges end, so the balances below hold still
            op.post(f"/jobs/{j}/cancel")
    with live.client(t1) as c:  # the owner's job cost nothing more (paid at the clear); the credit came back
        deadline = time.time() + 30  # once its job's hold is released (after its last usage is rated)
        while (w := c.get(f"/wallets/{c1}").json())["held"]["fen"] and time.time() < deadline:
            time.sleep(0.2)
        assert w["held"]["fen"] == 0, w
        balance = w["balance"]["fen"]
    with live.client(live.token("operator")) as op:
        credits = _lent_credits(op)
        assert 100_000 - balance == paid_at_clear - credits[f"wallet:{c1}"]
        assert op.get("/ledger/reconcile").json()["ok"] is True
        st = op.post("/settlements", json={"start": 0, "end": time.time()})
        assert st.status_code in (200, 201), st.text
    market = [m for m in st.json()["market"] if m["session"] == sid or m["item"] == "lent"]
    charged = {m["account"]: -m["fen"] for m in market if m["item"] == "charge"}
    assert set(charged) == {f"hold:{c1}", f"hold:{c2}"} and charged[f"hold:{c1}"] == paid_at_clear
    assert sum(m["fen"] for m in market if m["item"] == "earn") > 0
    rent = sum(m["fen"] for m in market if m["item"] == "congestion")
    assert rent > 0  # the congestion rent, on the statement, to the links' owners
    assert {m["account"] for m in market if m["item"] == "lent"} >= {f"wallet:{c1}", f"wallet:{c2}"}
    assert sum(m["fen"] for m in market if m["item"] != "lent") == 0  # charges = sales + congestion + rounding
