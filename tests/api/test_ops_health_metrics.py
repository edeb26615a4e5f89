"""/health fails when the control loop fails or stalls or the database is gone; /metrics carries the platform's series;
the page at / shows only public aggregates."""

from __future__ import annotations

import re
import time
from pathlib import Path

from fastapi.testclient import TestClient

from suanwang.api.app import create_app
from suanwang.services.platform import Platform, Settings
from suanwang.store.db import Database
from tests.api.conftest import Grid


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _failing_tick(**_: object) -> None:
    raise RuntimeError("database went away mid-pass")


def test_health_fails_after_a_few_failed_passes_and_recovers(grid: Grid) -> None:
    platform = grid.platform
    assert grid.client.get("/api/v1/health").status_code == 200
    real_tick = platform.tick
    platform.tick = _failing_tick  # type: ignore[method-assign]
    for _ in range(platform.settings.loop_failures_max - 1):
        platform.run_pass()
    assert grid.client.get("/api/v1/health").status_code == 200  # one or two bad passes are not an outage
    platform.run_pass()
    r = grid.client.get("/api/v1/health")
    assert r.status_code == 503
    assert r.json()["status"] == "failing"
    assert r.json()["problems"] == ["control loop failed 3 passes in a row (last: RuntimeError)"]
    assert "mid-pass" not in r.text  # the error's text stays in the log: /health needs no token
    platform.tick = real_tick  # type: ignore[method-assign]
    platform.run_pass()
    assert grid.client.get("/api/v1/health").status_code == 200


def test_health_fails_when_the_started_loop_has_not_run(db: Database) -> None:
    clock = FakeClock()
    platform = Platform(db, Settings(loop_stale_s=30.0), clock=clock)
    client = TestClient(create_app(platform, run_loop=False), raise_server_exceptions=False)
    platform.health.started_at = clock()  # what start() records, without starting the thread
    clock.now += 29
    assert client.get("/api/v1/health").status_code == 200
    clock.now += 2
    r = client.get("/api/v1/health")
    assert r.status_code == 503
    assert "no control-loop pass succeeded for 31 s" in r.json()["problems"][0]
    platform.run_pass()  # a pass (on the empty grid) succeeds
    assert client.get("/api/v1/health").status_code == 200
    clock.now += 60
    assert "the control loop has not run for 60 s" in client.get("/api/v1/health").json()["problems"][0]


def test_health_fails_when_the_database_is_unreachable(tmp_path: Path) -> None:
    db = Database("postgresql://nobody:secret@127.0.0.1:1/none")  # nothing listens on port 1
    platform = Platform(db)
    r = TestClient(create_app(platform, run_loop=False)).get("/api/v1/health")
    assert r.status_code == 503
    assert r.json()["problems"] == ["database unreachable (OperationalError)"]
    assert "secret" not in r.text


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one series in a Prometheus text exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if m and ",".join(sorted((m.group(1) or "").split(","))) == want:
            return float(m.group(2))
    return 0.0


def test_metrics_report_queue_placements_pass_time_and_failures(grid: Grid) -> None:
    grid.register()
    before = grid.client.get("/metrics").text
    ids = [grid.consumer.post("/api/v1/jobs", json={"command": ["true"], "cores": 1}).json()["id"] for _ in range(3)]
    text = grid.client.get("/metrics").text
    assert _sample(text, "suanwang_queue_jobs", resource_class="general", site="", state="pending") == 3
    grid.tick()
    after = grid.client.get("/metrics").text
    assert _sample(after, "suanwang_queue_jobs", resource_class="general", site="local", state="placed") == 3
    assert _sample(after, "suanwang_queue_jobs", resource_class="general", site="", state="pending") == 0
    assert _sample(after, "suanwang_placements_total") - _sample(before, "suanwang_placements_total") == 3
    assert (_sample(after, "suanwang_scheduling_pass_seconds_count")
            > _sample(before, "suanwang_scheduling_pass_seconds_count"))
    assert _sample(after, "suanwang_rating_backlog") == 0 and _sample(after, "suanwang_rating_lag_seconds") == 0
    grid.platform.tick = _failing_tick  # type: ignore[method-assign]
    grid.platform.run_pass()
    failed = grid.client.get("/metrics").text
    assert (_sample(failed, "suanwang_control_loop_failures_total")
            - _sample(after, "suanwang_control_loop_failures_total")) == 1
    assert len(ids) == 3


def test_metrics_count_lease_expiries_and_rating_lag(grid: Grid) -> None:
    grid.register()
    job = grid.consumer.post("/api/v1/jobs", json={"command": ["true"], "cores": 1}).json()["id"]
    grid.tick()
    leased = grid.agent.post("/api/v1/agent/lease", json={"max_jobs": 1, "wait_s": 0}).json()
    assert leased[0]["job_id"] == job
    now = time.time()
    usage = {"job_id": job, "attempt": leased[0]["attempt"], "seq": 0, "pool": "cpu", "start": now - 1, "end": now,
             "wall_s": 1.0, "cpu_s": 1.0, "device_s": 0.0, "peak_memory_bytes": 0}
    assert grid.agent.post("/api/v1/agent/usage", json={"records": [usage]}).status_code == 200
    text = grid.client.get("/metrics").text
    assert _sample(text, "suanwang_rating_backlog") == 1
    assert _sample(text, "suanwang_rating_lag_seconds") >= 0
    # leased, not yet started by the engine: queued at the site
    assert _sample(text, "suanwang_queue_jobs", resource_class="general", site="local", state="queued_at_site") == 1
    before = _sample(text, "suanwang_lease_expiries_total")
    with grid.platform.db.transaction() as s:  # the agent vanished: its lease lapsed long ago
        from suanwang.store.tables import JobRow
        s.get(JobRow, job).lease_expires_at = 1.0
    grid.tick()
    after = grid.client.get("/metrics").text
    assert _sample(after, "suanwang_lease_expiries_total") - before == 1
    assert _sample(after, "suanwang_rating_backlog") == 0  # the tick rated it


def test_reconciliation_result_is_a_gauge(grid: Grid) -> None:
    assert grid.platform.reconcile_ledger() is True
    text = grid.client.get("/metrics").text
    assert _sample(text, "suanwang_ledger_reconciliation_ok") == 1
    assert _sample(text, "suanwang_ledger_reconciliation_timestamp_seconds") > 0
    assert grid.operator.get("/api/v1/ledger/reconcile").json()["ok"] is True  # on demand, too


def test_index_page_shows_only_public_aggregates(grid: Grid) -> None:
    grid.register()
    secret = grid.new_consumer("acme-secret-lab")
    job = secret.post("/api/v1/jobs", json={"command": ["python3", "train-secret-model.py"], "cores": 2}).json()
    other = grid.consumer.post("/api/v1/jobs", json={"command": ["echo", "private-words"], "cores": 1}).json()
    grid.tick()
    html = TestClient(grid.client.app).get("/").text  # no token
    for private in (job["id"], other["id"], "train-secret-model", "private-words", "acme-secret-lab", job["tenant_id"]):
        assert private not in html, private
    html = TestClient(grid.client.app).get("/", headers={"Accept-Language": "en"}).text
    assert re.search(r"<td>placed</td><td class=\"n\">2</td>", html)
    # free cores of the online general pools, of 8
    assert re.search(r"<td>general</td><td class=\"n\">5</td><td class=\"n\">8</td>", html)


def test_metrics_answer_while_the_database_is_down() -> None:
    platform = Platform(Database("postgresql://nobody@127.0.0.1:1/none"))
    r = TestClient(create_app(platform, run_loop=False)).get("/metrics")
    assert r.status_code == 200
    assert _sample(r.text, "suanwang_database_up") == 0
    assert "suanwang_placements_total" in r.text
