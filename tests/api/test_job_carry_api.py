"""At submit, a job carrying what no process can receive is a 4xx naming the field, never a 201 or a 500."""

from __future__ import annotations

import pytest

from tests.api.conftest import Grid

BAD = [
    ({"command": ["echo", "a\u0000b"]}, "command.1: must not contain a NUL byte"),
    ({"command": ["echo"], "env": {"A\u0000": "x"}}, "must not contain a NUL byte"),
    ({"command": ["echo"], "env": {"A": "x\u0000"}}, "env.'A': must not contain a NUL byte"),
    ({"command": ["echo"], "env": {"A=B": "x"}}, "env.'A=B': a variable name must not contain '='"),
    ({"command": ["echo"], "env": {"{x}": "{y}="}}, None),  # braces are fine (and not a format string)
    ({"command": ["echo", "x" * 2_000_000]}, "command.1: 2000000 bytes"),
    ({"command": ["echo", "x" * 10_000_000]}, "the limit is"),  # past the request-size cap: 413 at the gate
    ({"command": ["echo"], "env": {"V": "x" * 200_000}}, "env.'V': 200002 bytes"),
    ({"command": ["echo"] + ["y" * 100_000] * 12}, "bytes in all, more than a job may carry"),
    ({"command": ["echo"], "workdir": "/tmp\u0000"}, "workdir: must not contain a NUL byte"),
]


@pytest.mark.parametrize(("body", "message"), BAD)
def test_submit_refuses_what_a_process_cannot_carry(grid: Grid, body: dict, message: str | None) -> None:  # type: ignore[type-arg]
    grid.register()
    for path, payload in (("/api/v1/jobs", body), ("/api/v1/jobs/batch", {"jobs": [body]})):
        r = grid.consumer.post(path, json=payload)
        if message is None:
            assert r.status_code == 201, r.text
            continue
        assert r.status_code == (413 if message == "the limit is" else 422), r.text
        assert message in r.json()["detail"]
    r = grid.consumer.get("/api/v1/jobs")
    assert len(r.json()["jobs"]) == (2 if message is None else 0)  # nothing half-written


@pytest.mark.parametrize(("raw", "status", "where"), [
    (b'{"command": ["echo", "\\ud800"]}', 422, "command.1: not valid UTF-8"),
    (b'{"command": ["echo"], "env": {"\\udfff": "x"}}', 422, "udfff': not valid UTF-8"),
    (b'{"command": ["echo"], "name": "\\udfff"}', 422, "name: not valid UTF-8"),
    (b'{"command": ["echo", "\xff\xfe"]}', 400, ""),
])
def test_lone_surrogates_and_invalid_utf8_are_4xx(grid: Grid, raw: bytes, status: int, where: str) -> None:
    grid.register()
    r = grid.consumer.post("/api/v1/jobs", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert where in r.text


def test_the_task_says_whose_job_it_is(grid: Grid) -> None:
    grid.register()
    job = grid.consumer.post("/api/v1/jobs", json={"command": ["true"]}).json()
    grid.tick()
    [task] = grid.agent.post("/api/v1/agent/lease", json={"max_jobs": 1}).json()
    assert task["job_id"] == job["id"] and task["tenant"] == job["tenant_id"]
