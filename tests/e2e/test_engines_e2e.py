"""The whole path through a real engine: platform -> agent (Slurm or Ray site config) -> engine -> back."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

live_platform = pytest.importorskip("tests.e2e.conftest", reason="needs the platform's e2e harness")
from tests.engines.conftest import (  # noqa: E402
    ray_address_from_env,
    ray_unavailable,
    skip_or_fail,
    slurm_conf,
    slurm_unavailable,
)

TERMINAL = live_platform.TERMINAL
BURN = "import time\nt=time.process_time()\nwhile time.process_time()-t<1: pass\nprint('burnt')"


def _site_file(tmp_path: Path, name: str, cfg: dict) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _run_one(live, config: str, job: dict) -> tuple[dict, str, list[dict]]:  # type: ignore[no-untyped-def]
    live.start_server()
    live.start_agent("engine", None, "--config", config)
    with live.client() as c:
        submitted = c.post("/jobs", json=job).json()
        assert "id" in submitted, submitted
        done = live.wait_for(submitted["id"], TERMINAL, timeout=120)
        logs = c.get(f"/jobs/{submitted['id']}/logs").text
        usage = c.get(f"/jobs/{submitted['id']}/usage").json()
    return done, logs, usage


@pytest.mark.e2e
@pytest.mark.slurm
def test_a_job_runs_through_a_slurm_site(live, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    skip_or_fail(slurm_unavailable(), "SUANWANG_REQUIRE_SLURM")
    config = _site_file(tmp_path, "slurm", {
        "engine": "slurm", "pools": [{"name": "slurm-hpc", "resource_class": "super", "partition": "hpc"}],
        "slurm": {"conf": slurm_conf()}})
    done, logs, usage = _run_one(live, config, {"command": ["python3", "-c", BURN], "resource_class": "super"})
    assert done["state"] == "succeeded" and done["exit_code"] == 0
    assert "burnt" in logs
    assert usage and sum(r["cpu_s"] for r in usage) >= 0.9 and sum(r["wall_s"] for r in usage) >= 1


@pytest.mark.e2e
@pytest.mark.ray
def test_a_job_runs_through_a_ray_site(live, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    skip_or_fail(ray_unavailable(), "SUANWANG_REQUIRE_RAY")
    config = _site_file(tmp_path, "ray", {
        "engine": "ray", "pools": [{"name": "ray-ai", "resource_class": "general"}],
        "ray": {"address": ray_address_from_env()}})
    done, logs, usage = _run_one(live, config, {"command": ["python3", "-c", BURN]})
    assert done["state"] == "succeeded" and done["exit_code"] == 0
    assert "burnt" in logs
    assert usage and sum(r["cpu_s"] for r in usage) >= 0.9
