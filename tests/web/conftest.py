"""A live grid for the browser tests: platform and agent processes, sites with coordinates, links, price
books, money and four roles' tokens; and Debian's Chromium driven by Playwright (never a downloaded one)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import grid  # noqa: F401  (the in-process platform, for test_console_http.py)
from tests.e2e.conftest import LivePlatform, _stop, free_port

CHROMIUM = "/usr/bin/chromium"
SHOTS = os.environ.get("SUANWANG_CONSOLE_SHOTS", "")  # a folder: the tests also write screenshots there


class SlowStartPlatform(LivePlatform):
    """The e2e platform, given three minutes to answer /health (on a loaded two-core box start-up takes >60 s)."""

    start_timeout_s = 180.0


@dataclass
class Console:
    live: LivePlatform
    tokens: dict[str, str]
    tenants: dict[str, str]

    @property
    def url(self) -> str:
        return self.live.url

    def api(self, role: str) -> Any:
        return self.live.client(self.tokens[role])


def _made(r: Any) -> dict[str, Any]:
    assert r.status_code in (200, 201), r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def console() -> Iterator[Console]:
    env_backup = os.environ.pop("SUANWANG_DATABASE_URL", None)
    root = Path(tempfile.mkdtemp(prefix="suanwang-console-"))
    live = SlowStartPlatform(url=f"http://127.0.0.1:{free_port()}", data_dir=root, db_url=f"sqlite:///{root}/grid.db")
    try:
        live.start_server()
        live.start_agent("a")
        tokens = {"operator": live.token("operator"), "consumer": live.token("consumer")}
        tenants: dict[str, str] = {}
        with live.client(tokens["operator"]) as op:
            for name, kind in (("acme-lab", "consumer"), ("qingyang-dc", "provider"), ("audit-office", "auditor")):
                t = _made(op.post("/tenants", json={"name": name, "kind": kind}))
                tenants[kind] = t["id"]
                tokens["consumer_b" if kind == "consumer" else kind] = _made(
                    op.post("/tokens", json={"role": kind, "tenant_id": t["id"]}))["token"]
            with live.client(tokens["consumer"]) as a:
                tenants["consumer_a"] = _made(a.get("/whoami"))["tenant_id"]
            for site in ({"name": "wuhu", "province": "Anhui", "lat": 31.3, "lon": 118.4, "green_share": 0.2},
                         {"name": "zhongwei", "province": "Ningxia", "lat": 37.5, "lon": 105.2, "green_share": 0.5}):
                _made(op.post("/sites", json={**site, "region": "east-data-west"}))
            with live.client(tokens["provider"]) as pv:
                _made(pv.post("/sites", json={"name": "qingyang", "province": "Gansu", "lat": 35.7, "lon": 107.6,
                                              "green_share": 0.6, "region": "east-data-west"}))
            for a, b, ms, gbps in (("qingyang", "wuhu", 28.0, 100.0), ("zhongwei", "wuhu", 30.0, 40.0)):
                _made(op.post("/links", json={"a": a, "b": b, "latency_ms": ms, "bandwidth_gbps": gbps}))
            _made(op.post("/price-books", json={"entries": [
                {"resource_class": "general", "unit_price_fen": "100", "tou": {"province": "Gansu"}}]}))
            for consumer in (tenants["consumer_a"], tenants["consumer"]):
                _made(op.post("/topups", json={"consumer": consumer, "amount_fen": 1_000_000}))
        yield Console(live, tokens, tenants)
    finally:
        for proc in reversed(live.procs):
            _stop(proc)
        if env_backup is not None:
            os.environ["SUANWANG_DATABASE_URL"] = env_backup


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium fonts-noto-cjk; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()
