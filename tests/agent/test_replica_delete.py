"""The agent deletes the staged replicas the platform collected, and only them: a poll's ``delete`` orders."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from suanwang.agent.transfer_worker import TransferWorker

Orders = dict[str, list[dict[str, object]]]


def _worker(tmp_path: Path, orders: Orders) -> tuple[TransferWorker, list[tuple[str, object]]]:
    """A transfer worker whose platform is a fake that hands out ``orders`` and records the reports."""
    seen: list[tuple[str, object]] = []

    def platform(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        seen.append((request.url.path, body))
        if request.url.path.endswith("/agent/transfers"):
            return httpx.Response(200, json=orders)
        return httpx.Response(200, json={"state": "gone"})

    client = httpx.Client(base_url="http://platform", transport=httpx.MockTransport(platform))
    return TransferWorker(client, tmp_path / "west"), seen


def test_a_collected_replica_is_deleted_and_reported_and_nothing_else_is(tmp_path: Path) -> None:
    orders: Orders = {"fetch": [], "serve": [], "delete": [
        {"dataset_id": "d-staged", "generation": 2},
        {"dataset_id": "d-already-gone", "generation": 0},  # deleted before; the report's answer was lost
        {"dataset_id": "../outside", "generation": 0}]}  # not an id: no path outside the store is touched
    worker, seen = _worker(tmp_path, orders)
    try:
        root = worker.store.root
        (root / "d-staged").write_bytes(b"staged bytes")
        (root / "d-home").write_bytes(b"home bytes")
        outside = tmp_path / "outside"
        outside.write_bytes(b"not the store's")
        assert worker.poll_once() == []
        assert not (root / "d-staged").exists()
        assert (root / "d-home").read_bytes() == b"home bytes" and outside.read_bytes() == b"not the store's"
        reports = [(p, b) for p, b in seen if p.endswith("/deleted")]
        assert reports == [("/api/v1/agent/replicas/d-staged/deleted", {"generation": 2}),
                           ("/api/v1/agent/replicas/d-already-gone/deleted", {"generation": 0})]
    finally:
        worker.stop()
