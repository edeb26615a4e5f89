"""The job lifecycle and spec validation."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.domain.job import (
    LEASED_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    JobSpec,
    JobState,
    check_transition,
    state_after_lost_lease,
)
from suanwang.domain.resources import LostPolicy, ResourceClass
from suanwang.errors import IllegalTransition, InvalidSpec

states = st.sampled_from(list(JobState))


@given(current=states, new=states)
def test_a_transition_is_allowed_exactly_when_the_table_says_so(current: JobState, new: JobState) -> None:
    if new in TRANSITIONS[current]:
        assert check_transition(current, new) is new
    else:
        with pytest.raises(IllegalTransition, match=f"a {current} job cannot become {new}"):
            check_transition(current, new)


@given(path=st.lists(states, max_size=12))
def test_no_path_leaves_a_terminal_state(path: list[JobState]) -> None:
    state = JobState.PENDING
    for new in path:
        try:
            state = check_transition(state, new)
        except IllegalTransition:
            continue
        if state in TERMINAL_STATES:
            break
    if state in TERMINAL_STATES:
        for new in JobState:
            with pytest.raises(IllegalTransition):
                check_transition(state, new)


def test_every_state_can_reach_a_terminal_state() -> None:
    for start in JobState:
        seen, frontier = {start}, [start]
        while frontier:
            for nxt in TRANSITIONS[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert seen & TERMINAL_STATES, start


def test_a_lease_is_not_a_start() -> None:
    """An agent's lease makes a job queued_at_site; only its engine's start makes it running."""
    with pytest.raises(IllegalTransition):
        check_transition(JobState.PLACED, JobState.RUNNING)
    assert check_transition(JobState.PLACED, JobState.QUEUED_AT_SITE) is JobState.QUEUED_AT_SITE
    assert check_transition(JobState.QUEUED_AT_SITE, JobState.RUNNING) is JobState.RUNNING
    # finished between two polls of its agent: straight to its end, never seen running
    assert check_transition(JobState.QUEUED_AT_SITE, JobState.SUCCEEDED) is JobState.SUCCEEDED
    assert {s for s in JobState if s.is_leased} == set(LEASED_STATES) == {JobState.QUEUED_AT_SITE, JobState.RUNNING}


@given(path=st.lists(states, max_size=20))
def test_every_path_into_running_passes_through_a_lease(path: list[JobState]) -> None:
    """Whatever sequence of events arrives, a job runs only after it was leased, and a lease
    ends only in running, a final state or a wait for the next attempt."""
    state, seen = JobState.PENDING, [JobState.PENDING]
    for new in path:
        try:
            state = check_transition(state, new)
        except IllegalTransition:
            continue
        seen.append(state)
    for before, after in itertools.pairwise(seen):
        if after is JobState.RUNNING:
            assert before is JobState.QUEUED_AT_SITE
        if before.is_leased and not after.is_leased:
            assert after.is_terminal or after is JobState.REQUEUED


def test_lost_lease_policy() -> None:
    assert state_after_lost_lease(LostPolicy.REQUEUE) is JobState.REQUEUED
    assert state_after_lost_lease(LostPolicy.FAIL) is JobState.LOST


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cores": -1}, "cores must not be negative"),
        ({"memory_gb": -0.5}, "memory_gb must not be negative"),
        ({"command": ()}, "command must be a non-empty list"),
        ({"resource_class": ResourceClass.INTELLIGENT}, "needs devices >= 1"),
        ({"duration_s": 0}, "duration_s must be positive"),
        ({"latency_ms_max": 20.0}, "needs consumer_site"),
        ({"deadline": 10.0, "not_before": 20.0}, "deadline must be after not_before"),
    ],
)
def test_invalid_specs_say_what_is_wrong(changes: dict, message: str) -> None:
    base = {"command": ("true",)}
    with pytest.raises(InvalidSpec, match=message):
        JobSpec(**(base | changes))


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(InvalidSpec) as info:
        JobSpec(command=("true",), cores=-1, memory_gb=-1)
    assert len(info.value.fields["problems"]) == 2
