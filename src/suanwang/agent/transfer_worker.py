"""The agent's transfer side: serve this site's datasets to other agents, fetch what the platform orders,
report verified arrivals, report the replicas this site holds, and delete staged ones the platform collected.

Runs beside the job loop (``suanwang agent --datasets-root DIR``) on its own thread and its own HTTP
port, so the job long-poll is untouched.  Each poll is one call (``POST /agent/transfers``); a fetch
that fails is reported and ordered again by the platform, and resumes from its partial file.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from suanwang.agent import outputs
from suanwang.agent.transfer import DatasetStore, Serving, TransferError, fetch, make_server, sha256_file

log = logging.getLogger(__name__)
API = "/api/v1"


class TransferWorker:
    """One site's transfer agent.  ``platform`` is an httpx client holding the agent's token and base URL."""

    def __init__(self, platform: httpx.Client, root: Path, *, host: str = "127.0.0.1", port: int = 0,
                 advertise: str = "", rate_bps: int | None = None) -> None:
        self.platform = platform
        self.store = DatasetStore(root)
        self.serving = Serving()
        if rate_bps is None:  # SUANWANG_TRANSFER_RATE_BPS: cap what this agent serves, bytes/s per transfer
            rate_bps = int(os.environ.get("SUANWANG_TRANSFER_RATE_BPS", "0") or 0)
        self.server = make_server(self.store, self.serving, host, port, rate_bps=max(0, rate_bps))
        self.serve_url = advertise or f"http://{host}:{self.server.server_address[1]}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, poll_s: float | None = 1.0) -> None:
        """Serve, and (unless ``poll_s`` is None: the caller drives ``poll_once``) poll every ``poll_s``."""
        jobs: list[tuple[Any, tuple[Any, ...]]] = [(self.server.serve_forever, ())]
        if poll_s is not None:
            jobs.append((self._loop, (poll_s,)))
        for target, args in jobs:
            t = threading.Thread(target=target, args=args, daemon=True, name="suanwang-transfer")
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        if self._threads:  # shutdown() waits for serve_forever: only when it runs
            self.server.shutdown()
        self.server.server_close()

    def _loop(self, poll_s: float) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except (httpx.HTTPError, OSError) as exc:  # platform away: the next poll retries
                log.warning("transfer poll failed: %s", exc)
            self._stop.wait(poll_s)

    def report_held(self, known: dict[str, str]) -> int:
        """Tell the platform which of ``known`` (dataset id → sha256) this site holds, verified by hashing."""
        held = [{"dataset_id": d, "sha256": sha} for d, sha in sorted(known.items())
                if self.store.has(d) and sha256_file(self.store.path(d)) == sha]
        if held:
            _ok(self.platform.post(f"{API}/agent/replicas", json={"held": held}))
        return len(held)

    def poll_once(self) -> list[dict[str, Any]]:
        """One poll: allow the serves, run the fetches (one after another), report each; the reports made."""
        orders = _ok(self.platform.post(f"{API}/agent/transfers", json={"serve_url": self.serve_url})).json()
        for s in orders["serve"]:
            self.serving.allow(s["dataset_id"], s["secret"])
        done: list[dict[str, Any]] = []
        for f in orders["fetch"]:
            start = time.perf_counter()
            try:
                fetch(f["url"], self.store, dataset_id=f["dataset_id"], transfer_id=f["transfer_id"],
                      sha256=f["sha256"], size_bytes=f["size_bytes"], secret=f["secret"])
            except (TransferError, httpx.HTTPError, OSError) as exc:
                log.warning("transfer %s failed: %s", f["transfer_id"], exc)
                self.platform.post(f"{API}/agent/transfers/{f['transfer_id']}/failed",
                                   json={"reason": str(exc)[:2000] or type(exc).__name__})
                continue
            body = {"sha256": f["sha256"], "seconds": round(time.perf_counter() - start, 6),
                    "generation": f.get("generation")}
            done.append(_ok(self.platform.post(f"{API}/agent/transfers/{f['transfer_id']}/done", json=body)).json())
        self.delete_collected(orders.get("delete", []))
        return done

    def delete_collected(self, orders: list[dict[str, Any]]) -> int:
        """Delete the staged replicas the platform collected as unused, and report each; the number deleted.

        Only ``<root>/<dataset id>`` (an id checked against the store's pattern, so no path escapes the root);
        a file already gone counts as deleted, so a repeated order, or a report whose answer was lost, ends the
        same way.
        """
        n = 0
        for d in orders:
            try:
                self.store.path(str(d["dataset_id"])).unlink(missing_ok=True)
                outputs.forget(self.store.root, str(d["dataset_id"]))  # and its unpacked copy, if a directory
            except (TransferError, OSError) as exc:
                log.warning("deleting collected replica %s failed: %s", d.get("dataset_id"), exc)
                continue
            _ok(self.platform.post(f"{API}/agent/replicas/{d['dataset_id']}/deleted",
                                   json={"generation": int(d["generation"])}))
            n += 1
        return n


def _ok(resp: httpx.Response) -> httpx.Response:
    if resp.status_code >= 400:
        raise httpx.HTTPStatusError(f"{resp.status_code}: {resp.text[:300]}", request=resp.request, response=resp)
    return resp
