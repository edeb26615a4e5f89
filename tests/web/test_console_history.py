"""The provider's capacity over time and earnings by period, the operator's placements, waits and carbon
(TestClient, both databases): figures from recorded usage and events, estimates marked as such."""

from __future__ import annotations

import time

from suanwang.web import data, session
from tests.api.conftest import Grid
from tests.web.test_console_http import signed_in

API = "/api/v1"


def test_capacity_placements_and_carbon_come_from_what_was_recorded(grid: Grid) -> None:
    grid.register([{"name": "cpu", "resource_class": "general", "engine": "local", "cores": 8, "memory_gb": 32}])
    job = grid.consumer.post(f"{API}/jobs", json={"command": ["true"], "cores": 2, "memory_gb": 1}).json()
    grid.tick()
    [task] = grid.agent.post(f"{API}/agent/lease", json={"max_jobs": 1}).json()
    now = time.time()
    start = now - (now % 3600) + 60 if now % 3600 > 700 else now - 600  # inside the current hour, before now
    usage = {"job_id": job["id"], "attempt": task["attempt"], "seq": 0, "pool": "cpu", "start": start,
             "end": start + 300, "wall_s": 300, "cpu_s": 300, "peak_memory_bytes": 1}
    r = grid.agent.post(f"{API}/agent/usage", json={"records": [usage]})
    assert r.status_code == 200, r.text
    data._memo.clear()  # operator aggregates are memoised per process; another test's grid may be there
    op, _ = signed_in(grid, grid.token("operator"))
    op.cookies.set(session.LANG, "en")
    page = op.get("/console/provider").text
    assert "Estimated:" in page and 'id="cap-data"' in page
    # 2 cores held 300 s of an hour that is ``now - hour start`` old (at most 3600 s): a positive average
    assert "No pool at your sites." not in page
    assert page.count("<td>general</td>") >= 1
    assert op.get("/console/provider?period=week").status_code == 200
    assert op.get("/console/provider?period=decade").status_code == 422
    ops = op.get("/console/operator").text
    assert "No placement in the last hour." not in ops  # the job was placed by the tick above
    assert "No usage reported in the last 24 hours." not in ops and "Estimated:" in ops
    # another provider sees none of this site's capacity
    t = grid.operator.post(f"{API}/tenants", json={"name": "p2", "kind": "provider"}).json()
    tok = grid.operator.post(f"{API}/tokens", json={"role": "provider", "tenant_id": t["id"]}).json()["token"]
    p2, _ = signed_in(grid, tok)
    p2.cookies.set(session.LANG, "en")
    assert "No pool at your sites." in p2.get("/console/provider").text
