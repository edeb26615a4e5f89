"""OpenQASM 2/3 programs read with Qiskit's own parsers: what a circuit needs, or the parser's message.

Why Qiskit: the executor runs the circuit with Qiskit (Aer, or a vendor's
provider), so the platform refuses at submit exactly what the engine would
refuse later.  Qiskit is the ``quantum`` extra: without it, a quantum job is
refused with a message saying so (a 422), never a 500.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from suanwang.domain.quantum import MAX_QASM_BYTES, MAX_QUBITS
from suanwang.errors import InvalidSpec

_VERSION = re.compile(r"^\s*(?://[^\n]*\n\s*|/\*.*?\*/\s*)*OPENQASM\s+([0-9]+)(?:\.[0-9]+)?\s*;", re.S)
_INCLUDE = re.compile(r"\binclude\s*[\"']([^\"']*)[\"']")
_WORD_INCLUDE = re.compile(r"\binclude\b")
_STANDARD = {2: "qelib1.inc", 3: "stdgates.inc"}  # the only includes: anything else would read the server's files
# Qiskit's OpenQASM 3 importer (ANTLR in Python) takes about a second per KiB on a busy machine, and
# nesting recurses: both are bounded before it runs (OpenQASM 2's parser is native and fast).
MAX_QASM3_BYTES = 8 * 1024
MAX_NESTING = 64
_SIZES = re.compile(r"\b(?:qreg\s+[A-Za-z_][A-Za-z0-9_]*\s*\[\s*([0-9]+)\s*\]|qubit\s*\[\s*([0-9]+)\s*\])")


@dataclass(frozen=True, slots=True)
class CircuitNeeds:
    qubits: int
    gates: tuple[str, ...]  # distinct operation names, sorted
    version: int  # OpenQASM major version


def analyse(qasm: str) -> CircuitNeeds:
    """Parse ``qasm`` (OpenQASM 2 or 3, by its header); InvalidSpec with the parser's message if it is bad."""
    circuit, version = parse(qasm)
    return CircuitNeeds(circuit.num_qubits, tuple(sorted(circuit.count_ops())), version)


def parse(qasm: str) -> tuple[Any, int]:
    """A ``qiskit.QuantumCircuit`` (qiskit ships no type information) and the program's OpenQASM major version."""
    if not isinstance(qasm, str) or not qasm.strip():
        raise InvalidSpec("circuit: an OpenQASM program is required")
    size = len(qasm.encode("utf-8", "surrogatepass"))
    if size > MAX_QASM_BYTES:
        raise InvalidSpec(f"circuit: {size} bytes, more than an OpenQASM program may have ({MAX_QASM_BYTES})")
    head = _VERSION.match(qasm)
    if head is None:
        raise InvalidSpec("circuit: an OpenQASM program starts with 'OPENQASM 2.0;' or 'OPENQASM 3.0;'")
    version = int(head.group(1))
    if version not in (2, 3):
        raise InvalidSpec(f"circuit: OpenQASM {version} is not supported (2 or 3)")
    std = _STANDARD[version]
    named = [m.group(1) for m in _INCLUDE.finditer(qasm)]
    if len(_WORD_INCLUDE.findall(qasm)) != named.count(std):  # also an include spelled past this pattern
        other = next((n for n in named if n != std), "")
        raise InvalidSpec(f"circuit: only include \"{std}\" is allowed in OpenQASM {version}"
                          + (f" (got {other[:60]!r})" if other else ""))
    if version == 3 and size > MAX_QASM3_BYTES:
        raise InvalidSpec(f"circuit: {size} bytes; an OpenQASM 3 program may have at most {MAX_QASM3_BYTES} "
                          "(OpenQASM 2 up to {MAX_QASM_BYTES})".replace("{MAX_QASM_BYTES}", str(MAX_QASM_BYTES)))
    depth = deepest = 0
    for ch in qasm:
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth -= 1
    if deepest > MAX_NESTING:
        raise InvalidSpec(f"circuit: brackets nested {deepest} deep; at most {MAX_NESTING}")
    # Register sizes are read before parsing: the parser would build every declared qubit first.
    for m in _SIZES.finditer(qasm):
        n = int(m.group(1) or m.group(2))
        if n > MAX_QUBITS:
            raise InvalidSpec(f"circuit: a register of {n} qubits; no backend has more than {MAX_QUBITS}")
    try:
        import qiskit.qasm2
        import qiskit.qasm3
    except ImportError as exc:  # the platform was installed without the quantum extra
        raise InvalidSpec("quantum jobs need the platform's 'quantum' extra (pip install 'suanwang[quantum]')") from exc
    try:
        if version == 2:  # qelib1.inc as Qiskit reads it elsewhere: with sx, rxx, ... that hardware bases use
            circuit = qiskit.qasm2.loads(qasm, custom_instructions=qiskit.qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
        else:
            circuit = qiskit.qasm3.loads(qasm)
    except ImportError as exc:  # qasm3 needs qiskit-qasm3-import
        raise InvalidSpec(f"circuit: OpenQASM 3 is not available on this platform ({exc})") from exc
    except Exception as exc:  # the parsers raise QiskitError subclasses, and a few plain errors on odd input
        raise InvalidSpec(f"circuit: OpenQASM {version} parse error: {str(exc)[:500]}") from exc
    return circuit, version
