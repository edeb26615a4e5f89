"""Sync and async clients over the same paths: jobs, workflows, datasets, quotes, wallet."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

import httpx

from suanwang.client._errors import raise_for


class Job(TypedDict, total=False):
    id: str
    name: str
    state: str
    site: str | None
    pool: str | None
    attempt: int
    reason: str
    placement: dict[str, Any]


class Dataset(TypedDict, total=False):
    id: str
    name: str
    version: int
    size_bytes: int
    sha256: str
    region: str
    replicas: list[dict[str, Any]]


class WorkflowRun(TypedDict, total=False):
    id: str
    name: str
    state: str
    steps: list[dict[str, Any]]
    cost_fen: int
    carbon_kg: float
    reason: str


def _settings(url: str | None, token: str | None) -> tuple[str, str]:
    home = Path(os.environ.get("SUANWANG_HOME") or Path.home() / ".suanwang")

    def read(name: str) -> str:
        try:
            return (home / name).read_text().strip()
        except OSError:
            return ""

    base = (url or os.environ.get("SUANWANG_URL") or read("url") or "http://127.0.0.1:8600").rstrip("/")
    tok = token or os.environ.get("SUANWANG_TOKEN") or read("consumer.token")
    return base + "/api/v1", tok


def _decode(resp: httpx.Response) -> Any:
    try:
        data = resp.json()
    except ValueError:
        data = None
    raise_for(resp.status_code, resp.text, data)
    return data if data is not None else resp.text


def _key(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key or uuid.uuid4().hex}  # a retried call with the same key happens once


class _Paths:
    """What each method sends: (method, path, json, params, headers).  Shared by both clients."""

    @staticmethod
    def submit(spec: Mapping[str, Any], key: str | None) -> tuple[Any, ...]:
        return "POST", "/jobs", dict(spec), None, _key(key)

    @staticmethod
    def workflow(spec: Mapping[str, Any], key: str | None) -> tuple[Any, ...]:
        return "POST", "/workflows", dict(spec), None, _key(key)

    @staticmethod
    def dataset(name: str, size_bytes: int, sha256: str, region: str, sites: list[str],
                version: int | None) -> tuple[Any, ...]:
        body: dict[str, Any] = {"name": name, "size_bytes": size_bytes, "sha256": sha256, "region": region,
                                "sites": sites}
        if version is not None:
            body["version"] = version
        return "POST", "/datasets", body, None, None


class Client:
    """Synchronous client.  ``Client(url, token)``, or from ``SUANWANG_URL``/``SUANWANG_TOKEN``/``suanwang up``.

    Every refused call raises :class:`suanwang.client.ApiError` with the API's status, code and message.
    """

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        base, tok = _settings(url, token)
        self.http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {tok}"}, timeout=timeout,
                                 transport=transport)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, json: Any = None, params: Any = None, headers: Any = None) -> Any:
        return _decode(self.http.request(method, path, json=json, params=params, headers=headers))

    # jobs
    def submit(self, spec: Mapping[str, Any], *, idempotency_key: str | None = None) -> Job:
        return self._call(*_Paths.submit(spec, idempotency_key))  # type: ignore[no-any-return]

    def job(self, job_id: str) -> Job:
        return self._call("GET", f"/jobs/{job_id}")  # type: ignore[no-any-return]

    def jobs(self, *, state: str | None = None, limit: int = 100) -> list[Job]:
        params = {"limit": limit, **({"state": state} if state else {})}
        return self._call("GET", "/jobs", params=params)["jobs"]  # type: ignore[no-any-return]

    def cancel(self, job_id: str) -> Job:
        return self._call("POST", f"/jobs/{job_id}/cancel")  # type: ignore[no-any-return]

    def explain(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}/explain")  # type: ignore[no-any-return]

    # workflows
    def run(self, workflow: Mapping[str, Any], *, idempotency_key: str | None = None) -> WorkflowRun:
        return self._call(*_Paths.workflow(workflow, idempotency_key))  # type: ignore[no-any-return]

    def runs(self, *, limit: int = 100) -> list[WorkflowRun]:
        return self._call("GET", "/workflows", params={"limit": limit})  # type: ignore[no-any-return]

    def run_status(self, run_id: str) -> WorkflowRun:
        return self._call("GET", f"/workflows/{run_id}")  # type: ignore[no-any-return]

    def cancel_run(self, run_id: str) -> WorkflowRun:
        return self._call("POST", f"/workflows/{run_id}/cancel")  # type: ignore[no-any-return]

    # datasets
    def register_dataset(self, name: str, *, size_bytes: int, sha256: str, region: str = "",
                         sites: list[str] | None = None, version: int | None = None) -> Dataset:
        return self._call(*_Paths.dataset(name, size_bytes, sha256, region, sites or [], version))  # type: ignore[no-any-return]

    def datasets(self, *, name: str | None = None) -> list[Dataset]:
        return self._call("GET", "/datasets", params={"name": name} if name else None)  # type: ignore[no-any-return]

    def dataset(self, dataset_id: str) -> Dataset:
        return self._call("GET", f"/datasets/{dataset_id}")  # type: ignore[no-any-return]

    def share_dataset(self, dataset_id: str, tenant: str) -> Dataset:
        return self._call("POST", f"/datasets/{dataset_id}/shares", json={"tenant": tenant})  # type: ignore[no-any-return]

    def transfers(self) -> list[dict[str, Any]]:
        return self._call("GET", "/transfers")  # type: ignore[no-any-return]

    # money
    def quote(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/quotes", json=dict(spec))  # type: ignore[no-any-return]

    def wallet(self) -> dict[str, Any]:
        return self._call("GET", "/wallet")  # type: ignore[no-any-return]


class AsyncClient:
    """The same calls as :class:`Client`, awaited (``async with AsyncClient() as c: await c.job(id)``)."""

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        base, tok = _settings(url, token)
        self.http = httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {tok}"}, timeout=timeout,
                                      transport=transport)

    async def close(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, method: str, path: str, json: Any = None, params: Any = None, headers: Any = None) -> Any:
        return _decode(await self.http.request(method, path, json=json, params=params, headers=headers))

    async def submit(self, spec: Mapping[str, Any], *, idempotency_key: str | None = None) -> Job:
        return await self._call(*_Paths.submit(spec, idempotency_key))  # type: ignore[no-any-return]

    async def job(self, job_id: str) -> Job:
        return await self._call("GET", f"/jobs/{job_id}")  # type: ignore[no-any-return]

    async def cancel(self, job_id: str) -> Job:
        return await self._call("POST", f"/jobs/{job_id}/cancel")  # type: ignore[no-any-return]

    async def run(self, workflow: Mapping[str, Any], *, idempotency_key: str | None = None) -> WorkflowRun:
        return await self._call(*_Paths.workflow(workflow, idempotency_key))  # type: ignore[no-any-return]

    async def run_status(self, run_id: str) -> WorkflowRun:
        return await self._call("GET", f"/workflows/{run_id}")  # type: ignore[no-any-return]

    async def cancel_run(self, run_id: str) -> WorkflowRun:
        return await self._call("POST", f"/workflows/{run_id}/cancel")  # type: ignore[no-any-return]

    async def register_dataset(self, name: str, *, size_bytes: int, sha256: str, region: str = "",
                               sites: list[str] | None = None, version: int | None = None) -> Dataset:
        return await self._call(*_Paths.dataset(name, size_bytes, sha256, region, sites or [], version))  # type: ignore[no-any-return]

    async def dataset(self, dataset_id: str) -> Dataset:
        return await self._call("GET", f"/datasets/{dataset_id}")  # type: ignore[no-any-return]

    async def quote(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/quotes", json=dict(spec))  # type: ignore[no-any-return]

    async def wallet(self) -> dict[str, Any]:
        return await self._call("GET", "/wallet")  # type: ignore[no-any-return]
