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
