"""Datasets: names, references, sovereignty and the staging plan."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.domain.datasets import Dataset, DatasetRef, parse_ref, site_allowed, staging_plan
from suanwang.errors import InvalidSpec

SHA = "a" * 64


def test_refs() -> None:
    assert parse_ref("corpus@3") == DatasetRef("corpus", 3)
    assert parse_ref("corpus") == DatasetRef("corpus")
    for bad in ("", "c@0", "c@-1", "c@x", "c@99999999999", "../x", "a b", "x\x00"):
        with pytest.raises(InvalidSpec):
            parse_ref(bad)


def test_dataset_invariants() -> None:
    Dataset("c", 1, 0, SHA)
    for kwargs in ({"size_bytes": -1}, {"size_bytes": 2**70}, {"sha256": "A" * 64}, {"sha256": "a" * 63},
                   {"version": 0}, {"version": 2**31}):
        with pytest.raises(InvalidSpec):
            Dataset(**{"name": "c", "version": 1, "size_bytes": 1, "sha256": SHA, **kwargs})  # type: ignore[arg-type]


@given(st.text(max_size=5), st.text(max_size=5))
def test_sovereignty(dataset_region: str, site_region: str) -> None:
    assert site_allowed(dataset_region, site_region) == (dataset_region in ("", site_region))


def test_staging_plan_picks_the_nearest_online_source_and_names_the_blocked() -> None:
    replicas = {"d1": frozenset({"east", "north"}), "d2": frozenset({"west"}), "d3": frozenset({"south"})}
    needs, blocked = staging_plan([("d1", "corpus", 10), ("d2", "model", 5), ("d3", "other", 1)], replicas, "west",
                                  frozenset({"east", "north", "west"}),
                                  latency_ms={("east", "west"): 30.0, ("north", "west"): 10.0})
    assert [(n.dataset_id, n.source, n.target) for n in needs] == [("d1", "north", "west")]
    assert blocked == ["input other is held only at south, and no holding site's agent is online"]
