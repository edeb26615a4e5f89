"""Per-token rate limits (429 + Retry-After) and request-size limits (413), decided before the body is read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from suanwang.api.app import create_app
from suanwang.api.guard import GuardSettings, RefusalLog, TokenBuckets
from suanwang.services.bootstrap import bootstrap
from suanwang.services.platform import Platform, Settings
from suanwang.store.db import Database
from tests.api.conftest import Grid

API = "/api/v1"


@pytest.fixture
def tight(db: Database, tmp_path: Path) -> Iterator[Grid]:
    """A platform whose tokens may send 2 requests at once, then 1 a second, with bodies up to 1 KiB."""
    bootstrap(db, tmp_path)
    platform = Platform(db, Settings(lease_s=5.0, site_timeout_s=10.0))
    app = create_app(platform, run_loop=False, guard=GuardSettings(rate_per_s=1.0, burst=2.0, max_body_bytes=1024))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Grid(platform, client, tmp_path)


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    b = TokenBuckets(rate_per_s=2.0, burst=3.0, clock=lambda: now[0])
    assert [b.take("t") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("t") == pytest.approx(0.5)
    assert b.take("other") == 0.0  # buckets are per token
    now[0] = 0.5
    assert b.take("t") == 0.0


def test_refusal_log_counts_what_it_suppressed() -> None:
    now = [0.0]
    log = RefusalLog(clock=lambda: now[0])
    assert [log.due("1.2.3.4") for _ in range(4)] == [1, 0, 0, 0]
    assert log.due("5.6.7.8") == 1
    now[0] = 1.0
    assert log.due("1.2.3.4") == 4


def test_over_the_rate_is_429_with_retry_after(tight: Grid) -> None:
    now = [0.0]
    tight.client.app.state.auth.buckets.clock = lambda: now[0]
    c = tight.consumer
    assert [c.get(f"{API}/jobs").status_code for _ in range(2)] == [200, 200]
    r = c.get(f"{API}/jobs")
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert r.json()["error"] == "rate_limited" and "retry after 1 s" in r.json()["detail"]
    assert tight.operator.get(f"{API}/jobs").status_code == 200  # another token is not slowed
    now[0] = 1.0
    assert c.get(f"{API}/jobs").status_code == 200


def test_agent_heartbeat_and_lease_are_not_starved_by_its_other_calls(tight: Grid) -> None:
    now = [0.0]
    tight.client.app.state.auth.buckets.clock = lambda: now[0]
    tight.register()
    agent = tight.agent
    while agent.post(f"{API}/agent/usage", json={"records": []}).status_code != 429:
        pass
    assert agent.post(f"{API}/agent/heartbeat", json={"running": []}).status_code == 200
    assert agent.post(f"{API}/agent/lease", json={}).status_code == 200


def test_declared_oversize_body_is_413_before_it_is_read(tight: Grid) -> None:
    body = b'{"command": ["true"], "x": "' + b"a" * 2000 + b'"}'
    r = tight.consumer.post(f"{API}/jobs", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "limit is 1024" in r.json()["detail"]
    huge = tight.consumer.post(f"{API}/jobs", content=b"{}", headers={"content-type": "application/json",
                                                                      "content-length": "9" * 40})
    assert huge.status_code in (400, 413)  # the client library or the gate refuses it; never a 500


def test_streamed_oversize_body_is_413(tight: Grid) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"command": ["true"], "x": "'
        for _ in range(10):
            yield b"a" * 200
        yield b'"}'

    r = tight.consumer.post(f"{API}/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and "limit of 1024 bytes" in r.json()["detail"], r.text
    # a route that reads its body itself (exact decimals) is held to the same cap
    r = tight.operator.post(f"{API}/price-books", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
