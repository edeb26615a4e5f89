"""Two platform processes on one PostgreSQL: a job placed by replica A wakes an agent long-polling on B.

B never places (its safety tick is an hour away) and its long-poll's safety look at the database is a
minute away, so only A's NOTIFY, heard by B's listener, can bring the job in the time allowed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import postgres_schema_url
from tests.e2e.conftest import LivePlatform, _stop, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

POOL = {"name": "cpu", "resource_class": "general", "engine": "local", "cores": 8, "memory_gb": 32}
JOB = {"command": ["true"], "cores": 1, "memory_gb": 0.5, "duration_s": 60}


def _serve(replica: LivePlatform, **env: str) -> None:
    port = replica.url.rsplit(":", 1)[1]
    cmd = [sys.executable, "-m", "suanwang", "serve", "--data-dir", str(replica.data_dir), "--database-url",
           replica.db_url, "--port", port, "--migrate"]
    log = open(replica.data_dir / f"server-{port}.log", "ab")  # noqa: SIM115  # the child keeps it open
    replica.server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, **env})
    replica.procs.append(replica.server)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(replica.url + "/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert replica.server.poll() is None, (replica.data_dir / f"server-{port}.log").read_text()[-3000:]
        time.sleep(0.1)
    raise AssertionError("replica did not start")


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[LivePlatform, LivePlatform]]:
    for url in postgres_schema_url():
        a, b = (LivePlatform(url=f"http://127.0.0.1:{free_port()}", data_dir=tmp_path, db_url=url) for _ in range(2))
        try:
            _serve(a)  # migrates and writes the tokens
            _serve(b, SUANWANG_TICK_S="3600", SUANWANG_LEASE_POLL_S="60")
            yield a, b
        finally:
            for replica in (a, b):
                for proc in reversed(replica.procs):
                    _stop(proc)


def test_a_job_placed_on_one_replica_wakes_a_long_poll_on_the_other(replicas) -> None:  # type: ignore[no-untyped-def]
    a, b = replicas
    agent = {"Authorization": f"Bearer {a.token('agent')}"}
    r = httpx.post(f"{a.url}/api/v1/agent/register", json={"pools": [POOL]}, headers=agent, timeout=30)
    assert r.status_code == 200, r.text
    # B's listener is up once its start-up finished; a first long-poll that times out shows B answers.
    r = httpx.post(f"{b.url}/api/v1/agent/lease", json={"max_jobs": 4, "wait_s": 0.1}, headers=agent, timeout=30)
    assert r.status_code == 200 and r.json() == []

    def long_poll() -> tuple[float, list[dict[str, object]]]:
        reply = httpx.post(f"{b.url}/api/v1/agent/lease", json={"max_jobs": 4, "wait_s": 25}, headers=agent,
                           timeout=60)
        assert reply.status_code == 200, reply.text
        return time.monotonic(), reply.json()

    with ThreadPoolExecutor(1) as pool:
        poll = pool.submit(long_poll)
        time.sleep(1.0)  # the long-poll has looked at the database and waits (nothing tells us from outside)
        with a.client() as consumer:
            job = consumer.post("/jobs", json=JOB).json()
        submitted = time.monotonic()
        answered, tasks = poll.result(timeout=60)
    assert [t["job_id"] for t in tasks] == [job["id"]]
    assert answered - submitted < 10.0  # B's own looks are a minute away; the call would wait 25 s
