"""The ASGI application: routers, error mapping, the web console (suanwang.web), health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException

from suanwang import __version__
from suanwang.api.deps import tenant_of
from suanwang.api.guard import AuthState, Guard, GuardSettings
from suanwang.api.idempotency import IdempotencyMiddleware
from suanwang.api.nul_bytes import RejectNul
from suanwang.api.routes import admin, agent, audit, billing, datasets, jobs, market, sites, workflows
from suanwang.api.schemas import ErrorOut
from suanwang.clock import SYSTEM_CLOCK, Clock
from suanwang.errors import SuanwangError
from suanwang.observability.http import RequestLogMiddleware
from suanwang.observability.metrics import PlatformCollector
from suanwang.services import overview
from suanwang.services.platform import Platform
from suanwang.web import routes as web

API = "/api/v1"


def _describe(error: dict[str, object]) -> str:
    loc = ".".join(str(p) for p in error.get("loc", ()) if p != "body")  # type: ignore[attr-defined]
    return f"{loc}: {error.get('msg')}" if loc else str(error.get("msg"))


def _declare_json_errors(app: FastAPI) -> None:
    """Declare the 4xx body as JSON on every route, the plain-text ones (logs, CSV) included."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            for operations in build()["paths"].values():
                for operation in operations.values():
                    if "4XX" in operation["responses"]:
                        operation["responses"]["4XX"]["content"] = {
                            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(platform: Platform, *, run_loop: bool = True, guard: GuardSettings | None = None,
               clock: Clock = SYSTEM_CLOCK, map_geojson: bytes | None = None) -> FastAPI:
    """The API and console; ``map_geojson``: the operator's checked map background (``web.geo.load``)."""
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if run_loop:
            platform.start()
        yield
        platform.stop()

    auth = AuthState.create(platform.db, guard)
    app = FastAPI(title="suanwang (算网)", version=__version__, lifespan=lifespan,
                  description="An open computing power network: one access point to compute at many sites.",
                  docs_url=None, redoc_url=None,  # served by the console from vendored assets, never a CDN
                  responses={"4XX": {"model": ErrorOut, "description": "the request was refused; detail says why"}})
    app.state.platform = platform
    app.state.auth = auth
    app.state.clock = clock  # what routes read the time from (api.deps.ClockDep)
    app.state.map_geojson = map_geojson

    @app.exception_handler(SuanwangError)
    async def _domain_error(request: Request, exc: SuanwangError) -> Response:
        if web.is_console(request):
            return web.domain_error_page(request, exc)
        return JSONResponse({"error": exc.code, "detail": exc.message}, status_code=exc.status_code)

    @app.exception_handler(IntegrityError)
    async def _integrity_error(request: Request, exc: IntegrityError) -> JSONResponse:
        # a race the services' own checks could not see (two requests creating the same thing at once)
        return JSONResponse({"error": "conflict", "detail": "the request conflicts with data stored meanwhile; "
                             "read the current state and retry"}, status_code=409)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # the framework's own refusals (a body that is not UTF-8, an unknown route) in the shape of every other 4xx
        phrase = HTTPStatus(exc.status_code).phrase if exc.status_code in HTTPStatus._value2member_map_ else "error"
        code = phrase.lower().replace(" ", "_").replace("-", "_")
        return JSONResponse({"error": code, "detail": str(exc.detail)}, status_code=exc.status_code,
                            headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_describe(e) for e in exc.errors()]
        return JSONResponse({"error": "invalid_request", "detail": "; ".join(problems), "problems": problems},
                            status_code=422)

    # Middleware runs outermost last-added: the request log, NUL refusal, the gate, then idempotency (which needs
    # the caller the gate authenticated).
    app.add_middleware(IdempotencyMiddleware, db=platform.db, tenant_of=tenant_of)
    app.add_middleware(Guard, state=auth)  # token, role (api/permissions.py), rate and size, before the body
    app.add_middleware(RejectNul)  # before the gate: nothing with a NUL byte in its URL reaches a lookup or a log row

    for router in (jobs.router, sites.router, agent.router, admin.router, billing.router, market.router):
        app.include_router(router, prefix=API)
    app.include_router(audit.router, prefix=API)
    app.include_router(datasets.router, prefix=API)
    app.include_router(workflows.router, prefix=API)

    _declare_json_errors(app)

    @app.get(f"{API}/health", tags=["meta"], responses={503: {"description": "the control loop or database is down"}})
    def health() -> JSONResponse:
        """200 while the control loop passes and the database answers; 503 with the reasons otherwise."""
        problems = [p for p in (platform.health.problem(platform.settings), platform.check_database()) if p]
        if problems:
            return JSONResponse({"status": "failing", "version": __version__, "problems": problems}, status_code=503)
        return JSONResponse({"status": "ok", "version": __version__})

    scraped = CollectorRegistry(auto_describe=False)  # this platform's database gauges, read at scrape time
    scraped.register(PlatformCollector(lambda: _database_gauges(platform)))

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(REGISTRY) + generate_latest(scraped), media_type=CONTENT_TYPE_LATEST)

    app.include_router(web.router)
    for kind, handler in web.handlers().items():
        app.add_exception_handler(kind, handler)
    app.mount("/static", StaticFiles(directory=web.HERE / "static"), name="static")

    app.add_middleware(RequestLogMiddleware)
    return app


def _database_gauges(platform: Platform) -> tuple[Sequence[tuple[tuple[str, ...], float]], int, float]:
    with platform.db.sessions() as session:
        return (overview.queue_depth(session), *overview.rating_lag(session))
