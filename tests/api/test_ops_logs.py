"""One JSON log line per request with its request id (the caller's when sane), path template, status and token id;
the agent sends and logs the same ids; an unhandled error answers 500 with the id and no traceback."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from suanwang.agent.runner import Agent
from suanwang.observability.logs import configure_logging
from suanwang.services.auth import hash_token
from suanwang.store.tables import TokenRow
from tests.agent.test_runner import FakeEngine
from tests.api.conftest import Grid


class AccessLog:
    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog

    def __iter__(self) -> Iterator[logging.LogRecord]:
        return iter(self.caplog.records)


@pytest.fixture
def access_log(caplog: pytest.LogCaptureFixture) -> AccessLog:
    caplog.set_level(logging.INFO, logger="suanwang.http")
    return AccessLog(caplog)


def _lines(records: Any) -> list[logging.LogRecord]:
    return [r for r in records if r.name == "suanwang.http" and hasattr(r, "status")]


def test_a_sane_request_id_is_kept_and_logged_with_route_status_and_token_id(
        grid: Grid, access_log: AccessLog) -> None:
    grid.register()
    token = grid.token("consumer")
    job = grid.consumer.post("/api/v1/jobs", json={"command": ["true"]}).json()
    r = grid.consumer.get(f"/api/v1/jobs/{job['id']}", headers={"X-Request-ID": "trace-42.a:b"})
    assert r.headers["X-Request-ID"] == "trace-42.a:b"
    line = [rec for rec in _lines(access_log) if rec.request_id == "trace-42.a:b"][-1]  # type: ignore[attr-defined]
    with grid.platform.db.sessions() as s:
        token_id = s.query(TokenRow).filter_by(token_hash=hash_token(token)).one().id
    assert (line.method, line.path, line.status, line.token_id) == (  # type: ignore[attr-defined]
        "GET", "/api/v1/jobs/{job_id}", 200, token_id)
    assert line.duration_ms >= 0  # type: ignore[attr-defined]
    assert job["id"] not in line.path  # type: ignore[attr-defined]
    assert all(token not in rec.getMessage() and token not in str(vars(rec)) for rec in access_log)


@pytest.mark.parametrize("bad", ["has space", "x" * 65, "-starts-with-dash", "semi;colon", ""])
def test_an_unsafe_request_id_is_replaced(grid: Grid, bad: str) -> None:
    r = grid.client.get("/api/v1/health", headers={"X-Request-ID": bad})
    rid = r.headers["X-Request-ID"]
    assert rid != bad and len(rid) == 32 and rid.isalnum()


def test_unhandled_error_answers_500_with_the_request_id_and_no_traceback(
        grid: Grid, access_log: AccessLog, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(settings: Any) -> str:
        raise RuntimeError("secret internals at line 42")

    monkeypatch.setattr(grid.platform.health, "problem", boom)
    r = grid.client.get("/api/v1/health", headers={"X-Request-ID": "req-500"})
    assert r.status_code == 500
    assert r.headers["X-Request-ID"] == "req-500"
    assert r.json()["request_id"] == "req-500"
    assert "Traceback" not in r.text and "secret internals" not in r.text
    logged = [rec for rec in access_log if getattr(rec, "request_id", None) == "req-500"]
    assert any(rec.exc_info for rec in logged)  # the traceback is in the log, with the id
    assert [rec.status for rec in _lines(logged)] == [500]  # type: ignore[attr-defined]


def test_json_format_off_a_terminal_and_plain_on_one() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        out = io.StringIO()  # not a terminal: auto means JSON
        configure_logging("auto", "INFO", stream=out)
        logging.getLogger("suanwang.test").info("placed %d jobs", 3, extra={"request_id": "r1", "site": "qingyang",
                                                                            "detail": {"ok": False}, "at": Path("/x")})
        line = json.loads(out.getvalue())
        assert line["msg"] == "placed 3 jobs" and line["request_id"] == "r1" and line["site"] == "qingyang"
        assert line["detail"] == {"ok": False} and line["at"] == "/x"
        assert line["level"] == "info" and line["ts"].endswith("Z")

        class Tty(io.StringIO):
            def isatty(self) -> bool:
                return True

        tty = Tty()
        configure_logging("auto", "INFO", stream=tty)
        logging.getLogger("suanwang.test").info("hello", extra={"request_id": "r2"})
        assert "hello" in tty.getvalue() and "request_id=r2" in tty.getvalue() and not tty.getvalue().startswith("{")
    finally:
        for h in root.handlers[:]:
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])


def test_the_agent_sends_a_request_id_per_call_and_logs_with_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sent: list[str] = []

    def platform(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["X-Request-ID"])
        if request.url.path.endswith("/register"):
            return httpx.Response(200, json={"site": "s", "pools": ["p"], "lease_s": 15})
        if request.url.path.endswith("/lease"):
            return httpx.Response(503, text="overloaded")
        return httpx.Response(200, json={})

    agent = Agent("http://platform", "t", FakeEngine(), tmp_path)
    agent.http = httpx.Client(base_url="http://platform/api/v1", transport=httpx.MockTransport(platform))
    caplog.set_level(logging.DEBUG, logger="suanwang.agent")
    agent.register()
    with pytest.raises(Exception, match="overloaded") as failed:
        agent.lease(0)
    agent.close()
    assert len(sent) == 2 and len(set(sent)) == 2
    calls = [rec for rec in caplog.records if rec.getMessage() == "platform call"]
    assert [rec.request_id for rec in calls] == sent  # type: ignore[attr-defined]
    assert sent[1] in str(failed.value)  # the failure names the id the platform logged
    assert sent[1] == agent._lease_request  # a lease's id is the one it replays with
