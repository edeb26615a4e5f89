"""Overlong strings in every write are refused with a message, never a 500.

PostgreSQL enforces the widths of VARCHAR columns and SQLite ignores them, so
a value too long for its column passed every SQLite test and failed with a
500 on PostgreSQL.  Each request below puts 5,000 characters, or a number no BIGINT
holds, in one field.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.api.conftest import Grid

API = "/api/v1"
LONG = "x" * 5000
HUGE = 2**70  # wider than any BIGINT


def _requests(tenant: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    now = time.time()
    voucher = {"id": "v", "share_pct": 50, "cap_per_consumer_fen": 1, "valid_from": now, "valid_until": now + 10}
    return [
        ("POST", "/topups", {"consumer": LONG, "amount_fen": 5}),
        ("POST", "/topups", {"consumer": tenant, "amount_fen": 5, "currency": LONG}),
        ("PUT", f"/wallets/{LONG}/credit", {"credit_limit_fen": 5}),
        ("PUT", f"/contracts/{LONG}", {"fee_bps": 5}),
        ("POST", "/vouchers", voucher | {"id": LONG}),
        ("POST", "/vouchers", voucher | {"consumers": [LONG], "resource_classes": [LONG]}),
        ("POST", f"/vouchers/{LONG}/fund", {"amount_fen": 5}),
        ("POST", "/ledger/reversals", {"transfer": LONG, "reason": LONG}),
        ("POST", "/price-books", {"entries": [{"unit_price_fen": 1, "site": LONG, "pool": LONG, "tier": LONG}]}),
        ("POST", "/tenants", {"name": LONG, "kind": "consumer"}),
        ("POST", "/tenants", {"name": "ok", "kind": LONG}),
        ("POST", "/tokens", {"role": "consumer", "tenant_id": LONG}),
        ("POST", "/tokens", {"role": "consumer", "tenant_id": tenant, "name": LONG}),
        ("POST", "/tokens", {"role": "agent", "tenant_id": tenant, "site": LONG}),
        ("POST", "/sites", {"name": "s1", "region": LONG}),
        ("POST", "/sites", {"name": "s2", "province": LONG}),
        ("POST", "/sites", {"name": "s3", "owner": LONG}),
        ("POST", "/links", {"a": LONG, "b": LONG, "latency_ms": 1, "bandwidth_gbps": 1}),
        ("POST", "/quotes", {"job": {"command": ["x"], "name": LONG, "region": LONG, "device_model": LONG}}),
        ("POST", "/settlements", {"start": LONG, "end": LONG}),
        ("POST", "/jobs", {"command": ["x"], "name": LONG}),
        ("POST", "/jobs", {"command": ["x"], "data_site": LONG, "consumer_site": LONG, "device_model": LONG}),
        ("POST", "/jobs", {"command": ["x"], "service_level": LONG, "on_lost": LONG, "resource_class": LONG}),
        ("POST", "/jobs/batch", {"jobs": [{"command": ["x"], "name": LONG}]}),
        ("POST", "/jobs", {"command": ["x"], "priority": HUGE}),
        ("POST", "/jobs", {"command": ["x"], "max_price_fen": HUGE}),
        ("POST", "/jobs", {"command": ["x"], "cores": HUGE}),
        ("POST", "/topups", {"consumer": tenant, "amount_fen": HUGE}),
        ("PUT", f"/wallets/{tenant}/credit", {"credit_limit_fen": HUGE}),
        ("POST", "/vouchers", voucher | {"cap_per_consumer_fen": HUGE}),
        ("POST", "/vouchers", voucher | {"id": "w", "fund_fen": HUGE}),
        ("POST", "/price-books", {"entries": [{"unit_price_fen": HUGE}]}),
        ("GET", f"/jobs/{LONG}", None),
        ("GET", f"/jobs?state={LONG}&site={LONG}&before={LONG}", None),
        ("GET", f"/wallets/{LONG}", None),
    ]


def test_every_overlong_field_is_a_4xx_with_a_message(grid: Grid) -> None:
    grid.register()
    tenant = grid.operator.post(f"{API}/tenants", json={"name": "acme", "kind": "consumer"}).json()["id"]
    before = {what: grid.operator.get(f"{API}/{what}").json() for what in ("sites", "pools", "vouchers")}
    answers = []
    for method, path, body in _requests(tenant):
        r = grid.operator.request(method, API + path, json=body)
        said = r.json().get("detail") if r.headers.get("content-type") == "application/json" else None
        answers.append((method, path[:30], sorted(body or {}), r.status_code, bool(said)))
    assert [a for a in answers if not (400 <= a[3] < 500 and a[4])] == []
    # Nothing half-written: no site, pool or voucher programme (a refused fund_fen comes after its row).
    assert {what: grid.operator.get(f"{API}/{what}").json() for what in before} == before
    assert grid.operator.get(f"{API}/jobs").json()["jobs"] == []
    assert grid.operator.get(f"{API}/wallets/{tenant}").json()["balance"]["fen"] == 0


@pytest.mark.parametrize("programme", ["", "a" * 33, "has space", "ünï"])
def test_a_voucher_programme_id_is_short_and_plain(grid: Grid, programme: str) -> None:
    now = time.time()
    r = grid.operator.post(f"{API}/vouchers", json={"id": programme, "share_pct": 50, "cap_per_consumer_fen": 1,
                                                    "valid_from": now, "valid_until": now + 10})
    assert r.status_code == 422 and "voucher programme id" in r.json()["detail"]
