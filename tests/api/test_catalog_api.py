"""The honest catalogue and device-model sets through the API and CLI: an unknown model is flagged and metered
at the stated conservative rate; a job accepts any of several models or excludes some."""

from __future__ import annotations

import json
import time
from decimal import Decimal

from typer.testing import CliRunner

from suanwang.cli.main import app
from suanwang.domain.catalogue import rate_cpu, rate_device
from suanwang.domain.units import load_catalog, scu_per_hour
from tests.api.conftest import Grid


def _gpu(name: str, model: str) -> dict:
    return {"name": name, "resource_class": "intelligent", "engine": "local", "cores": 8, "memory_gb": 64,
            "devices": 4, "device_model": model, "cpu_model": "AMD EPYC 9654"}


def test_an_unknown_card_is_flagged_and_metered_at_the_lowest_listed_rate(grid: Grid) -> None:
    r = grid.agent.post("/api/v1/agent/register", json={"pools": [
        _gpu("mystery", "Vendor X9000"), _gpu("v100", "V100"),
        {"name": "cpu", "resource_class": "general", "engine": "local", "cores": 4, "memory_gb": 8,
         "cpu_model": "Mystery CPU 1"}]})
    assert r.status_code == 200, r.text
    warnings = r.json()["warnings"]
    assert any("pool mystery" in w and "'Vendor X9000' is not in the catalogue" in w for w in warnings)
    assert any("pool cpu" in w and "'Mystery CPU 1'" in w for w in warnings)
    assert not any("pool v100" in w for w in warnings)
    pools = {p["name"]: p for p in grid.operator.get("/api/v1/pools").json()}
    low_card = rate_device(load_catalog(), "Vendor X9000").spec
    assert low_card.model == "NVIDIA Tesla T4" and pools["mystery"]["catalogue_warning"]
    assert pools["v100"]["catalogue_warning"] is None
    assert Decimal(pools["mystery"]["scu_per_hour"]) == 4 * scu_per_hour(low_card) + 8 * Decimal("0.0768")
    audit = grid.operator.get("/api/v1/audit", params={"limit": 100}).json()
    assert '"pool.unknown_model"' in json.dumps(audit)

    job = grid.consumer.post("/api/v1/jobs", json={"command": ["true"], "resource_class": "intelligent",
                                                   "devices": 1, "cores": 1, "device_model": "Vendor X9000"})
    assert job.status_code == 201, job.text
    grid.tick()
    [task] = grid.agent.post("/api/v1/agent/lease", json={"max_jobs": 4}).json()
    now = time.time()
    rec = {"job_id": task["job_id"], "attempt": 1, "seq": 0, "pool": "mystery", "start": now - 3600, "end": now,
           "wall_s": 3600, "cpu_s": 0, "peak_memory_bytes": 0, "device_s": 3600}
    assert grid.agent.post("/api/v1/agent/usage", json={"records": [rec]}).status_code == 200
    [usage] = grid.consumer.get(f"/api/v1/jobs/{task['job_id']}/usage").json()
    cpu_rate = scu_per_hour(rate_cpu(load_catalog(), "AMD EPYC 9654").spec)
    assert Decimal(usage["units"]) == (scu_per_hour(low_card) + cpu_rate).quantize(Decimal("1e-9"))


def test_a_job_accepts_any_of_several_models_or_excludes_some(grid: Grid) -> None:
    grid.register([_gpu("a100", "A100"),  # the catalogue reads "a100" as the SXM4 40GB
                   _gpu("v100", "V100"), _gpu("t4", "T4")])
    base = {"command": ["true"], "resource_class": "intelligent", "devices": 1, "cores": 1}
    placed = {}
    for name, extra in (("t4-or-h100", {"device_models": ["H100", "tesla-t4"]}),
                        ("v100-or-t4", {"device_models": ["V100", "T4"]}),
                        ("not-a100", {"exclude_device_models": ["NVIDIA A100 SXM4 40GB", "t4"]})):
        r = grid.consumer.post("/api/v1/jobs", json={**base, **extra, "name": name})
        assert r.status_code == 201, r.text
        placed[name] = r.json()["id"]
    grid.tick()
    pools = {n: grid.consumer.get(f"/api/v1/jobs/{i}").json()["pool"] for n, i in placed.items()}
    assert pools["t4-or-h100"] == "t4" and pools["not-a100"] == "v100" and pools["v100-or-t4"] in ("v100", "t4")
    bad = grid.consumer.post("/api/v1/jobs", json={**base, "device_models": ["H100"]})
    assert bad.status_code == 422 and "accepts only H100" in bad.text
    both = grid.consumer.post("/api/v1/jobs", json={**base, "device_models": ["T4"], "exclude_device_models": ["t4"]})
    assert both.status_code == 422 and "both accepted and excluded" in both.text
    many = grid.consumer.post("/api/v1/jobs", json={**base, "device_models": ["x"] * 33})
    assert many.status_code == 422


def test_catalog_cli_lists_rates_and_sources() -> None:
    result = CliRunner().invoke(app, ["catalog", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    t4 = next(m for m in data["models"] if m["model"] == "NVIDIA Tesla T4")
    assert t4["scu_per_unit_hour"] == "8.141" and "record 109" in t4["source"]
    assert all(m["source"] for m in data["models"])
    assert data["unknown_models_metered_as"] == {"accelerator": "NVIDIA Tesla T4", "cpu": "cpu-core"}
    table = CliRunner().invoke(app, ["catalog", "--kind", "cpu"])
    assert table.exit_code == 0 and "EPYC" in table.output and "H100" not in table.output
