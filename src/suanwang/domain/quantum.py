"""Quantum pools: what a backend offers, what a circuit needs, and the hard rule between them.

Why here and not in the scheduler: the same rule refuses a circuit at submit
(``placement.rule_out``), explains a pool ruled out, and masks pools in the
grid scheduler; one pure function keeps the three from drifting apart.

A quantum pool's ``devices`` are the circuits its backends run at once; each
backend is described by ``QuantumBackend`` (qubits, basis gates, coupling
map).  A circuit fits a backend when it needs no more qubits than the backend
has and uses only gates of its basis (plus the directives every backend takes:
measure, barrier, reset, delay): the platform, like IBM's runtime since 2024,
takes instruction-set circuits and leaves transpiling to the consumer's SDK.
The coupling map is passed to the backend's provider, which routes the
circuit onto it (the Aer simulator does); it is not a placement rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from suanwang.errors import InvalidSpec

MAX_SHOTS = 10_000_000  # per job: more than any vendor takes in one task (Braket and IBM: 100,000)
MAX_QUBITS = 100_000  # what a backend may declare; a circuit's register sizes are bounded by this too
MAX_QASM_BYTES = 256 * 1024  # an OpenQASM program's text, in UTF-8
MAX_GATE_NAME = 64
DIRECTIVES = frozenset({"measure", "barrier", "reset", "delay"})  # every backend takes these


@dataclass(frozen=True, slots=True)
class QuantumBackend:
    """One backend behind a quantum pool: a simulator, or hardware through a vendor's provider plug-in."""

    name: str
    qubits: int
    basis_gates: frozenset[str]
    coupling: tuple[tuple[int, int], ...] = ()  # empty: all-to-all (a simulator)
    provider: str = "aer"

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidSpec("a quantum backend needs a name")
        if isinstance(self.qubits, bool) or not isinstance(self.qubits, int) or not 1 <= self.qubits <= MAX_QUBITS:
            raise InvalidSpec(f"backend {self.name}: qubits must be an integer within 1..{MAX_QUBITS}")
        if not self.basis_gates:
            raise InvalidSpec(f"backend {self.name}: basis_gates must not be empty")
        for g in self.basis_gates:
            if not isinstance(g, str) or not g or len(g) > MAX_GATE_NAME:
                raise InvalidSpec(f"backend {self.name}: bad gate name {str(g)[:40]!r}")
        for a, b in self.coupling:
            if not (0 <= a < self.qubits and 0 <= b < self.qubits) or a == b:
                raise InvalidSpec(f"backend {self.name}: coupling {a}-{b} is not a pair of its qubits")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "qubits": self.qubits, "basis_gates": sorted(self.basis_gates),
                "coupling": [list(p) for p in self.coupling], "provider": self.provider}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QuantumBackend:
        """From a site's declaration or the stored copy; InvalidSpec naming what is wrong."""
        try:
            coupling = tuple((int(a), int(b)) for a, b in data.get("coupling") or ())
            gates = data["basis_gates"]
            if isinstance(gates, str) or not isinstance(gates, Iterable):
                raise InvalidSpec("basis_gates must be a list of gate names")
            return cls(name=str(data["name"]), qubits=data["qubits"], basis_gates=frozenset(gates),
                       coupling=coupling, provider=str(data.get("provider") or "aer"))
        except KeyError as exc:
            raise InvalidSpec(f"quantum backend: missing field {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise InvalidSpec(f"quantum backend: {exc}") from exc


def check_shots(shots: object) -> int:
    """A shot count: an integer within 1..MAX_SHOTS (bools and floats refused, 2**70 too)."""
    if isinstance(shots, bool) or not isinstance(shots, int):
        raise InvalidSpec(f"shots must be an integer, got {type(shots).__name__}")
    if not 1 <= shots <= MAX_SHOTS:
        raise InvalidSpec(f"shots must lie within 1..{MAX_SHOTS} (got {str(shots)[:30]})")
    return shots


def circuit_rule(qubits: int, gates: Iterable[str], backends: Iterable[QuantumBackend]) -> str | None:
    """Why no backend of a pool can run a circuit of ``qubits`` using ``gates``, or None if one can."""
    need = frozenset(gates) - DIRECTIVES
    backends = list(backends)
    if not backends:
        return "no quantum backend declared"
    reasons = []
    for b in backends:
        if qubits > b.qubits:
            reasons.append(f"{b.name}: {b.qubits} qubits, circuit needs {qubits}")
            continue
        missing = need - b.basis_gates
        if missing:
            reasons.append(f"{b.name}: gates {', '.join(sorted(missing))} not in its basis")
            continue
        return None
    return "; ".join(reasons)


def backends_of(raw: object) -> tuple[QuantumBackend, ...]:
    """A pool's stored ``quantum`` column (a list of backend objects) as values; () for none."""
    if not raw:
        return ()
    if not isinstance(raw, list | tuple):
        raise InvalidSpec("quantum backends must be a list")
    return tuple(QuantumBackend.from_json(b) for b in raw)
