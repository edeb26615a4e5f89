"""Staging through the API: a step placed away from its input waits, a transfer is ordered between the two
sites' agents, its completion is verified and billed once, and explain shows predicted vs measured time."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import func, select

from suanwang.store.ledger_tables import PostingRow, TransferRow
from tests.api.conftest import Grid

API = "/api/v1"
DATA = b"east data " * 1000
SHA = hashlib.sha256(DATA).hexdigest()
BOOK = {"entries": [
    {"resource_class": "general", "tier": "standard", "service_level": "standard", "unit": "core_hour",
     "unit_price_fen": 10},
    {"resource_class": "general", "tier": "standard", "service_level": "standard", "unit": "gb_transfer",
     "unit_price_fen": 5_000_000}]}  # 50,000 yuan per GB: DATA (10 kB) costs 50 fen


def _site(grid: Grid, name: str, cores: int, region: str = "cn") -> Any:
    op = grid.operator
    assert op.post(f"{API}/sites", json={"name": name, "region": region}).status_code == 201
    me = op.get(f"{API}/whoami").json()["tenant_id"]
    tok = op.post(f"{API}/tokens", json={"role": "agent", "tenant_id": me, "site": name}).json()["token"]
    agent = grid.as_(tok)
    r = agent.post(f"{API}/agent/register", json={"pools": [
        {"name": "cpu", "resource_class": "general", "engine": "local", "cores": cores, "memory_gb": 16}]})
    assert r.status_code == 200, r.text
    return agent


def east_west_with_corpus(grid: Grid, book: dict, topup_fen: int) -> tuple[Any, Any, Any]:
    """Sites east (1 core) and west (8) joined by a link, ``book`` in force, the consumer topped up, and the
    dataset ``corpus`` (DATA) registered at east: the agents of both sites and the dataset's answer."""
    east, west = _site(grid, "east", 1), _site(grid, "west", 8)
    assert grid.operator.post(f"{API}/links", json={"a": "east", "b": "west", "latency_ms": 30,
                                                    "bandwidth_gbps": 10}).status_code == 201
    assert grid.operator.post(f"{API}/price-books", json=book).status_code == 201
    consumer = grid.consumer.get(f"{API}/whoami").json()["tenant_id"]
    assert grid.operator.post(f"{API}/topups", json={"consumer": consumer, "amount_fen": topup_fen},
                              headers={"Idempotency-Key": "t1"}).status_code == 201
    d = grid.consumer.post(f"{API}/datasets", json={"name": "corpus", "size_bytes": len(DATA), "sha256": SHA,
                                                    "sites": ["east"]})
    assert d.status_code == 201, d.text
    return east, west, d


def _setup(grid: Grid):  # type: ignore[no-untyped-def]
    east, west, d = east_west_with_corpus(grid, BOOK, 10**6)
    run = grid.consumer.post(f"{API}/workflows", json={"name": "f", "steps": [
        {"name": "train", "job": {"command": ["true"], "cores": 4, "memory_gb": 1, "duration_s": 60},
         "inputs": ["corpus"]}]})  # 4 cores: only west can run it
    assert run.status_code == 201, run.text
    return east, west, d.json(), run.json()


def test_a_step_at_west_waits_for_its_input_staged_from_east_and_is_billed_once(grid: Grid) -> None:
    east, west, ds, run = _setup(grid)
    job_id = run["steps"][0]["job_id"]
    grid.tick()
    job = grid.consumer.get(f"{API}/jobs/{job_id}").json()
    assert job["state"] == "pending" and "staging corpus@1 from east" in job["placement"]["staging"]
    assert west.post(f"{API}/agent/transfers", json={}).json() == {"fetch": [], "serve": [], "delete": []}  # east away
    serve = east.post(f"{API}/agent/transfers", json={"serve_url": "http://127.0.0.1:9"}).json()["serve"]
    [order] = west.post(f"{API}/agent/transfers", json={"serve_url": "http://127.0.0.1:8"}).json()["fetch"]
    assert (order["transfer_id"], order["secret"]) == (serve[0]["transfer_id"], serve[0]["secret"])
    assert order["url"] == f"http://127.0.0.1:9/datasets/{ds['id']}" and order["sha256"] == SHA
    other = grid.new_consumer("other")
    assert other.get(f"{API}/transfers").json() == []
    tid = order["transfer_id"]
    assert east.post(f"{API}/agent/transfers/{tid}/done", json={"sha256": SHA, "seconds": 0.5}).status_code == 404
    assert west.post(f"{API}/agent/transfers/{tid}/done", json={"sha256": "0" * 64, "seconds": 0.5}).status_code == 422
    for _ in range(2):  # a repeated report (its answer was lost) changes nothing
        r = west.post(f"{API}/agent/transfers/{tid}/done", json={"sha256": SHA, "seconds": 0.5})
        assert r.status_code == 200 and r.json()["state"] == "done"
    with grid.platform.db.sessions() as s:
        charges = list(s.scalars(select(TransferRow).where(TransferRow.key == f"usage:{tid}:0:0")))
        moved = s.scalar(select(func.sum(PostingRow.fen)).where(PostingRow.transfer_key == f"usage:{tid}:0:0",
                                                                  PostingRow.fen > 0))
    assert len(charges) == 1 and charges[0].kind == "charge" and moved == 50
    reps = sorted(x["site"] for x in grid.consumer.get(f"{API}/datasets/{ds['id']}").json()["replicas"])
    assert reps == ["east", "west"]
    grid.tick()
    job = grid.consumer.get(f"{API}/jobs/{job_id}").json()
    assert (job["state"], job["site"]) == ("placed", "west")
    explain = grid.consumer.get(f"{API}/jobs/{job_id}/explain").json()
    [t] = explain["transfers"]
    assert t["measured_s"] == 0.5 and t["predicted_s"] > 0.03  # 30 ms latency + 10 kB at 10 Gb/s
    step = grid.consumer.get(f"{API}/workflows/{run['id']}").json()["steps"][0]
    assert (step["site"], step["transfers"], step["transfer_fen"]) == ("west", [tid], 50)  # the run's statement line


def test_a_source_offline_keeps_the_step_waiting_with_a_reason(grid: Grid) -> None:
    _east, _west, _ds, run = _setup(grid)
    from suanwang.store.tables import SiteRow

    with grid.platform.db.transaction() as s:
        s.get(SiteRow, "east").online = False
    grid.tick()
    job = grid.consumer.get(f"{API}/jobs/{run['steps'][0]['job_id']}").json()
    assert job["state"] == "pending"
    assert "held only at east, and no holding site's agent is online" in job["placement"]["staging"]


def test_two_agents_move_the_bytes_over_http_and_the_step_starts(grid: Grid, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The agents' transfer workers (real HTTP between them, ranges and hash) against the in-process platform."""
    from suanwang.agent.transfer_worker import TransferWorker

    east, west, ds, run = _setup(grid)
    east_w, west_w = TransferWorker(east, tmp_path / "east"), TransferWorker(west, tmp_path / "west")
    east_w.start(poll_s=None)  # serve only: its polls are driven here
    try:
        src = tmp_path / "upload"
        src.write_bytes(DATA)
        assert east_w.store.put_file(ds["id"], src) == SHA
        assert east_w.report_held({ds["id"]: SHA}) == 1
        grid.tick()  # orders the transfer
        cut = len(DATA) // 2  # a receiver killed mid-transfer left half a file: the fetch resumes from it
        west_w.store.partial_path(ds["id"], grid.consumer.get(f"{API}/transfers").json()[0]["id"]).write_bytes(
            DATA[:cut])
        east_w.poll_once()
        [report] = west_w.poll_once()
        assert report["state"] == "done" and west_w.store.path(ds["id"]).read_bytes() == DATA
        assert west_w.poll_once() == []  # nothing left to fetch
        grid.tick()
        job = grid.consumer.get(f"{API}/jobs/{run['steps'][0]['job_id']}").json()
        assert (job["state"], job["site"]) == ("placed", "west")
    finally:
        east_w.stop()
        west_w.stop()
