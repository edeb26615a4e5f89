"""GET /audit and GET /audit/verify: operator and auditor only; the control loop seals what they list."""

from __future__ import annotations

from sqlalchemy import text

from tests.api.conftest import Grid


def _auditor(g: Grid):  # type: ignore[no-untyped-def]
    t = g.operator.post("/api/v1/tenants", json={"name": "regulator", "kind": "auditor"}).json()
    return g.as_(g.operator.post("/api/v1/tokens", json={"role": "auditor", "tenant_id": t["id"]}).json()["token"])


def test_the_loop_seals_the_audit_trail_and_verify_says_ok(grid: Grid) -> None:
    auditor = _auditor(grid)
    for i in range(3):
        grid.new_consumer(f"c{i}")
    page = auditor.get("/api/v1/audit", params={"limit": 4}).json()
    assert len(page["rows"]) == 4 and all(r["seal"] is None for r in page["rows"])
    grid.tick()
    rows = auditor.get("/api/v1/audit", params={"limit": 4}).json()["rows"]
    assert [r["id"] for r in rows] == [r["id"] for r in page["rows"]] and all(r["seal"] for r in rows)
    rest = auditor.get("/api/v1/audit", params={"before": page["next"]}).json()
    assert rest["next"] is None and all(r["id"] < page["next"] for r in rest["rows"]) and rest["rows"]
    report = grid.operator.get("/api/v1/audit/verify").json()
    assert report["ok"] and report["chains"][0]["checked"] == len(rows) + len(rest["rows"])


def test_verify_names_a_changed_row(grid: Grid) -> None:
    grid.new_consumer("acme")
    grid.tick()
    db = grid.platform.db
    with db.engine.begin() as conn:
        if db.engine.dialect.name == "postgresql":
            conn.execute(text("DROP TRIGGER audit_append_only ON audit"))
        else:
            conn.execute(text("DROP TRIGGER audit_no_update"))
        conn.execute(text("UPDATE audit SET actor = 'someone-else' WHERE id = 1"))
    report = grid.operator.get("/api/v1/audit/verify").json()
    assert not report["ok"] and report["chains"][0]["first_break"]["row_id"] == 1


def test_only_operator_and_auditor_read_the_trail(grid: Grid) -> None:
    for path in ("/api/v1/audit", "/api/v1/audit/verify"):
        assert grid.consumer.get(path).status_code == 403
        assert grid.agent.get(path).status_code == 403
    assert grid.client.get("/api/v1/audit").status_code == 401


def test_bad_paging_is_a_422_naming_the_parameter(grid: Grid) -> None:
    # 11,208,302,714 passes BIGINT but not audit.id's INTEGER: PostgreSQL answered a 500 (found by schemathesis)
    for params in ({"limit": 0}, {"limit": 10**6}, {"before": 2**70}, {"before": 11_208_302_714}, {"before": "NaN"},
                   {"before": -1}):
        r = grid.operator.get("/api/v1/audit", params=params)
        assert r.status_code == 422 and next(iter(params)) in r.json()["detail"], (params, r.text)
