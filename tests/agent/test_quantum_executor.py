"""The quantum executor with the real Aer simulator, and a vendor's provider through the plug-in interface."""

from __future__ import annotations

import json
import threading
import time

import pytest

pytest.importorskip("qiskit_aer", reason="needs the quantum extra (qiskit-aer)")

from suanwang.agent.executors.base import Task, TaskPhase
from suanwang.agent.executors.quantum import QuantumExecutor, QuantumPool, RunResult, load_provider
from suanwang.agent.siteconfig import build_executor, parse_site_config
from suanwang.domain.quantum import QuantumBackend
from suanwang.errors import InvalidSpec

BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'
GHZ3 = ('OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[3] q;\nbit[3] c;\nh q[0];\ncx q[0], q[1];\n'
        'cx q[1], q[2];\nc = measure q;\n')


class GatedVendor:
    """A vendor's provider as the interface asks: one backend; ``run`` waits for a gate so a test can
    cancel it mid-run.  It answers all-zero counts (it is a stand-in for hardware that is not here)."""

    def __init__(self, qubits: int = 3) -> None:
        self.gate = threading.Event()
        self.backend = QuantumBackend("vendor_qpu", qubits, frozenset({"rz", "sx", "x", "cx"}),
                                      coupling=((0, 1), (1, 2)), provider="vendor")

    def backends(self) -> list[QuantumBackend]:
        return [self.backend]

    def run(self, backend: str, qasm: str, shots: int) -> RunResult:
        self.gate.wait(10)
        return RunResult({"000": shots}, 0.001)


def _wait(ex: QuantumExecutor, handle: str) -> object:
    deadline = time.time() + 60
    while time.time() < deadline:
        status = ex.poll(handle)
        if status.phase.is_final:
            return status
        time.sleep(0.01)
    raise AssertionError("never finished")


def _task(circuit: str, shots: int = 1000, pool: str = "aer") -> Task:
    return Task("j1", 1, (), pool, cores=0, memory_gb=0, devices=1, circuit=circuit, shots=shots)


def test_aer_runs_bell_and_ghz_and_reports_counts_and_shots() -> None:
    cfg = parse_site_config({"engine": "quantum", "quantum": {"options": {"qubits": 10}},
                             "pools": [{"name": "aer", "resource_class": "quantum", "backend": "aer_simulator",
                                        "devices": 2}]})
    ex = build_executor(cfg)
    [info] = ex.detect_pools()
    assert info.resource_class == "quantum" and info.devices == 2 and info.quantum[0]["qubits"] == 10
    for circuit, outcomes in ((BELL, {"00", "11"}), (GHZ3, {"000", "111"})):
        handle = ex.start(_task(circuit))
        status = _wait(ex, handle)
        assert status.phase is TaskPhase.SUCCEEDED, status
        assert status.usage.shots == 1000 and 0 < status.usage.device_s <= status.usage.wall_s
        result = json.loads(ex.read_log(handle, 0))
        assert set(result["counts"]) == outcomes and sum(result["counts"].values()) == 1000
        assert min(result["counts"].values()) > 350  # each outcome about half: far from a one-sided answer


def test_a_circuit_the_backend_cannot_run_fails_with_why() -> None:
    ex = QuantumExecutor(load_provider("aer", {"qubits": 2}), [QuantumPool("aer", "aer_simulator")])
    status = _wait(ex, ex.start(_task(GHZ3)))
    assert status.phase is TaskPhase.FAILED and "circuit needs 3" in status.reason
    assert status.usage.shots == 0  # nothing ran, nothing to pay by the shot


def test_a_vendor_provider_plugs_in_and_a_cancelled_run_reports_no_shots() -> None:
    ex = build_executor(parse_site_config({
        "engine": "quantum", "quantum": {"provider": "tests.agent.test_quantum_executor:GatedVendor"},
        "pools": [{"name": "qpu", "resource_class": "quantum", "backend": "vendor_qpu", "devices": 1}]}))
    assert ex.detect_pools()[0].quantum[0]["coupling"] == [[0, 1], [1, 2]]
    isa = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nsx q[0];\ncx q[0],q[1];\n'
    handle = ex.start(_task(isa, 50, pool="qpu"))
    assert ex.poll(handle).phase is TaskPhase.RUNNING
    ex.cancel(handle)
    status = ex.poll(handle)
    assert status.phase is TaskPhase.CANCELLED and status.usage.shots == 0
    ex.provider.gate.set()  # type: ignore[attr-defined]
    handle = ex.start(_task(isa, 50, pool="qpu"))
    assert _wait(ex, handle).usage.shots == 50
    with pytest.raises(InvalidSpec, match="not one of"):
        QuantumExecutor(GatedVendor(), [QuantumPool("x", "nope")])
    with pytest.raises(InvalidSpec, match=r"package\.module:Class"):
        load_provider("nonsense")
