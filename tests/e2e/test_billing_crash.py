"""SIGKILL the platform at random points while usage is rated and periods settled: every usage record is
charged exactly once, and the ledger reconciles."""

from __future__ import annotations

import itertools
import random
import signal
import threading
import time
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LivePlatform

pytestmark = pytest.mark.e2e

JOBS = 8
ROUNDS = 6
PER_ROUND = 150  # usage records reported per round (spread over the jobs)
# A time-of-use book: a job held just before a dearer band is not priced above its hold a moment later (its
# hold is its dearest window over the next day, domain.price_horizon), so the test does not depend on the hour.
BOOK = {"entries": [{"resource_class": "general", "tier": "standard", "service_level": "standard",
                     "unit": "core_hour", "unit_price_fen": "1000.5",
                     "tou": {"province": "Gansu"}}]}


def _kill(live: LivePlatform) -> None:
    assert live.server is not None
    live.server.send_signal(signal.SIGKILL)
    live.server.wait()


def _post_quietly(client: httpx.Client, path: str, body: dict[str, Any]) -> None:
    try:
        client.post(path, json=body)
    except httpx.HTTPError:
        pass  # the platform died under us: the caller retries after the restart


def _setup(live: LivePlatform) -> tuple[list[dict[str, Any]], str]:
    op, agent = live.client(live.token("operator")), live.client(live.token("agent"))
    pool = {"name": "cpu", "resource_class": "general", "engine": "local", "cores": 512, "memory_gb": 64}
    assert agent.post("/agent/register", json={"pools": [pool]}).is_success
    assert op.post("/price-books", json=BOOK).status_code == 201
    op.put("/contracts/t-operator", json={"fee_bps": 700})
    with live.client() as c:
        consumer = c.get("/whoami").json()["tenant_id"]
        assert op.post("/topups", json={"consumer": consumer, "amount_fen": 10**9}).status_code == 201
        ids = [c.post("/jobs", json={"command": ["true"], "cores": 64}).json()["id"] for _ in range(JOBS)]
    tasks: list[dict[str, Any]] = []
    deadline = time.time() + 30
    while len(tasks) < JOBS and time.time() < deadline:
        tasks += agent.post("/agent/lease", json={"max_jobs": JOBS}).json()
        time.sleep(0.1)
    assert sorted(t["job_id"] for t in tasks) == sorted(ids)
    return tasks, consumer


def _usage(tasks: list[dict[str, Any]], round_no: int, t0: float) -> list[dict[str, Any]]:
    out = []
    for i in range(PER_ROUND):
        task = tasks[i % len(tasks)]
        seq = round_no * PER_ROUND + i
        # After the price book took effect; all rounds within the platform's clock skew ahead of now.  Each
        # record's wall time fits its window (plus the tolerance), each attempt's total fits its span.
        start = t0 + seq * 0.1
        out.append({"job_id": task["job_id"], "attempt": task["attempt"], "seq": seq, "pool": "cpu", "start": start,
                    "end": start + 0.1, "wall_s": 0.5 + (i % 4) * 0.05, "cpu_s": 1.0, "peak_memory_bytes": 1})
    return out


def test_platform_killed_while_rating_and_settling_charges_each_usage_once(live: LivePlatform) -> None:
    rng = random.Random(20261126)
    live.start_server(lease_s=120.0)
    tasks, consumer = _setup(live)
    t0 = time.time()
    reported: list[dict[str, Any]] = []
    for round_no in range(ROUNDS):
        batch = _usage(tasks, round_no, t0)
        reported += batch
        with live.client(live.token("agent")) as agent:
            _post_quietly(agent, "/agent/usage", {"records": batch})
        time.sleep(rng.uniform(0.0, 0.4))  # the control loop is rating now, or not yet, or done
        if round_no % 2 == 1:  # close a period, and kill while it may be half done
            with live.client(live.token("operator")) as op:
                last = [s["end"] for s in op.get("/settlements").json()]
                start = last[-1] if last else 0
                settler = threading.Thread(target=_post_quietly, args=(
                    op, "/settlements", {"start": start, "end": time.time() - 0.5}))
                settler.start()
                time.sleep(rng.uniform(0.0, 0.3))
                _kill(live)
                settler.join()
        else:
            _kill(live)
        live.start_server(lease_s=120.0)
        with live.client(live.token("agent")) as agent:  # the agent's outbox re-sends what it is not sure of
            assert agent.post("/agent/usage", json={"records": batch}).is_success
    with live.client(live.token("operator")) as op:  # and one period closed with nobody killing it
        last = [s["end"] for s in op.get("/settlements").json()]
        closed = op.post("/settlements", json={"start": last[-1] if last else 0, "end": time.time() - 0.5})
        assert closed.status_code == 201, closed.text
    _check(live, reported, consumer)


def _check(live: LivePlatform, reported: list[dict[str, Any]], consumer: str) -> None:
    keys = [f"usage:{u['job_id']}:{u['attempt']}:{u['seq']}" for u in reported]
    with live.client(live.token("operator")) as op:
        deadline = time.time() + 60
        while time.time() < deadline:
            charges = [t for t in op.get("/ledger/transfers", params={"limit": 10_000}).json() if t["kind"] == "charge"]
            if len(charges) >= len(keys):
                break
            time.sleep(0.2)
        charged = sorted(t["usage_key"] for t in charges)
        assert charged == sorted(keys), f"{len(charged)} charges for {len(keys)} usage records"
        assert len(set(charged)) == len(charged)
        reconciliation = op.get("/ledger/reconcile").json()
        assert reconciliation["ok"], reconciliation
        settlements = op.get("/settlements").json()
        assert settlements, "at least one period was settled"
        for earlier, later in itertools.pairwise(settlements):
            assert earlier["end"] == later["start"]  # contiguous, never overlapping
        for s in settlements:
            for c in s["consumers"]:
                flow = c["topups_fen"] - c["charged_fen"] + c["reversals_fen"] + c["adjustments_fen"]
                assert c["opening_fen"] + flow == c["closing_fen"]
        wallet = op.get(f"/wallets/{consumer}").json()
        paid = sum(-sum(int(leg.split()[-1]) for leg in t["postings"].split("; ")
                        if leg.split()[0] in (f"wallet:{consumer}", f"hold:{consumer}")) for t in charges)
        assert wallet["balance"]["fen"] + wallet["held"]["fen"] == 10**9 - paid
