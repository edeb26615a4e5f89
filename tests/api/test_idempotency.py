"""Idempotency-Key on every POST: same key and body → the first answer; another body → 409."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from suanwang.services import idempotency
from suanwang.store.tables import IdempotencyRow, JobRow, TenantRow
from tests.api.conftest import Grid

API = "/api/v1"
JOB = {"command": ["true"], "cores": 1, "memory_gb": 1}


def _tenants(grid: Grid) -> int:
    with grid.platform.db.sessions() as s:
        return s.scalar(select(func.count()).select_from(TenantRow)) or 0


def test_a_retried_create_answers_the_first_result_and_creates_once(grid: Grid) -> None:
    before = _tenants(grid)
    h = {"Idempotency-Key": "tenant-acme-1"}
    a = grid.operator.post(f"{API}/tenants", json={"name": "acme", "kind": "consumer"}, headers=h)
    b = grid.operator.post(f"{API}/tenants", json={"name": "acme", "kind": "consumer"}, headers=h)
    assert a.status_code == b.status_code == 201
    assert a.json() == b.json() and b.headers["idempotent-replayed"] == "true"
    assert _tenants(grid) == before + 1


def test_the_same_key_with_another_body_is_a_conflict(grid: Grid) -> None:
    grid.register()
    h = {"Idempotency-Key": "job-1"}
    first = grid.consumer.post(f"{API}/jobs", json=JOB, headers=h)
    other = grid.consumer.post(f"{API}/jobs", json=JOB | {"cores": 2}, headers=h)
    assert first.status_code == 201
    assert other.status_code == 409 and "different request" in other.json()["detail"]
    with grid.platform.db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(JobRow)) == 1


def test_keys_are_scoped_to_the_callers_tenant(grid: Grid) -> None:
    grid.register()
    other = grid.new_consumer("other")
    h = {"Idempotency-Key": "shared-key"}
    a = grid.consumer.post(f"{API}/jobs", json=JOB, headers=h).json()
    b = other.post(f"{API}/jobs", json=JOB, headers=h).json()
    assert a["id"] != b["id"] and a["tenant_id"] != b["tenant_id"]


def test_a_replayed_top_up_moves_money_once_and_a_changed_one_is_refused(grid: Grid) -> None:
    consumer = grid.consumer.get(f"{API}/whoami").json()["tenant_id"]
    h = {"Idempotency-Key": "topup-7"}
    for _ in range(3):
        r = grid.operator.post(f"{API}/topups", json={"consumer": consumer, "amount_fen": 500}, headers=h)
        assert r.status_code == 201
    assert grid.consumer.get(f"{API}/wallet").json()["balance"]["fen"] == 500
    r = grid.operator.post(f"{API}/topups", json={"consumer": consumer, "amount_fen": 900}, headers=h)
    assert r.status_code == 409
    assert grid.consumer.get(f"{API}/wallet").json()["balance"]["fen"] == 500


def test_a_replay_never_carries_a_tokens_plaintext(grid: Grid) -> None:
    consumer = grid.consumer.get(f"{API}/whoami").json()["tenant_id"]
    h = {"Idempotency-Key": "token-1"}
    first = grid.operator.post(f"{API}/tokens", json={"role": "consumer", "tenant_id": consumer}, headers=h).json()
    again = grid.operator.post(f"{API}/tokens", json={"role": "consumer", "tenant_id": consumer}, headers=h).json()
    assert first["token"].startswith("sw_")
    assert again["id"] == first["id"] and again["token"] is None and "shown once" in again["token_note"]
    with grid.platform.db.sessions() as s:
        stored = s.scalars(select(IdempotencyRow.body)).all()
    assert all(first["token"].encode() not in b for b in stored)


def test_a_first_request_still_running_answers_retry_later(grid: Grid) -> None:
    tenant = grid.operator.get(f"{API}/whoami").json()["tenant_id"]
    body = b'{"name": "slow", "kind": "consumer"}'
    from suanwang.domain.idempotency import fingerprint

    idempotency.claim(grid.platform.db, tenant, "slow-1", fingerprint("POST", f"{API}/tenants", body))
    r = grid.operator.post(f"{API}/tenants", content=body, headers={"Idempotency-Key": "slow-1",
                                                                      "Content-Type": "application/json"})
    assert r.status_code == 409 and r.headers["retry-after"] == "1"


def test_a_first_request_that_died_unanswered_is_run_again(grid: Grid) -> None:
    tenant = grid.operator.get(f"{API}/whoami").json()["tenant_id"]
    body = b'{"name": "phoenix", "kind": "consumer"}'
    from suanwang.domain.idempotency import fingerprint

    idempotency.claim(grid.platform.db, tenant, "dead-1", fingerprint("POST", f"{API}/tenants", body),
                      now=time.time() - 3600)
    r = grid.operator.post(f"{API}/tenants", content=body, headers={"Idempotency-Key": "dead-1",
                                                                      "Content-Type": "application/json"})
    assert r.status_code == 201 and r.json()["name"] == "phoenix"


def test_a_server_error_releases_the_key(grid: Grid) -> None:
    db = grid.platform.db
    idempotency.claim(db, "t-x", "k", "f" * 64)
    idempotency.answer(db, "t-x", "k", 500, "", b"")
    with db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(IdempotencyRow)) == 0


def test_unusable_keys_are_refused_and_nothing_is_created(grid: Grid) -> None:
    before = _tenants(grid)
    for key in ("x" * 201, "with space", "tab\tkey"):
        r = grid.operator.post(f"{API}/tenants", json={"name": "k", "kind": "consumer"},
                               headers={"Idempotency-Key": key})
        assert r.status_code == 422 and "Idempotency-Key" in r.json()["detail"]
    assert _tenants(grid) == before


def test_without_a_valid_token_the_key_changes_nothing(grid: Grid) -> None:
    r = grid.client.post(f"{API}/tenants", json={"name": "k", "kind": "consumer"},
                         headers={"Idempotency-Key": "anon", "Authorization": "Bearer sw_nope"})
    assert r.status_code == 401
    with grid.platform.db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(IdempotencyRow)) == 0
