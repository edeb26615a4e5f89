"""The SDK against the in-process platform: typed calls, and the API's own errors as ApiError."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest

import suanwang.client as sdk
from suanwang.client import ApiError, AsyncClient, Client
from tests.api.conftest import Grid

SHA = hashlib.sha256(b"x").hexdigest()


def test_public_surface_is_complete_and_sorted() -> None:
    assert sdk.__all__ == sorted(sdk.__all__)
    assert all(hasattr(sdk, n) for n in sdk.__all__)


def test_sync_client_jobs_datasets_workflows_and_errors(grid: Grid) -> None:
    grid.register()
    with Client("http://testserver", grid.token("consumer"), transport=grid.client._transport) as c:
        job = c.submit({"command": ["true"]})
        assert c.job(job["id"])["state"] == "pending"
        ds = c.register_dataset("raw", size_bytes=1, sha256=SHA, sites=["local"])
        assert c.dataset(ds["id"])["replicas"][0]["site"] == "local"
        run = c.run({"name": "f", "steps": [{"name": "a", "job": {"command": ["true"]}, "inputs": ["raw"]}]})
        assert c.run_status(run["id"])["steps"][0]["state"] == "submitted"
        assert [r["id"] for r in c.runs()] == [run["id"]]
        assert c.cancel_run(run["id"])["state"] == "cancelled"
        with pytest.raises(ApiError) as caught:
            c.job("j-nope")
        assert (caught.value.status, caught.value.code) == (404, "not_found")
        with pytest.raises(ApiError) as caught:
            c.run({"name": "f", "steps": [{"name": "b", "job": {"command": ["true"]}, "inputs": ["nope"]}]})
        assert caught.value.status == 422 and "step b" in caught.value.message


def test_async_client(grid: Grid) -> None:
    grid.register()

    async def go() -> tuple[str, int]:
        transport = httpx.ASGITransport(app=grid.client.app)
        async with AsyncClient("http://testserver", grid.token("consumer"), transport=transport) as c:
            job = await c.submit({"command": ["true"]})
            state = (await c.job(job["id"]))["state"]
            try:
                await c.dataset("d-nope")
            except ApiError as exc:
                return state, exc.status
        return state, 0

    assert asyncio.run(go()) == ("pending", 404)


def test_sync_and_async_clients_offer_the_same_calls() -> None:
    def calls(cls: type) -> set[str]:
        return {n for n in vars(cls) if not n.startswith("_")}

    assert calls(Client) == calls(AsyncClient)


def test_grid_money_and_job_pages_through_the_sdk(grid: Grid) -> None:
    grid.register()
    with Client("http://testserver", grid.token("consumer"), transport=grid.client._transport) as c:
        job = c.submit({"command": ["true"]}, idempotency_key="k1")
        assert c.submit({"command": ["true"]}, idempotency_key="k1")["id"] == job["id"] and c.replayed
        page = c.jobs_page(limit=1)
        assert [j["id"] for j in page["jobs"]] == [job["id"]] and page["next"] == job["id"]
        assert [e["to"] for e in c.job_events(job["id"])] == ["pending"]
        assert [p["name"] for p in c.pools(site="local")] and c.sites()[0]["name"] == "local"
        assert "total_scu_per_hour" in c.capacity() and c.usage(job_id=job["id"]) == []
        assert c.wallet()["consumer"] == grid.consumer.get("/api/v1/whoami").json()["tenant_id"]
        with pytest.raises(ApiError) as caught:
            c.wallet("someone-else")  # an operator's call
        assert caught.value.status in (403, 404)


def test_answers_are_decoded_by_their_content_type() -> None:
    """A job's log that happens to look like JSON stays text; an error without a JSON body is still an ApiError."""
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/logs"):
            return httpx.Response(200, text="42\n", headers={"content-type": "text/plain; charset=utf-8"})
        if request.url.path.endswith("/jobs/j-1"):
            return httpx.Response(200, json={"id": "j-1", "state": "pending"})
        return httpx.Response(502, text="bad gateway")

    with Client("http://x", "t", transport=httpx.MockTransport(handler)) as c:
        assert c.logs("j-1") == "42\n" and c.job("j-1")["state"] == "pending"
        with pytest.raises(ApiError) as caught:
            c.sites()
        assert (caught.value.status, caught.value.code, caught.value.message) == (502, "error", "bad gateway")


def test_the_sdk_finds_the_platform_a_local_up_left(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from suanwang.client._config import POINTER, find_platform

    for name in ("SUANWANG_HOME", "SUANWANG_URL", "SUANWANG_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    up = tmp_path / "grid"
    up.mkdir()
    (up / "url").write_text("http://127.0.0.1:8700/\n")
    (up / "consumer.token").write_text("tok\n")
    (tmp_path / ".suanwang").mkdir()
    (tmp_path / ".suanwang" / POINTER).write_text(str(up))
    assert find_platform(None, None) == ("http://127.0.0.1:8700", "tok")
    assert find_platform("http://elsewhere", "mine") == ("http://elsewhere", "mine")
    monkeypatch.setenv("SUANWANG_TOKEN", "env")
    assert find_platform(None, None)[1] == "env"
