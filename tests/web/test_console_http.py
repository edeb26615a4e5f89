"""The console's security and language plumbing over HTTP, without a browser (fast, both databases)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient

from suanwang.api.permissions import TABLE
from suanwang.clock import ManualClock
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


def test_statements_show_the_own_tenants_lines_only_and_another_tenants_answer_404(grid: Grid) -> None:
    grid.register()
    mine = grid.consumer.get("/api/v1/whoami").json()["tenant_id"]
    other_client = grid.new_consumer("acme-statement-lab")
    other = other_client.get("/api/v1/whoami").json()["tenant_id"]
    for consumer, fen, key in ((mine, 12_345, "s1"), (other, 777, "s2")):
        r = grid.operator.post("/api/v1/topups", json={"consumer": consumer, "amount_fen": fen},
                               headers={"Idempotency-Key": key})
        assert r.status_code == 201, r.text
    end = time.time() + 0.01
    grid.set_clock(ManualClock(end))
    settled = grid.operator.post("/api/v1/settlements", json={"start": 0, "end": end})
    assert settled.status_code == 201, settled.text
    sid = settled.json()["id"]
    c, _ = signed_in(grid, grid.token("consumer"))
    listing = c.get("/console/statements")
    assert listing.status_code == 200 and f"/console/statements/{sid}" in listing.text
    page = c.get(f"/console/statements/{sid}")
    assert page.status_code == 200 and "123.45" in page.text and f"/console/statements/{sid}/csv" in page.text
    assert other not in page.text and "7.77" not in page.text
    csv = c.get(f"/console/statements/{sid}/csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert f"consumer,{mine},,,topups,12345,123.45" in csv.text and other not in csv.text
    # the other tenant sees its own lines, never mine; a tenant with no statement there gets 404
    b, _ = signed_in(grid, other_client.headers["Authorization"].removeprefix("Bearer "))
    theirs = b.get(f"/console/statements/{sid}")
    assert theirs.status_code == 200 and "7.77" in theirs.text
    assert mine not in theirs.text and "123.45" not in theirs.text
    assert mine not in b.get(f"/console/statements/{sid}/csv").text
    third = grid.new_consumer("acme-no-money")
    t, _ = signed_in(grid, third.headers["Authorization"].removeprefix("Bearer "))
    assert t.get(f"/console/statements/{sid}").status_code == 404
    assert t.get(f"/console/statements/{sid}/csv").status_code == 404
    assert f"/console/statements/{sid}" not in t.get("/console/statements").text
    for bad in (str(sid + 1), "-1", "1e999999", str(2**70), "abc", "NaN"):
        assert c.get(f"/console/statements/{bad}").status_code == 404, bad
        assert c.get(f"/console/statements/{bad}/csv").status_code == 404, bad
    assert c.get("/console/statements/1%00").status_code == 422  # a NUL byte is refused before any route
    # the operator and auditor read settlements over the API; the statement pages are the tenant's own
    o, _ = signed_in(grid, grid.token("operator"))
    assert o.get(f"/console/statements/{sid}").status_code == 403


def _accruing(html: str) -> list[str]:
    section = html.split('id="accruing"', 1)[1].split("</section>", 1)[0]
    return re.findall(r'<td class="n">([^<]*)</td>', section)


def test_spend_accruing_counts_the_own_active_jobs_and_unrated_usage(grid: Grid) -> None:
    grid.register()
    job = grid.consumer.post("/api/v1/jobs", json={"command": ["sleep", "60"], "cores": 2}).json()
    grid.tick()
    [task] = grid.agent.post("/api/v1/agent/lease", json={"max_jobs": 1}).json()
    start = time.time()
    usage = {"job_id": job["id"], "attempt": task["attempt"], "seq": 0, "pool": "cpu", "start": start,
             "end": start + 1800, "wall_s": 1800, "cpu_s": 1.0, "peak_memory_bytes": 1}
    assert grid.agent.post("/api/v1/agent/usage", json={"records": [usage]}).json()["new"] == 1
    c, _ = signed_in(grid, grid.token("consumer"))
    active, _held, records, units = _accruing(c.get("/console/wallet").text)
    assert (active, records) == ("1", "1") and float(units) > 0  # reported, not yet rated
    other = grid.new_consumer("acme-idle")
    b, _ = signed_in(grid, other.headers["Authorization"].removeprefix("Bearer "))
    assert _accruing(b.get("/console/wallet").text)[0::2] == ["0", "0"]  # another tenant's work is not counted
    grid.tick()  # rating prices the record: it no longer accrues
    assert _accruing(c.get("/console/wallet").text)[2] == "0"
