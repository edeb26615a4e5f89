"""The executor contract: how the agent drives a site's engine.

The agent owns leases, reporting and durability; an executor only starts,
follows, cancels and measures work in its engine.  Usage is reported
*cumulative per attempt*; the agent turns it into keyed deltas.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Task:
    """One attempt of a job, as handed to an executor."""

    job_id: str
    attempt: int
    command: tuple[str, ...]
    pool: str
    cores: int = 1
    memory_gb: float = 1.0
    devices: int = 0
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = ""
    duration_s: float = 3600.0  # expected; engines may use it as a time limit hint
    tenant: str = ""  # whose job it is: the local executor runs each tenant's jobs as a user of its own
    circuit: str = ""  # quantum: the OpenQASM 2/3 program (the quantum executor runs it)
    shots: int = 0
    device_share: int = 0  # a fraction of one card in milli-cards (0: whole cards)
    device_memory_gb: float = 0.0  # device memory the fraction holds on its card
    card: int = -1  # the pool's card the platform placed the fraction on
    output_dataset: str = ""  # the dataset id reserved for its declared output (agent/job_data.py)


@enum.unique
class TaskPhase(enum.StrEnum):
    QUEUED = "queued"  # the engine holds it in its queue; its process has not started
    RUNNING = "running"  # the engine started its process
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"  # the engine no longer knows the task

    @property
    def is_final(self) -> bool:
        return self not in (TaskPhase.QUEUED, TaskPhase.RUNNING)


@dataclass(frozen=True, slots=True)
class Usage:
    """Cumulative consumption of one attempt so far."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_memory_bytes: int = 0
    device_s: float = 0.0
    shots: int = 0  # quantum: circuit executions done


@dataclass(frozen=True, slots=True)
class TaskStatus:
    phase: TaskPhase
    usage: Usage
    exit_code: int | None = None
    reason: str = ""
    started_at: float | None = None  # Unix s the engine started the process, where it says (else: when first seen)


@dataclass(frozen=True, slots=True)
class PoolInfo:
    """Capacity an engine reports for one pool (e.g. a Slurm partition)."""

    name: str
    resource_class: str  # a ResourceClass value
    cores: int
    memory_gb: float
    devices: int = 0
    device_model: str = ""
    device_memory_gb: float = 0.0
    cpu_model: str = ""
    node_cores: int | None = None
    node_memory_gb: float | None = None
    node_devices: int | None = None
    quantum: list[dict[str, object]] | None = None  # a quantum pool's backends (domain.quantum.QuantumBackend)
    sharing: dict[str, object] | None = None  # how its cards are shared among fractions (domain.packing.Sharing)


class Executor(Protocol):
    """What the agent needs from an engine.  ``handle`` is the engine's id for a task.

    An executor may also offer ``poll_many(handles) -> dict[handle, TaskStatus]``: the agent
    then asks once per step for all its tasks (handles left out are polled one by one); and
    ``job_owner(task) -> (uid, gid) | None``, the user a task runs as when it is not the agent's own
    (the job's output directory is made that user's, mode 0700).
    """

    engine: str

    def detect_pools(self) -> list[PoolInfo]: ...

    def start(self, task: Task) -> str: ...

    def poll(self, handle: str) -> TaskStatus: ...

    def cancel(self, handle: str) -> None: ...

    def read_log(self, handle: str, offset: int) -> bytes:
        """Combined stdout/stderr bytes from ``offset`` on."""
        ...

    def adopt(self, handle: str, task: Task) -> bool:
        """After an agent restart, take back a task the engine still runs; False if gone."""
        ...
