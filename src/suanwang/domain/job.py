"""Jobs: what a consumer asks for, and the strict lifecycle every job follows.

Lifecycle (any other change raises ``IllegalTransition``)::

    pending ──► placed ──► queued_at_site ──► running ──► succeeded | failed
       │          │              │   └────────────┼──────► succeeded | failed
       │          ├─────────────►├───────────────►├──► lost        (lease expired, policy "fail")
       │          └─────────────►└───────────────►└──► requeued ──► placed ...  (lease expired or preempted)
       └──────────┴──────────────┴────────────────┴──► cancelled

``pending`` and ``requeued`` both wait for placement; ``requeued`` says an
earlier attempt existed.  ``placed`` may also go back to ``pending`` when the
scheduler withdraws a placement before any agent took it.  An agent's lease
makes an attempt ``queued_at_site`` (the site's engine may still hold it in
its queue); it is ``running`` only once the engine started its process.  A
job that finished between two polls of its agent goes straight from
``queued_at_site`` to its final state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from suanwang.domain.grid import Capacity, SiteId
from suanwang.domain.resources import LostPolicy, ResourceClass, ServiceLevel
from suanwang.errors import IllegalTransition, InvalidSpec

JobId = str


@enum.unique
class JobState(enum.StrEnum):
    PENDING = "pending"  # accepted, waiting for a placement
    PLACED = "placed"  # assigned to (site, pool); waiting for that site's agent
    QUEUED_AT_SITE = "queued_at_site"  # an agent holds its lease; the site's engine has not started it yet
    RUNNING = "running"  # an agent holds its lease and the site's engine has started its process
    SUCCEEDED = "succeeded"  # exited 0
    FAILED = "failed"  # exited non-zero, or the engine failed it
    CANCELLED = "cancelled"  # the consumer or operator cancelled it
    LOST = "lost"  # its agent vanished and its policy says not to retry
    REQUEUED = "requeued"  # an attempt ended without a result; waits again

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def is_waiting(self) -> bool:
        return self in (JobState.PENDING, JobState.REQUEUED)

    @property
    def is_leased(self) -> bool:
        """An agent holds this job's lease: it renews it, and a lapse requeues the job."""
        return self in LEASED_STATES


MAX_NAME = 200  # characters in a job's name: what every store keeps

TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.LOST})
# An agent took the job (a lease it renews by heartbeat), whether or not its engine has started it.
LEASED_STATES = frozenset({JobState.QUEUED_AT_SITE, JobState.RUNNING})

_S = JobState
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    _S.PENDING: frozenset({_S.PLACED, _S.CANCELLED, _S.FAILED}),
    _S.REQUEUED: frozenset({_S.PLACED, _S.CANCELLED, _S.FAILED}),
    _S.PLACED: frozenset({_S.QUEUED_AT_SITE, _S.PENDING, _S.REQUEUED, _S.CANCELLED, _S.LOST, _S.FAILED}),
    _S.QUEUED_AT_SITE: frozenset({_S.RUNNING, _S.SUCCEEDED, _S.FAILED, _S.CANCELLED, _S.LOST, _S.REQUEUED}),
    _S.RUNNING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.CANCELLED, _S.LOST, _S.REQUEUED}),
    _S.SUCCEEDED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.LOST: frozenset(),
}


def check_transition(current: JobState, new: JobState) -> JobState:
    """Return ``new`` if the lifecycle allows ``current -> new``, else raise."""
    if new not in TRANSITIONS[current]:
        raise IllegalTransition(f"a {current} job cannot become {new}", current=current, new=new)
    return new


def state_after_lost_lease(policy: LostPolicy) -> JobState:
    """Where a job goes when its agent's lease expires."""
    return JobState.REQUEUED if policy is LostPolicy.REQUEUE else JobState.LOST


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What a job needs and what it runs.  Memory in GiB, times in seconds.

    ``deadline`` and ``not_before`` are Unix seconds; ``max_price_fen`` bounds
    the whole job's charge.  ``region`` pins the job to one data-sovereignty
    region; ``latency_ms_max`` bounds the network latency from
    ``consumer_site`` (算力路由).
    """

    command: tuple[str, ...]
    resource_class: ResourceClass = ResourceClass.GENERAL
    device_model: str = ""  # "" means any
    devices: int = 0
    cores: int = 1
    memory_gb: float = 1.0
    device_memory_gb_min: float = 0.0
    duration_s: float = 3600.0  # expected run time on a reference device
    data_site: SiteId = ""
    data_gb: float = 0.0
    deadline: float | None = None
    not_before: float | None = None
    max_price_fen: int | None = None
    service_level: ServiceLevel = ServiceLevel.STANDARD
    region: str = ""
    consumer_site: SiteId = ""
    latency_ms_max: float | None = None
    on_lost: LostPolicy = LostPolicy.REQUEUE
    priority: int = 0
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = ""
    name: str = ""
    # Device-model sets: any of ``device_models`` (with ``device_model``, if set), none of ``exclude_device_models``.
    device_models: tuple[str, ...] = ()
    exclude_device_models: tuple[str, ...] = ()
    # Quantum jobs: an OpenQASM 2/3 program and its shots; ``qubits`` and ``gates`` are what the platform's
    # parser read from it at submit (never taken from the consumer), for the hard rule against backends.
    circuit: str = ""
    shots: int = 0
    qubits: int = 0
    gates: tuple[str, ...] = ()
    # Shared accelerators (domain.packing): a fraction of ONE card in milli-cards (1..999, with devices 1), and the
    # device memory it holds on that card; 0 means whole cards (``devices`` of them, each with all its memory).
    device_share: int = 0
    device_memory_gb: float = 0.0
    # Market: the contract line (``market_contracts.id``) whose reserved capacity the job runs in; "" = any
    # of its owner's that fits (docs/market.md), else the price books.
    contract: str = ""

    def __post_init__(self) -> None:
        problems = validate_spec(self)
        if problems:
            raise InvalidSpec("; ".join(problems), problems=problems)

    @property
    def milli_devices(self) -> int:
        """The accelerator share held, in milli-cards: what usage and standard units are metered by."""
        return self.device_share or self.devices * WHOLE_CARD

    @property
    def demand(self) -> Capacity:
        return Capacity(cores=self.cores, memory_gb=self.memory_gb, devices=self.devices)


def validate_spec(spec: JobSpec) -> list[str]:
    """Every problem with a spec, as messages a consumer can act on."""
    problems: list[str] = []
    quantum = spec.resource_class is ResourceClass.QUANTUM
    if quantum:
        problems += quantum_problems(spec)
    elif spec.circuit or spec.shots:
        problems.append("circuit and shots are for quantum jobs (resource_class quantum)")
    if not all(isinstance(a, str) and a for a in spec.command) or not (spec.command or quantum):
        problems.append("command must be a non-empty list of non-empty strings")
    if spec.cores < 0:
        problems.append(f"cores must not be negative (got {spec.cores})")
    if len(spec.name) > MAX_NAME:
        problems.append(f"name must be at most {MAX_NAME} characters (got {len(spec.name)})")
    if spec.cores == 0 and spec.devices == 0 and spec.resource_class is not ResourceClass.QUANTUM:
        problems.append("a job needs at least one core or one device")
    if spec.memory_gb < 0:
        problems.append(f"memory_gb must not be negative (got {spec.memory_gb})")
    if spec.devices < 0:
        problems.append(f"devices must not be negative (got {spec.devices})")
    if spec.resource_class is ResourceClass.INTELLIGENT and spec.devices == 0:
        problems.append("an intelligent-class job needs devices >= 1")
    if spec.duration_s <= 0:
        problems.append(f"duration_s must be positive (got {spec.duration_s})")
    if spec.data_gb < 0:
        problems.append(f"data_gb must not be negative (got {spec.data_gb})")
    if spec.max_price_fen is not None and spec.max_price_fen < 0:
        problems.append("max_price_fen must not be negative")
    if spec.latency_ms_max is not None and spec.latency_ms_max <= 0:
        problems.append("latency_ms_max must be positive")
    if spec.latency_ms_max is not None and not spec.consumer_site:
        problems.append("latency_ms_max needs consumer_site (where the traffic comes from)")
    if spec.deadline is not None and spec.not_before is not None and spec.deadline <= spec.not_before:
        problems.append("deadline must be after not_before")
    problems += model_set_problems(spec)
    problems += share_problems(spec)
    return problems


MAX_DEVICE_MEMORY_GB = 4096.0  # no card holds more; bounds absurd requests before any pool is asked


def share_problems(spec: JobSpec) -> list[str]:
    """A fraction is of one card (devices 1, 1..999 milli-cards) with its device memory within a card's."""
    problems = []
    share = spec.device_share
    if isinstance(share, bool) or not isinstance(share, int) or not 0 <= share < WHOLE_CARD:
        problems.append(f"device_share must be 0 (whole cards) or 1..{WHOLE_CARD - 1} milli-cards "
                        f"(got {str(share)[:30]})")
    elif share and spec.devices != 1:
        problems.append("a fraction of a card is of one card (devices 1)")
    mem = spec.device_memory_gb
    if not (isinstance(mem, (int, float)) and 0 <= mem <= MAX_DEVICE_MEMORY_GB):  # NaN fails both
        problems.append(f"device_memory_gb must lie within 0..{MAX_DEVICE_MEMORY_GB:g} (got {str(mem)[:30]})")
    elif mem and not share:
        problems.append("device_memory_gb is for a fraction of a card (a whole card holds all its memory)")
    return problems


WHOLE_CARD = 1000  # milli-cards in one card (domain.packing.WHOLE)


def parse_devices(value: float | int | str) -> tuple[int, int]:
    """``devices`` as a consumer writes it (0.25 or 2) -> (devices, device_share in milli-cards).

    A fraction lies strictly between 0 and 1 in steps of 0.001; more than one card is a whole number (no 1.5).
    """
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidSpec(f"devices must be a number (got {str(value)[:30]!r})") from None
    if not f == f or f in (float("inf"), float("-inf")) or f < 0 or f > 2**31 - 1:
        raise InvalidSpec(f"devices must lie within 0..{2**31 - 1} (got {str(value)[:30]})")
    if f == int(f):
        return int(f), 0
    if f > 1:
        raise InvalidSpec(f"devices must be a fraction of one card (0 < f < 1) or whole cards (got {f:g})")
    milli = round(f * WHOLE_CARD)
    if abs(milli - f * WHOLE_CARD) > 1e-6 or milli < 1:
        raise InvalidSpec(f"a fraction of a card is counted in thousandths (got {f:g})")
    return 1, milli


MAX_MODELS = 32  # device models one job may name in a set


def model_set_problems(spec: JobSpec) -> list[str]:
    problems = []
    for name, models in (("device_models", spec.device_models), ("exclude_device_models", spec.exclude_device_models)):
        if len(models) > MAX_MODELS:
            problems.append(f"{name}: at most {MAX_MODELS} models (got {len(models)})")
        if any(not isinstance(m, str) or not m.strip() or len(m) > 100 for m in models):
            problems.append(f"{name}: each model is a non-empty name of at most 100 characters")
    both = {m.lower() for m in spec.device_models if isinstance(m, str)} & {
        m.lower() for m in spec.exclude_device_models if isinstance(m, str)}
    if both:
        problems.append(f"device models both accepted and excluded: {', '.join(sorted(both))}")
    return problems


def quantum_problems(spec: JobSpec) -> list[str]:
    """What is wrong with a quantum job's circuit and shots (the parser already read its qubits and gates)."""
    from suanwang.domain.quantum import MAX_SHOTS

    problems = []
    if not spec.circuit:
        problems.append("a quantum job needs a circuit (an OpenQASM 2 or 3 program)")
    if isinstance(spec.shots, bool) or not isinstance(spec.shots, int) or not 1 <= spec.shots <= MAX_SHOTS:
        problems.append(f"shots must be an integer within 1..{MAX_SHOTS} (got {str(spec.shots)[:30]})")
    if spec.circuit and spec.qubits < 1:
        problems.append("the circuit uses no qubits")
    if spec.cores or spec.memory_gb or spec.devices != 1:
        problems.append("a quantum job holds one backend slot: devices 1, cores 0, memory_gb 0")
    return problems


# What a job may carry to an engine: the limits of execve(2) on Linux, with room to spare for the few
# variables an engine adds (HOME, USER, SUANWANG_JOB_ID, ...).
MAX_ARG_BYTES = 128 * 1024 - 1  # MAX_ARG_STRLEN: one argument or one NAME=value string, NUL included
MAX_CARRY_BYTES = 1024 * 1024  # argv + environment, pointers included; ARG_MAX is 2 MiB on a default stack
MAX_PATH_BYTES = 4095  # PATH_MAX less the NUL


def _utf8(text: str) -> bytes | None:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800") that JSON can spell but no process can receive
        return None


def carry_problems(command: tuple[str, ...] | list[str], env: dict[str, str], workdir: str) -> list[str]:
    """Every reason the command, environment or working directory could not reach a process.

    A NUL byte cannot pass through execve (the string ends there), an '=' in a variable's name
    splits it elsewhere, and strings past the kernel's limits fail only when the job starts:
    refused here, at submit, with the field named.  Pure: the API and the local executor ask it.
    """
    problems: list[str] = []
    total = 8  # argv's closing NULL pointer
    strings = [(f"command.{i}", a) for i, a in enumerate(command)]
    for name, value in env.items():
        if not name:
            problems.append("env: a variable name must not be empty")
        elif "=" in name:
            problems.append(f"env.{name[:40]!r}: a variable name must not contain '='")
        strings.append((f"env.{name[:40]!r}", f"{name}={value}"))
    for where, text in strings:
        raw = _utf8(text)
        if raw is None:
            problems.append(f"{where}: not valid UTF-8 (a lone surrogate)")
            continue
        if b"\0" in raw:
            problems.append(f"{where}: must not contain a NUL byte")
        if len(raw) > MAX_ARG_BYTES:
            problems.append(f"{where}: {len(raw)} bytes, more than one argument or variable may carry "
                            f"({MAX_ARG_BYTES})")
        total += len(raw) + 1 + 8
    if total > MAX_CARRY_BYTES:
        problems.append(f"command and env: {total} bytes in all, more than a job may carry ({MAX_CARRY_BYTES})")
    raw = _utf8(workdir)
    if raw is None:
        problems.append("workdir: not valid UTF-8 (a lone surrogate)")
    elif b"\0" in raw:
        problems.append("workdir: must not contain a NUL byte")
    elif len(raw) > MAX_PATH_BYTES:
        problems.append(f"workdir: {len(raw)} bytes, longer than a path may be ({MAX_PATH_BYTES})")
    return problems
