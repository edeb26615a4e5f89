"""Authorisation over real HTTP against `suanwang serve`, for every route in the live /openapi.json.

One platform per database (module scope) serves every case: no token, a revoked token and an expired token
answer 401; each role the permission table refuses answers 403; another tenant's (or site's) object
answers 404; an agent cannot lease, report or read for another site.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from suanwang.api.app import create_app
from suanwang.api.permissions import rule_for
from suanwang.services.auth import Role
from suanwang.services.platform import Platform
from suanwang.store.db import Database
from tests.conftest import postgres_schema_url
from tests.e2e.conftest import LivePlatform, _stop, free_port

API = "/api/v1"
POOLS = [{"name": "cpu", "resource_class": "general", "engine": "local", "cores": 4, "memory_gb": 8}]


def _schema_routes() -> list[tuple[str, str]]:
    """(method, path) of every route in the OpenAPI schema, built in-process so cases exist at collection."""
    schema = create_app(Platform(Database("sqlite://")), run_loop=False).openapi()
    return sorted((m.upper(), p) for p, ops in schema["paths"].items() for m in ops)


ROUTES = _schema_routes()
PARAM_ROUTES = [r for r in ROUTES if "{" in r[1]]


@dataclass
class World:
    live: LivePlatform
    tokens: dict[str, str] = field(default_factory=dict)  # role or name -> token
    ids: dict[str, str] = field(default_factory=dict)  # path parameter -> a value naming another's object

    def call(self, token: str | None, method: str, path: str, **params: str) -> httpx.Response:
        values = {**self.ids, **params}
        url = self.live.url + re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        body = None if method in ("GET", "DELETE") else {}
        return httpx.request(method, url, headers=headers, json=body, timeout=30)


def _post(c: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = c.post(path, json=body)
    assert r.status_code in (200, 201), (path, r.text)
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data_dir: Path = tmp_path_factory.mktemp("authz")
    urls = iter(postgres_schema_url()) if request.param == "postgres" else None
    db_url = next(urls) if urls else f"sqlite:///{data_dir / 'suanwang.db'}"
    live = LivePlatform(url=f"http://127.0.0.1:{free_port()}", data_dir=data_dir, db_url=db_url)
    try:
        live.start_server()
        yield _populate(World(live))
    finally:
        for proc in reversed(live.procs):
            _stop(proc)
        if urls:
            next(urls, None)  # drop the scratch schema


def _populate(w: World) -> World:
    live = w.live
    op = live.client(live.token("operator"))
    tok = lambda role, tenant, **kw: _post(op, "/tokens", {"role": role, "tenant_id": tenant, **kw})  # noqa: E731
    w.tokens["expired"] = tok("consumer", "t-operator", lifetime_s=0.001)["token"]
    w.tokens.update(operator=live.token("operator"), consumer=live.token("consumer"), agent=live.token("agent"))
    other = _post(op, "/tenants", {"name": "other-consumer", "kind": "consumer"})
    w.tokens["other"] = tok("consumer", other["id"])["token"]
    prov = _post(op, "/tenants", {"name": "a-provider", "kind": "provider"})
    w.tokens["provider"] = tok("provider", prov["id"])["token"]
    aud = _post(op, "/tenants", {"name": "an-auditor", "kind": "auditor"})
    w.tokens["auditor"] = tok("auditor", aud["id"])["token"]
    revoked = tok("consumer", other["id"])
    _post(op, f"/tokens/{revoked['id']}/revoke", {})
    w.tokens["revoked"] = revoked["token"]
    _post(op, "/sites", {"name": "far"})
    w.tokens["far-agent"] = tok("agent", "t-operator", site="far")["token"]
    agent = live.client(w.tokens["agent"])
    _post(agent, "/agent/register", {"pools": POOLS})
    _post(op, "/topups", {"consumer": other["id"], "amount_fen": 10_000_000})
    job = _post(live.client(w.tokens["other"]), "/jobs", {"command": ["true"], "cores": 1, "memory_gb": 1,
                                                           "resource_class": "general"})
    deadline = time.time() + 30
    while op.get(f"/jobs/{job['id']}").json()["state"] == "pending" and time.time() < deadline:
        time.sleep(0.05)
    assert op.get(f"/jobs/{job['id']}").json()["site"] == "local"
    _post(live.client(w.tokens["far-agent"]), "/agent/register", {"pools": POOLS})  # after: the job is local's
    theirs = live.client(w.tokens["other"])
    dataset = _post(theirs, "/datasets", {"name": "theirs", "size_bytes": 3, "sha256": "a" * 64, "sites": ["local"]})
    run = _post(theirs, "/workflows", {"name": "theirs", "steps": [
        {"name": "s", "job": {"command": ["true"], "cores": 1, "memory_gb": 1, "resource_class": "general"}}]})
    _post(theirs, f"/workflows/{run['id']}/cancel", {})  # kept as an object, but its step leases to no agent
    w.ids.update(job_id=job["id"], consumer=other["id"], name="local", token_id=revoked["id"], provider=prov["id"],
                 programme="nope", settlement_id="1", dataset_id=dataset["id"], run_id=run["id"],
                 # no order, session or transfer of another's is needed to show 404: ids that name nothing
                 # answer as another's do (the services look them up scoped to the caller)
                 order_id="o-nope", session_id="da-2999-01-01", transfer_id="x-nope")
    return w


def test_the_live_schema_is_what_the_cases_cover(world: World) -> None:
    live = httpx.get(world.live.url + "/openapi.json").json()
    assert sorted((m.upper(), p) for p, ops in live["paths"].items() for m in ops) == ROUTES


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_no_revoked_or_expired_token_is_401(world: World, method: str, path: str) -> None:
    rule = rule_for(method, path)
    assert rule is not None, f"{method} {path} has no permission entry"
    if rule.public:
        pytest.skip("public route")
    for name in (None, "revoked", "expired", "sw_never_issued"):
        token = world.tokens.get(name, name) if name else None
        r = world.call(token, method, path)
        assert r.status_code == 401, (name, r.text)


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_roles_the_table_refuses_get_403(world: World, method: str, path: str) -> None:
    rule = rule_for(method, path)
    assert rule is not None
    refused = [] if rule.public else [r for r in Role if r not in rule.roles]
    for role in refused:
        r = world.call(world.tokens[role.value], method, path)
        assert r.status_code == 403, (role, r.text)


# For each route with an object id: who asks for another tenant's (or site's) object, and which id.
CROSS_TENANT: dict[tuple[str, str], tuple[str, dict[str, str]]] = {
    **{("GET", f"{API}/jobs/{{job_id}}{tail}"): ("consumer", {}) for tail in ("", "/explain", "/events", "/logs",
                                                                              "/usage")},
    ("POST", f"{API}/jobs/{{job_id}}/cancel"): ("consumer", {}),
    ("GET", f"{API}/wallets/{{consumer}}"): ("consumer", {}),
    ("POST", f"{API}/sites/{{name}}/enrolments"): ("provider", {}),
    ("POST", f"{API}/agent/jobs/{{job_id}}/status"): ("far-agent", {}),
    ("GET", f"{API}/datasets/{{dataset_id}}"): ("consumer", {}),
    ("POST", f"{API}/datasets/{{dataset_id}}/shares"): ("consumer", {}),
    ("GET", f"{API}/workflows/{{run_id}}"): ("consumer", {}),
    ("POST", f"{API}/workflows/{{run_id}}/cancel"): ("consumer", {}),
    ("PATCH", f"{API}/market/orders/{{order_id}}"): ("consumer", {}),
    ("DELETE", f"{API}/market/orders/{{order_id}}"): ("consumer", {}),
    ("GET", f"{API}/market/sessions/{{session_id}}/result"): ("consumer", {}),
    ("POST", f"{API}/agent/jobs/{{job_id}}/output"): ("far-agent", {}),
    ("POST", f"{API}/agent/transfers/{{transfer_id}}/done"): ("far-agent", {}),
    ("POST", f"{API}/agent/transfers/{{transfer_id}}/failed"): ("far-agent", {}),
    ("POST", f"{API}/agent/replicas/{{dataset_id}}/deleted"): ("far-agent", {}),  # no replica of it at its site
}
# a valid body where the route reads one, so the answer is about the object, not the body
BODIES: dict[str, dict[str, Any]] = {
    "/status": {"attempt": 1, "phase": "failed"}, "/shares": {"tenant": "t-operator"},
    "/output": {"attempt": 1, "size_bytes": 1, "sha256": "a" * 64}, "/done": {"sha256": "a" * 64, "seconds": 1},
    "/failed": {"reason": "no"}, "/orders/{order_id}": {"quantity": 1}, "/deleted": {"generation": 0},
}


@pytest.mark.parametrize(("method", "path"), PARAM_ROUTES)
def test_another_tenants_object_is_404(world: World, method: str, path: str) -> None:
    case = CROSS_TENANT.get((method, path))
    rule = rule_for(method, path)
    assert rule is not None
    if case is None:
        # only routes that no tenant-scoped role may call go without a case: their callers see everything
        assert rule.roles <= {Role.OPERATOR, Role.AUDITOR} or path == f"{API}/sites/{{name}}", (method, path)
        pytest.skip("operator/auditor only, or a public grid object")
    who, params = case
    body = next((b for tail, b in BODIES.items() if path.endswith(tail)), {})
    token = world.tokens[who]
    values = {**world.ids, **params}
    url = world.live.url + re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
    r = httpx.request(method, url, headers={"Authorization": f"Bearer {token}"},
                      json=None if method == "GET" else body, timeout=30)
    assert r.status_code == 404, r.text


def test_agent_cannot_lease_report_or_read_for_another_site(world: World) -> None:
    far = world.live.client(world.tokens["far-agent"])
    job_id = world.ids["job_id"]
    assert far.post("/agent/lease", json={"max_jobs": 100}).json() == []
    assert far.post(f"/agent/jobs/{job_id}/status", json={"attempt": 1, "phase": "failed"}).status_code == 404
    usage = {"job_id": job_id, "attempt": 1, "seq": 1, "pool": "cpu", "start": 0, "end": 1, "wall_s": 1,
             "cpu_s": 1, "device_s": 0, "peak_memory_bytes": 0}
    r = far.post("/agent/usage", json={"records": [usage]})
    assert r.status_code == 404 and "leased to site far" in r.text
    assert far.post("/agent/logs", json={"job_id": job_id, "attempt": 1, "offset": 0,
                                         "data_b64": "aGk="}).status_code == 404
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/logs", "/usage", "/jobs"):
        assert far.get(path).status_code == 403
    # the job's own site still gets it
    mine = world.live.client(world.tokens["agent"]).post("/agent/lease", json={"max_jobs": 100}).json()
    assert [t["job_id"] for t in mine] == [job_id]
