"""The market end to end with real processes: a provider's ask, two consumers' bids, the clear, contracts,
the consumers' jobs in the reserved capacity at the contract price, spot work borrowing the idle part and
preempted when the owners come, the ledger reconciled and the statement's market lines.

Two stand-ins, both stated: the clear is run by the test (``services.market.clear_session``, what the
control loop runs once the gate has passed — the day-ahead gate is hours away), and the contract lines'
slot is then moved to now (delivery is the next day), so the live pass honours them in seconds.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update

from suanwang.domain.settlement import compute_settlement
from suanwang.services import market
from suanwang.store.db import Database
from suanwang.store.market_tables import MarketContractRow
from suanwang.store.sql_ledger import load_transfers
from suanwang.store.tables import JobEventRow
from tests.e2e.conftest import LivePlatform

pytestmark = pytest.mark.e2e
CORES = os.cpu_count() or 1  # the local agent's pool: this machine's cores; one contract unit is one core


def _consumer(live: LivePlatform, name: str) -> tuple[str, str]:
    with live.client(live.token("operator")) as op:
        tenant = op.post("/tenants", json={"name": name, "kind": "consumer"}).json()["id"]
        token = op.post("/tokens", json={"role": "consumer", "tenant_id": tenant}).json()["token"]
        assert op.post("/topups", json={"consumer": tenant, "amount_fen": 100_000},
                       headers={"Idempotency-Key": f"top-{name}"}).status_code == 201
    return tenant, token


def _wait(live: LivePlatform, token: str, job: str, state: str) -> dict[str, Any]:
    with live.client(token) as c:
        deadline = time.time() + 60
        while (j := c.get(f"/jobs/{job}").json())["state"] != state and time.time() < deadline:
            time.sleep(0.1)
    assert j["state"] == state, j
    return j  # type: ignore[no-any-return]


def test_contracts_clear_and_are_honoured_by_live_placement(live: LivePlatform, db_url: str) -> None:
    live.start_server()
    if CORES < 2:
        pytest.skip("two contract units need a pool of at least 2 cores")
    live.start_agent("a")
    c1, t1 = _consumer(live, "buyer-one")
    c2, t2 = _consumer(live, "buyer-two")
    _, spot_token = _consumer(live, "spotter")
    with live.client(live.token("operator")) as op:
        da = next(s for s in op.get("/market/sessions").json() if s["kind"] == "day-ahead")
        r = op.post("/market/asks", json={"session": da["id"], "site": "local", "resource_class": "general",
                                         "start_slot": 0, "end_slot": 1, "units_per_slot": 2,
                                         "floor_fen": 100})
        assert r.status_code == 201, r.text
    for token in (t1, t2):
        with live.client(token) as c:
            r = c.post("/market/bids", json={"session": da["id"], "sites": ["local"], "resource_class": "general",
                                             "start_slot": 0, "end_slot": 1, "quantity": 1, "rate_per_slot": 1,
                                             "limit_fen": 500})
            assert r.status_code == 201, r.text
    db = Database(db_url)
    assert market.clear_session(db, da["id"], now=da["gate_at"] + 1)
    now = time.time()
    with db.transaction() as s:
        s.execute(update(MarketContractRow).values(slot_start=now - 1, slot_end=now + 600))
    with live.client(t1) as c:
        (mine,) = c.get("/market/contracts").json()
        paid_at_clear = 100_000 - c.get(f"/wallets/{c1}").json()["balance"]["fen"]
    assert paid_at_clear > 0
    with live.client(spot_token) as c:  # spot work fills the pool: the free cores and both idle reserved ones
        spot = [c.post("/jobs", json={"command": ["sleep", "300"], "cores": 1, "memory_gb": 0.1,
                                      "service_level": "spot"}).json()["id"] for _ in range(CORES)]
    for j in spot:
        _wait(live, spot_token, j, "running")
    owners = []
    for token, contract in ((t1, mine["id"]), (t2, "")):  # one names its contract, the other is matched
        with live.client(token) as c:
            body = {"command": ["sleep", "2"], "cores": 1, "memory_gb": 0.1}  # both owners' jobs overlap
            body |= {"contract": contract} if contract else {}
            r = c.post("/jobs", json=body)
            assert r.status_code == 201, r.text
            owners.append((token, r.json()["id"]))
    for token, job in owners:
        assert _wait(live, token, job, "succeeded")["placement"]["contract"]
    with db.transaction() as s:
        preempted = set(s.scalars(select(JobEventRow.job_id).where(JobEventRow.job_id.in_(spot),
                                                                    JobEventRow.reason.like("preempted%"))))
    assert len(preempted) == 2  # each owner reclaimed one lent core, no more
    with live.client(t1) as c:
        assert 100_000 - c.get(f"/wallets/{c1}").json()["balance"]["fen"] == paid_at_clear  # nothing more
    with live.client(live.token("operator")) as op:
        assert op.get("/ledger/reconcile").json()["ok"] is True
        st = op.post("/settlements", json={"start": 0, "end": time.time()})
        assert st.status_code in (200, 201), st.text
    # The clear is booked at the gate (tomorrow): the statement of the period that holds it, as settle computes it.
    with db.transaction() as s:
        transfers = load_transfers(s, before=datetime.fromtimestamp(da["gate_at"] + 3600, UTC))
    period = compute_settlement(transfers, start=datetime.fromtimestamp(time.time(), UTC),
                                end=datetime.fromtimestamp(da["gate_at"] + 3600, UTC))
    charged = {m.account: -m.fen for m in period.market if m.item == "charge"}
    assert charged == {f"hold:{c1}": paid_at_clear, f"hold:{c2}": charged[f"hold:{c2}"]} and charged[f"hold:{c2}"] > 0
    assert sum(m.fen for m in period.market if m.item == "earn") > 0
    assert sum(m.fen for m in period.market) == 0  # no congestion here (no link): charges = sales + rounding
