"""Start a real platform (and agents) as subprocesses for benchmarks."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Live:
    def __init__(
        self, data_dir: Path, database_url: str | None = None, serve_args: tuple[str, ...] = ()
    ) -> None:
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{free_port()}"
        self.procs: list[subprocess.Popen[bytes]] = []
        # the production loop: woken by work, its safety tick at the default
        cmd = [sys.executable, "-m", "suanwang", "serve", "--data-dir", str(data_dir), "--port",
               self.url.rsplit(":", 1)[1], "--migrate"]
        if database_url:
            cmd += ["--database-url", database_url]
        # benchmarks measure the platform's throughput, not per-token rate refusals (the gate still runs)
        cmd += ["--rate-per-s", "1000000", "--rate-burst", "1000000", *serve_args]
        with open(data_dir / "server.log", "ab") as log:  # the child holds its own copy of the descriptor
            self.procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log))
        deadline = time.time() + 300  # a shared machine at load 20 takes minutes to import and migrate
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("platform did not start: " + (data_dir / "server.log").read_text()[-2000:])

    def token(self, name: str) -> str:
        return (self.data_dir / f"{name}.token").read_text().strip()

    def client(self, name: str = "consumer") -> httpx.Client:
        return httpx.Client(base_url=self.url + "/api/v1", headers={"Authorization": f"Bearer {self.token(name)}"},
                            timeout=60)

    def start_agent(self, *extra: str) -> None:
        cmd = [sys.executable, "-m", "suanwang", "agent", "--url", self.url, "--token", self.token("agent"),
               "--workdir", str(self.data_dir / "agent"), "--heartbeat-s", "1", "--poll-s", "0.02", *extra]
        with open(self.data_dir / "agent.log", "ab") as log:
            self.procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log))

    def wait_for_pools(self, timeout: float = 60) -> None:
        with self.client() as c:
            deadline = time.time() + timeout
            while time.time() < deadline:
                if c.get("/pools").json():
                    return
                time.sleep(0.1)
        raise RuntimeError("no agent registered its pools")

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
