"""The console's routes: a thin adapter from the browser (session cookie, forms, htmx) to the services.

Every route has its entry in ``api/permissions.py`` (``console(...)`` rules: the bearer-token gate lets them
through and ``signed_in`` here checks the session and the same table's roles).  A state change is a POST
with the session's CSRF token; anything else is refused with 403 before a service runs.
"""

from __future__ import annotations

import json
import shlex
import time
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from suanwang import __version__
from suanwang.api.permissions import rule_for
from suanwang.api.price_books import draft_from_json
from suanwang.api.schemas import JobIn
from suanwang.errors import SuanwangError
from suanwang.services import billing, jobs, scheduling
from suanwang.services.auth import Principal, Role
from suanwang.web import data, history, i18n, session

HERE = Path(__file__).parent
router = APIRouter(include_in_schema=False)
HOME = {Role.CONSUMER: "/console/wallet", Role.PROVIDER: "/console/provider", Role.OPERATOR: "/console/operator",
        Role.AUDITOR: "/console/auditor"}


@cache
def _env(locale: str) -> Environment:
    """One template environment per locale, its catalogue installed once (templates compiled once)."""
    # its own Environment, not an overlay: templates keep the globals (``_``) of the environment that loaded them
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                      extensions=["jinja2.ext.i18n"], auto_reload=False)
    env.install_gettext_translations(i18n.translations(locale), newstyle=True)  # type: ignore[attr-defined]
    return env


class NotSignedIn(Exception):
    pass


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def locale_of(request: Request) -> str:
    return i18n.choose(request.cookies.get(session.LANG), request.headers.get("accept-language"))


def render(request: Request, name: str, *, status: int = 200, actor: Principal | None = None,
           csp: str = session.CSP, **values: Any) -> HTMLResponse:
    locale = locale_of(request)
    token = session.unseal(request.cookies.get(session.COOKIE))
    ctx = {"request": request, "locale": locale, "lang": i18n.html_lang(locale), "actor": actor,
           "csrf": session.csrf_for(token) if token and actor else "", "version": __version__,
           "yuan": lambda v: i18n.yuan(v, locale), "fen": lambda v: i18n.fen(v, locale),
           "num": lambda v: i18n.number(v, locale), "when": lambda v: i18n.when(v, locale),
           "path": request.url.path, "home": HOME.get(actor.role) if actor else None, **values}
    html = _env(locale).get_template(name).render(ctx)
    response = HTMLResponse(html, status_code=status)
    response.headers["Content-Security-Policy"] = csp
    response.headers.update(session.HEADERS)
    return response


def signed_in(request: Request, method: str, template: str) -> tuple[Principal, str]:
    """The session's principal (the token re-checked now) allowed by the route's table entry, and its token."""
    token = session.unseal(request.cookies.get(session.COOKIE))
    if token is None:
        raise NotSignedIn
    found = request.app.state.auth.lookup(token)
    if not isinstance(found, Principal):
        raise NotSignedIn
    rule = rule_for(method, template)
    if rule is None or found.role not in rule.roles:
        raise Refused(403, "forbidden")
    return found, token


MAX_FORM = 256 * 1024


async def read_form(request: Request) -> dict[str, str]:
    """An url-encoded form (the only kind the console sends); the first value of each field."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise Refused(415, "forms are sent url-encoded")
    raw = await request.body()
    if len(raw) > MAX_FORM:
        raise Refused(413, f"the form exceeds {MAX_FORM} bytes")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "the form is not valid url-encoded UTF-8") from None
    values: dict[str, str] = {}
    for key, value in pairs:
        if "\x00" in key or "\x00" in value:
            raise Refused(422, f"{key[:40]!r}: a NUL byte")
        values.setdefault(key, value)
    return values


async def form_of(request: Request, token: str) -> dict[str, str]:
    """The posted form, after its CSRF field matched the session (else 403)."""
    values = await read_form(request)
    if not session.csrf_ok(token, values.get("csrf")):
        raise Refused(403, "csrf")
    return values


def _db(request: Request) -> Any:
    return request.app.state.platform.db


# ---- public ----------------------------------------------------------------------------------------------------


@router.get("/")
def index(request: Request) -> HTMLResponse:
    with _db(request).sessions() as s:
        grid, books, pools = data.grid(s), data.books_in_force(s), data.pools(s)
    placed = [x for x in grid["sites"] if not data.location_unknown(x)]
    chart = {"sites": placed, "links": grid["links"],
             "background": "/map.geojson" if getattr(request.app.state, "map_geojson", None) else None}
    return render(request, "public.html", actor=_maybe_actor(request), grid=grid, books=books, pools=pools,
                  chart=json.dumps(chart))


@router.get("/map.geojson")
def map_background(request: Request) -> Response:
    """The operator's approved map background (checked at start-up, ``web/geo.py``); 404 when none is set."""
    body = getattr(request.app.state, "map_geojson", None)
    if body is None:
        raise Refused(404, "no map background is configured")
    headers = {**session.HEADERS, "Cache-Control": "max-age=3600"}
    return Response(body, media_type="application/geo+json", headers=headers)


@router.get("/market")
def market_board(request: Request) -> HTMLResponse:
    with _db(request).sessions() as s:
        board = data.market_board(s, schedule=request.app.state.platform.market_schedule)
        books = data.books_in_force(s)
    return render(request, "market.html", actor=_maybe_actor(request), board=board, books=books,
                  chart=json.dumps(board["chart"]))


def _maybe_actor(request: Request) -> Principal | None:
    token = session.unseal(request.cookies.get(session.COOKIE))
    found = request.app.state.auth.lookup(token) if token else None
    return found if isinstance(found, Principal) else None


@router.get("/lang/{code}")
def switch_language(request: Request, code: str, next: str = "/") -> Response:
    target = next if next.startswith("/") and not next.startswith("//") and "\\" not in next else "/"
    response = RedirectResponse(target, status_code=303)
    if code in i18n.LOCALES:
        response.set_cookie(session.LANG, code, max_age=365 * 86400, samesite="strict", httponly=True)
    return response


@router.get("/signin")
def signin_form(request: Request, error: str = "") -> HTMLResponse:
    pre = session.new_pre_csrf()
    response = render(request, "signin.html", pre_csrf=pre, error=error[:40])
    response.set_cookie(session.PRE_CSRF, pre, max_age=1800, samesite="strict", httponly=True,
                        secure=request.url.scheme == "https", path="/signin")
    return response


@router.post("/signin")
async def signin(request: Request) -> Response:
    form = await read_form(request)
    sent, kept = str(form.get("csrf") or ""), request.cookies.get(session.PRE_CSRF) or ""
    if not sent or not kept or len(sent) > 100 or sent != kept:
        return error_page(request, 403, "csrf")
    token = str(form.get("token") or "").strip()
    found = await run_in_threadpool(request.app.state.auth.lookup, token) if 0 < len(token) <= 256 else None
    if not isinstance(found, Principal) or found.role not in HOME:
        return RedirectResponse("/signin?error=refused", status_code=303)
    response = RedirectResponse(HOME[found.role], status_code=303)
    max_age = session.MAX_AGE_S
    if found.expires_at is not None:
        max_age = max(1, min(max_age, int(found.expires_at - time.time())))
    response.set_cookie(session.COOKIE, session.seal(token, max_age_s=max_age), max_age=max_age, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https", path="/")
    response.delete_cookie(session.PRE_CSRF, path="/signin")
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    token = session.unseal(request.cookies.get(session.COOKIE))
    if token is not None:
        await form_of(request, token)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(session.COOKIE, path="/")
    return response


@router.get("/console")
def console_home(request: Request) -> Response:
    actor = _maybe_actor(request)
    return RedirectResponse(HOME[actor.role] if actor and actor.role in HOME else "/signin", status_code=303)


# ---- consumer ------------------------------------------------------------------------------------------------


@router.get("/console/wallet")
def wallet_page(request: Request) -> HTMLResponse:
    actor, _ = signed_in(request, "GET", "/console/wallet")
    with _db(request).sessions() as s:
        money = data.wallet(s, actor)
        page = data.jobs_page(s, actor, state=None, site=None, before=None)
        own = data.own_market(s, actor)
        accruing = data.accruing(s, actor)
    return render(request, "consumer.html", actor=actor, money=money, page=page, filters={}, market=own,
                  accruing=accruing)


@router.get("/console/jobs")
def jobs_table(request: Request, state: str = "", site: str = "", before: str = "") -> HTMLResponse:
    actor, _ = signed_in(request, "GET", "/console/jobs")
    filters = {"state": state[:20], "site": site[:100], "before": before[:40]}
    with _db(request).sessions() as s:
        page = data.jobs_page(s, actor, state=filters["state"], site=filters["site"], before=filters["before"])
    name = "jobs_table.html" if request.headers.get("hx-request") else "jobs.html"
    return render(request, name, actor=actor, page=page, filters=filters)


@router.get("/console/jobs/{job_id}")
def job_page(request: Request, job_id: str) -> HTMLResponse:
    actor, _ = signed_in(request, "GET", "/console/jobs/{job_id}")
    with _db(request).sessions() as s:
        detail = data.job_detail(s, actor, job_id[:40])
    return render(request, "job.html", actor=actor, d=detail)


@router.get("/console/jobs/{job_id}/explain")
def job_explain(request: Request, job_id: str) -> HTMLResponse:
    """The scheduler's explanation, a fragment the job page loads after it shows (it runs the planner)."""
    actor, _ = signed_in(request, "GET", "/console/jobs/{job_id}/explain")
    platform = request.app.state.platform
    with platform.db.sessions() as s:
        job = jobs.show_job(s, actor, job_id[:40])
        explain = scheduling.explain_job(s, platform.planner, job, now=time.time())
    name = "explain.html" if request.headers.get("hx-request") else "explain_page.html"
    return render(request, name, actor=actor, job_id=job.id,
                  explain_json=json.dumps(explain, indent=1, default=str)[:20_000])


@router.post("/console/jobs")
async def submit(request: Request) -> Response:
    actor, token = signed_in(request, "POST", "/console/jobs")
    form = await form_of(request, token)
    try:
        command = shlex.split(form.get("command", ""))
        body = JobIn.model_validate({"name": form.get("name", "")[:200], "command": command,
                                     "resource_class": form.get("resource_class") or "general",
                                     "cores": form.get("cores") or 1, "memory_gb": form.get("memory_gb") or 1})
    except (ValidationError, ValueError) as exc:
        raise Refused(422, str(exc).splitlines()[0][:300]) from None
    spec = jobs.spec_from_json(body.model_dump())
    platform = request.app.state.platform

    def run() -> str:
        with platform.db.transaction() as s:
            platform.check_submit(s, [spec])
            [row] = jobs.submit_jobs(s, actor, [spec])
            return str(row.id)

    job_id = await run_in_threadpool(run)
    platform.wake()
    return RedirectResponse(f"/console/jobs/{job_id}", status_code=303)


@router.post("/console/jobs/{job_id}/cancel")
async def cancel(request: Request, job_id: str) -> Response:
    actor, token = signed_in(request, "POST", "/console/jobs/{job_id}/cancel")
    await form_of(request, token)

    def run() -> None:
        with _db(request).transaction() as s:
            jobs.cancel_job(s, actor, job_id[:40])

    await run_in_threadpool(run)
    return RedirectResponse(f"/console/jobs/{job_id[:40]}", status_code=303)


@router.post("/console/quote")
async def quote(request: Request) -> HTMLResponse:
    actor, token = signed_in(request, "POST", "/console/quote")
    form = await form_of(request, token)
    try:
        body = JobIn.model_validate({"command": ["true"], "resource_class": form.get("resource_class") or "general",
                                     "cores": form.get("cores") or 1, "memory_gb": form.get("memory_gb") or 1,
                                     "duration_s": form.get("duration_s") or 3600})
    except (ValidationError, ValueError) as exc:
        raise Refused(422, str(exc).splitlines()[0][:300]) from None
    spec = jobs.spec_from_json(body.model_dump())

    def run() -> dict[str, Any]:
        with _db(request).sessions() as s:
            return billing.quote_for(s, actor, spec)

    name = "quote.html" if request.headers.get("hx-request") else "quote_page.html"  # without script: a page
    return render(request, name, actor=actor, q=await run_in_threadpool(run))


# ---- provider, operator, auditor -------------------------------------------------------------------------------


@router.get("/console/provider")
def provider_page(request: Request, period: str = "day") -> HTMLResponse:
    actor, _ = signed_in(request, "GET", "/console/provider")
    if period not in data.PERIODS:
        raise Refused(422, f"period: one of {', '.join(data.PERIODS)}")
    with _db(request).sessions() as s:
        grid = data.grid(s)
        owned = history.owned_sites(s, actor)
        mine = [x for x in grid["sites"] if x["name"] in owned]
        earnings = data.earnings(s, actor, period)
        books = data.books_in_force(s)
        own = data.own_market(s, actor)
        cap = history.capacity(s, actor)
    return render(request, "provider.html", actor=actor, sites=mine, earnings=earnings, books=books, market=own,
                  period=period, cap=cap, cap_chart=json.dumps(cap["chart"]),
                  chart=json.dumps({"days": [e["day"] for e in earnings], "fen": [e["fen"] for e in earnings]}))


@router.post("/console/price-books")
async def publish_price_book(request: Request) -> Response:
    actor, token = signed_in(request, "POST", "/console/price-books")
    form = await form_of(request, token)
    try:
        body = json.loads(form.get("book", "")[:200_000])
    except ValueError as exc:
        raise Refused(422, f"book: not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise Refused(422, "book: must be a JSON object")

    def run() -> None:
        with _db(request).transaction() as s:
            billing.set_price_book(s, actor, draft_from_json(body))

    await run_in_threadpool(run)
    return RedirectResponse("/console/provider?published=1", status_code=303)


@router.get("/console/operator")
def operator_page(request: Request) -> HTMLResponse:
    actor, _ = signed_in(request, "GET", "/console/operator")
    with _db(request).sessions() as s:
        view = data.operator(s, actor)
        placed, carbon = history.placements(s), history.carbon(s)
    return render(request, "operator.html", actor=actor, v=view, placed=placed, carbon=carbon,
                  placed_chart=json.dumps(placed["chart"]), carbon_chart=json.dumps(carbon["chart"]))


@router.get("/console/auditor")
def auditor_page(request: Request, job: str = "") -> HTMLResponse:
    actor, _ = signed_in(request, "GET", "/console/auditor")
    with _db(request).sessions() as s:
        transfers = billing.ledger_transfers(s, actor, job_id=job[:40] or None, limit=200)
        audit = data.audit_rows(s, limit=100)
    return render(request, "auditor.html", actor=actor, transfers=transfers, audit=audit, job=job[:40])


# ---- API docs from vendored assets -----------------------------------------------------------------------------


@router.get("/docs")
def swagger(request: Request) -> HTMLResponse:
    return render(request, "docs.html")


@router.get("/docs/oauth2-redirect")
def swagger_redirect() -> FileResponse:
    return FileResponse(HERE / "static" / "vendor" / "swagger-ui" / "oauth2-redirect.html")


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    return render(request, "redoc.html", csp=session.REDOC_CSP)


def handlers() -> dict[type[Exception], Any]:
    """Exception handlers for the console's own refusals (JSON for the API stays the API's)."""

    async def not_signed_in(request: Request, exc: Exception) -> Response:
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": "/signin"})
        return RedirectResponse("/signin", status_code=303)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return error_page(request, exc.status, exc.message)

    return {NotSignedIn: not_signed_in, Refused: refused}


def is_console(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/console") or path in ("/signin", "/signout", "/")


def domain_error_page(request: Request, exc: SuanwangError) -> HTMLResponse:
    """A service's refusal met on a console route, as a page (404 for another tenant's job, as in the API)."""
    return error_page(request, exc.status_code, exc.message)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """The refusal as a page, or as a fragment where htmx asked (it swaps 4xx answers in: see base.html)."""
    name = "error_fragment.html" if request.headers.get("hx-request") else "error.html"
    return render(request, name, status=status, message=message, actor=_maybe_actor(request))


# ---- statements (consumer and provider: own statement lines only) ---------------------------------------------


@router.get("/console/statements")
def statements_page(request: Request) -> HTMLResponse:
    actor, _ = signed_in(request, "GET", "/console/statements")
    with _db(request).sessions() as s:
        found = data.statements(s, actor)
    return render(request, "statements.html", actor=actor, statements=found)


def _settlement_id(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise Refused(404, "no such statement")
    return int(raw)


@router.get("/console/statements/{settlement_id}")
def statement_page(request: Request, settlement_id: str) -> HTMLResponse:
    actor, _ = signed_in(request, "GET", "/console/statements/{settlement_id}")
    with _db(request).sessions() as s:
        st = data.statement(s, actor, _settlement_id(settlement_id))
    return render(request, "statement.html", actor=actor, st=st)


@router.get("/console/statements/{settlement_id}/csv")
def statement_csv(request: Request, settlement_id: str) -> Response:
    actor, _ = signed_in(request, "GET", "/console/statements/{settlement_id}/csv")
    sid = _settlement_id(settlement_id)
    with _db(request).sessions() as s:
        text = data.statement_csv(s, actor, sid)
    headers = {**session.HEADERS, "Content-Disposition": f'attachment; filename="statement-{sid}.csv"'}
    return Response(text, media_type="text/csv; charset=utf-8", headers=headers)
