"""Quantum jobs at the API: circuits parsed at submit, refused with the parser's message; shots bounded;
a backend's qubits and basis gates decide where a circuit may run; shots metered per usage record."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("qiskit", reason="needs the quantum extra (qiskit)")

BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'
BELL3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nbit[2] c;\nh q[0];\ncx q[0], q[1];\nc = measure q;\n'
QPU = {"name": "qpu", "qubits": 5, "basis_gates": ["rz", "sx", "x", "cx"], "coupling": [[0, 1], [1, 2]],
       "provider": "vendor"}
SIM = {"name": "aer_simulator", "qubits": 20, "basis_gates": ["h", "cx", "rz", "sx", "x", "ccx"]}


def _pools() -> list[dict]:
    return [{"name": "sim", "resource_class": "quantum", "engine": "quantum", "cores": 0, "memory_gb": 0,
             "devices": 2, "device_model": "aer_simulator", "quantum": [SIM]},
            {"name": "hw", "resource_class": "quantum", "engine": "quantum", "cores": 0, "memory_gb": 0,
             "devices": 1, "device_model": "qpu", "quantum": [QPU]}]


def _job(circuit: str = BELL, shots: object = 100, **more: object) -> dict:
    return {"resource_class": "quantum", "circuit": circuit, "shots": shots, **more}


def test_a_circuit_is_read_at_submit_and_placed_on_a_backend_with_its_gates(grid) -> None:  # type: ignore[no-untyped-def]
    grid.register(_pools())
    for circuit in (BELL, BELL3):
        r = grid.consumer.post("/api/v1/jobs", json=_job(circuit))
        assert r.status_code == 201, r.text
        spec = r.json()["spec"]
        assert spec["qubits"] == 2 and set(spec["gates"]) == {"h", "cx", "measure"}
        assert (spec["devices"], spec["cores"], spec["memory_gb"]) == (1, 0, 0)
        grid.tick()
        job = grid.consumer.get(f"/api/v1/jobs/{r.json()['id']}").json()
        assert job["pool"] == "sim"  # 'h' is not in the hardware's basis
    isa = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\nsx q[0];\ncx q[0],q[1];\n'
    r = grid.consumer.post("/api/v1/jobs", json=_job(isa, device_models=["qpu"]))
    assert r.status_code == 201, r.text
    grid.tick()
    assert grid.consumer.get(f"/api/v1/jobs/{r.json()['id']}").json()["pool"] == "hw"


BAD_JOBS = [
    (_job('OPENQASM 2.0;\nqreg q[2];\nfoo q[0];\n'), "'foo' is not defined"),
    (_job('OPENQASM 3.0;\nqubit[2] q;\nbar q[0];\n'), "'bar' is not defined"),
    (_job("h q[0];"), "starts with 'OPENQASM"),
    (_job("OPENQASM 4.0; qreg q[1];"), "OpenQASM 4 is not supported"),
    (_job(BELL.replace("q[2]", "q[200]").replace("c[2]", "c[200]")), "circuit needs 200"),
    (_job('OPENQASM 2.0;\nqreg q[99999999999];\n'), "register of 99999999999 qubits"),
    (_job(BELL.replace("h q[0];", "u3(0.1,0.2,0.3) q[0];")), "u3 not in its basis"),
    (_job('OPENQASM 2.0;\ninclude "/etc/passwd";\n'), 'only include \\"qelib1.inc\\"'),
    (_job("OPENQASM 3.0;\ninclude '/etc/hostname';\n"), "only include"),
    (_job("OPENQASM 3.0;\n" + "(" * 500 + ";"), "nested 500 deep"),
    (_job("OPENQASM 3.0;\nqubit[3] q;\n" + "x q[0];\n" * 2000), "at most 8192"),
    (_job(shots=0), "shots"),
    (_job(shots=-5), "shots"),
    (_job(shots=2**70), "shots"),
    (_job(shots=1.5), "shots"),
    (_job(""), "needs a circuit"),
    ({"command": ["true"], "circuit": BELL, "shots": 10}, "for quantum jobs"),
    ({"resource_class": "quantum", "command": ["true"]}, "needs a circuit"),
]
BAD_BACKENDS = [
    {**SIM, "qubits": 0}, {**SIM, "qubits": 2**70}, {**SIM, "basis_gates": []}, {**SIM, "basis_gates": [""]},
    {**QPU, "coupling": [[0, 9]]}, {**QPU, "coupling": [[1, 1]]}, {"name": "x", "qubits": 3},
]


def test_bad_quantum_jobs_and_backends_are_refused_with_a_message(grid) -> None:  # type: ignore[no-untyped-def]
    grid.register(_pools())
    for body, says in BAD_JOBS:
        r = grid.consumer.post("/api/v1/jobs", json=body)
        assert r.status_code == 422, (body, r.text)
        assert says in r.text, (says, r.text)
    assert grid.consumer.get("/api/v1/jobs").json()["jobs"] == []  # nothing written
    for backend in BAD_BACKENDS:
        pools = _pools()[:1]
        pools[0]["quantum"] = [backend]
        r = grid.agent.post("/api/v1/agent/register", json={"pools": pools})
        assert r.status_code == 422, (backend, r.text)
    pools = _pools()[:1]
    del pools[0]["quantum"]
    r = grid.agent.post("/api/v1/agent/register", json={"pools": pools})
    assert r.status_code == 422 and "backends" in r.text


def test_shots_are_metered_and_bounded_by_the_job(grid) -> None:  # type: ignore[no-untyped-def]
    grid.register(_pools())
    job = grid.consumer.post("/api/v1/jobs", json=_job(shots=300)).json()
    grid.tick()
    [task] = grid.agent.post("/api/v1/agent/lease", json={"max_jobs": 4}).json()
    assert task["circuit"] == BELL and task["shots"] == 300
    now = time.time()
    record = {"job_id": job["id"], "attempt": 1, "seq": 0, "pool": "sim", "start": now - 1, "end": now,
              "wall_s": 0.5, "cpu_s": 0, "peak_memory_bytes": 0, "device_s": 0.5, "shots": 301}
    r = grid.agent.post("/api/v1/agent/usage", json={"records": [record]})
    assert r.status_code == 422 and "301 shots" in r.text
    r = grid.agent.post("/api/v1/agent/usage", json={"records": [{**record, "shots": 300}]})
    assert r.status_code == 200, r.text
    [usage] = grid.consumer.get(f"/api/v1/jobs/{job['id']}/usage").json()
    assert usage["shots"] == 300 and usage["units"] == "0.000000000"  # a qubit earns no FP32 units
