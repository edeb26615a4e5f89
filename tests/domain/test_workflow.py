"""Workflow DAGs: validation names the step at fault; readiness and retry follow the steps' states."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from suanwang.domain.workflow import (
    RunState,
    Step,
    StepState,
    Workflow,
    after_job_end,
    dependencies,
    find_cycle,
    ready_steps,
    run_state,
    validate,
)

JOB = {"command": ["true"]}


def wf(*steps: Step) -> Workflow:
    return Workflow("w", tuple(steps))


def test_a_chain_is_valid_and_starts_at_its_root() -> None:
    w = wf(Step("prep", JOB, inputs=("raw",), output="clean"), Step("train", JOB, inputs=("prep.clean",), output="m"),
           Step("serve", JOB, inputs=("train.m",)))
    assert validate(w, frozenset({"raw"})) == []
    deps = dependencies(w)
    assert deps == {"prep": frozenset(), "train": frozenset({"prep"}), "serve": frozenset({"train"})}
    states = dict.fromkeys(deps, StepState.WAITING)
    assert ready_steps(deps, states) == ["prep"]
    states["prep"] = StepState.SUCCEEDED
    assert ready_steps(deps, states) == ["train"]


def test_unknown_input_and_wrong_output_name_the_step() -> None:
    w = wf(Step("a", JOB, output="x"), Step("b", JOB, inputs=("nope",)), Step("c", JOB, inputs=("a.y",)))
    problems = validate(w, frozenset())
    assert any(p.startswith("step b: unknown input nope") for p in problems)
    assert any(p.startswith("step c: input a.y but step a writes x") for p in problems)


def test_a_cycle_is_refused_naming_a_step_on_it() -> None:
    w = wf(Step("a", JOB, inputs=("c.z",), output="x"), Step("b", JOB, inputs=("a.x",), output="y"),
           Step("c", JOB, inputs=("b.y",), output="z"), Step("d", JOB))
    [problem] = validate(w, frozenset())
    assert "cycle" in problem and problem.split(":")[0] in {"step a", "step b", "step c"}


def test_duplicate_names_and_retry_bounds() -> None:
    assert any("name used twice" in p for p in validate(wf(Step("a", JOB), Step("a", JOB)), frozenset()))
    assert any("retries" in p for p in validate(wf(Step("a", JOB, retries=11)), frozenset()))
    assert validate(Workflow("w", ()), frozenset()) == ["a workflow needs at least one step"]


def test_retry_then_fail() -> None:
    s = Step("a", JOB, retries=1)
    assert after_job_end(s, 1, False) is StepState.WAITING  # one retry left
    assert after_job_end(s, 2, False) is StepState.FAILED
    assert after_job_end(s, 2, True) is StepState.SUCCEEDED
    assert run_state([StepState.SUCCEEDED, StepState.FAILED]) is RunState.FAILED
    assert run_state([StepState.SUCCEEDED, StepState.SUBMITTED]) is RunState.RUNNING
    assert run_state([StepState.SUCCEEDED]) is RunState.SUCCEEDED


@st.composite
def graphs(draw: st.DrawFn) -> dict[str, frozenset[str]]:
    n = draw(st.integers(1, 12))
    names = [f"s{i}" for i in range(n)]
    edges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=30))
    deps: dict[str, set[str]] = {x: set() for x in names}
    for a, b in edges:
        deps[names[a]].add(names[b])
    return {k: frozenset(v) for k, v in deps.items()}


def _acyclic(deps: dict[str, frozenset[str]]) -> bool:
    """Kahn's algorithm: the reference the DFS is held to."""
    left = {k: set(v) for k, v in deps.items()}
    while True:
        free = [k for k, v in left.items() if not v]
        if not free:
            return not left
        for k in free:
            del left[k]
        for v in left.values():
            v.difference_update(free)


@given(graphs())
def test_find_cycle_agrees_with_kahn_and_returns_a_real_cycle(deps: dict[str, frozenset[str]]) -> None:
    cycle = find_cycle(deps)
    assert (cycle == []) == _acyclic(deps)
    for i, node in enumerate(cycle):  # each node depends on the next: node -> its upstream
        nxt = cycle[(i + 1) % len(cycle)]
        assert nxt in deps[node]


@given(graphs(), st.data())
def test_ready_steps_have_every_upstream_succeeded(deps: dict[str, frozenset[str]], data: st.DataObject) -> None:
    states = {k: data.draw(st.sampled_from(list(StepState))) for k in deps}
    for name in ready_steps(deps, states):
        assert states[name] is StepState.WAITING
        assert all(states[u] is StepState.SUCCEEDED for u in deps[name])
