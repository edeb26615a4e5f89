"""Jobs declare the datasets they read and write on ``POST /jobs``: validated at submit, and a real agent
(the local executor, the job as its tenant's own uid) points the job at its input and hashes and reports
its output, which becomes a new dataset version at the site without any call from the user."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from suanwang.agent.executors.local import LocalExecutor
from suanwang.agent.runner import Agent
from tests.api.conftest import Grid

API = "/api/v1"
DATA = b"east data " * 1000
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the tenants' uids can reach (pytest's tmp_path is 0700 root's)."""
    d = Path(tempfile.mkdtemp(prefix="sw-data2-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _register(c: TestClient, name: str = "corpus", **extra: object) -> dict:  # type: ignore[type-arg]
    r = c.post(f"{API}/datasets", json={"name": name, "size_bytes": len(DATA), "sha256": SHA, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def test_inputs_are_the_callers_or_shared_and_bad_names_are_refused(grid: Grid) -> None:
    c = grid.consumer
    pool = {"name": "cpu", "resource_class": "general", "engine": "local", "cores": 4, "memory_gb": 8}
    assert grid.agent.post(f"{API}/agent/register", json={"pools": [pool]}).status_code == 200
    job = {"command": ["true"], "cores": 1, "memory_gb": 0.1, "duration_s": 60}
    r = c.post(f"{API}/jobs", json=job | {"inputs": ["nothing"]})
    assert r.status_code == 404 and "nothing" in r.json()["detail"]
    other = grid.new_consumer("other")
    _register(other, "secret")
    assert c.post(f"{API}/jobs", json=job | {"inputs": ["secret"]}).status_code == 404
    assert c.post(f"{API}/jobs", json=job | {"inputs": ["secret@1"]}).status_code == 404
    for bad in ("../x", "a\u0000b", "", "x" * 101):
        body = job | ({"inputs": [bad]} if bad else {"output": "bad name!"})
        assert c.post(f"{API}/jobs", json=body).status_code in (404, 422), bad
    assert c.post(f"{API}/jobs", json=job | {"output": "../model"}).status_code == 422
    assert c.post(f"{API}/jobs", json=job | {"inputs": ["x"] * 33}).status_code == 422
    mine = _register(c, "mine")
    assert other.post(f"{API}/jobs", json=job | {"inputs": ["mine"]}).status_code == 404
    assert c.post(f"{API}/datasets/{mine['id']}/shares", json={"tenant": "other"}).status_code == 200
    ok = other.post(f"{API}/jobs", json=job | {"inputs": ["mine"], "output": "model"})
    assert ok.status_code == 201, ok.text
    assert ok.json()["spec"]["data_gb"] == pytest.approx(len(DATA) / 1e9)
    pinned = _register(c, "pinned", region="cn-east")
    r = c.post(f"{API}/jobs", json=job | {"inputs": [f"pinned@{pinned['version']}"], "region": "eu"})
    assert r.status_code == 422 and "cn-east" in r.json()["detail"]


def test_the_agent_gives_the_job_its_input_and_reports_its_output_as_a_new_version(
    grid: Grid, shared_dir: Path, tmp_path: Path,
) -> None:
    root = shared_dir / "datasets"
    c = grid.consumer
    ds = _register(c, sites=["local"])
    root.mkdir()
    (root / ds["id"]).write_bytes(DATA)
    (root / ds["id"]).chmod(0o644)
    executor = LocalExecutor(tmp_path / "agent", jobs_root=shared_dir / "jobs")
    agent = Agent("http://testserver", grid.token("agent"), executor, tmp_path / "agent", poll_s=0.05,
                  datasets_root=root)
    agent.http = TestClient(grid.client.app, base_url="http://testserver/api/v1", raise_server_exceptions=False)
    agent.http.headers["Authorization"] = f"Bearer {grid.token('agent')}"
    agent.register()
    script = ("import os; d = open(os.environ['SUANWANG_INPUT_CORPUS'], 'rb').read(); "
              "open(os.environ['SUANWANG_OUTPUT'], 'wb').write(d.upper()); "
              "print(os.environ['SUANWANG_INPUTS'])")
    r = c.post(f"{API}/jobs", json={"command": ["python3", "-c", script], "cores": 1, "memory_gb": 0.2,
                                   "duration_s": 60, "inputs": ["corpus"], "output": "model"})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    try:
        deadline = time.monotonic() + 30
        state = ""
        while time.monotonic() < deadline:
            grid.tick()
            agent.step()
            state = c.get(f"{API}/jobs/{job_id}").json()["state"]
            if state in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.05)
        assert state == "succeeded", c.get(f"{API}/jobs/{job_id}").json()
        grid.tick()  # the control loop numbers the version
    finally:
        agent.close()
    [model] = c.get(f"{API}/datasets", params={"name": "model"}).json()
    want = DATA.upper()
    assert (model["version"], model["size_bytes"], model["sha256"]) == (1, len(want), hashlib.sha256(want).hexdigest())
    assert (root / model["id"]).read_bytes() == want  # at the reserved id, where the transfer server serves it
    assert [x["site"] for x in c.get(f"{API}/datasets/{model['id']}").json()["replicas"]] == ["local"]
    assert str(root / ds["id"]) in c.get(f"{API}/jobs/{job_id}/logs").text
    grid.tick()
    assert len(c.get(f"{API}/datasets", params={"name": "model"}).json()) == 1  # settled once
