"""`suanwang up` as root: a consumer's job cannot become operator, read the platform's files or another tenant's.

Before the fix a job ran as the platform's own user with its working directory inside the data
directory: ``cat ../../../operator.token`` through ``/logs`` handed over the operator's token.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import TERMINAL, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(os.geteuid() != 0, reason="isolation needs root (CI runs as root)")]


@dataclass
class Up:
    url: str
    data: Path
    jobs: Path
    out: Path

    def token(self, name: str) -> str:
        return (self.data / f"{name}.token").read_text().strip()

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def wait(self, c: httpx.Client, job_id: str, states: set[str] = TERMINAL, timeout: float = 60) -> dict[str, Any]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            job = c.get(f"/jobs/{job_id}").json()
            if job["state"] in states:
                return job  # type: ignore[no-any-return]
            time.sleep(0.05)
        raise AssertionError(f"{job_id} never reached {states}: {job}\n{self.out.read_text()[-3000:]}")

    def logs(self, c: httpx.Client, job_id: str) -> str:
        return c.get(f"/jobs/{job_id}/logs").text


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """One `suanwang up` for the module: starting it is most of each test's time."""
    tmp_path = tmp_path_factory.mktemp("up")
    port = free_port()
    data, jobs, out = tmp_path / "data", Path(tempfile.mkdtemp(prefix="sw-jobs-")), tmp_path / "up.log"
    env = {k: v for k, v in os.environ.items() if k != "SUANWANG_DATABASE_URL"}
    proc = subprocess.Popen([sys.executable, "-m", "suanwang", "up", "--port", str(port), "--data-dir", str(data),
                             "--jobs-root", str(jobs), "--lease-s", "3"], env=env, stdout=out.open("ab"),
                            stderr=subprocess.STDOUT)
    u = Up(f"http://127.0.0.1:{port}", data, jobs, out)
    try:
        deadline = time.time() + 60
        with u.client(u.token("operator") if (data / "operator.token").exists() else "") as c:
            while time.time() < deadline:
                assert proc.poll() is None, out.read_text()[-3000:]
                try:
                    if (data / "operator.token").exists():
                        c.headers["Authorization"] = f"Bearer {u.token('operator')}"
                        if c.get("/pools").json():
                            break
                except (httpx.HTTPError, ValueError):
                    pass
                time.sleep(0.1)
        yield u
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(jobs, ignore_errors=True)


ATTACK = r"""
echo "uid $(id -u)"
ls -ld . | cut -c1-10
cat ../../../operator.token
for f in {data}/operator.token {data}/agent.token {data}/consumer.token {data}/suanwang.db {data}/agent/agent.db \
         {data}/agent/tasks/{bob}-1/output.log {jobs}/{bob}-1/notes; do
  if head -c 64 "$f" >/dev/null 2>&1; then echo "READ $f"; else echo "DENIED $f"; fi
done
ls {data} >/dev/null 2>&1 && echo "LISTED data dir"
ls {jobs} >/dev/null 2>&1 && echo "LISTED jobs root"
grep -rs bob ../*/ {data} && echo "FOUND bob"
cat /proc/self/cgroup
echo END
"""


def test_a_consumers_job_cannot_reach_the_operator_the_agent_or_another_tenant(up: Up) -> None:
    with up.client(up.token("operator")) as op:
        bob_tenant = op.post("/tenants", json={"name": "bob", "kind": "consumer"}).json()["id"]
        bob_token = op.post("/tokens", json={"role": "consumer", "tenant_id": bob_tenant}).json()["token"]
    with up.client(bob_token) as bob, up.client(up.token("consumer")) as alice:
        secret = bob.post("/jobs", json={"command": ["sh", "-c", "echo bob-secret > notes; echo bob-output; sleep 30"]}
                          ).json()
        up.wait(bob, secret["id"], {"running"})
        deadline = time.time() + 20
        while "bob-output" not in up.logs(bob, secret["id"]) and time.time() < deadline:
            time.sleep(0.05)
        script = ATTACK.format(data=up.data, jobs=up.jobs, bob=secret["id"])
        attack = alice.post("/jobs", json={"command": ["sh", "-c", script]}).json()
        done = up.wait(alice, attack["id"])
        log = up.logs(alice, attack["id"])
        bob.post(f"/jobs/{secret['id']}/cancel")
    assert done["state"] == "succeeded" and "END" in log, log
    uid = int(log.split("uid ", 1)[1].split()[0])
    assert uid not in (0, os.getuid()), log  # not the platform's user
    assert "drwx------" in log, log  # its own 0700 working directory
    for token in ("operator", "agent", "consumer"):
        assert up.token(token) not in log
    assert "READ" not in log and log.count("DENIED") == 7, log
    assert "LISTED" not in log and "FOUND bob" not in log and "bob-secret" not in log, log
    # cgroup limits applied, or one line at start-up says which are not and why
    output = up.out.read_text()
    limits_line = [line for line in output.splitlines() if "not enforced" in line]
    assert "/suanwang/" in log or (len(limits_line) == 1 and "memory.max" in limits_line[0]), output


def test_the_platforms_files_are_private(up: Up) -> None:
    assert stat.S_IMODE(up.data.stat().st_mode) == 0o700
    private = ["operator.token", "agent.token", "consumer.token", "suanwang.db", "suanwang.db-wal", "suanwang.db-shm",
               "agent/agent.db"]
    modes = {name: oct(stat.S_IMODE((up.data / name).stat().st_mode)) for name in private
             if (up.data / name).exists()}
    assert {"operator.token", "suanwang.db", "agent/agent.db"} <= set(modes)
    assert set(modes.values()) == {"0o600"}, modes
    assert stat.S_IMODE((up.data / "agent").stat().st_mode) == 0o700


def test_bad_jobs_are_refused_at_submit_and_one_that_slips_past_does_not_kill_the_agent(up: Up) -> None:
    from suanwang.domain.job import JobSpec
    from suanwang.services.auth import Principal, Role
    from suanwang.services.jobs import submit_jobs
    from suanwang.store.db import Database, sqlite_url

    with up.client(up.token("consumer")) as c:
        for body in ({"command": ["echo", "a\u0000b"]}, {"command": ["echo", "x" * 10_000_000]},
                     {"command": ["echo"], "env": {"A=B": "1"}}):
            r = c.post("/jobs", json=body)
            assert r.status_code in (413, 422), r.text  # 10 MB passes the request-size cap: 413 at the gate
        r = c.post("/jobs", content=b'{"command": ["\xff"]}', headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500
        tenant = c.get("/wallet").json().get("tenant_id") or c.post("/jobs", json={"command": ["true"]}).json()[
            "tenant_id"]
        # Straight into the database, past the API's checks, as an older platform would have stored it.
        db = Database(sqlite_url(up.data / "suanwang.db"))
        with db.transaction() as s:
            [row] = submit_jobs(s, Principal("test", Role.CONSUMER, tenant), [JobSpec(command=("echo", "a\0b"))])
            bad_id = row.id
        db.dispose()
        bad = up.wait(c, bad_id)
        assert bad["state"] == "failed" and "NUL" in bad["reason"], bad
        good = c.post("/jobs", json={"command": ["python3", "-c", "print(6*7)"]}).json()
        assert up.wait(c, good["id"])["state"] == "succeeded"
        assert "42" in up.logs(c, good["id"])
    assert "Traceback" not in up.out.read_text()
