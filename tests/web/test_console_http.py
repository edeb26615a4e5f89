"""The console's security and language plumbing over HTTP, without a browser (fast, both databases)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient

from suanwang.api.permissions import TABLE
from suanwang.web import i18n, session
from tests.api.conftest import Grid

ROOT = Path(__file__).resolve().parents[2]


def signed_in(grid: Grid, token: str) -> tuple[TestClient, str]:
    c = TestClient(grid.client.app, raise_server_exceptions=False)
    c.get("/signin")
    r = c.post("/signin", data={"csrf": c.cookies.get(session.PRE_CSRF), "token": token}, follow_redirects=False)
    assert r.status_code == 303 and "/signin" not in r.headers["location"], r.text
    page = c.get("/console").text
    return c, re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]


def test_cookie_flags_csp_and_no_inline_script(grid: Grid) -> None:
    c = TestClient(grid.client.app)
    c.get("/signin")
    r = c.post("/signin", data={"csrf": c.cookies.get(session.PRE_CSRF), "token": grid.token("consumer")},
               follow_redirects=False)
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and grid.token("consumer") not in cookie
    page = c.get("/console/wallet")
    assert "script-src 'self';" in page.headers["content-security-policy"]
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert all("src=" in attrs or 'type="application/json"' in attrs for attrs, _ in scripts)
    assert "cdn" not in c.get("/docs").text.lower() and "cdn" not in c.get("/redoc").text.lower()


def test_sign_in_refuses_forged_tampered_and_revoked_sessions(grid: Grid) -> None:
    c = TestClient(grid.client.app, raise_server_exceptions=False)
    c.get("/signin")
    # the sign-in form's double-submit token must match its cookie
    r = c.post("/signin", data={"csrf": "forged", "token": grid.token("consumer")}, follow_redirects=False)
    assert r.status_code == 403 and session.COOKIE not in r.headers.get("set-cookie", "")
    r = c.post("/signin", data={"csrf": c.cookies.get(session.PRE_CSRF), "token": grid.token("agent")},
               follow_redirects=False)
    assert r.headers["location"].startswith("/signin?error")  # an agent token opens no console
    # a cookie with another token swapped in, or past its expiry, is no session
    sealed = session.seal(grid.token("consumer"))
    expires, _, mac = sealed.split(".")
    other = session.seal(grid.token("operator")).split(".")[1]
    for bad in (f"{expires}.{other}.{mac}", session.seal(grid.token("consumer"), now=0), "x" * 5000, "a.b.c"):
        c.cookies.set(session.COOKIE, bad)
        assert c.get("/console/wallet", follow_redirects=False).headers["location"] == "/signin"
    # revoking the token ends the session at once on this replica
    token = grid.operator.post("/api/v1/tokens", json={"role": "consumer", "tenant_id": "t-operator"}).json()
    s, _ = signed_in(grid, token["token"])
    assert s.get("/console/wallet").status_code == 200
    assert grid.operator.post(f"/api/v1/tokens/{token['id']}/revoke").status_code == 200
    assert s.get("/console/wallet", follow_redirects=False).headers["location"] == "/signin"


def test_forms_need_the_session_csrf_token_and_bad_input_is_a_4xx(grid: Grid) -> None:
    grid.register()
    c, csrf = signed_in(grid, grid.token("consumer"))
    assert c.post("/console/jobs", data={"command": "true"}).status_code == 403
    assert c.post("/console/jobs", data={"command": "true", "csrf": csrf + "0"}).status_code == 403
    _, other = signed_in(grid, grid.token("operator"))
    assert c.post("/console/jobs", data={"command": "true", "csrf": other}).status_code == 403  # another session's
    assert c.post("/console/signout", data={}).status_code in (403, 404, 405)
    for form in ({"command": ""}, {"command": "true", "cores": "1e999999"}, {"command": "true", "cores": "-3"},
                 {"command": "true", "memory_gb": "NaN"}, {"command": "'unclosed"},
                 {"command": "true", "resource_class": "x" * 300}):
        r = c.post("/console/jobs", data={**form, "csrf": csrf}, follow_redirects=False)
        assert 400 <= r.status_code < 500, (form, r.status_code)
    r = c.post("/console/jobs", content=b"command=true&csrf=" + csrf.encode(),
               headers={"Content-Type": "application/json"})
    assert r.status_code == 415
    r = c.post("/console/price-books", data={"book": "{not json", "csrf": csrf})
    assert r.status_code == 403  # a consumer may not publish prices
    assert grid.client.get("/api/v1/jobs", headers={"Authorization": "Bearer " + grid.token("consumer")}
                           ).json()["jobs"] == []


def test_another_tenants_job_is_404_and_public_page_has_no_jobs(grid: Grid) -> None:
    grid.register()
    secret = grid.new_consumer("acme-secret-lab")
    job = secret.post("/api/v1/jobs", json={"command": ["python3", "train-secret-model.py"]}).json()
    c, _ = signed_in(grid, grid.token("consumer"))
    assert c.get(f"/console/jobs/{job['id']}").status_code == 404
    assert c.get(f"/console/jobs?before={job['id']}", headers={"HX-Request": "true"}).status_code == 404
    html = TestClient(grid.client.app).get("/").text
    for private in (job["id"], "train-secret-model", "acme-secret-lab", job["tenant_id"]):
        assert private not in html
    a, _ = signed_in(grid, grid.token("operator"))
    assert a.get(f"/console/jobs/{job['id']}").status_code == 200  # the operator sees every tenant's


def test_language_switch_accept_language_and_local_redirects_only(grid: Grid) -> None:
    c = TestClient(grid.client.app)
    assert "算力网络" in c.get("/").text
    assert "The grid" in c.get("/", headers={"Accept-Language": "en-GB,en;q=0.8,zh;q=0.1"}).text
    assert "算力网络" in TestClient(grid.client.app).get("/").text  # each locale keeps its own catalogue
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        assert c.get(f"/lang/en?next={target}", follow_redirects=False).headers["location"] == "/"
    c.get("/lang/en?next=/")
    assert "The grid" in c.get("/", headers={"Accept-Language": "zh-CN"}).text  # the switch wins


def test_money_and_locale_formatting() -> None:
    assert i18n.yuan(123456, "zh_CN") == "¥1,234.56"
    assert i18n.yuan(-5, "en") in ("-CN¥0.05", "−CN¥0.05")
    assert i18n.fen("0.125", "zh_CN") == "0.125"
    assert i18n.choose(None, "fr;q=1, en;q=0.5") == "en"
    assert i18n.choose("xx", "q=;;,,") == "zh_CN"
    assert "2026" in i18n.when(1796600000.0, "zh_CN")


def test_catalogue_is_complete_and_compiled() -> None:
    """Every message has its Chinese, and the shipped .mo is the compiled .po."""
    r = subprocess.run([sys.executable, "scripts/console_zh.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    folder = ROOT / "src/suanwang/web/locale/zh_CN/LC_MESSAGES"
    po = {m.id: m.string for m in read_po((folder / "messages.po").open("rb")) if m.id}
    mo = {m.id: m.string for m in read_mo((folder / "messages.mo").open("rb")) if m.id}
    assert po == mo and all(po.values())


def test_every_console_route_refuses_without_a_session(grid: Grid) -> None:
    c = TestClient(grid.client.app)
    routes = sorted((m, p) for (m, p), rule in TABLE.items() if rule.session)
    assert len(routes) >= 10
    for method, path in routes:
        r = c.request(method, path.replace("{job_id}", "j-1"), follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/signin", (method, path)
