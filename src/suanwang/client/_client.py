"""Sync and async clients over the same paths: jobs, workflows, datasets, the grid, quotes and wallet.

Each call is described once (``_Paths``: method, path, body, query, headers) and sent by either client, so
the two cannot drift; the CLI is a :class:`Client` too (``suanwang.cli.client``), so the CLI, the SDK and
their errors are one HTTP layer.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypedDict

import httpx

from suanwang.client._config import find_platform
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


class JobPage(TypedDict):
    jobs: list[Job]
    next: str | None  # the ``before`` of the next page; None on the last


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
    created_at: float
    finished_at: float | None


class _Req(NamedTuple):
    method: str
    path: str
    json: Any = None
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None


def _decode(resp: httpx.Response) -> Any:
    """The answer's JSON (when it says it is JSON), else its text; a 4xx or 5xx raises :class:`ApiError`."""
    data, is_json = None, resp.headers.get("content-type", "").startswith("application/json")
    if is_json:
        try:
            data = resp.json()
        except ValueError:
            is_json = False
    raise_for(resp.status_code, resp.text, data)
    return data if is_json else resp.text


def _key(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key or uuid.uuid4().hex}  # a retried call with the same key happens once


def _query(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class _Paths:
    """What each call sends.  Shared by both clients."""

    @staticmethod
    def submit(spec: Mapping[str, Any], key: str | None) -> _Req:
        return _Req("POST", "/jobs", dict(spec), None, _key(key))

    @staticmethod
    def jobs(state: str | None, site: str | None, limit: int, before: str | None) -> _Req:
        return _Req("GET", "/jobs", params=_query(state=state, site=site, limit=limit, before=before))

    @staticmethod
    def logs(job_id: str, attempt: int | None) -> _Req:
        return _Req("GET", f"/jobs/{job_id}/logs", params=_query(attempt=attempt))

    @staticmethod
    def workflow(spec: Mapping[str, Any], key: str | None) -> _Req:
        return _Req("POST", "/workflows", dict(spec), None, _key(key))

    @staticmethod
    def dataset(name: str, size_bytes: int, sha256: str, region: str, sites: list[str] | None,
                version: int | None) -> _Req:
        body: dict[str, Any] = {"name": name, "size_bytes": size_bytes, "sha256": sha256, "region": region,
                                "sites": sites or []}
        if version is not None:
            body["version"] = version
        return _Req("POST", "/datasets", body)

    @staticmethod
    def wallet(consumer: str | None) -> _Req:
        return _Req("GET", f"/wallets/{consumer}" if consumer else "/wallet")


def _http_args(url: str | None, token: str | None, data_dir: Path | None) -> dict[str, Any]:
    base, tok = find_platform(url, token, data_dir)
    return {"base_url": base + "/api/v1", "headers": {"Authorization": f"Bearer {tok}"}}


class Client:
    """Synchronous client.  ``Client(url, token)``, or from ``SUANWANG_URL``/``SUANWANG_TOKEN``/``suanwang up``.

    Every refused call raises :class:`suanwang.client.ApiError` with the API's status, code and message.
    ``http_client`` replaces the client built from url and token (its base URL ends in ``/api/v1``).
    """

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None, http_client: httpx.Client | None = None,
                 data_dir: Path | None = None) -> None:
        self.http = http_client or httpx.Client(**_http_args(url, token, data_dir), timeout=timeout,
                                                transport=transport)
        self.replayed = False  # the last answer was the stored first answer to its Idempotency-Key

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None, content: bytes | None = None) -> Any:
        """Any API call (``path`` below ``/api/v1``): the decoded answer, or :class:`ApiError`."""
        resp = self.http.request(method, path, json=json, params=params, headers=headers, content=content)
        self.replayed = resp.headers.get("idempotent-replayed") == "true"
        return _decode(resp)

    def _send(self, req: _Req) -> Any:
        return self.request(req.method, req.path, json=req.json, params=req.params, headers=req.headers)

    # jobs
    def submit(self, spec: Mapping[str, Any], *, idempotency_key: str | None = None) -> Job:
        return self._send(_Paths.submit(spec, idempotency_key))  # type: ignore[no-any-return]

    def job(self, job_id: str) -> Job:
        return self.request("GET", f"/jobs/{job_id}")  # type: ignore[no-any-return]

    def jobs_page(self, *, state: str | None = None, site: str | None = None, limit: int = 100,
                  before: str | None = None) -> JobPage:
        return self._send(_Paths.jobs(state, site, limit, before))  # type: ignore[no-any-return]

    def jobs(self, *, state: str | None = None, site: str | None = None, limit: int = 100) -> list[Job]:
        return self.jobs_page(state=state, site=site, limit=limit)["jobs"]

    def job_events(self, job_id: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/jobs/{job_id}/events")  # type: ignore[no-any-return]

    def logs(self, job_id: str, *, attempt: int | None = None) -> str:
        return self._send(_Paths.logs(job_id, attempt))  # type: ignore[no-any-return]

    def cancel(self, job_id: str) -> Job:
        return self.request("POST", f"/jobs/{job_id}/cancel")  # type: ignore[no-any-return]

    def explain(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/jobs/{job_id}/explain")  # type: ignore[no-any-return]

    def usage(self, *, job_id: str | None = None) -> list[dict[str, Any]]:
        return self.request("GET", "/usage", params=_query(job_id=job_id))  # type: ignore[no-any-return]

    # workflows
    def run(self, workflow: Mapping[str, Any], *, idempotency_key: str | None = None) -> WorkflowRun:
        return self._send(_Paths.workflow(workflow, idempotency_key))  # type: ignore[no-any-return]

    def runs(self, *, limit: int = 100) -> list[WorkflowRun]:
        return self.request("GET", "/workflows", params={"limit": limit})  # type: ignore[no-any-return]

    def run_status(self, run_id: str) -> WorkflowRun:
        return self.request("GET", f"/workflows/{run_id}")  # type: ignore[no-any-return]

    def cancel_run(self, run_id: str) -> WorkflowRun:
        return self.request("POST", f"/workflows/{run_id}/cancel")  # type: ignore[no-any-return]

    # datasets
    def register_dataset(self, name: str, *, size_bytes: int, sha256: str, region: str = "",
                         sites: list[str] | None = None, version: int | None = None) -> Dataset:
        return self._send(_Paths.dataset(name, size_bytes, sha256, region, sites, version))  # type: ignore[no-any-return]

    def datasets(self, *, name: str | None = None) -> list[Dataset]:
        return self.request("GET", "/datasets", params=_query(name=name))  # type: ignore[no-any-return]

    def dataset(self, dataset_id: str) -> Dataset:
        return self.request("GET", f"/datasets/{dataset_id}")  # type: ignore[no-any-return]

    def share_dataset(self, dataset_id: str, tenant: str) -> Dataset:
        return self.request("POST", f"/datasets/{dataset_id}/shares", json={"tenant": tenant})  # type: ignore[no-any-return]

    def transfers(self) -> list[dict[str, Any]]:
        return self.request("GET", "/transfers")  # type: ignore[no-any-return]

    # the grid
    def sites(self) -> list[dict[str, Any]]:
        return self.request("GET", "/sites")  # type: ignore[no-any-return]

    def pools(self, *, site: str | None = None) -> list[dict[str, Any]]:
        return self.request("GET", "/pools", params=_query(site=site))  # type: ignore[no-any-return]

    def capacity(self) -> dict[str, Any]:
        return self.request("GET", "/capacity")  # type: ignore[no-any-return]

    # money
    def quote(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/quotes", json=dict(spec))  # type: ignore[no-any-return]

    def wallet(self, consumer: str | None = None) -> dict[str, Any]:
        """Your wallet; an operator may name a consumer's."""
        return self._send(_Paths.wallet(consumer))  # type: ignore[no-any-return]


class AsyncClient:
    """The same calls as :class:`Client`, awaited (``async with AsyncClient() as c: await c.job(id)``)."""

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None, http_client: httpx.AsyncClient | None = None,
                 data_dir: Path | None = None) -> None:
        self.http = http_client or httpx.AsyncClient(**_http_args(url, token, data_dir), timeout=timeout,
                                                     transport=transport)
        self.replayed = False

    async def close(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
                      headers: Mapping[str, str] | None = None, content: bytes | None = None) -> Any:
        resp = await self.http.request(method, path, json=json, params=params, headers=headers, content=content)
        self.replayed = resp.headers.get("idempotent-replayed") == "true"
        return _decode(resp)

    async def _send(self, req: _Req) -> Any:
        return await self.request(req.method, req.path, json=req.json, params=req.params, headers=req.headers)

    async def submit(self, spec: Mapping[str, Any], *, idempotency_key: str | None = None) -> Job:
        return await self._send(_Paths.submit(spec, idempotency_key))  # type: ignore[no-any-return]

    async def job(self, job_id: str) -> Job:
        return await self.request("GET", f"/jobs/{job_id}")  # type: ignore[no-any-return]

    async def jobs_page(self, *, state: str | None = None, site: str | None = None, limit: int = 100,
                        before: str | None = None) -> JobPage:
        return await self._send(_Paths.jobs(state, site, limit, before))  # type: ignore[no-any-return]

    async def jobs(self, *, state: str | None = None, site: str | None = None, limit: int = 100) -> list[Job]:
        return (await self.jobs_page(state=state, site=site, limit=limit))["jobs"]

    async def job_events(self, job_id: str) -> list[dict[str, Any]]:
        return await self.request("GET", f"/jobs/{job_id}/events")  # type: ignore[no-any-return]

    async def logs(self, job_id: str, *, attempt: int | None = None) -> str:
        return await self._send(_Paths.logs(job_id, attempt))  # type: ignore[no-any-return]

    async def cancel(self, job_id: str) -> Job:
        return await self.request("POST", f"/jobs/{job_id}/cancel")  # type: ignore[no-any-return]

    async def explain(self, job_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/jobs/{job_id}/explain")  # type: ignore[no-any-return]

    async def usage(self, *, job_id: str | None = None) -> list[dict[str, Any]]:
        return await self.request("GET", "/usage", params=_query(job_id=job_id))  # type: ignore[no-any-return]

    async def run(self, workflow: Mapping[str, Any], *, idempotency_key: str | None = None) -> WorkflowRun:
        return await self._send(_Paths.workflow(workflow, idempotency_key))  # type: ignore[no-any-return]

    async def runs(self, *, limit: int = 100) -> list[WorkflowRun]:
        return await self.request("GET", "/workflows", params={"limit": limit})  # type: ignore[no-any-return]

    async def run_status(self, run_id: str) -> WorkflowRun:
        return await self.request("GET", f"/workflows/{run_id}")  # type: ignore[no-any-return]

    async def cancel_run(self, run_id: str) -> WorkflowRun:
        return await self.request("POST", f"/workflows/{run_id}/cancel")  # type: ignore[no-any-return]

    async def register_dataset(self, name: str, *, size_bytes: int, sha256: str, region: str = "",
                               sites: list[str] | None = None, version: int | None = None) -> Dataset:
        return await self._send(_Paths.dataset(name, size_bytes, sha256, region, sites, version))  # type: ignore[no-any-return]

    async def datasets(self, *, name: str | None = None) -> list[Dataset]:
        return await self.request("GET", "/datasets", params=_query(name=name))  # type: ignore[no-any-return]

    async def dataset(self, dataset_id: str) -> Dataset:
        return await self.request("GET", f"/datasets/{dataset_id}")  # type: ignore[no-any-return]

    async def share_dataset(self, dataset_id: str, tenant: str) -> Dataset:
        return await self.request("POST", f"/datasets/{dataset_id}/shares", json={"tenant": tenant})  # type: ignore[no-any-return]

    async def transfers(self) -> list[dict[str, Any]]:
        return await self.request("GET", "/transfers")  # type: ignore[no-any-return]

    async def sites(self) -> list[dict[str, Any]]:
        return await self.request("GET", "/sites")  # type: ignore[no-any-return]

    async def pools(self, *, site: str | None = None) -> list[dict[str, Any]]:
        return await self.request("GET", "/pools", params=_query(site=site))  # type: ignore[no-any-return]

    async def capacity(self) -> dict[str, Any]:
        return await self.request("GET", "/capacity")  # type: ignore[no-any-return]

    async def quote(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", "/quotes", json=dict(spec))  # type: ignore[no-any-return]

    async def wallet(self, consumer: str | None = None) -> dict[str, Any]:
        return await self._send(_Paths.wallet(consumer))  # type: ignore[no-any-return]
