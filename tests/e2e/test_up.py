"""The README's promise: `suanwang up` runs the platform and a local agent; the CLI submits and waits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import free_port

pytestmark = pytest.mark.e2e


def test_up_runs_a_job_from_the_cli_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "SUANWANG_DATABASE_URL"} | {"SUANWANG_HOME": str(tmp_path)}
    up = subprocess.Popen([sys.executable, "-m", "suanwang", "up", "--port", str(port)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        page = httpx.get(f"http://127.0.0.1:{port}/").text
        assert "local" in page
        time.sleep(1.5)  # the agent registers its pools
        out = subprocess.run([sys.executable, "-m", "suanwang", "submit", "--wait", "--", "python3", "-c",
                              "print(6*7)"],
                             env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "succeeded" in out.stdout and "42" in out.stdout
        jobs = subprocess.run([sys.executable, "-m", "suanwang", "jobs", "--json"], env=env, capture_output=True,
                              text=True, timeout=60)
        assert '"state": "succeeded"' in jobs.stdout
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=20)
    output = up.stdout.read().decode() if up.stdout else ""
    assert code in (0, 130), output  # 130: the conventional status after Ctrl-C
    assert "stopped" in output and "Traceback" not in output, output
