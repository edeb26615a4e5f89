"""Real processes: a platform (`suanwang serve`) and agents (`suanwang agent`) on free ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

TERMINAL = {"succeeded", "failed", "cancelled", "lost"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class LivePlatform:
    url: str
    data_dir: Path
    db_url: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    server: subprocess.Popen[bytes] | None = None

    def token(self, name: str) -> str:
        return (self.data_dir / f"{name}.token").read_text().strip()

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url + "/api/v1",
                            headers={"Authorization": f"Bearer {token or self.token('consumer')}"}, timeout=30)

    start_timeout_s = 60.0  # seconds for /health to answer after start

    def start_server(self, lease_s: float = 2.0, env: dict[str, str] | None = None) -> None:
        """``env``: extra settings for the server (``SUANWANG_<NAME>``), e.g. a short market schedule."""
        port = int(self.url.rsplit(":", 1)[1])
        cmd = [sys.executable, "-m", "suanwang", "serve", "--data-dir", str(self.data_dir), "--database-url",
               self.db_url, "--port", str(port), "--lease-s", str(lease_s), "--tick-s", "0.2", "--migrate"]
        with open(self.data_dir / "server.log", "ab") as log:  # the child holds its own copy of the descriptor
            self.server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log,
                                           env={**os.environ, **env} if env else None)
        self.procs.append(self.server)
        deadline = time.time() + self.start_timeout_s
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.server.poll() is None, (self.data_dir / "server.log").read_text()[-3000:]
            time.sleep(0.1)
        raise AssertionError("platform did not start")

    def start_agent(self, name: str, token: str | None = None, *extra: str) -> subprocess.Popen[bytes]:
        workdir = self.data_dir / f"agent-{name}"
        cmd = [sys.executable, "-m", "suanwang", "agent", "--url", self.url, "--token", token or self.token("agent"),
               "--workdir", str(workdir), "--heartbeat-s", "0.5", "--poll-s", "0.05", *extra]
        started = time.time()
        with open(self.data_dir / f"agent-{name}.log", "ab") as log:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        self.procs.append(proc)
        with self.client(self.token("operator")) as c:
            while time.time() < started + 60:
                if any(s["online"] and s["last_seen"] >= started for s in c.get("/sites").json()):
                    return proc
                assert proc.poll() is None, (self.data_dir / f"agent-{name}.log").read_text()[-3000:]
                time.sleep(0.05)
        raise AssertionError("agent never came online")

    def wait_for(self, job_id: str, states: set[str], timeout: float = 60) -> dict[str, Any]:
        with self.client() as c:
            deadline = time.time() + timeout
            while time.time() < deadline:
                job = c.get(f"/jobs/{job_id}").json()
                if job["state"] in states:
                    return job  # type: ignore[no-any-return]
                time.sleep(0.05)
        raise AssertionError(f"job {job_id} never reached {states}: {job}")


@pytest.fixture
def live(db_url: str, tmp_path: Path) -> Iterator[LivePlatform]:
    env_backup = os.environ.pop("SUANWANG_DATABASE_URL", None)
    platform = LivePlatform(url=f"http://127.0.0.1:{free_port()}", data_dir=tmp_path, db_url=db_url)
    try:
        yield platform
    finally:
        for proc in reversed(platform.procs):
            _stop(proc)
        if env_backup is not None:
            os.environ["SUANWANG_DATABASE_URL"] = env_backup
