"""An in-process platform with a TestClient; the control loop is stepped by hand (``grid.tick()``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from suanwang.api.app import create_app
from suanwang.clock import Clock
from suanwang.services.bootstrap import bootstrap
from suanwang.services.platform import Platform, Settings
from suanwang.store.db import Database


@dataclass
class Grid:
    """The platform under test and clients holding each role's token."""

    platform: Platform
    client: TestClient
    data_dir: Path

    def token(self, name: str) -> str:
        return (self.data_dir / f"{name}.token").read_text().strip()

    def as_(self, token: str) -> TestClient:
        c = TestClient(self.client.app, raise_server_exceptions=False)
        c.headers["Authorization"] = f"Bearer {token}"
        return c

    @property
    def operator(self) -> TestClient:
        return self.as_(self.token("operator"))

    @property
    def consumer(self) -> TestClient:
        return self.as_(self.token("consumer"))

    @property
    def agent(self) -> TestClient:
        return self.as_(self.token("agent"))

    def new_consumer(self, name: str) -> TestClient:
        t = self.operator.post("/api/v1/tenants", json={"name": name, "kind": "consumer"}).json()
        tok = self.operator.post("/api/v1/tokens", json={"role": "consumer", "tenant_id": t["id"]}).json()
        return self.as_(tok["token"])

    def register(self, pools: list[dict[str, Any]] | None = None) -> None:
        pools = pools or [{"name": "cpu", "resource_class": "general", "engine": "local", "cores": 8, "memory_gb": 32}]
        r = self.agent.post("/api/v1/agent/register", json={"pools": pools})
        assert r.status_code == 200, r.text

    def tick(self) -> None:
        self.platform.tick(reap=True)

    def set_clock(self, clock: Clock) -> None:
        """Give the routes another clock (``create_app``'s): a test moves time instead of sleeping."""
        self.client.app.state.clock = clock  # type: ignore[attr-defined]


@pytest.fixture
def grid(db: Database, tmp_path: Path) -> Iterator[Grid]:
    with a_grid(db, tmp_path) as running:
        yield running


@contextmanager
def a_grid(db: Database, tmp_path: Path) -> Iterator[Grid]:
    """The platform in process behind a test client (the ``grid`` fixture; other test packages use it too)."""
    bootstrap(db, tmp_path)
    # Tests bill hours of usage in a moment: reports may end up to a day ahead of the platform's clock.
    platform = Platform(db, Settings(lease_s=5.0, site_timeout_s=10.0, usage_clock_skew_s=86_400.0))
    app = create_app(platform, run_loop=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Grid(platform, client, tmp_path)
