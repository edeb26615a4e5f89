"""Resource classes (通智超量), service levels and engines: the closed vocabularies."""

from __future__ import annotations

import enum


@enum.unique
class ResourceClass(enum.StrEnum):
    """算力类别: what kind of compute a pool sells."""

    GENERAL = "general"  # 通用: CPU servers
    INTELLIGENT = "intelligent"  # 智能: AI accelerators (GPU, NPU, DCU)
    SUPER = "super"  # 超算: HPC nodes behind a batch scheduler
    QUANTUM = "quantum"  # 量子: quantum processors or simulators


@enum.unique
class ServiceLevel(enum.StrEnum):
    """The service part of a grade: how firmly capacity is promised."""

    GUARANTEED = "guaranteed"  # never preempted; reserved capacity
    STANDARD = "standard"  # best effort, not preempted once running
    SPOT = "spot"  # cheapest; may be preempted for guaranteed work


@enum.unique
class Engine(enum.StrEnum):
    """The site-level engine that decides which node runs the work."""

    LOCAL = "local"  # the agent's own subprocess executor
    SLURM = "slurm"
    RAY = "ray"
    KUBERNETES = "kubernetes"
    QUANTUM = "quantum"  # the agent's quantum executor (Qiskit Aer, or a vendor's provider plug-in)


@enum.unique
class LostPolicy(enum.StrEnum):
    """What happens to a job whose agent lost its lease."""

    REQUEUE = "requeue"  # run it again as a new attempt
    FAIL = "fail"  # mark it lost; the consumer decides
