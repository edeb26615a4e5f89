"""East data, west compute with real processes: the platform (`suanwang serve`) and two agents
(`suanwang agent --datasets-root --transfer-listen`) as sites "east" and "west" on this machine.

A dataset registered at east is staged to west for a training step (bytes verified by SHA-256, the
transfer billed), the step writes an output dataset at west, a serving step at east reads it (staged
back), and the run's statement lists compute and transfer per step.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import LivePlatform, free_port

DATA = b"east data " * 100_000  # 1 MB
SHA = hashlib.sha256(DATA).hexdigest()
BOOK = {"entries": [
    {"resource_class": "general", "tier": "standard", "service_level": "standard", "unit": "core_hour",
     "unit_price_fen": 100_000_000},  # a million yuan per core-hour: a second of work shows in fen
    {"resource_class": "general", "tier": "standard", "service_level": "standard", "unit": "gb_transfer",
     "unit_price_fen": 100_000}]}  # 1,000 yuan per GB: 1 MB costs 100 fen
TRAIN = ("import hashlib, os; d = open(os.environ['SUANWANG_INPUT_CORPUS'], 'rb').read(); "
         "print('corpus', hashlib.sha256(d).hexdigest()); open(os.environ['SUANWANG_OUTPUT'], 'wb').write(d[::-1])")
SERVE = ("import hashlib, os; d = open(os.environ['SUANWANG_INPUT_MODEL'], 'rb').read(); "
         "print('model', hashlib.sha256(d).hexdigest())")


@pytest.fixture
def shared() -> Iterator[Path]:
    """Directories the tenants' uids can reach (pytest's tmp_path is 0700 root's)."""
    d = Path(tempfile.mkdtemp(prefix="sw-flows-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _site(live: LivePlatform, name: str, region: str, cores: int, shared: Path) -> Path:
    with live.client(live.token("operator")) as op:
        assert op.post("/sites", json={"name": name, "region": region}).status_code == 201
        me = op.get("/whoami").json()["tenant_id"]
        token = op.post("/tokens", json={"role": "agent", "tenant_id": me, "site": name}).json()["token"]
    root = shared / name
    (root / "datasets").mkdir(parents=True)
    (root / "datasets").chmod(0o755)
    (root / "jobs").mkdir()
    config = live.data_dir / f"{name}.yaml"
    config.write_text(f"engine: local\npools:\n  - {{name: cpu, cores: {cores}, memory_gb: 8}}\n")
    live.start_agent(name, token, "--config", str(config), "--datasets-root", str(root / "datasets"),
                     "--transfer-listen", f"127.0.0.1:{free_port()}", "--jobs-root", str(root / "jobs"))
    with live.client(live.token("operator")) as op:  # online is not enough: wait for its pool
        deadline = time.time() + 30
        while time.time() < deadline and not any(p.get("site") == name for p in op.get("/pools").json()):
            time.sleep(0.05)
    return root / "datasets"


def test_east_data_trains_west_and_serves_east_with_transfers_billed(live: LivePlatform, shared: Path) -> None:
    live.start_server()
    with live.client(live.token("operator")) as op:
        assert op.post("/price-books", json=BOOK).status_code == 201
        consumer = live.client().get("/whoami").json()["tenant_id"]
        assert op.post("/topups", json={"consumer": consumer, "amount_fen": 10**7},
                       headers={"Idempotency-Key": "t1"}).status_code == 201
    with live.client() as c:
        east_root = _site(live, "east", "cn-east", 1, shared)
        west_root = _site(live, "west", "cn-west", 8, shared)
        with live.client(live.token("operator")) as op:
            assert op.post("/links", json={"a": "east", "b": "west", "latency_ms": 30,
                                           "bandwidth_gbps": 10}).status_code == 201
        ds = c.post("/datasets", json={"name": "corpus", "size_bytes": len(DATA), "sha256": SHA, "sites": ["east"]})
        assert ds.status_code == 201, ds.text
        (east_root / ds.json()["id"]).write_bytes(DATA)
        (east_root / ds.json()["id"]).chmod(0o644)
        job = {"memory_gb": 0.2, "duration_s": 60}
        run = c.post("/workflows", json={"name": "east-west", "steps": [
            {"name": "train", "job": job | {"command": ["python3", "-c", TRAIN], "cores": 4, "region": "cn-west"},
             "inputs": ["corpus"], "output": "model"},
            {"name": "serve", "job": job | {"command": ["python3", "-c", SERVE], "cores": 1, "region": "cn-east"},
             "inputs": ["train.model"]}]})
        assert run.status_code == 201, run.text
        run_id = run.json()["id"]
        deadline, view = time.time() + 40, {}
        while time.time() < deadline:
            view = c.get(f"/workflows/{run_id}").json()
            if view["state"] != "running":
                break
            time.sleep(0.1)
        assert view["state"] == "succeeded", (view, (live.data_dir / "agent-west.log").read_text()[-2000:])
        train, serve = view["steps"]
        assert (train["site"], serve["site"]) == ("west", "east")
        assert f"corpus {SHA}" in c.get(f"/jobs/{train['job_id']}/logs").text  # the staged bytes, verified
        [model] = c.get("/datasets", params={"name": "model"}).json()
        assert model["sha256"] == hashlib.sha256(DATA[::-1]).hexdigest()
        assert f"model {model['sha256']}" in c.get(f"/jobs/{serve['job_id']}/logs").text
        assert (west_root / ds.json()["id"]).read_bytes() == DATA and (east_root / model["id"]).is_file()
        assert not list((west_root / ".partial").iterdir())
        moved = {(t["source"], t["target"]): t for t in c.get("/transfers").json()}
        assert set(moved) == {("east", "west"), ("west", "east")} and all(t["state"] == "done" for t in moved.values())
        # the statement: compute and transfer per step (1 MB at 1,000 yuan/GB = 100 fen per transfer)
        deadline = time.time() + 20
        while time.time() < deadline and not all(s["compute_fen"] > 0 for s in view["steps"]):
            time.sleep(0.2)
            view = c.get(f"/workflows/{run_id}").json()
        assert [(s["transfer_fen"], s["compute_fen"] > 0) for s in view["steps"]] == [(100, True), (100, True)]
        assert view["cost_fen"] == sum(s["compute_fen"] + s["transfer_fen"] for s in view["steps"])
