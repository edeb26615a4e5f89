"""Absurd values at the HTTP edge (huge or non-finite times, ids past BIGINT, NUL bytes, non-ASCII base64)
are a 4xx naming what is wrong, on SQLite and PostgreSQL alike, and write nothing."""

from __future__ import annotations

from tests.api.conftest import Grid

API = "/api/v1"
JSON = {"Content-Type": "application/json"}


ABSURD_PERIODS = [
    ("-1e300", "0", "start"), ("0", "1e300", "end"), ('"NaN"', "0", "start"), ('"sNaN"', "0", "start"),
    ('"1e999999"', "0", "start"), ("0", "1e999999", "end"), ("1e17", "2e17", "start"),
    ("253402300799", "253402300800", "start"),  # 9999-12-31T23:59:59Z: past it, datetime has no year
    ('"0001-01-01T00:00:00+14:00"', '"0002-01-01T00:00:00Z"', "start"),  # a year 0 in UTC
]


def test_a_settlement_period_outside_1970_to_9999_is_a_422(grid: Grid) -> None:
    operator = grid.operator
    for start, end, named in ABSURD_PERIODS:
        body = f'{{"start": {start}, "end": {end}}}'
        r = operator.post(f"{API}/settlements", content=body, headers=JSON)
        assert r.status_code == 422, (body, r.status_code, r.text)
        assert named in r.json()["detail"]
    assert operator.get(f"{API}/settlements").json() == []


def test_integers_in_paths_and_queries_outside_their_columns_are_a_422(grid: Grid) -> None:
    operator = grid.operator
    for settlement_id in ["123456789012345678901", "-123456789012345678901", str(2**63), "0"]:
        for suffix in ["", "/csv"]:
            r = operator.get(f"{API}/settlements/{settlement_id}{suffix}")
            assert r.status_code == 422, (settlement_id, r.text)
            assert "settlement_id" in r.json()["detail"]
    grid.register()
    job = grid.consumer.post(f"{API}/jobs", json={"command": ["true"]}).json()
    r = grid.consumer.get(f"{API}/jobs/{job['id']}/logs", params={"attempt": 10**21})
    assert r.status_code == 422, r.text
    assert "attempt" in r.json()["detail"]


def test_non_ascii_base64_log_data_is_a_422(grid: Grid) -> None:
    agent = grid.agent
    for data in ["é", "aGk=é", "日志"]:
        r = agent.post(f"{API}/agent/logs", json={"job_id": "x", "attempt": 1, "offset": 0, "data_b64": data})
        assert r.status_code == 422, r.text
        assert "data_b64" in r.json()["detail"]


NUL_URLS = [
    ("GET", "/jobs/a%00b"), ("GET", "/jobs?state=a%00"), ("GET", "/jobs?before=a%00b"), ("GET", "/jobs?site=a%00"),
    ("GET", "/jobs/a%00/events"), ("GET", "/jobs/a%00/logs"), ("GET", "/jobs/a%00/usage"),
    ("GET", "/jobs/a%00/explain"), ("POST", "/jobs/a%00/cancel"), ("GET", "/usage?job_id=a%00"),
    ("GET", "/sites/a%00"), ("GET", "/pools?site=a%00"), ("GET", "/wallets/a%00"),
    ("GET", "/ledger/transfers?job_id=a%00"), ("GET", "/ledger/transfers?consumer=%00"),
]


def test_a_nul_byte_in_a_path_or_query_is_a_422(grid: Grid) -> None:
    operator = grid.operator
    for method, url in NUL_URLS:
        r = operator.request(method, f"{API}{url}")
        assert r.status_code == 422, (url, r.status_code, r.text)
        assert "NUL" in r.json()["detail"]


NUL_BODIES = [
    ("POST", "/tenants", {"name": "a\x00", "kind": "consumer"}, "name"),
    ("POST", "/tokens", {"role": "consumer", "tenant_id": "\x00"}, "tenant_id"),
    ("POST", "/topups", {"consumer": "demo\x00", "amount_fen": 1}, "consumer"),
    ("POST", "/ledger/reversals", {"transfer": "a\x00", "reason": "x"}, "transfer"),
    ("PUT", "/wallets/demo/credit", {"credit_limit_fen": "1\x00"}, "credit_limit_fen"),
    ("POST", "/sites", {"name": "s1", "region": "r\x00"}, "region"),
    ("POST", "/links", {"a": "local", "b": "x\x00", "latency_ms": 1, "bandwidth_gbps": 1}, "b"),
]
NUL_AGENT_BODIES = [
    ("/agent/heartbeat", {"running": [{"job_id": "a\x00", "attempt": 1}]}, "running.0.job_id"),
    ("/agent/jobs/x/status", {"attempt": 1, "phase": "running", "reason": "\x00"}, "reason"),
    ("/agent/register", {"pools": [{"name": "p\x00", "resource_class": "general", "cores": 1, "memory_gb": 1}]},
     "pools.0.name"),
    ("/agent/register", {"pools": [], "info": {"k\x00": 1}}, "info.'k\\x00'"),
    ("/agent/usage", {"records": [{"job_id": "j", "attempt": 1, "seq": 0, "pool": "\x00", "start": 0, "end": 1,
                                   "wall_s": 1, "cpu_s": 0, "peak_memory_bytes": 0}]}, "records.0.pool"),
]


def test_a_nul_byte_in_a_body_is_a_422_naming_the_field(grid: Grid) -> None:
    cases = [(grid.operator, *case) for case in NUL_BODIES]
    cases += [(grid.agent, "POST", url, body, field) for url, body, field in NUL_AGENT_BODIES]
    for client, method, url, body, field in cases:
        r = client.request(method, f"{API}{url}", json=body)
        assert r.status_code == 422, (url, r.status_code, r.text)
        assert f"{field}: must not contain a NUL byte" in r.json()["detail"]
    assert [t["name"] for t in grid.operator.get(f"{API}/sites").json()] == ["local"]


def test_a_body_nested_thousands_deep_is_a_4xx(grid: Grid) -> None:
    """Price books and vouchers read their bodies with json.loads, which raises RecursionError there."""
    operator = grid.operator
    for url in ("/price-books", "/vouchers", "/tenants"):
        for body in ("[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000):
            r = operator.post(f"{API}{url}", content=body, headers=JSON)
            assert 400 <= r.status_code < 500, (url, r.status_code, r.text)
            assert r.json()["detail"]


def test_the_frameworks_own_refusals_have_the_error_shape(grid: Grid) -> None:
    r = grid.agent.post(f"{API}/agent/heartbeat", content=b"\xff\x03", headers=JSON)  # not UTF-8
    assert r.status_code == 400
    assert r.json()["error"] == "bad_request" and r.json()["detail"]


def test_openapi_declares_the_error_body_every_4xx_has(grid: Grid) -> None:
    """The schema once promised FastAPI's ``{"detail": [...]}`` for a 422, which no route answers."""
    spec = grid.client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (method, path)
            assert operation["responses"]["4XX"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorOut"}, (method, path)


def test_a_status_report_for_an_absurd_attempt_is_a_422(grid: Grid) -> None:
    # -476,269,634,513 reached an INTEGER column on PostgreSQL: a 500 (found by schemathesis)
    grid.register()
    r = grid.agent.post("/api/v1/agent/jobs/j-none/status", json={"attempt": -476_269_634_513, "phase": "failed"})
    assert r.status_code == 422 and "attempt" in r.json()["detail"], r.text
