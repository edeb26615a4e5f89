"""Staged replicas nobody needs are collected after a grace period; their storage is metered by the hour until
the collection was ordered and billed once per (transfer, generation, hour); staging again is a new charge.

On both databases, on a ManualClock: the platform's control loop and the routes read the same clock.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import func, select

from suanwang.clock import ManualClock
from suanwang.services import replica_gc
from suanwang.store.ledger_tables import PostingRow, TransferRow
from suanwang.store.tables import JobRow, ReplicaRow, StorageUsageRow
from tests.api.conftest import Grid
from tests.api.test_transfer_api import DATA, SHA, east_west_with_corpus

API = "/api/v1"
# DATA (10 kB = 1e-5 GB) and SHA come from the transfer API tests' corpus
H = 3600.0
PRICE = {"resource_class": "general", "tier": "standard", "service_level": "standard"}
BOOK = {"entries": [
    {**PRICE, "unit": "core_hour", "unit_price_fen": 10},
    {**PRICE, "unit": "gb_transfer", "unit_price_fen": 5_000_000},        # the 10 kB move: 50 fen
    {**PRICE, "unit": "gb_hour_storage", "unit_price_fen": 5_000_000}]}   # 10 kB held an hour: 50 fen


def _setup(grid: Grid, clock: ManualClock, grace_s: float) -> tuple[Any, Any, str]:
    grid.set_clock(clock)
    grid.platform.now = clock.time
    grid.platform.settings = dataclasses.replace(grid.platform.settings, replica_grace_s=grace_s)
    east, west, d = east_west_with_corpus(grid, BOOK, 10**7)
    return east, west, d.json()["id"]


def _job(grid: Grid) -> str:
    """A job only west can run (4 cores; east has 1), reading corpus: it needs corpus staged to west."""
    r = grid.consumer.post(f"{API}/jobs", json={"command": ["true"], "cores": 4, "memory_gb": 1, "duration_s": 60,
                                                "inputs": ["corpus"]})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _end(grid: Grid, job_id: str, clock: ManualClock) -> None:
    with grid.platform.db.transaction() as s:
        job = s.get(JobRow, job_id)
        job.state, job.finished_at = "succeeded", clock.time()


def _charges(grid: Grid, tid: str) -> dict[str, int]:
    """Ledger key → fen the consumer was charged, for every charge booked under the transfer's id."""
    with grid.platform.db.sessions() as s:
        rows = s.execute(select(TransferRow.key, func.sum(PostingRow.fen))
                         .join(PostingRow, PostingRow.transfer_key == TransferRow.key)
                         .where(TransferRow.key.like(f"usage:{tid}:%"), TransferRow.kind == "charge",
                                PostingRow.fen > 0).group_by(TransferRow.key))
        return {k: int(f) for k, f in rows}


def _replica(grid: Grid, ds: str) -> ReplicaRow:
    with grid.platform.db.sessions() as s:
        rep = s.get(ReplicaRow, (ds, "west"))
        assert rep is not None
        s.expunge(rep)
        return rep


def _stage(grid: Grid, east: Any, west: Any, generation: int) -> str:
    east.post(f"{API}/agent/transfers", json={"serve_url": "http://127.0.0.1:9"})
    [order] = west.post(f"{API}/agent/transfers", json={"serve_url": "http://127.0.0.1:8"}).json()["fetch"]
    assert order["generation"] == generation
    for _ in range(2):  # a repeated report (its answer lost) is the same one: billed once
        r = west.post(f"{API}/agent/transfers/{order['transfer_id']}/done",
                      json={"sha256": SHA, "seconds": 0.5, "generation": generation})
        assert r.status_code == 200 and r.json()["generation"] == generation, r.text
    return str(order["transfer_id"])


def test_a_staged_replica_is_collected_after_its_grace_and_its_storage_billed_for_the_hours_held(grid: Grid) -> None:
    clock = ManualClock()
    east, west, ds = _setup(grid, clock, grace_s=2 * H)
    job = _job(grid)
    grid.tick()
    tid = _stage(grid, east, west, 0)
    arrived = clock.time()
    assert _charges(grid, tid) == {f"usage:{tid}:0:0": 50}
    grid.tick()
    assert grid.consumer.get(f"{API}/jobs/{job}").json()["site"] == "west"

    clock.advance(2.5 * H)  # the job still runs: needed; two whole hours metered
    grid.tick()
    assert _replica(grid, ds).last_used_at == arrived + 2.5 * H
    _end(grid, job, clock)
    clock.advance(1.9 * H)  # 1.9 h since last needed: within the grace
    grid.tick()
    assert _replica(grid, ds).state == "present"
    assert west.post(f"{API}/agent/transfers", json={}).json()["delete"] == []

    clock.advance(0.2 * H)  # 2.1 h since last needed: collected, at arrival + 4.6 h
    grid.tick()
    rep = _replica(grid, ds)
    assert (rep.state, rep.gc_at, rep.metered_until) == ("deleting", arrived + 4.6 * H, arrived + 4.6 * H)
    assert west.post(f"{API}/agent/transfers", json={}).json()["delete"] == [{"dataset_id": ds, "generation": 0}]
    storage = {f"usage:{tid}:0:{n}": 50 for n in range(1, 5)} | {f"usage:{tid}:0:5": 30}  # 4 h + 0.6 h
    assert _charges(grid, tid) == {f"usage:{tid}:0:0": 50, **storage}

    # a job needing it while the agent has not deleted it yet waits, with why
    job2 = _job(grid)
    grid.tick()
    assert "being deleted as unused" in grid.consumer.get(f"{API}/jobs/{job2}").json()["placement"]["staging"]
    assert east.post(f"{API}/agent/replicas/{ds}/deleted", json={"generation": 0}).status_code == 404  # not its
    for _ in range(2):  # the agent deleted it; a repeated report changes nothing
        r = west.post(f"{API}/agent/replicas/{ds}/deleted", json={"generation": 0})
        assert r.status_code == 200 and r.json()["state"] == "gone", r.text
    clock.advance(10 * H)
    grid.tick()  # gone: no more storage; job2 needs it again → staged again, the transfer's generation 1
    assert _charges(grid, tid) == {f"usage:{tid}:0:0": 50, **storage}
    tid2 = _stage(grid, east, west, 1)
    assert tid2 == tid
    r = west.post(f"{API}/agent/transfers/{tid}/done", json={"sha256": SHA, "seconds": 0.5, "generation": 0})
    assert r.status_code == 200  # a late report of generation 0: nothing more
    assert _charges(grid, tid) == {f"usage:{tid}:0:0": 50, **storage, f"usage:{tid}:1:0": 50}
    clock.advance(H)
    grid.tick()
    assert _charges(grid, tid)[f"usage:{tid}:1:1"] == 50  # generation 1's first hour: a new charge
    assert _replica(grid, ds).generation == 1
    with grid.platform.db.sessions() as s:
        held = s.execute(select(StorageUsageRow.generation, func.count(), func.sum(StorageUsageRow.end
                                                                                   - StorageUsageRow.start))
                         .group_by(StorageUsageRow.generation).order_by(StorageUsageRow.generation)).all()
    assert [(g, n, round(sec, 6)) for g, n, sec in held] == [(0, 5, 4.6 * H), (1, 1, H)]


def test_a_repeated_sweep_after_a_crash_neither_loses_nor_doubles_an_hour(grid: Grid) -> None:
    clock = ManualClock()
    east, west, ds = _setup(grid, clock, grace_s=100 * H)
    _job(grid)
    grid.tick()
    tid = _stage(grid, east, west, 0)
    arrived = clock.time()
    clock.advance(10.5 * H)  # the platform was down: the first sweep after meters every hour missed
    grid.tick()
    assert len(_charges(grid, tid)) == 1 + 10
    with grid.platform.db.transaction() as s:  # as if the sweep had crashed before moving its mark
        s.get(ReplicaRow, (ds, "west")).metered_until = arrived + 3 * H
    for _ in range(2):
        with grid.platform.db.transaction() as s:
            out = replica_gc.sweep(s, now=clock.time(), grace_s=100 * H)
        assert (out.hours, out.charged) == (7 if _ == 0 else 0, 0)
    charges = _charges(grid, tid)
    assert len(charges) == 11 and sum(charges.values()) == 50 + 10 * 50
    with grid.platform.db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(StorageUsageRow)) == 10


def test_home_replicas_are_never_collected_and_agents_cannot_delete_them(grid: Grid) -> None:
    clock = ManualClock()
    east, _west, ds = _setup(grid, clock, grace_s=0.0)
    clock.advance(100 * H)
    grid.tick()
    with grid.platform.db.sessions() as s:
        assert s.get(ReplicaRow, (ds, "east")).state == "present"
        assert s.scalar(select(func.count()).select_from(StorageUsageRow)) == 0
    assert east.post(f"{API}/agent/replicas/{ds}/deleted", json={"generation": 0}).status_code == 404
    assert east.post(f"{API}/agent/transfers", json={}).json()["delete"] == []


def test_the_agents_stage_it_and_the_holding_agent_deletes_it_once_collected(grid: Grid, tmp_path: Any) -> None:
    """Real transfer workers (HTTP between them) against the in-process platform: staged, collected, deleted."""
    from suanwang.agent.transfer_worker import TransferWorker

    clock = ManualClock()
    east, west, ds = _setup(grid, clock, grace_s=H)
    east_w, west_w = TransferWorker(east, tmp_path / "east"), TransferWorker(west, tmp_path / "west")
    east_w.start(poll_s=None)
    try:
        (tmp_path / "upload").write_bytes(DATA)
        assert east_w.store.put_file(ds, tmp_path / "upload") == SHA
        job = _job(grid)
        grid.tick()
        east_w.poll_once()
        [done] = west_w.poll_once()
        assert done["state"] == "done" and west_w.store.path(ds).read_bytes() == DATA
        _end(grid, job, clock)
        clock.advance(H)
        grid.tick()
        assert _replica(grid, ds).state == "deleting" and west_w.store.has(ds)  # ordered, not yet done
        west_w.poll_once()
        assert not west_w.store.has(ds) and _replica(grid, ds).state == "gone"
        assert east_w.store.has(ds)  # the home copy stays
        assert west_w.report_held({ds: SHA}) == 0  # nothing left to report
    finally:
        east_w.stop()
        west_w.stop()


def test_a_runs_statement_lists_storage_apart_from_the_move(grid: Grid) -> None:
    clock = ManualClock()
    east, west, _ds = _setup(grid, clock, grace_s=100 * H)
    run = grid.consumer.post(f"{API}/workflows", json={"name": "f", "steps": [
        {"name": "train", "job": {"command": ["true"], "cores": 4, "memory_gb": 1, "duration_s": 60},
         "inputs": ["corpus"]}]})
    assert run.status_code == 201, run.text
    grid.tick()
    tid = _stage(grid, east, west, 0)
    clock.advance(2 * H)
    grid.tick()
    [step] = grid.consumer.get(f"{API}/workflows/{run.json()['id']}").json()["steps"]
    assert (step["transfers"], step["transfer_fen"], step["storage_fen"]) == ([tid], 50, 100)
