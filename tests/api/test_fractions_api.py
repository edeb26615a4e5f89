"""Fractions of a card at the API: validated at submit, placed only on sharing pools, packed onto cards (the
card recorded in the placement), and a pool's sharing declared at registration."""

from __future__ import annotations

import pytest

GPU = {"name": "gpu", "resource_class": "intelligent", "engine": "local", "cores": 32, "memory_gb": 256,
       "devices": 2, "device_model": "A100", "device_memory_gb": 40,
       "sharing": {"mode": "mps", "min_share": 50}}
WHOLE = {**GPU, "name": "whole", "sharing": None}


def _job(devices: object, **more: object) -> dict:
    return {"command": ["true"], "resource_class": "intelligent", "cores": 1, "memory_gb": 1, "devices": devices,
            **more}


def test_fractions_are_packed_onto_the_sharing_pools_cards(grid) -> None:  # type: ignore[no-untyped-def]
    grid.register([GPU, WHOLE])
    pools = {p["name"]: p for p in grid.consumer.get("/api/v1/pools").json()}
    assert pools["gpu"]["sharing"]["mode"] == "mps" and pools["whole"]["sharing"] is None
    ids = []
    for _ in range(5):
        r = grid.consumer.post("/api/v1/jobs", json=_job(0.25, device_memory_gb=8))
        assert r.status_code == 201, r.text
        assert (r.json()["spec"]["devices"], r.json()["spec"]["device_share"]) == (1, 250)
        ids.append(r.json()["id"])
    grid.tick()
    jobs = [grid.consumer.get(f"/api/v1/jobs/{j}").json() for j in ids]
    assert {j["pool"] for j in jobs} == {"gpu"}
    cards = sorted(j["placement"]["card"] for j in jobs)
    assert cards == [0, 0, 0, 0, 1]  # four quarters fill card 0 before card 1 is opened
    # one card is wholly free: a job asking for both cards of the pool waits, one card fits on "whole" or "gpu"
    r = grid.consumer.post("/api/v1/jobs", json=_job(1, device_model="A100"))
    grid.tick()
    assert grid.consumer.get(f"/api/v1/jobs/{r.json()['id']}").json()["state"] == "placed"


@pytest.mark.parametrize(("body", "says"), [
    (_job(1.5), "whole cards"),
    (_job(0.00001), "thousandths"),
    (_job(-0.5), "devices"),
    (_job(0.25, device_memory_gb=-1), "device_memory_gb"),
    (_job(2, device_memory_gb=8), "for a fraction"),
    (_job(0.25, device_memory_gb=80), "device memory"),  # more than any card holds: no pool could ever run it
    (_job("1e999"), "devices"),
])
def test_bad_fractions_get_a_4xx_naming_what_is_wrong(grid, body: dict, says: str) -> None:  # type: ignore[no-untyped-def]
    grid.register([GPU])
    r = grid.consumer.post("/api/v1/jobs", json=body)
    assert 400 <= r.status_code < 500, r.text
    assert says in r.text


def test_a_fraction_is_refused_where_no_pool_shares_cards(grid) -> None:  # type: ignore[no-untyped-def]
    grid.register([WHOLE])
    r = grid.consumer.post("/api/v1/jobs", json=_job(0.5))
    assert r.status_code == 422 and "does not share cards" in r.text, r.text


@pytest.mark.parametrize("sharing", [{"mode": "sliced"}, {"mode": "mig"}, {"mode": "mps", "min_share": 0},
                                     {"mode": "mig", "profiles": [{"name": "1g", "share": 2000, "memory_mib": 1}]}])
def test_bad_sharing_is_refused_at_registration(grid, sharing: dict) -> None:  # type: ignore[no-untyped-def]
    r = grid.agent.post("/api/v1/agent/register", json={"pools": [{**GPU, "sharing": sharing}]})
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("raw", ['{"command": ["true"], "resource_class": "intelligent", "devices": 1e999}',
                                 '{"command": ["true"], "resource_class": "intelligent", "devices": 0.25, '
                                 '"device_memory_gb": 1e999}',
                                 '{"command": ["true"], "resource_class": "intelligent", "devices": NaN}'])
def test_absurd_numbers_are_a_422(grid, raw: str) -> None:  # type: ignore[no-untyped-def]
    grid.register([GPU])
    r = grid.consumer.post("/api/v1/jobs", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text


def test_a_fraction_is_metered_by_the_share_it_holds(grid) -> None:  # type: ignore[no-untyped-def]
    import time
    from decimal import Decimal

    grid.register([GPU])
    ids = {}
    for devices in (0.25, 1):
        r = grid.consumer.post("/api/v1/jobs", json=_job(devices, cores=0))
        assert r.status_code == 201, r.text
        ids[devices] = r.json()["id"]
    grid.tick()
    tasks = {t["job_id"]: t for t in grid.agent.post("/api/v1/agent/lease", json={"max_jobs": 4}).json()}
    assert tasks[ids[0.25]]["device_share"] == 250 and tasks[ids[0.25]]["card"] == 0
    assert tasks[ids[1]]["device_share"] == 0 and tasks[ids[1]]["card"] == -1
    now = time.time()
    usage = {}
    for devices, jid in ids.items():  # the agent reports the card's device-seconds; the platform meters the share
        record = {"job_id": jid, "attempt": 1, "seq": 0, "pool": "gpu", "start": now - 3600, "end": now,
                  "wall_s": 3600.0, "cpu_s": 0, "peak_memory_bytes": 0, "device_s": 3600.0}
        r = grid.agent.post("/api/v1/agent/usage", json={"records": [record]})
        assert r.status_code == 200, r.text
        [usage[devices]] = grid.consumer.get(f"/api/v1/jobs/{jid}/usage").json()
    assert usage[0.25]["device_s"] == 900.0 and usage[1]["device_s"] == 3600.0
    frac, whole = (Decimal(usage[d]["units"]) for d in (0.25, 1))
    assert whole > 0 and frac * 4 == whole  # integer nano-units: a quarter card-hour earns a quarter of the units
