"""A quantum site with Qiskit Aer joins through the agent; a Bell circuit runs and is charged by the shot."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytest.importorskip("qiskit_aer", reason="needs the quantum extra (qiskit, qiskit-aer)")
from tests.e2e.conftest import TERMINAL, LivePlatform

pytestmark = pytest.mark.e2e

BELL = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0],q[1];
measure q -> c;
"""
WIDE = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[200];\ncreg c[200];\nh q[0];\nmeasure q -> c;\n'
BOOK = {"entries": [{"resource_class": "quantum", "tier": "standard", "service_level": "standard",
                     "unit": "shot", "unit_price_fen": "0.5"}]}


def test_bell_circuit_runs_on_aer_and_is_charged_by_the_shot(live: LivePlatform, tmp_path: Path) -> None:
    config = tmp_path / "quantum.yaml"
    config.write_text(yaml.safe_dump({
        "engine": "quantum", "quantum": {"provider": "aer", "options": {"qubits": 24}},
        "pools": [{"name": "aer", "resource_class": "quantum", "backend": "aer_simulator", "devices": 2}]}))
    live.start_server()
    live.start_agent("quantum", None, "--config", str(config))
    with live.client(live.token("operator")) as op, live.client() as c:
        pools = [p for p in op.get("/pools").json() if p["name"] == "aer"]
        assert pools and pools[0]["quantum"][0]["qubits"] == 24 and "cx" in pools[0]["quantum"][0]["basis_gates"]
        assert op.post("/price-books", json=BOOK).status_code == 201
        consumer = c.get("/whoami").json()["tenant_id"]
        assert op.post("/topups", json={"consumer": consumer, "amount_fen": 100_000}).status_code == 201

        wide = c.post("/jobs", json={"resource_class": "quantum", "circuit": WIDE, "shots": 10})
        assert wide.status_code == 422, wide.text
        assert "200" in wide.text and "24 qubits" in wide.text

        job = c.post("/jobs", json={"resource_class": "quantum", "circuit": BELL, "shots": 1000, "duration_s": 60})
        assert job.status_code == 201, job.text
        job_id = job.json()["id"]
        done = live.wait_for(job_id, TERMINAL, timeout=120)
        assert done["state"] == "succeeded", done
        [line] = [ln for ln in c.get(f"/jobs/{job_id}/logs").text.splitlines() if ln.strip()]
        import json

        result = json.loads(line)
        counts = result["counts"]
        assert set(counts) <= {"00", "11"} and sum(counts.values()) == 1000
        assert 400 <= counts.get("00", 0) <= 600  # binomial(1000, 1/2): 6 sigma either side

        usage = c.get(f"/jobs/{job_id}/usage").json()
        # a loaded machine may lapse an attempt's 2 s lease: the job then ran again; its last attempt ran 1,000
        final = [u for u in usage if u["attempt"] == done["attempt"]]
        assert sum(u["shots"] for u in final) == 1000 and sum(u["device_s"] for u in final) > 0
        billed = sum(u["shots"] for u in usage if not u.get("unbilled_reason"))  # a lost attempt is not billed
        key_of = {f"usage:{job_id}:{u['attempt']}:{u['seq']}" for u in usage}
        charged = 0
        import time

        deadline = time.time() + 60
        while time.time() < deadline:
            charges = [t for t in op.get("/ledger/transfers", params={"limit": 10_000}).json()
                       if t["kind"] == "charge" and t["usage_key"] in key_of]
            charged = sum(-sum(int(leg.split()[-1]) for leg in t["postings"].split("; ")
                               if leg.split()[0] in (f"wallet:{consumer}", f"hold:{consumer}")) for t in charges)
            if charged == billed // 2:
                break
            time.sleep(0.2)
        assert billed >= 1000 and charged == billed // 2  # 0.5 fen a shot: 500 fen for the 1,000 shots
