"""A new agent enrols with a one-use token from the CLI and keeps its agent token in a 0600 file."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

from suanwang.cli.client import write_secret
from tests.e2e.conftest import LivePlatform


def _cli(live: LivePlatform, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "suanwang", *args], capture_output=True, text=True, timeout=60,
                          env={"SUANWANG_HOME": str(live.data_dir), "PATH": "/usr/bin:/bin",
                               "PYTHONPATH": ":".join(sys.path)})


def test_agent_enrols_once_and_writes_its_token_0600(live: LivePlatform) -> None:
    live.start_server()
    op = ("--url", live.url, "--token", live.token("operator"))
    out = _cli(live, "admin", "token", "enrol", "local", *op)
    assert out.returncode == 0, out.stderr
    enrol = json.loads(out.stdout)["enrol_token"]
    token_file = live.data_dir / "secrets" / "agent.token"
    cmd = [sys.executable, "-m", "suanwang", "agent", "--url", live.url, "--enrol-token", enrol,
           "--token-file", str(token_file), "--workdir", str(live.data_dir / "agent-enrolled")]
    with open(live.data_dir / "agent-enrolled.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    live.procs.append(proc)
    with live.client(live.token("operator")) as c:
        deadline = time.time() + 60
        while not any(s["name"] == "local" and s["online"] for s in c.get("/sites").json()):
            assert time.time() < deadline and proc.poll() is None, (live.data_dir / "agent-enrolled.log").read_text()
            time.sleep(0.05)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    me = live.client(token_file.read_text().strip()).get("/whoami").json()
    assert (me["role"], me["site"]) == ("agent", "local")
    again = _cli(live, "agent", "--url", live.url, "--enrol-token", enrol, "--token-file",
                 str(live.data_dir / "second.token"))
    assert again.returncode == 1 and "401" in again.stderr
    assert not (live.data_dir / "second.token").exists()
    listed = _cli(live, "admin", "token", "list", *op)
    assert listed.returncode == 0 and "token_hash" not in listed.stdout and "sw_" not in listed.stdout


def test_token_files_are_0600_even_over_a_wider_file(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_text("old")
    path.chmod(0o644)
    write_secret(path, "sw_new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "sw_new\n"
