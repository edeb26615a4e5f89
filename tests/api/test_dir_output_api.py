"""An agent's report of a directory output: it must come with its archive's hash, a file's must not; the job's
next reader is told the dataset is a directory (and its manifest hash, to check what it unpacks)."""

from __future__ import annotations

from suanwang.services import job_data
from suanwang.store.tables import JobRow
from tests.api.conftest import Grid

API = "/api/v1"
MANIFEST, ARCHIVE = "a" * 64, "b" * 64


def _leased_job(grid: Grid) -> tuple[str, int]:
    grid.register()
    r = grid.consumer.post(f"{API}/jobs", json={"command": ["true"], "cores": 1, "memory_gb": 1, "duration_s": 60,
                                                "output": "tree"})
    assert r.status_code == 201, r.text
    grid.tick()
    [task] = grid.agent.post(f"{API}/agent/lease", json={"max_jobs": 1}).json()
    return str(task["job_id"]), int(task["attempt"])


def test_a_directory_output_needs_its_archive_hash_and_becomes_a_directory_dataset(grid: Grid) -> None:
    job, attempt = _leased_job(grid)
    base = {"attempt": attempt, "size_bytes": 10240, "sha256": MANIFEST}
    r = grid.agent.post(f"{API}/agent/jobs/{job}/output", json=base | {"kind": "dir"})
    assert r.status_code == 422 and "sha256" in r.text
    r = grid.agent.post(f"{API}/agent/jobs/{job}/output", json=base | {"archive_sha256": ARCHIVE})
    assert r.status_code == 422 and "directory output" in r.text
    r = grid.agent.post(f"{API}/agent/jobs/{job}/output", json=base | {"kind": "tarball", "archive_sha256": ARCHIVE})
    assert r.status_code == 422
    r = grid.agent.post(f"{API}/agent/jobs/{job}/output", json=base | {"kind": "dir", "archive_sha256": ARCHIVE,
                                                                       "files": 3})
    assert r.status_code == 200, r.text
    with grid.platform.db.transaction() as s:
        row = s.get(JobRow, job)
        row.state, row.site = "succeeded", "local"
        ds = job_data.settle_one(s, row)
        assert ds is not None and (ds.kind, ds.sha256, ds.archive_sha256) == ("dir", MANIFEST, ARCHIVE)
        ds_id = ds.id
    view = grid.consumer.get(f"{API}/datasets/{ds_id}").json()
    assert (view["kind"], view["sha256"], view["archive_sha256"], view["size_bytes"]) == ("dir", MANIFEST, ARCHIVE,
                                                                                            10240)
    # the agent that holds it reports the archive it stores; the manifest hash is accepted too, anything else not
    assert grid.agent.post(f"{API}/agent/replicas", json={"held": [{"dataset_id": ds_id, "sha256": ARCHIVE}]}
                           ).status_code == 200
    assert grid.agent.post(f"{API}/agent/replicas", json={"held": [{"dataset_id": ds_id, "sha256": "c" * 64}]}
                           ).status_code == 422
    r = grid.consumer.post(f"{API}/jobs", json={"command": ["true"], "cores": 1, "memory_gb": 1, "duration_s": 60,
                                                "inputs": ["tree"]})
    with grid.platform.db.sessions() as s:
        [item] = job_data.task_data(s, [r.json()["id"]])[r.json()["id"]]["inputs"]
    assert (item["dataset_id"], item["kind"], item["sha256"]) == (ds_id, "dir", MANIFEST)
