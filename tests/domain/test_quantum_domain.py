"""The quantum hard rule, shot bounds and device-model sets: pure functions, checked by property."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.domain.grid import Capacity, Pool
from suanwang.domain.job import JobSpec
from suanwang.domain.models import model_set_rule
from suanwang.domain.placement import rule_out
from suanwang.domain.quantum import DIRECTIVES, MAX_SHOTS, QuantumBackend, check_shots, circuit_rule
from suanwang.domain.resources import Engine, ResourceClass
from suanwang.errors import InvalidSpec

GATES = ["h", "cx", "rz", "sx", "x", "ccx", "u3", "swap", "measure", "barrier"]
gate_sets = st.frozensets(st.sampled_from(GATES), min_size=1)
backends = st.builds(lambda n, g: QuantumBackend(f"b{n}-{len(g)}", n, g), st.integers(1, 300), gate_sets)


@given(st.integers(1, 400), st.frozensets(st.sampled_from(GATES)), st.lists(backends, min_size=1, max_size=4))
def test_a_circuit_fits_exactly_when_some_backend_has_the_qubits_and_the_gates(
        qubits: int, gates: frozenset[str], bs: list[QuantumBackend]) -> None:
    fits = any(qubits <= b.qubits and gates - DIRECTIVES <= b.basis_gates for b in bs)
    why = circuit_rule(qubits, gates, bs)
    assert (why is None) == fits
    if why is not None:  # the message names every backend and why
        assert all(b.name in why for b in bs)


def test_shot_counts_outside_bounds_are_refused() -> None:
    assert check_shots(1) == 1 and check_shots(MAX_SHOTS) == MAX_SHOTS
    for bad in (0, -1, MAX_SHOTS + 1, 2**70, 1.0, True, "10", None):
        with pytest.raises(InvalidSpec, match="shots"):
            check_shots(bad)


def _quantum_pool(name: str, qubits: int, gates: set[str]) -> Pool:
    return Pool(name, "s", ResourceClass.QUANTUM, Engine.QUANTUM, Capacity(0, 0, 2), device_model=name,
                quantum=(QuantumBackend(name, qubits, frozenset(gates)),))


def test_rule_out_refuses_a_wide_circuit_and_missing_gates() -> None:
    small = _quantum_pool("small", 5, {"h", "cx"})
    spec = JobSpec((), ResourceClass.QUANTUM, devices=1, cores=0, memory_gb=0, circuit="x", shots=10, qubits=200,
                   gates=("h", "measure"))
    assert "circuit needs 200" in (rule_out(spec, small) or "")
    ok = JobSpec((), ResourceClass.QUANTUM, devices=1, cores=0, memory_gb=0, circuit="x", shots=10, qubits=2,
                 gates=("h", "cx", "measure"))
    assert rule_out(ok, small) is None
    rz = JobSpec((), ResourceClass.QUANTUM, devices=1, cores=0, memory_gb=0, circuit="x", shots=10, qubits=2,
                 gates=("rz",))
    assert "rz not in its basis" in (rule_out(rz, small) or "")
    with pytest.raises(InvalidSpec, match="declares its backends"):
        Pool("q", "s", ResourceClass.QUANTUM, Engine.QUANTUM, Capacity(0, 0, 1), device_model="q")


MODELS = ["V100", "T4", "A100", "h100", "NVIDIA H100 SXM5 80GB", "L40S", "unknown-x"]


@given(st.sampled_from(MODELS), st.frozensets(st.sampled_from(MODELS), max_size=3),
       st.frozensets(st.sampled_from(MODELS), max_size=3))
def test_model_sets_accept_any_listed_and_none_excluded(model: str, accept: frozenset[str],
                                                        exclude: frozenset[str]) -> None:
    from suanwang.domain.models import canonical

    why = model_set_rule(sorted(accept), sorted(exclude), model)
    accepted = not accept or canonical(model) in {canonical(m) for m in accept}
    excluded = canonical(model) in {canonical(m) for m in exclude}
    assert (why is None) == (accepted and not excluded)


def test_catalogue_aliases_name_the_same_card() -> None:
    assert model_set_rule(["h100"], [], "NVIDIA H100 SXM5 80GB") is None
    assert model_set_rule([], ["h100"], "NVIDIA H100 SXM5 80GB") is not None
    with pytest.raises(InvalidSpec, match="both accepted and excluded"):
        JobSpec(("true",), device_models=("T4",), exclude_device_models=("t4",))
