"""East data, west compute with real processes: the platform (`suanwang serve`) and two agents
(`suanwang agent --datasets-root --transfer-listen`) as sites "east" and "west" on this machine.

A dataset registered at east is staged to west for a training step (bytes verified by SHA-256, the
transfer billed), the step writes an output dataset at west, a serving step at east reads it (staged
back), and the run's statement lists compute and transfer per step.
"""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
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
    return _agent(live, name, region, cores, shared)[0]


def _agent(live: LivePlatform, name: str, region: str, cores: int,
           shared: Path) -> tuple[Path, subprocess.Popen[bytes], list[str]]:
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
    args = [token, "--config", str(config), "--datasets-root", str(root / "datasets"),
            "--transfer-listen", f"127.0.0.1:{free_port()}", "--jobs-root", str(root / "jobs")]
    proc = live.start_agent(name, *args)
    with live.client(live.token("operator")) as op:  # online is not enough: wait for its pool
        deadline = time.time() + 30
        while time.time() < deadline and not any(p.get("site") == name for p in op.get("/pools").json()):
            time.sleep(0.05)
    return root / "datasets", proc, args


def _money(live: LivePlatform) -> None:
    with live.client(live.token("operator")) as op:
        assert op.post("/price-books", json=BOOK).status_code == 201
        consumer = live.client().get("/whoami").json()["tenant_id"]
        assert op.post("/topups", json={"consumer": consumer, "amount_fen": 10**7},
                       headers={"Idempotency-Key": "t1"}).status_code == 201


def _link(live: LivePlatform) -> None:
    with live.client(live.token("operator")) as op:
        assert op.post("/links", json={"a": "east", "b": "west", "latency_ms": 30,
                                       "bandwidth_gbps": 10}).status_code == 201


def _wait_run(c: httpx.Client, run_id: str, timeout: float) -> dict:  # type: ignore[type-arg]
    deadline, view = time.time() + timeout, {}
    while time.time() < deadline:
        view = c.get(f"/workflows/{run_id}").json()
        if view["state"] != "running":
            break
        time.sleep(0.1)
    return view


def test_east_data_trains_west_and_serves_east_with_transfers_billed(live: LivePlatform, shared: Path) -> None:
    live.start_server()
    _money(live)
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
        deadline, view = time.time() + 120, {}  # two stagings and two steps; minutes on a loaded CI machine
        while time.time() < deadline:
            r = c.get(f"/workflows/{run_id}")
            view = r.json() if r.status_code == 200 else {"state": "running", "answer": (r.status_code, r.text[:300])}
            if view["state"] != "running":
                break
            time.sleep(0.2)
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
        deadline = time.time() + 60
        while time.time() < deadline and not all(s["compute_fen"] > 0 for s in view["steps"]):
            time.sleep(0.2)
            view = c.get(f"/workflows/{run_id}").json()
        assert [(s["transfer_fen"], s["compute_fen"] > 0) for s in view["steps"]] == [(100, True), (100, True)]
        assert view["cost_fen"] == sum(s["compute_fen"] + s["transfer_fen"] for s in view["steps"])


def test_the_receiving_agent_killed_mid_transfer_resumes_no_job_reads_a_partial_and_it_is_billed_once(
    live: LivePlatform, shared: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    big = DATA * 4  # 4 MB served at 1 MB/s by east: the kill lands mid-way
    live.start_server()
    _money(live)
    monkeypatch.setenv("SUANWANG_TRANSFER_RATE_BPS", "1000000")
    east_root = _site(live, "east", "cn-east", 1, shared)
    monkeypatch.delenv("SUANWANG_TRANSFER_RATE_BPS")
    west_root, west, west_args = _agent(live, "west", "cn-west", 8, shared)
    _link(live)
    with live.client() as c:
        ds = c.post("/datasets", json={"name": "corpus", "size_bytes": len(big),
                                       "sha256": hashlib.sha256(big).hexdigest(), "sites": ["east"]}).json()
        (east_root / ds["id"]).write_bytes(big)
        (east_root / ds["id"]).chmod(0o644)
        run = c.post("/workflows", json={"name": "resume", "steps": [
            {"name": "train", "job": {"command": ["python3", "-c", TRAIN], "cores": 4, "region": "cn-west",
                                      "memory_gb": 0.2, "duration_s": 60},
             "inputs": ["corpus"], "output": "model"}]}).json()
        partial = west_root / ".partial"
        deadline, at_kill = time.time() + 20, 0
        while time.time() < deadline and not at_kill:
            sizes = [p.stat().st_size for p in partial.glob(f"{ds['id']}.*")] if partial.is_dir() else []
            at_kill = max(sizes, default=0) if max(sizes, default=0) >= 500_000 else 0
            time.sleep(0.02)
        assert 0 < at_kill < len(big), "the transfer never got going"
        west.send_signal(signal.SIGKILL)
        west.wait()
        [(tid, job_id)] = [(t["id"], t["job_id"]) for t in c.get("/transfers").json()]
        assert c.get(f"/jobs/{job_id}").json()["state"] == "pending"  # held while its input is partial
        live.start_agent("west", *west_args)
        seen = []
        deadline = time.time() + 30
        while time.time() < deadline and not (west_root / ds["id"]).exists():
            seen += [p.stat().st_size for p in partial.glob(f"{ds['id']}.*") if p.exists()]
            time.sleep(0.02)
        assert all(n >= at_kill for n in seen), (at_kill, seen[:5])  # resumed from the kept bytes, never restarted
        view = _wait_run(c, run["id"], 30)
        assert view["state"] == "succeeded", view
        assert f"corpus {hashlib.sha256(big).hexdigest()}" in c.get(f"/jobs/{job_id}/logs").text
        [t] = c.get("/transfers").json()
        assert (t["id"], t["state"], t["bytes_moved"]) == (tid, "done", len(big))
        assert view["steps"][0]["transfer_fen"] == 400  # 4 MB at 1,000 yuan/GB, once
        assert not list(partial.iterdir())


def test_a_step_whose_input_source_is_offline_waits_with_a_reason(live: LivePlatform, shared: Path) -> None:
    live.start_server()
    _money(live)
    _, east, _ = _agent(live, "east", "cn-east", 1, shared)
    _site(live, "west", "cn-west", 8, shared)
    _link(live)
    east.send_signal(signal.SIGKILL)
    east.wait()
    with live.client(live.token("operator")) as op:  # east falls silent: the platform marks it offline
        deadline = time.time() + 30
        while time.time() < deadline and any(s["online"] for s in op.get("/sites").json() if s["name"] == "east"):
            time.sleep(0.2)
    with live.client() as c:
        c.post("/datasets", json={"name": "corpus", "size_bytes": len(DATA), "sha256": SHA, "sites": ["east"]})
        r = c.post("/jobs", json={"command": ["true"], "cores": 4, "region": "cn-west", "inputs": ["corpus"],
                                  "memory_gb": 0.2, "duration_s": 60})
        assert r.status_code == 201, r.text
        deadline, why = time.time() + 15, ""
        while time.time() < deadline and "online" not in why:
            why = c.get(f"/jobs/{r.json()['id']}/explain").json()["staging"]
            time.sleep(0.1)
        assert why == ("waiting for inputs: input corpus@1 is held only at east, and no holding site's agent "
                       "is online"), why
        assert c.get(f"/jobs/{r.json()['id']}").json()["state"] == "pending"
