"""Quantum executor: OpenQASM circuits with a shot count, run on a provider's backends.

The agent drives it like any engine (start, poll, cancel, logs); a job's result,
the measured counts, is its output: one JSON line in its log
(``suanwang logs ID``).  Usage is circuit-seconds (``device_s``, the backend's
own run time where it reports one, else the wall time of the run) and, once the
run is done, the shots it executed.

A vendor plugs real hardware in through ``QuantumProvider``: ``backends()``
describes each backend (qubits, basis gates, coupling map) and ``run`` executes
one circuit and returns its counts.  The site config names it as
``module:Class`` (``quantum.provider``); ``aer`` is Qiskit Aer's simulator.

Not enforced: a running Aer simulation cannot be interrupted; a cancelled
task is reported cancelled at once and its result is dropped, while its thread
finishes (the pool's slot count bounds how many run).  An agent restart loses
the in-process runs: they are reported lost and requeued by their policy.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from suanwang.agent.executors.base import PoolInfo, Task, TaskPhase, TaskStatus, Usage
from suanwang.domain.quantum import QuantumBackend, check_shots, circuit_rule
from suanwang.errors import InvalidSpec


@dataclass(frozen=True, slots=True)
class RunResult:
    counts: dict[str, int]
    circuit_s: float  # time the backend spent on the circuit


class QuantumProvider(Protocol):
    """What a vendor implements to offer its hardware (or simulator) through the agent."""

    def backends(self) -> list[QuantumBackend]: ...

    def run(self, backend: str, qasm: str, shots: int) -> RunResult: ...


class AerProvider:
    """Qiskit Aer's simulator (pip: qiskit-aer), all-to-all, as a backend of ``qubits`` qubits."""

    def __init__(self, name: str = "aer_simulator", qubits: int = 0, method: str = "automatic") -> None:
        from qiskit_aer import AerSimulator

        for module in ("qiskit.qasm2", "qiskit.qasm3", "qiskit.transpiler"):
            importlib.import_module(module)  # now: a first import mid-run holds the GIL (and heartbeats) for seconds

        self._sim = AerSimulator(method=method)
        config = self._sim.configuration()
        self.backend = QuantumBackend(name=name, qubits=qubits or int(config.n_qubits),
                                      basis_gates=frozenset(config.basis_gates), provider="aer")

    def backends(self) -> list[QuantumBackend]:
        return [self.backend]

    def run(self, backend: str, qasm: str, shots: int) -> RunResult:
        from qiskit import transpile

        from suanwang.services.circuits import parse

        circuit, _ = parse(qasm)
        compiled = transpile(circuit, self._sim)  # custom gate definitions unrolled onto Aer's basis
        result = self._sim.run(compiled, shots=shots).result()
        if not result.success:
            raise RuntimeError(f"Aer: {result.status}")
        counts = {str(k): int(v) for k, v in result.get_counts().items()}
        return RunResult(counts, float(getattr(result, "time_taken", 0.0) or 0.0))


def load_provider(spec: str, options: dict[str, Any] | None = None) -> QuantumProvider:
    """``aer`` or ``package.module:Class`` (called with ``options`` as keyword arguments)."""
    options = dict(options or {})
    if spec == "aer":
        return AerProvider(**options)
    module, _, name = spec.partition(":")
    if not module or not name:
        raise InvalidSpec(f"quantum.provider {spec!r}: 'aer' or 'package.module:Class'")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise InvalidSpec(f"quantum.provider {spec!r}: {exc}") from exc
    provider: QuantumProvider = cls(**options)
    return provider


@dataclass
class _Run:
    task: Task
    backend: str
    started: float
    future: Future[RunResult] | None = None
    cancelled: bool = False
    log: bytes = b""
    ended: float | None = None
    outcome: TaskStatus | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True, slots=True)
class QuantumPool:
    name: str
    backend: str  # which of the provider's backends serves this pool
    slots: int = 1  # circuits run at once


class QuantumExecutor:
    """Runs each task's circuit on its pool's backend in a thread; counts become the task's log."""

    engine = "quantum"

    def __init__(self, provider: QuantumProvider, pools: list[QuantumPool]) -> None:
        self.provider = provider
        known = {b.name: b for b in provider.backends()}
        for p in pools:
            if p.backend not in known:
                raise InvalidSpec(f"pool {p.name}: backend {p.backend!r} is not one of {sorted(known)}")
        self.pools = {p.name: p for p in pools}
        self.backends = known
        self._threads = ThreadPoolExecutor(max(1, sum(p.slots for p in pools)), thread_name_prefix="quantum")
        self._runs: dict[str, _Run] = {}

    def detect_pools(self) -> list[PoolInfo]:
        return [PoolInfo(name=p.name, resource_class="quantum", cores=0, memory_gb=0.0, devices=p.slots,
                         device_model=p.backend, node_cores=0, node_memory_gb=0.0, node_devices=1,
                         quantum=[self.backends[p.backend].to_json()])
                for p in self.pools.values()]

    def start(self, task: Task) -> str:
        pool = self.pools.get(task.pool)
        if pool is None:
            raise InvalidSpec(f"task {task.job_id}: pool {task.pool!r} is not a quantum pool of this site")
        handle = f"q-{uuid.uuid4().hex[:16]}"
        run = _Run(task, pool.backend, time.time())
        self._runs[handle] = run
        run.future = self._threads.submit(self._execute, run)
        return handle

    def _execute(self, run: _Run) -> RunResult:
        task = run.task
        check_shots(task.shots)
        from suanwang.services.circuits import analyse

        needs = analyse(task.circuit)  # the platform checked it at submit; the backend may have changed since
        why = circuit_rule(needs.qubits, needs.gates, [self.backends[run.backend]])
        if why:
            raise InvalidSpec(f"backend cannot run this circuit: {why}")
        return self.provider.run(run.backend, task.circuit, task.shots)

    def poll(self, handle: str) -> TaskStatus:
        run = self._runs.get(handle)
        if run is None:
            return TaskStatus(TaskPhase.LOST, Usage(), reason="unknown to the quantum executor")
        with run.lock:
            if run.outcome is not None:
                return run.outcome
            now = time.time()
            if run.cancelled:
                run.outcome = TaskStatus(TaskPhase.CANCELLED, Usage(wall_s=now - run.started,
                                                                     device_s=now - run.started),
                                         reason="cancelled", started_at=run.started)
                return run.outcome
            assert run.future is not None
            if not run.future.done():
                elapsed = now - run.started
                return TaskStatus(TaskPhase.RUNNING, Usage(wall_s=elapsed, device_s=elapsed), started_at=run.started)
            run.ended = now
            wall = now - run.started
            exc = run.future.exception()
            if exc is not None:
                message = getattr(exc, "message", None) or str(exc)
                run.log += (json.dumps({"error": message[:2000]}) + "\n").encode()
                run.outcome = TaskStatus(TaskPhase.FAILED, Usage(wall_s=wall, device_s=wall), exit_code=1,
                                         reason=message[:500], started_at=run.started)
                return run.outcome
            result = run.future.result()
            body = {"backend": run.backend, "shots": run.task.shots, "counts": dict(sorted(result.counts.items())),
                    "circuit_s": round(result.circuit_s, 6)}
            run.log += (json.dumps(body) + "\n").encode()
            circuit_s = min(max(result.circuit_s, 0.0), wall) or wall
            run.outcome = TaskStatus(TaskPhase.SUCCEEDED,
                                     Usage(wall_s=wall, device_s=circuit_s, shots=run.task.shots),
                                     exit_code=0, started_at=run.started)
            return run.outcome

    def cancel(self, handle: str) -> None:
        run = self._runs.get(handle)
        if run is not None:
            with run.lock:
                if run.outcome is None:
                    run.cancelled = True
                    if run.future is not None:
                        run.future.cancel()  # only a run still waiting for a slot stops; see the module docstring

    def read_log(self, handle: str, offset: int) -> bytes:
        run = self._runs.get(handle)
        return run.log[offset:] if run is not None else b""

    def adopt(self, handle: str, task: Task) -> bool:
        return False  # runs live in this process: after a restart they are gone (reported lost, requeued)
