"""Request and response bodies: one schema per direction; the domain validates meaning."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from suanwang.domain.job import MAX_NAME, carry_problems
from suanwang.domain.quantum import MAX_GATE_NAME, MAX_QASM_BYTES, MAX_QUBITS, MAX_SHOTS

# The widest integers the store's INTEGER and BIGINT columns hold; a larger value is a 422, not an overflow.
INT32, INT64 = 2**31 - 1, 2**63 - 1


class In(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _strings_a_store_can_keep(cls, data: Any) -> Any:
        """A NUL byte (PostgreSQL text cannot hold one: a 500 there, silently kept by SQLite) or a lone surrogate
        (JSON may spell "\\ud800"; no store, log or process can take one) anywhere in the body: 422 here."""
        found = bad_string_at(data)
        if found is not None:
            where, problem = found
            raise PydanticCustomError("string", f"{where or 'body'}: {problem}")
        return data


def _problem(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain a NUL byte"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid UTF-8 (a lone surrogate)"
    return None


def bad_string_at(value: Any) -> tuple[str, str] | None:
    """Where in a parsed JSON body a string or object key holds a NUL byte or a lone surrogate
    (``pools.0.'name'``) and which, else None.

    Fields of the body and of list items are named plainly, list items by index, keys of nested objects
    (env, labels) quoted, a key that is itself bad escaped (``ascii``).  Iterative:
    a body nested a thousand levels deep must not turn this check into a RecursionError.
    """
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            problem = _problem(item)
            if problem:
                return path, problem
            continue
        if isinstance(item, dict):
            plain = not path or path.rsplit(".", 1)[-1].isdigit()  # a body's fields, or a list item's: by name
            for key, child in item.items():
                key_problem = _problem(key) if isinstance(key, str) else None
                name = ascii(key) if key_problem else key if plain else repr(key)
                here = f"{path}.{name}" if path else name
                if key_problem:
                    return here, key_problem
                stack.append((here, child))
        elif isinstance(item, list | tuple):
            stack.extend((f"{path}.{i}" if path else str(i), child) for i, child in enumerate(item))
    return None


class JobIn(In):
    command: list[str] = Field(default_factory=list)  # required but for quantum jobs, which carry a circuit
    name: str = Field(default="", max_length=MAX_NAME)
    resource_class: str = "general"
    device_model: str = ""
    # whole cards (2) or a fraction of one card (0.25, in thousandths) on a pool that shares its cards
    devices: int | float = Field(default=0, ge=0, le=INT32, allow_inf_nan=False)
    device_memory_gb: float = Field(default=0.0, allow_inf_nan=False)  # device memory a fraction holds on its card
    cores: int = Field(default=1, le=INT32)
    memory_gb: float = 1.0
    device_memory_gb_min: float = 0.0
    duration_s: float = 3600.0
    data_site: str = ""
    data_gb: float = 0.0
    deadline: float | None = None
    not_before: float | None = None
    max_price_fen: int | None = Field(default=None, le=INT64)
    service_level: str = "standard"
    region: str = ""
    consumer_site: str = ""
    latency_ms_max: float | None = None
    on_lost: str = "requeue"
    priority: int = Field(default=0, ge=-INT32 - 1, le=INT32)
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str = ""
    device_models: list[str] = Field(default_factory=list, max_length=32)  # any of these ("V100 or T4")
    exclude_device_models: list[str] = Field(default_factory=list, max_length=32)  # none of these
    circuit: str = Field(default="", max_length=MAX_QASM_BYTES)  # quantum: an OpenQASM 2 or 3 program
    shots: int = Field(default=0, ge=0, le=MAX_SHOTS)  # quantum: how many times to run and measure it
    contract: str = Field(default="", max_length=200)  # market: run in this contract's reservation

    @model_validator(mode="after")
    def _carriable(self) -> JobIn:
        """NUL bytes, '=' in a variable's name and over-long strings would fail only at the engine: 422 now."""
        problems = carry_problems(self.command, self.env, self.workdir)
        if problems:
            raise PydanticCustomError("carry", "; ".join(problems))
        return self


class JobSubmitIn(JobIn):
    """``POST /jobs``: a job, and the datasets it reads and writes (docs/workflows.md, "Jobs and data")."""

    inputs: list[str] = Field(default_factory=list, max_length=32)  # dataset refs, name[@version]
    output: str = Field(default="", max_length=100)  # a dataset name: a new version at the job's site


class JobBatchIn(In):
    jobs: list[JobIn] = Field(min_length=1, max_length=10_000)


class JobOut(BaseModel):
    id: str
    name: str
    tenant_id: str
    state: str
    resource_class: str
    cores: int
    memory_gb: float
    devices: int
    site: str | None
    pool: str | None
    attempt: int
    submitted_at: float
    placed_at: float | None
    started_at: float | None
    finished_at: float | None
    exit_code: int | None
    reason: str
    spec: dict[str, Any]
    placement: dict[str, Any]


class JobListOut(BaseModel):
    jobs: list[JobOut]
    next: str | None


class SiteIn(In):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    region: str = Field(default="", max_length=100)  # the sites table's widths
    province: str = Field(default="", max_length=100)
    lat: float = 0.0
    lon: float = 0.0
    green_share: float = 0.0
    carbon_kg_per_kwh: float = 0.0
    owner: str | None = None


class SiteOut(BaseModel):
    name: str
    tenant_id: str
    region: str
    province: str
    lat: float
    lon: float
    green_share: float
    carbon_kg_per_kwh: float
    online: bool
    last_seen: float
    agent_info: dict[str, Any]


class LinkIn(In):
    a: str
    b: str
    latency_ms: float
    bandwidth_gbps: float
    direct: bool = False


class QuantumBackendIn(In):
    name: str = Field(min_length=1, max_length=100)
    qubits: int = Field(ge=1, le=MAX_QUBITS)
    basis_gates: list[str] = Field(min_length=1, max_length=1000)
    coupling: list[tuple[int, int]] = Field(default_factory=list, max_length=200_000)
    provider: str = Field(default="aer", max_length=100)

    @model_validator(mode="after")
    def _gates(self) -> QuantumBackendIn:
        if any(not g or len(g) > MAX_GATE_NAME for g in self.basis_gates):
            raise PydanticCustomError("gates", f"basis_gates: each gate name has 1..{MAX_GATE_NAME} characters")
        if any(not (0 <= a < self.qubits and 0 <= b < self.qubits) or a == b for a, b in self.coupling):
            raise PydanticCustomError("coupling", "coupling: each pair joins two distinct qubits of the backend")
        return self


class MigProfileIn(In):
    name: str = Field(min_length=1, max_length=40)  # e.g. 1g.10gb
    share: int = Field(ge=1, le=1000)  # milli-cards of the card the slice is
    memory_mib: int = Field(ge=1, le=INT32)


class SharingIn(In):
    mode: Literal["none", "time-slicing", "mps", "mig"] = "none"
    min_share: int = Field(default=50, ge=1, le=1000)  # the smallest fraction handed out, milli-cards
    shards: int = Field(default=0, ge=0, le=10_000)  # Slurm GRES shards per card (0: none)
    profiles: list[MigProfileIn] = Field(default_factory=list, max_length=32)  # MIG only


class PoolIn(In):
    name: str = Field(min_length=1, max_length=100)
    resource_class: str = Field(max_length=20)  # widths: the pools table's columns
    engine: str = Field(default="local", max_length=20)
    tier: str = Field(default="standard", max_length=40)
    cores: int = Field(ge=0)
    memory_gb: float = Field(ge=0)
    devices: int = Field(default=0, ge=0)
    device_model: str = Field(default="", max_length=100)
    device_memory_gb: float = Field(default=0.0, ge=0)
    cpu_model: str = Field(default="", max_length=100)
    node_cores: int | None = None
    node_memory_gb: float | None = None
    node_devices: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    quantum: list[QuantumBackendIn] | None = Field(default=None, max_length=64)  # a quantum pool's backends
    sharing: SharingIn | None = None  # whether and how the pool's cards are shared among fractions


class PoolOut(BaseModel):
    site: str
    name: str
    resource_class: str
    engine: str
    tier: str
    cores: int
    memory_gb: float
    devices: int
    device_model: str
    device_memory_gb: float
    cpu_model: str
    scu_per_hour: str
    quantum: list[dict[str, Any]] | None = None  # a quantum pool's backends: qubits, basis gates, coupling
    sharing: dict[str, Any] | None = None  # how its cards are shared among fractions (None: whole cards only)
    catalogue_warning: str | None = None  # a model the catalogue does not know, and the rate it is metered at


class RegisterIn(In):
    pools: list[PoolIn]
    info: dict[str, Any] = Field(default_factory=dict)


class AttemptRef(In):
    job_id: str
    attempt: int = Field(ge=1, le=INT32)


class HeartbeatIn(In):
    running: list[AttemptRef] = Field(default_factory=list)
    info: dict[str, Any] = Field(default_factory=dict)


class LeaseIn(In):
    max_jobs: int = Field(default=8, ge=1, le=1000)
    wait_s: float = Field(default=0.0, ge=0, le=30)
    # Repeat a call whose reply was lost with the same id: it answers with the same attempts.
    request_id: str = Field(default="", max_length=64)


class TaskOut(BaseModel):
    job_id: str
    attempt: int
    pool: str
    command: list[str]
    cores: int
    memory_gb: float
    devices: int
    env: dict[str, str]
    workdir: str
    duration_s: float
    tenant: str = ""  # whose job it is: the local executor runs each tenant's jobs as a user of its own
    circuit: str = ""  # quantum jobs: the OpenQASM program
    shots: int = 0
    device_share: int = 0  # a fraction of one card, milli-cards (0: whole cards)
    device_memory_gb: float = 0.0  # device memory the fraction holds
    card: int = -1  # which of the pool's shared cards the fraction was placed on (the agent pins it)
    inputs: list[dict[str, Any]] = Field(default_factory=list)  # datasets it reads: {dataset_id, name, version}
    output: dict[str, str] = Field(default_factory=dict)  # what it writes: {dataset_id, name}


class StatusIn(In):
    attempt: int = Field(ge=1, le=INT32)
    # "started": the site's engine started the process (queued_at_site -> running); the rest end the attempt.
    phase: Literal["started", "succeeded", "failed", "cancelled", "lost"]
    exit_code: int | None = Field(default=None, ge=-INT32 - 1, le=INT32)
    reason: str = ""
    started_at: float | None = Field(default=None, ge=0)  # Unix s; the platform clamps it to lease time .. now


class UsageIn(In):
    job_id: str
    attempt: int = Field(ge=1, le=INT32)
    seq: int = Field(ge=0, le=INT32)
    pool: str
    start: float
    end: float
    wall_s: float = Field(ge=0)
    cpu_s: float = Field(ge=0)
    peak_memory_bytes: int = Field(ge=0, le=INT64)
    device_s: float = Field(default=0.0, ge=0)
    shots: int = Field(default=0, ge=0, le=MAX_SHOTS)  # quantum: circuit executions in this window


class UsageBatchIn(In):
    records: list[UsageIn] = Field(max_length=10_000)


class UsageOut(BaseModel):
    job_id: str
    attempt: int
    seq: int
    site: str
    pool: str
    resource_class: str
    start: float
    end: float
    wall_s: float
    cpu_s: float
    core_s: float
    device_s: float
    peak_memory_bytes: int
    units: str
    shots: int = 0
    unbilled_reason: str | None = None  # set when rating charged the consumer nothing (lost_attempt)


class LogChunkIn(In):
    job_id: str
    attempt: int = Field(ge=1, le=INT32)
    offset: int = Field(ge=0, le=INT64)
    data_b64: str  # raw log bytes, base64, so offsets count bytes exactly


class TenantIn(In):
    name: str = Field(min_length=1, max_length=200)
    kind: str = Field(pattern="^(provider|consumer|auditor|operator)$")


class TokenIn(In):
    role: str = Field(pattern="^(operator|provider|consumer|auditor|agent)$")
    tenant_id: str
    site: str | None = None
    name: str = Field(default="", max_length=200)  # the tokens table's width
    lifetime_s: float | None = Field(default=None, gt=0, le=10 * 366 * 86400)  # none: no expiry; at most 10 years


class ErrorOut(BaseModel):
    """Every 4xx answer: a stable code, a message saying what is wrong and, for a 422, one line per problem."""

    error: str
    detail: str
    problems: list[str] | None = None
