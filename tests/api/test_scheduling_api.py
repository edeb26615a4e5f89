"""The grid scheduler inside the live platform: deadlines at submit, explanations, preemption."""

from __future__ import annotations

import time

from tests.api.conftest import Grid

POOLS = [
    {"name": "cpu", "resource_class": "general", "engine": "local", "cores": 4, "memory_gb": 16},
    {"name": "gpu", "resource_class": "intelligent", "engine": "local", "cores": 16, "memory_gb": 64, "devices": 2,
     "device_model": "NVIDIA A10", "device_memory_gb": 24},
]


def test_a_deadline_no_pool_can_meet_is_refused_at_submit(grid: Grid) -> None:
    grid.register(POOLS)
    r = grid.consumer.post("/api/v1/jobs", json={"command": ["true"], "duration_s": 7200,
                                                 "deadline": time.time() + 60})
    assert r.status_code == 422
    assert "deadline" in r.json()["detail"]
    ok = grid.consumer.post("/api/v1/jobs", json={"command": ["true"], "duration_s": 60,
                                                  "deadline": time.time() + 7200})
    assert ok.status_code == 201


def test_explain_names_the_pools_ruled_out_and_the_best_candidates(grid: Grid) -> None:
    grid.register(POOLS)
    job = grid.consumer.post("/api/v1/jobs", json={"command": ["true"], "cores": 2}).json()
    before = grid.consumer.get(f"/api/v1/jobs/{job['id']}/explain").json()
    assert before["considered"] == ["local/cpu"]
    assert "class intelligent" in before["ruled_out"]["local/gpu"]
    assert before["best"][0]["pool"] == "cpu" and "cost_fen" in before["best"][0]["terms"]
    grid.tick()
    after = grid.consumer.get(f"/api/v1/jobs/{job['id']}/explain").json()
    assert after["placed"]["pool"] == "cpu" and after["state"] == "placed"
    assert grid.new_consumer("x").get(f"/api/v1/jobs/{job['id']}/explain").status_code == 404


def test_guaranteed_work_preempts_exactly_the_spot_job_it_needs(grid: Grid) -> None:
    grid.register(POOLS)
    spot = [grid.consumer.post("/api/v1/jobs", json={"command": ["sleep", "600"], "cores": 2, "duration_s": 600,
                                                     "service_level": "spot"}).json() for _ in range(2)]
    grid.tick()
    tasks = grid.agent.post("/api/v1/agent/lease", json={"max_jobs": 8}).json()
    assert {t["job_id"] for t in tasks} == {s["id"] for s in spot}  # the 4-core pool is full
    vip = grid.consumer.post("/api/v1/jobs", json={"command": ["true"], "cores": 2, "duration_s": 60,
                                                   "service_level": "guaranteed"}).json()
    grid.tick()
    states = {s["id"]: grid.consumer.get(f"/api/v1/jobs/{s['id']}").json()["state"] for s in spot}
    assert sorted(states.values()) == ["queued_at_site", "requeued"], states  # one spot job freed 2 cores, not both
    assert grid.consumer.get(f"/api/v1/jobs/{vip['id']}").json()["state"] == "placed"
    preempted = next(j for j, s in states.items() if s == "requeued")
    hb = grid.agent.post("/api/v1/agent/heartbeat", json={"running": [{"job_id": t["job_id"], "attempt": 1}
                                                                      for t in tasks]}).json()
    assert hb["kill"] == [{"job_id": preempted, "attempt": 1}]


def test_the_scheduler_follows_the_price_book_in_force(grid: Grid) -> None:
    from tests.api.test_billing_api import top_up

    pools = [{"name": name, "resource_class": "general", "engine": "local", "cores": 8, "memory_gb": 32}
             for name in ("north", "south")]
    grid.register(pools)
    consumer = grid.consumer.get("/api/v1/whoami").json()["tenant_id"]
    top_up(grid, consumer, 1_000_000)

    def placed_pool() -> str:
        job = grid.consumer.post("/api/v1/jobs", json={"command": ["true"], "duration_s": 60}).json()
        grid.tick()
        return str(grid.consumer.get(f"/api/v1/jobs/{job['id']}").json()["pool"])

    book = {"entries": [{"pool": "north", "site": "local", "unit_price_fen": 900},
                        {"pool": "south", "site": "local", "unit_price_fen": 300}]}
    assert grid.operator.post("/api/v1/price-books", json=book).status_code == 201
    assert placed_pool() == "south"
    book["entries"][0]["unit_price_fen"], book["entries"][1]["unit_price_fen"] = 300, 900
    assert grid.operator.post("/api/v1/price-books", json=book).status_code == 201
    assert placed_pool() == "north"
