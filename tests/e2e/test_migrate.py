"""Migrations are an explicit step under a lock; serve refuses a database that is not at head.

Real processes: two `suanwang migrate` at once on one fresh database, and `suanwang serve` before and after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from suanwang.store.migrate import head_revisions
from tests.e2e.conftest import _stop, free_port

pytestmark = pytest.mark.e2e


def _suanwang(*args: str, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANWANG_")}
    return subprocess.Popen([sys.executable, "-m", "suanwang", *args, "--data-dir", str(data_dir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_two_migrations_at_once_both_succeed_and_leave_one_head(db_url: str, tmp_path: Path) -> None:
    procs = [_suanwang("migrate", "--database-url", db_url, data_dir=tmp_path / f"d{i}") for i in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read().decode()) for p in procs]  # type: ignore[union-attr]
    assert [rc for rc, _ in results] == [0, 0], results
    engine = create_engine(db_url)
    with engine.connect() as conn:
        assert {r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))} == head_revisions()
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == len(head_revisions())
    engine.dispose()


def test_serve_refuses_an_unmigrated_database_then_runs_after_migrate(db_url: str, tmp_path: Path) -> None:
    port = str(free_port())
    refused = _suanwang("serve", "--database-url", db_url, "--port", port, data_dir=tmp_path)
    assert refused.wait(timeout=60) != 0
    assert "run `suanwang migrate`" in refused.stderr.read().decode()  # type: ignore[union-attr]

    assert _suanwang("migrate", "--database-url", db_url, data_dir=tmp_path).wait(timeout=120) == 0
    server = _suanwang("serve", "--database-url", db_url, "--port", port, data_dir=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stderr.read().decode()  # type: ignore[union-attr]
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", headers={"X-Request-ID": "e2e-probe-1"})
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        assert r.headers["X-Request-ID"] == "e2e-probe-1"
    finally:
        _stop(server)
    lines = [json.loads(line) for line in server.stderr.read().decode().splitlines()]  # type: ignore[union-attr]
    probe = [line for line in lines if line.get("request_id") == "e2e-probe-1"]
    assert probe and probe[0]["path"] == "/api/v1/health" and probe[0]["status"] == 200
