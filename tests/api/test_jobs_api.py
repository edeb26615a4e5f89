"""Submitting, reading, listing and cancelling jobs through the HTTP API."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from suanwang.store.tables import AuditRow
from tests.api.conftest import Grid

JOB = {"command": ["python", "-c", "print(6*7)"], "cores": 1, "memory_gb": 1}


def test_submitted_job_is_placed_on_a_registered_pool(grid: Grid) -> None:
    grid.register()
    job = grid.consumer.post("/api/v1/jobs", json=JOB).json()
    assert job["state"] == "pending"
    grid.tick()
    placed = grid.consumer.get(f"/api/v1/jobs/{job['id']}").json()
    assert (placed["state"], placed["site"], placed["pool"]) == ("placed", "local", "cpu")


def test_negative_cores_is_a_422_naming_the_field(grid: Grid) -> None:
    grid.register()
    r = grid.consumer.post("/api/v1/jobs", json=JOB | {"cores": -2})
    assert r.status_code == 422
    assert "cores must not be negative" in r.json()["detail"]


def test_unknown_resource_class_is_a_422_listing_the_classes(grid: Grid) -> None:
    grid.register()
    r = grid.consumer.post("/api/v1/jobs", json=JOB | {"resource_class": "magic"})
    assert r.status_code == 422
    assert "magic" in r.json()["detail"] and "intelligent" in r.json()["detail"]


def test_more_memory_than_any_pool_is_unplaceable(grid: Grid) -> None:
    grid.register()
    r = grid.consumer.post("/api/v1/jobs", json=JOB | {"memory_gb": 4096})
    assert r.status_code == 422
    assert r.json()["error"] == "unplaceable"
    assert "local/cpu" in r.json()["detail"]


def test_malformed_json_is_a_422_not_a_500(grid: Grid) -> None:
    r = grid.consumer.post("/api/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert "JSON" in r.json()["detail"]


def test_unknown_field_is_rejected(grid: Grid) -> None:
    grid.register()
    r = grid.consumer.post("/api/v1/jobs", json=JOB | {"gpus": 2})
    assert r.status_code == 422
    assert "gpus" in r.json()["detail"]


def test_unknown_job_id_is_404(grid: Grid) -> None:
    r = grid.consumer.get("/api/v1/jobs/j-doesnotexist")
    assert r.status_code == 404
    assert "j-doesnotexist" in r.json()["detail"]


def test_another_tenants_job_answers_404_as_if_absent(grid: Grid) -> None:
    grid.register()
    job = grid.consumer.post("/api/v1/jobs", json=JOB).json()
    other = grid.new_consumer("other-lab")
    for method, path in [("GET", ""), ("POST", "/cancel"), ("GET", "/logs"), ("GET", "/usage"), ("GET", "/events")]:
        r = other.request(method, f"/api/v1/jobs/{job['id']}{path}")
        assert r.status_code == 404, (path, r.status_code)
    assert other.get("/api/v1/jobs").json()["jobs"] == []
    assert grid.consumer.get(f"/api/v1/jobs/{job['id']}").json()["state"] == "pending"


def test_missing_or_wrong_token_is_401(grid: Grid) -> None:
    assert grid.client.get("/api/v1/jobs").status_code == 401
    assert grid.as_("sw_wrong").get("/api/v1/jobs").status_code == 401


def test_consumer_may_not_issue_tokens(grid: Grid) -> None:
    r = grid.consumer.post("/api/v1/tokens", json={"role": "operator", "tenant_id": "t-operator"})
    assert r.status_code == 403


def test_cancel_pending_job_and_cancel_twice_conflicts(grid: Grid) -> None:
    grid.register()
    job = grid.consumer.post("/api/v1/jobs", json=JOB).json()
    assert grid.consumer.post(f"/api/v1/jobs/{job['id']}/cancel").json()["state"] == "cancelled"
    again = grid.consumer.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409
    assert "already cancelled" in again.json()["detail"]


def test_list_filters_by_state_and_pages_without_overlap(grid: Grid) -> None:
    grid.register()
    ids = [grid.consumer.post("/api/v1/jobs", json=JOB).json()["id"] for _ in range(7)]
    grid.consumer.post(f"/api/v1/jobs/{ids[0]}/cancel")
    seen: list[str] = []
    page = grid.consumer.get("/api/v1/jobs", params={"limit": 3}).json()
    while True:
        seen += [j["id"] for j in page["jobs"]]
        if not page["next"]:
            break
        page = grid.consumer.get("/api/v1/jobs", params={"limit": 3, "before": page["next"]}).json()
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    cancelled = grid.consumer.get("/api/v1/jobs", params={"state": "cancelled"}).json()["jobs"]
    assert [j["id"] for j in cancelled] == [ids[0]]
    assert grid.consumer.get("/api/v1/jobs", params={"state": "bogus"}).status_code == 422


def test_idempotency_key_returns_the_same_job(grid: Grid) -> None:
    grid.register()
    a = grid.consumer.post("/api/v1/jobs", json=JOB, headers={"Idempotency-Key": "k1"}).json()
    b = grid.consumer.post("/api/v1/jobs", json=JOB, headers={"Idempotency-Key": "k1"}).json()
    assert a["id"] == b["id"]
    assert len(grid.consumer.get("/api/v1/jobs").json()["jobs"]) == 1


def test_batch_is_all_or_nothing(grid: Grid) -> None:
    grid.register()
    ok = grid.consumer.post("/api/v1/jobs/batch", json={"jobs": [JOB] * 5})
    assert ok.status_code == 201 and len(ok.json()) == 5
    bad = grid.consumer.post("/api/v1/jobs/batch", json={"jobs": [JOB, JOB | {"memory_gb": 10_000}]})
    assert bad.status_code == 422
    assert len(grid.consumer.get("/api/v1/jobs").json()["jobs"]) == 5


def test_a_large_batch_is_accepted_and_each_job_stays_in_the_audit_trail(grid: Grid) -> None:
    # 50 ids do not fit the audit row's object column; PostgreSQL refused the batch with a 500 until they moved.
    grid.register()
    r = grid.consumer.post("/api/v1/jobs/batch", json={"jobs": [JOB] * 50})
    assert r.status_code == 201, r.text
    ids = [j["id"] for j in r.json()]
    with grid.platform.db.transaction() as s:
        audit = s.execute(select(AuditRow).where(AuditRow.action == "job.submit")).scalar_one()
    assert audit.object == "batch of 50" and audit.detail["jobs"] == ids


def test_capacity_reports_standard_units_and_pflops(grid: Grid) -> None:
    grid.register()
    cap = grid.consumer.get("/api/v1/capacity").json()
    # 8 generic cores at 0.04 SCU/h each
    assert Decimal(cap["sites"]["local"]["scu_per_hour"]) == Decimal("0.32")
    assert Decimal(cap["total_pflops"]) == Decimal("0.00032")


def test_openapi_is_served(grid: Grid) -> None:
    spec = grid.client.get("/openapi.json").json()
    assert "/api/v1/jobs" in spec["paths"]


def test_index_page_lists_sites_and_pools(grid: Grid) -> None:
    grid.register()
    html = grid.client.get("/").text
    assert "local" in html and "cpu" in html and "算网" in html


def test_nan_and_infinity_are_rejected(grid: Grid) -> None:
    grid.register()
    for field in ("memory_gb", "duration_s"):
        for value in ("NaN", "Infinity"):
            body = f'{{"command": ["true"], "{field}": {value}}}'
            r = grid.consumer.post("/api/v1/jobs", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 422, (field, value, r.text)
            assert field in r.json()["detail"]


def test_admin_bad_input_is_4xx(grid: Grid) -> None:
    op = grid.operator
    for name in ("b", "c"):
        assert op.post("/api/v1/sites", json={"name": name}).status_code == 201
    assert op.post("/api/v1/sites", json={"name": "b"}).status_code == 409
    assert op.post("/api/v1/sites", json={"name": "far", "lat": 200}).status_code == 422
    link = {"a": "b", "b": "c", "latency_ms": 5, "bandwidth_gbps": 10}
    assert op.post("/api/v1/links", json=link).status_code == 201
    again = op.post("/api/v1/links", json=link | {"a": "c", "b": "b"})
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    assert op.post("/api/v1/links", json=link | {"bandwidth_gbps": -1}).status_code == 422
    assert op.post("/api/v1/links", json=link | {"b": "nowhere"}).status_code == 404
    assert op.post("/api/v1/tokens", json={"role": "agent", "tenant_id": "t-operator"}).status_code == 422
    assert op.get("/api/v1/wallets/t-nobody").status_code == 404


def test_names_and_keys_longer_than_their_columns_are_refused_with_a_message(grid: Grid) -> None:
    # PostgreSQL enforces column widths that SQLite ignores: each of these was a 500 there.
    grid.register()
    long_name = grid.consumer.post("/api/v1/jobs", json=JOB | {"name": "n" * 201})
    assert long_name.status_code == 422 and "name" in long_name.text
    long_key = grid.consumer.post("/api/v1/jobs", json=JOB, headers={"Idempotency-Key": "k" * 201})
    assert long_key.status_code == 422 and "dempotency" in long_key.text
    assert grid.consumer.get("/api/v1/jobs").json()["jobs"] == []
