"""Datasets through the API: register, read (own tenant, or shared), replicas reported by agents."""

from __future__ import annotations

import hashlib

from tests.api.conftest import Grid

SHA = hashlib.sha256(b"corpus").hexdigest()


def _register(client, **body: object):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/datasets", json={"name": "corpus", "size_bytes": 6, "sha256": SHA, **body})


def test_register_versions_read_and_isolation(grid: Grid) -> None:
    r = _register(grid.consumer, sites=["local"])
    assert r.status_code == 201, r.text
    d1 = r.json()
    assert (d1["version"], [x["site"] for x in d1["replicas"]]) == (1, ["local"])
    d2 = _register(grid.consumer).json()
    assert d2["version"] == 2  # no version given: the next one
    assert _register(grid.consumer, version=2).status_code == 409
    other = grid.new_consumer("other")
    assert other.get(f"/api/v1/datasets/{d1['id']}").status_code == 404  # another tenant's: as if absent
    assert other.get("/api/v1/datasets").json() == []
    assert other.post(f"/api/v1/datasets/{d1['id']}/shares", json={"tenant": "other"}).status_code == 404
    assert grid.consumer.post(f"/api/v1/datasets/{d1['id']}/shares", json={"tenant": "other"}).status_code == 200
    assert other.get(f"/api/v1/datasets/{d1['id']}").json()["sha256"] == SHA  # shared explicitly
    assert [d["id"] for d in other.get("/api/v1/datasets").json()] == [d1["id"]]
    assert other.get(f"/api/v1/datasets/{d2['id']}").status_code == 404  # only that version
    assert len(grid.operator.get("/api/v1/datasets").json()) == 2


def test_bad_input_is_a_named_4xx(grid: Grid) -> None:
    for body, word in (({"size_bytes": 2**70}, "size_bytes"), ({"size_bytes": -1}, "size_bytes"),
                       ({"sha256": "z" * 64}, "sha256"), ({"name": "../etc"}, "name"),
                       ({"name": "a\x00b"}, "NUL"), ({"version": 2**40}, "version"), ({"sites": ["mars"]}, "mars"),
                       ({"size_bytes": 1.5}, "size_bytes")):
        r = _register(grid.consumer, **body)
        assert 400 <= r.status_code < 500 and word in r.text, (body, r.status_code, r.text)
    raw = grid.consumer.post("/api/v1/datasets", content=f'{{"name": "c", "size_bytes": 1e999999, "sha256": "{SHA}"}}',
                             headers={"Content-Type": "application/json"})
    assert raw.status_code == 422 and "size_bytes" in raw.text
    assert grid.consumer.get("/api/v1/datasets/nope").status_code == 404


def test_sovereignty_region_refuses_a_replica_outside_it(grid: Grid) -> None:
    r = _register(grid.consumer, region="cn-east", sites=["local"])  # the local site is in region "local"
    assert r.status_code == 422 and "cn-east" in r.text
    d = _register(grid.consumer, region="cn-east").json()
    r = grid.agent.post("/api/v1/agent/replicas", json={"held": [{"dataset_id": d["id"], "sha256": SHA}]})
    assert r.status_code == 422 and "region" in r.text
    assert grid.consumer.get(f"/api/v1/datasets/{d['id']}").json()["replicas"] == []


def test_agents_report_replicas_verified_by_hash(grid: Grid) -> None:
    d = _register(grid.consumer).json()
    bad = grid.agent.post("/api/v1/agent/replicas", json={"held": [{"dataset_id": d["id"], "sha256": "0" * 64}]})
    assert bad.status_code == 422
    assert grid.agent.post("/api/v1/agent/replicas",
                           json={"held": [{"dataset_id": "d-nope", "sha256": SHA}]}).status_code == 404
    ok = grid.agent.post("/api/v1/agent/replicas", json={"held": [{"dataset_id": d["id"], "sha256": SHA}]})
    assert ok.json() == {"present": 1}
    assert [x["site"] for x in grid.consumer.get(f"/api/v1/datasets/{d['id']}").json()["replicas"]] == ["local"]
    assert grid.consumer.post("/api/v1/agent/replicas", json={"held": []}).status_code == 403  # agents only
