"""`suanwang demo` brings up a grid on this machine: every engine present becomes an online site that runs work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from suanwang.cli.demo import sample_jobs
from tests.e2e.conftest import TERMINAL, free_port
from tests.engines.conftest import ray_address_from_env, ray_unavailable, slurm_conf, slurm_unavailable

pytestmark = pytest.mark.e2e


def _expected_sites() -> tuple[set[str], dict[str, str]]:
    """The sites the demo must bring up here, and the engines it must say it skipped."""
    expected, skipped = {"local"}, {}
    for engine, site, reason, require in (("slurm", "qingyang-hpc", slurm_unavailable(), "SUANWANG_REQUIRE_SLURM"),
                                          ("ray", "wuhu-ai", ray_unavailable(), "SUANWANG_REQUIRE_RAY")):
        if reason and os.environ.get(require) == "1":
            pytest.fail(f"{reason} ({require}=1)")
        if reason:
            skipped[engine] = reason
        else:
            expected.add(site)
    return expected, skipped


def _wait_file(path: Path, proc: subprocess.Popen[bytes], out: Path, timeout: float = 60) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        assert proc.poll() is None, out.read_text()[-3000:]
        time.sleep(0.1)
    raise AssertionError(f"{path} never appeared: {out.read_text()[-3000:]}")


def test_demo_brings_every_available_engine_online_and_runs_a_job_at_each(tmp_path: Path) -> None:
    expected, skipped = _expected_sites()
    port = free_port()
    out = tmp_path / "demo.out"
    env = {**os.environ, "SLURM_CONF": slurm_conf(), "SUANWANG_RAY_ADDRESS": ray_address_from_env(),
           "COLUMNS": "200"}
    env.pop("SUANWANG_DATABASE_URL", None)
    cmd = [sys.executable, "-m", "suanwang", "demo", "--data-dir", str(tmp_path / "d"), "--port", str(port),
           "--no-samples", "--lease-s", "5"]
    proc = subprocess.Popen(cmd, env=env, stdout=out.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api/v1"
    try:
        consumer = _wait_file(tmp_path / "d" / "consumer.token", proc, out)
        _wait_file(out, proc, out)
        deadline = time.time() + 90
        while "consumer token:" not in out.read_text():  # printed once every site is online (or timed out)
            assert proc.poll() is None and time.time() < deadline, out.read_text()[-3000:]
            time.sleep(0.2)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {consumer}"}, timeout=30) as c:
            online = {s["name"] for s in c.get("/sites").json() if s["online"]}
            assert expected <= online, out.read_text()
            text = out.read_text()
            for engine in skipped:
                assert f"skipped {engine}" in text
            submitted = [(site, c.post("/jobs", json=body).json()["id"]) for site, body in sample_jobs(online)]
            assert {site for site, _ in submitted} == expected
            for site, job_id in submitted:
                deadline = time.time() + 120
                while (job := c.get(f"/jobs/{job_id}").json())["state"] not in TERMINAL:
                    assert time.time() < deadline, job
                    time.sleep(0.2)
                assert job["state"] == "succeeded" and job["site"] == site, job
                assert "hello from" in c.get(f"/jobs/{job_id}/logs").text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert "demo stopped" in out.read_text()
    with pytest.raises(httpx.HTTPError):  # the platform child went with it
        httpx.get(f"{url}/health", timeout=2)
