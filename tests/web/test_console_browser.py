"""Each role's console in Debian's Chromium on a live grid: the flows, isolation, CSRF, and axe-core."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import SHOTS, Console

AXE = "/static/vendor/axe-core/axe.min.js"


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.csp_errors = []  # type: ignore[attr-defined]
    p.on("console", lambda m: "Content Security Policy" in m.text and p.csp_errors.append(m.text))
    yield p
    context.close()


def sign_in(page: Any, console: Console, role: str) -> None:
    page.goto(console.url + "/signin")
    page.get_by_label(re.compile("API token|API 令牌")).fill(console.tokens[role])
    page.locator("form.card button[type=submit]").click()
    page.wait_for_load_state()
    assert "/signin" not in page.url, page.content()[:2000]


def axe_clean(page: Any) -> None:
    """axe-core (vendored) on the page as shown: no serious or critical violation, and no CSP report."""
    page.add_script_tag(url=AXE)
    result = page.evaluate("async () => (await axe.run(document)).violations.map("
                           "v => ({id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map(n => n.html)}))")
    bad = [v for v in result if v["impact"] in ("serious", "critical")]
    assert not bad, (page.url, bad)
    assert not page.csp_errors, page.csp_errors


def shot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=f"{SHOTS}/{name}.png", full_page=False)


def wait_text(page: Any, url: str, pattern: str, timeout_s: float = 45) -> None:
    """Reload ``url`` until ``pattern`` shows (a job's state, a charge): the page never polls by itself."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        page.goto(url)
        if re.search(pattern, page.content()):
            return
        page.wait_for_timeout(300)
    raise AssertionError(f"{pattern!r} never appeared on {url}")


def test_public_views_show_aggregates_only(page: Any, console: Console) -> None:
    with console.api("consumer") as c:
        secret = c.post("/jobs", json={"name": "secret-training", "command": ["echo", "private-words-xyz"]}).json()
    page.goto(console.url + "/")
    html = page.content()
    for private in (secret["id"], "secret-training", "private-words-xyz", console.tenants["consumer_a"]):
        assert private not in html
    assert "qingyang" in html and "wuhu" in html  # sites, links and capacity are public
    assert page.locator("#grid-map canvas").count() >= 1  # the map drew, with the table beside it
    assert "Gansu" in html  # the price book in force with its time-of-use bands
    axe_clean(page)
    shot(page, "public-en")
    page.get_by_role("link", name="中文").click()
    assert "算力网络" in page.content()
    shot(page, "public-zh")
    page.goto(console.url + "/signin")
    axe_clean(page)
    page.goto(console.url + "/docs")
    page.wait_for_selector(".swagger-ui .info", timeout=20_000)  # Swagger UI from the vendored bundle
    assert not page.csp_errors


def test_consumer_submits_watches_pays_and_cancels(page: Any, console: Console) -> None:
    sign_in(page, console, "consumer")
    assert "/console/wallet" in page.url
    axe_clean(page)
    shot(page, "consumer-en")
    page.get_by_label("Command").fill("python3 -c 'print(6*7)'")
    page.locator("#submit-form button[type=submit]").click()
    page.wait_for_url(re.compile(r"/console/jobs/j-"))
    job_url = page.url
    wait_text(page, job_url, r"s-succeeded")
    assert "42" in page.locator("pre.logs").first.inner_text()
    page.wait_for_selector("#explain pre")  # the explanation loads after the page (htmx)
    wait_text(page, job_url, r">charge<")  # rated: its usage record, charge and ledger postings
    axe_clean(page)
    # the operator settles the period up to now; the consumer reads its statement with the job's charge line
    with console.api("operator") as op:
        r = op.post("/settlements", json={"start": 0, "end": time.time() - 0.5})
        assert r.status_code == 201, r.text
    page.goto(console.url + "/console/statements")
    axe_clean(page)
    page.locator("#statements-table a").first.click()
    page.wait_for_url(re.compile(r"/console/statements/\d+$"))
    job_id = job_url.rsplit("/", 1)[-1]
    assert job_id in page.locator("#statement-lines").inner_text()
    assert "¥" in page.locator("#statement-totals").inner_text()
    assert page.locator("a[href$='/csv']").count() == 1
    axe_clean(page)
    # the quote form answers in place (htmx)
    page.goto(console.url + "/console/wallet")
    page.wait_for_function("() => window.htmx !== undefined")
    assert "Spend accruing now" in page.locator("#accruing").inner_text()
    page.locator("#q-cores").fill("2")
    page.get_by_role("button", name="Price it at every eligible pool").click()
    page.wait_for_selector("#quote table, #quote p", timeout=90_000)
    assert "local" in page.locator("#quote table").inner_text(), page.locator("#quote").inner_text()
    # cancel one, with confirmation
    page.get_by_label("Command").fill("sleep 60")
    page.locator("#submit-form button[type=submit]").click()
    page.wait_for_url(re.compile(r"/console/jobs/j-"))
    page.get_by_text("Cancel this job").click()
    page.get_by_role("button", name="Yes, cancel the job").click()
    page.wait_for_load_state()
    wait_text(page, page.url, r"s-cancelled")
    # jobs table: filters in the URL, server-side pages
    page.goto(console.url + "/console/jobs?state=cancelled")
    assert page.locator("#f-state").input_value() == "cancelled"
    assert page.locator("#jobs-table tbody tr").count() == 1
    axe_clean(page)
    page.goto(console.url + "/lang/zh_CN?next=/console/wallet")
    assert "钱包" in page.content()
    shot(page, "consumer-zh")


def test_tenant_isolation_and_csrf(page: Any, console: Console) -> None:
    with console.api("consumer") as c:
        job = c.post("/jobs", json={"command": ["echo", "a-only"]}).json()
    sign_in(page, console, "consumer_b")
    assert page.goto(f"{console.url}/console/jobs/{job['id']}").status == 404
    assert page.goto(f"{console.url}/console/jobs?before={job['id']}", ).status == 404  # the fragment too
    r = page.request.get(f"{console.url}/console/jobs?before={job['id']}", headers={"HX-Request": "true"})
    assert r.status == 404 and "a-only" not in r.text()
    page.goto(console.url + "/console/jobs")
    assert job["id"] not in page.content()
    # a form without the session's CSRF token is refused, and nothing is submitted
    r = page.request.post(console.url + "/console/jobs", form={"command": "echo forged"})
    assert r.status == 403
    r = page.request.post(console.url + f"/console/jobs/{job['id']}/cancel", form={"csrf": "x" * 64})
    assert r.status == 403
    with console.api("consumer_b") as b:
        assert b.get("/jobs").json()["jobs"] == []
    # a role's page another role may not open
    assert page.goto(console.url + "/console/operator").status == 403


def test_provider_operator_auditor(page: Any, console: Console) -> None:
    sign_in(page, console, "provider")
    assert "/console/provider" in page.url
    axe_clean(page)
    book = ('{"entries": [{"resource_class": "general", "unit_price_fen": "80", "site": "qingyang", '
            '"tou": {"province": "Gansu"}}]}')
    page.get_by_label(re.compile("Price book \\(JSON")).fill(book)
    page.get_by_role("button", name="Publish").click()
    page.wait_for_url(re.compile("published=1"))
    assert "Price book published." in page.content()
    assert re.search(r"<td>qingyang</td>", page.content())
    shot(page, "provider-en")
    page.goto(console.url + "/lang/zh_CN?next=/console/provider")
    shot(page, "provider-zh")
    page.goto(console.url + "/lang/en?next=/")
    page.context.clear_cookies()
    with console.api("operator") as op:  # a voucher programme and its fund, shown read-only to the operator
        now = time.time()
        r = op.post("/vouchers", json={"id": "compute-voucher-b", "share_pct": 30, "cap_per_consumer_fen": 5000,
                                       "valid_from": now - 10, "valid_until": now + 3600,
                                       "resource_classes": ["general"], "fund_fen": 4321})
        assert r.status_code == 201, r.text
    sign_in(page, console, "operator")
    assert "/console/operator" in page.url
    assert "Ledger reconciliation" in page.content()
    funds = page.locator("#voucher-funds").inner_text()
    assert "compute-voucher-b" in funds and "43.21" in funds and "50.00" in funds
    axe_clean(page)
    shot(page, "operator-en")
    page.goto(console.url + "/lang/zh_CN?next=/console/operator")
    shot(page, "operator-zh")
    page.context.clear_cookies()
    sign_in(page, console, "auditor")
    assert "/console/auditor" in page.url
    html = page.content()
    assert "price_book.set" in html or "price-book" in html or "audit" in html.lower()
    assert page.locator("form[method=post]").count() == 1  # read-only: only the sign-out form
    axe_clean(page)
    shot(page, "auditor-en")
    page.goto(console.url + "/lang/zh_CN?next=/console/auditor")
    shot(page, "auditor-zh")
    # revoking the token ends the session at the next request
    with console.api("operator") as op:
        mine = [t for t in op.get("/tokens").json() if t["role"] == "auditor"]
        assert op.post(f"/tokens/{mine[0]['id']}/revoke").status_code == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        page.goto(console.url + "/console/auditor")
        if "/signin" in page.url:
            break
        page.wait_for_timeout(200)
    assert "/signin" in page.url


def test_market_board_and_own_orders(page: Any, console: Console) -> None:
    from suanwang.services import market
    from suanwang.store.db import Database

    with console.api("consumer") as c:
        sid = next(s for s in c.get("/market/sessions").json() if s["kind"] == "day-ahead")["id"]
        bid = c.post("/market/bids", json={"session": sid, "sites": ["qingyang"], "resource_class": "general",
                                            "start_slot": 8, "end_slot": 12, "quantity": 12, "rate_per_slot": 4,
                                            "limit_fen": 90})
        assert bid.status_code == 201, bid.text
    with console.api("provider") as p:
        ask = p.post("/market/asks", json={"session": sid, "site": "qingyang", "resource_class": "general",
                                            "start_slot": 8, "end_slot": 12, "units_per_slot": 6, "floor_fen": 40})
        assert ask.status_code == 201, ask.text
    wait_text(page, console.url + "/market", r"<td>qingyang</td>")  # depth (the board is at most 2 s old)
    html = page.content()
    for private in (bid.json()["id"], ask.json()["id"], console.tenants["consumer_a"]):
        assert private not in html  # never who (a provider's id shows only as the owner of its public price book)
    axe_clean(page)
    # the session clears (as the platform's loop does at the gate): prices and volumes, chart with its table
    db = Database(console.live.db_url)
    try:
        assert market.clear_session(db, sid, now=market.session_by_id(sid).gate_at + 1)
    finally:
        db.engine.dispose()
    wait_text(page, console.url + "/market", r"12 unit-slots traded")
    assert page.locator("[data-chart=lines] canvas").count() >= 1
    assert bid.json()["id"] not in page.content()
    axe_clean(page)
    shot(page, "market-en")
    page.goto(console.url + "/lang/zh_CN?next=/market")
    assert "市场行情" in page.content()
    shot(page, "market-zh")
    page.goto(console.url + "/lang/en?next=/")
    assert "location unknown" in page.content()  # the agent's local site has no coordinates: listed, not drawn
    sign_in(page, console, "consumer")
    assert bid.json()["id"] in page.content() and "No contract." not in page.content()
    axe_clean(page)
    page.context.clear_cookies()
    sign_in(page, console, "provider")
    html = page.content()
    assert ask.json()["id"] in html and "No contract." not in html and "Estimated:" in html
    assert "No pool at your sites." in html  # qingyang has no pool: no chart drawn over nothing
    axe_clean(page)
