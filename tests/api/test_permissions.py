"""The permission table: every route has an entry, the gate decides before the body is read, fail closed."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.routing import iter_route_contexts

from suanwang.api.app import create_app
from suanwang.api.permissions import TABLE, render_markdown, rule_for
from suanwang.services.platform import Platform
from suanwang.store.db import Database
from tests.api.conftest import Grid

ROOT = Path(__file__).resolve().parents[2]


def app_routes() -> set[tuple[str, str]]:
    app = create_app(Platform(Database("sqlite://")), run_loop=False)
    return {(m, rc.path) for rc in iter_route_contexts(app.routes) for m in (rc.methods or ()) if m != "HEAD"}


def test_every_route_has_an_entry_and_every_entry_a_route() -> None:
    routes = app_routes()
    assert {r for r in routes if rule_for(*r) is None} == set()
    assert set(TABLE) - routes == set()  # no stale entries that hide a typo


def test_committed_doc_equals_the_render() -> None:
    assert (ROOT / "docs" / "permissions.md").read_text() == render_markdown()


def test_auditor_is_read_only_and_agent_only_speaks_the_agent_protocol() -> None:
    for (method, path), rule in TABLE.items():
        if method != "GET":
            assert "auditor" not in rule.roles, (method, path)
        if "agent" in rule.roles:
            assert path.startswith("/api/v1/agent/") or path == "/api/v1/whoami", path


def test_a_route_without_an_entry_is_refused(grid: Grid) -> None:
    @grid.client.app.get("/api/v1/forgotten")
    def forgotten() -> dict[str, str]:
        return {"secret": "yes"}

    grid.client.app.middleware_stack = None  # rebuild the gate's route list
    grid.client.app.middleware_stack = grid.client.app.build_middleware_stack()
    r = grid.operator.get("/api/v1/forgotten")
    assert r.status_code == 403 and "no entry in the permission table" in r.json()["detail"]


def test_wrong_role_is_403_before_the_body_is_parsed(grid: Grid) -> None:
    # a consumer posting rubbish to the agent protocol: before the gate this was 422 (or 500)
    for body in (b"{not json", b'{"running": "x"}', b"\x00" * 10):
        r = grid.consumer.post("/api/v1/agent/heartbeat", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 403, r.text
        assert "allowed: agent" in r.json()["detail"]


def test_no_token_is_401_before_the_body_is_parsed(grid: Grid) -> None:
    r = grid.client.post("/api/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("path", ["/api/v1/health", "/openapi.json", "/metrics", "/"])
def test_public_routes_need_no_token(grid: Grid, path: str) -> None:
    assert grid.client.get(path).status_code == 200


def test_agent_may_not_read_jobs_or_usage(grid: Grid) -> None:
    for path in ("/api/v1/jobs", "/api/v1/usage", "/api/v1/sites", "/api/v1/ledger/transfers"):
        assert grid.agent.get(path).status_code == 403, path


def test_cli_renders_the_table(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from suanwang.cli.main import app

    out = CliRunner().invoke(app, ["admin", "permissions", "--markdown"])
    assert out.exit_code == 0 and out.output == render_markdown()
