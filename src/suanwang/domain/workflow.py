"""Workflows: a DAG of steps, each a job; which steps may start, and what a failure does.

A step names the datasets it reads (``inputs``: registered datasets, or ``step.output`` of an
earlier step) and the dataset it writes (``output``).  Validation happens once, at submit, and
names the step at fault: a cycle, an unknown input, a duplicate name.  Readiness and retry are
pure functions of the steps' states, so the control loop and a simulation share them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

MAX_STEPS = 200
MAX_RETRIES = 10


@enum.unique
class StepState(enum.StrEnum):
    WAITING = "waiting"  # an input does not exist yet
    SUBMITTED = "submitted"  # its job was submitted (it may be staging, queued or running)
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # out of retries
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (StepState.SUCCEEDED, StepState.FAILED, StepState.CANCELLED)


@enum.unique
class RunState(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Step:
    """One step: its job body (as the jobs API takes it), what it reads and writes, how often to retry."""

    name: str
    job: Mapping[str, object]
    inputs: tuple[str, ...] = ()
    output: str = ""  # dataset name this step's job writes at its site
    retries: int = 0
    after: tuple[str, ...] = ()  # explicit ordering without data


@dataclass(frozen=True, slots=True)
class Workflow:
    name: str
    steps: tuple[Step, ...] = field(default_factory=tuple)


def producer_of(ref: str) -> str | None:
    """``"train.model"`` → ``"train"`` (an earlier step's output); a plain dataset name → None."""
    step, sep, _ = ref.partition(".")
    return step if sep else None


def validate(wf: Workflow, known_datasets: frozenset[str]) -> list[str]:
    """Every reason the workflow cannot run, each naming its step; [] when it can.

    ``known_datasets`` are the names (``name`` or ``name@version``) the tenant may read.
    An input ``step.x`` must name a step whose output is ``x``.
    """
    problems: list[str] = []
    if not wf.steps:
        return ["a workflow needs at least one step"]
    if len(wf.steps) > MAX_STEPS:
        return [f"a workflow has at most {MAX_STEPS} steps, not {len(wf.steps)}"]
    by_name: dict[str, Step] = {}
    for s in wf.steps:
        if s.name in by_name:
            problems.append(f"step {s.name}: name used twice")
        by_name[s.name] = s
        if not 0 <= s.retries <= MAX_RETRIES:
            problems.append(f"step {s.name}: retries must be 0..{MAX_RETRIES}")
    for s in wf.steps:
        for ref in s.inputs:
            up = producer_of(ref)
            if up is not None and up in by_name:
                want = ref[len(up) + 1:]
                if by_name[up].output != want:
                    problems.append(f"step {s.name}: input {ref} but step {up} writes "
                                    f"{by_name[up].output or 'no output'}")
            elif ref not in known_datasets:
                problems.append(f"step {s.name}: unknown input {ref} (no such dataset, nor a step's output)")
        problems.extend(f"step {s.name}: after unknown step {a}" for a in s.after if a not in by_name)
    if problems:
        return problems
    cycle = find_cycle(dependencies(wf))
    if cycle:
        problems.append(f"step {cycle[0]}: cycle {' -> '.join([*cycle, cycle[0]])}")
    return problems


def dependencies(wf: Workflow) -> dict[str, frozenset[str]]:
    """Each step's upstream steps (by its inputs and ``after``)."""
    names = {s.name for s in wf.steps}
    deps: dict[str, frozenset[str]] = {}
    for s in wf.steps:
        ups = {p for p in (producer_of(r) for r in s.inputs) if p in names}
        deps[s.name] = frozenset(ups | set(s.after))
    return deps


def find_cycle(deps: Mapping[str, frozenset[str]]) -> list[str]:
    """One cycle as a list of step names (in order), or [] — iterative, so 200 steps cannot recurse deep."""
    colour: dict[str, int] = dict.fromkeys(deps, 0)  # 0 new, 1 on the stack, 2 done
    for root in sorted(deps):
        if colour[root]:
            continue
        stack: list[tuple[str, list[str]]] = [(root, sorted(deps[root]))]
        path = [root]
        colour[root] = 1
        while stack:
            node, todo = stack[-1]
            if not todo:
                colour[node] = 2
                stack.pop()
                path.pop()
                continue
            nxt = todo.pop()
            if colour.get(nxt, 2) == 1:
                return path[path.index(nxt):]
            if colour.get(nxt) == 0:
                colour[nxt] = 1
                path.append(nxt)
                stack.append((nxt, sorted(deps[nxt])))
    return []


def ready_steps(deps: Mapping[str, frozenset[str]], states: Mapping[str, StepState]) -> list[str]:
    """Steps still waiting whose upstream steps all succeeded, in name order (deterministic)."""
    return sorted(n for n, ups in deps.items()
                  if states[n] is StepState.WAITING and all(states[u] is StepState.SUCCEEDED for u in ups))


def after_job_end(step: Step, attempts: int, succeeded: bool) -> StepState:
    """A step's state once its job ended: succeeded, retried (back to waiting), or failed for good."""
    if succeeded:
        return StepState.SUCCEEDED
    return StepState.WAITING if attempts <= step.retries else StepState.FAILED


def run_state(states: Sequence[StepState]) -> RunState:
    """The run is failed as soon as one step failed for good, succeeded when all did, else running."""
    if any(s is StepState.FAILED for s in states):
        return RunState.FAILED
    if any(s is StepState.CANCELLED for s in states):
        return RunState.CANCELLED
    if all(s is StepState.SUCCEEDED for s in states):
        return RunState.SUCCEEDED
    return RunState.RUNNING
