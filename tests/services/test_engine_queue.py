"""Pools whose engine queues (Slurm, Ray) may be placed beyond their capacity when the operator asks."""

from __future__ import annotations

from suanwang.domain.grid import Capacity
from suanwang.domain.resources import Engine
from suanwang.services.scheduling import placeable_capacity

CAP = Capacity(32, 64.0, 2)


def test_a_queueing_engine_may_hold_a_multiple_of_its_capacity() -> None:
    assert placeable_capacity(CAP, Engine.SLURM, 3.0) == Capacity(96, 192.0, 6)
    assert placeable_capacity(CAP, Engine.RAY, 1.5) == Capacity(48, 96.0, 3)


def test_the_local_engine_and_the_default_hold_only_their_capacity() -> None:
    assert placeable_capacity(CAP, Engine.LOCAL, 3.0) == CAP
    assert placeable_capacity(CAP, Engine.SLURM, 1.0) == CAP
