"""Database rows of the foundation: tenants, tokens, sites, links, pools, jobs, usage, logs, audit, chains.

Rows are not domain objects: ``suanwang.services`` converts between the two.
Times are Unix seconds (float).  Compute units are stored as integer
nano-SCU so that no float ever enters a quantity that is billed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    if TYPE_CHECKING:
        # Every row class here maps one Table (DeclarativeBase types ``__table__`` as any FromClause, which
        # insert/update/delete and ``.c`` lookups would then refuse).
        __table__: ClassVar[Table]


class TenantRow(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # operator | provider | consumer | auditor
    created_at: Mapped[float] = mapped_column(Float)
    attrs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class TokenRow(Base):
    __tablename__ = "tokens"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20))  # operator | provider | consumer | auditor | agent
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    site: Mapped[str | None] = mapped_column(String(100), nullable=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[float] = mapped_column(Float)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: no expiry
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    rotated_to: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the token that replaced this one


class EnrolmentRow(Base):
    """A one-use enrolment token: redeemed once for a fresh agent token of ``site``."""

    __tablename__ = "enrolments"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    site: Mapped[str] = mapped_column(ForeignKey("sites.name"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))  # the agent token's tenant: the site's owner
    issued_by: Mapped[str] = mapped_column(String(64))  # token id of the operator or provider
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    used_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    token_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the agent token it became


class SiteRow(Base):
    __tablename__ = "sites"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))  # the provider that owns it
    region: Mapped[str] = mapped_column(String(100), default="")
    province: Mapped[str] = mapped_column(String(100), default="")
    lat: Mapped[float] = mapped_column(Float, default=0.0)
    lon: Mapped[float] = mapped_column(Float, default=0.0)
    green_share: Mapped[float] = mapped_column(Float, default=0.0)
    carbon_kg_per_kwh: Mapped[float] = mapped_column(Float, default=0.0)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen: Mapped[float] = mapped_column(Float, default=0.0)
    agent_info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[float] = mapped_column(Float)


class LinkRow(Base):
    __tablename__ = "links"
    __table_args__ = (UniqueConstraint("a", "b"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    a: Mapped[str] = mapped_column(ForeignKey("sites.name"))
    b: Mapped[str] = mapped_column(ForeignKey("sites.name"))
    latency_ms: Mapped[float] = mapped_column(Float)
    bandwidth_gbps: Mapped[float] = mapped_column(Float)
    direct: Mapped[bool] = mapped_column(Boolean, default=False)


class PoolRow(Base):
    __tablename__ = "pools"
    __table_args__ = (UniqueConstraint("site", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(ForeignKey("sites.name"))
    name: Mapped[str] = mapped_column(String(100))
    resource_class: Mapped[str] = mapped_column(String(20))
    engine: Mapped[str] = mapped_column(String(20))
    tier: Mapped[str] = mapped_column(String(40), default="standard")
    cores: Mapped[int] = mapped_column(Integer)
    memory_gb: Mapped[float] = mapped_column(Float)
    devices: Mapped[int] = mapped_column(Integer, default=0)
    device_model: Mapped[str] = mapped_column(String(100), default="")
    device_memory_gb: Mapped[float] = mapped_column(Float, default=0.0)
    cpu_model: Mapped[str] = mapped_column(String(100), default="")
    node_cores: Mapped[int | None] = mapped_column(Integer, nullable=True)
    node_memory_gb: Mapped[float | None] = mapped_column(Float, nullable=True)
    node_devices: Mapped[int | None] = mapped_column(Integer, nullable=True)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[float] = mapped_column(Float)
    # A quantum pool's backends (migration 0013): [{name, qubits, basis_gates, coupling, provider}]
    quantum: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    # How the pool's cards are shared among fractions (migration 0017): Sharing.to_json(), None for whole cards
    sharing: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # Covering: what placed and running jobs hold per pool is summed from the index alone each pass.
        Index("ix_jobs_state_held", "state", "site", "pool", "cores", "memory_gb", "devices"),
        Index("ix_jobs_tenant_submitted", "tenant_id", "submitted_at"),
        Index("ix_jobs_submitted", "submitted_at", "id"),  # the all-tenant list, newest first (0014)
        UniqueConstraint("tenant_id", "client_key"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[str] = mapped_column(String(20))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    resource_class: Mapped[str] = mapped_column(String(20))
    cores: Mapped[int] = mapped_column(Integer)
    memory_gb: Mapped[float] = mapped_column(Float)
    devices: Mapped[int] = mapped_column(Integer, default=0)
    device_share: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # milli-cards (0017)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    site: Mapped[str | None] = mapped_column(String(100), nullable=True)
    pool: Mapped[str | None] = mapped_column(String(100), nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    lease_request: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the agent's lease call, for replay
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    client_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    submitted_at: Mapped[float] = mapped_column(Float)
    placed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(String(2000), default="")
    placement: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class JobEventRow(Base):
    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job", "job_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    at: Mapped[float] = mapped_column(Float)
    attempt: Mapped[int] = mapped_column(Integer)
    from_state: Mapped[str] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(2000), default="")


class UsageRow(Base):
    """One usage report: consumption of one attempt over ``[start, end)``, keyed (job, attempt, seq)."""

    __tablename__ = "usage_records"
    __table_args__ = (
        UniqueConstraint("job_id", "attempt", "seq"),
        Index("ix_usage_tenant", "tenant_id", "end"),
        Index("ix_usage_start", "start"),  # the console's last-day charts read usage by start (0018)
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    tenant_id: Mapped[str] = mapped_column(String(64))
    site: Mapped[str] = mapped_column(String(100))
    pool: Mapped[str] = mapped_column(String(100))
    resource_class: Mapped[str] = mapped_column(String(20))
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    wall_s: Mapped[float] = mapped_column(Float)
    cpu_s: Mapped[float] = mapped_column(Float)
    core_s: Mapped[float] = mapped_column(Float)  # allocated cores x wall: what capacity was held
    device_s: Mapped[float] = mapped_column(Float)
    peak_memory_bytes: Mapped[int] = mapped_column(BigInteger)
    units_nano: Mapped[int] = mapped_column(BigInteger)  # standard compute units x 1e9
    reported_at: Mapped[float] = mapped_column(Float)
    # Set when rating booked no charge to the consumer, and why (``lost_attempt``); null: billed as usual.
    unbilled_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    shots: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")  # quantum (migration 0013)


class AttemptRow(Base):
    """One lease of a job to a site's agent (migration 0008): where it ran, and how it ended.

    Usage and logs are accepted only for an attempt leased to the reporting
    agent's site (and pool); an attempt the platform declared lost is not the
    consumer's to pay for.  ``outcome`` is null while the attempt runs.
    """

    __tablename__ = "attempts"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    site: Mapped[str] = mapped_column(String(100))
    pool: Mapped[str] = mapped_column(String(100))
    leased_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)  # AttemptOutcome
    final_report_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # its agent's last word on it


class UnratedUsageRow(Base):
    """The rating worker's queue: the id of each usage record not yet rated (migration 0004).

    A row is inserted with its usage record and deleted when a rating batch
    claims it, in the transaction that books the charges.  A separate narrow
    table, not a flag on the record: on PostgreSQL flipping an indexed flag
    rewrites the whole record and every index on it (about 30 us a record),
    where deleting a queue row only marks it dead.
    """

    __tablename__ = "usage_unrated"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)


class LogChunkRow(Base):
    __tablename__ = "job_logs"
    __table_args__ = (UniqueConstraint("job_id", "attempt", "offset"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class AuditRow(Base):
    """Every mutation leaves one: who did what to which object.  Append-only (migration 0007's triggers)."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(64))  # token id, or "system"
    tenant_id: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(60))
    object: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class IdempotencyRow(Base):
    """A POST sent with an ``Idempotency-Key``: what was asked, and the answer a retry gets (migration 0010).

    Keys are scoped to the caller's tenant.  ``status`` is 0 while the first request runs; the stored
    response never holds a token's plaintext (see ``suanwang.api.idempotency``).
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of method, path and body
    created_at: Mapped[float] = mapped_column(Float)
    status: Mapped[int] = mapped_column(Integer, default=0)
    content_type: Mapped[str] = mapped_column(String(100), default="")
    body: Mapped[bytes] = mapped_column(LargeBinary, default=b"")


class ChainLinkRow(Base):
    """One link of a hash chain (``services.chain``): the ``seq``-th row sealed into chain ``chain``.

    Chains: ``audit`` (row_id = audit.id) and ``ledger`` (row_id = ledger_transfers.seq).  Append-only
    (migration 0007's triggers); ``hash`` covers the previous link's hash and the row's canonical bytes.
    """

    __tablename__ = "chain_links"
    __table_args__ = (UniqueConstraint("chain", "row_id"),)
    chain: Mapped[str] = mapped_column(String(16), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    row_id: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    sealed_at: Mapped[float] = mapped_column(Float)


class ChainGapRow(Base):
    """An id the sealer skipped because no committed row held it yet: a transaction still running (its row
    is sealed when it commits) or one rolled back (forgotten after ``services.chain.GAP_HORIZON_S``)."""

    __tablename__ = "chain_gaps"
    chain: Mapped[str] = mapped_column(String(16), primary_key=True)
    row_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    seen_at: Mapped[float] = mapped_column(Float)


class DatasetRow(Base):
    """One version of a tenant's dataset (migration 0012): size, content hash, sovereignty region."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("tenant_id", "name", "version"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    region: Mapped[str] = mapped_column(String(100), default="")
    shared_with: Mapped[list[str]] = mapped_column(JSON, default=list)  # tenant ids that may read it
    source_job: Mapped[str | None] = mapped_column(String(40), nullable=True)  # the job that wrote it
    created_at: Mapped[float] = mapped_column(Float)
    # "dir": a set of files (migration 0020): ``sha256`` is its manifest hash, ``size_bytes`` its archive's
    # length and ``archive_sha256`` the archive's hash, which transfers verify (agent/outputs.py).
    kind: Mapped[str] = mapped_column(String(10), default="file", server_default="file")
    archive_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ReplicaRow(Base):
    """A site's copy of a dataset version: ``present`` once its bytes are verified there."""

    __tablename__ = "dataset_replicas"
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    site: Mapped[str] = mapped_column(ForeignKey("sites.name"), primary_key=True)
    state: Mapped[str] = mapped_column(String(20))  # present | deleting (GC ordered) | gone
    reported_at: Mapped[float] = mapped_column(Float)
    # A staged replica (migration 0020): made by ``transfer_id`` in its ``generation``; its storage is metered
    # hour by hour from ``arrived_at`` up to ``metered_until``, and ends at ``gc_at`` (the deletion ordered).
    # A home replica (registered, reported, an output) has no transfer and is never collected.
    transfer_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    arrived_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_used_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    metered_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    gc_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class DataTransferRow(Base):
    """A staged transfer between two sites' agents for a job (migration 0012).

    Billed once per generation: its charge's key is ``usage:<id>:<generation>:0``.
    """

    __tablename__ = "transfers"
    __table_args__ = (UniqueConstraint("dataset_id", "target"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    tenant_id: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # the job that needed it first
    source: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(20))  # ordered | done | failed
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    bytes_moved: Mapped[int] = mapped_column(BigInteger, default=0)
    predicted_s: Mapped[float] = mapped_column(Float, default=0.0)
    measured_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    reason: Mapped[str] = mapped_column(String(2000), default="")
    secret: Mapped[str] = mapped_column(String(64))  # one-use capability the source agent checks; agents only
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # failed tries so far
    created_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Staged again after its replica was collected: a new generation, a new charge (migration 0020).
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class StorageUsageRow(Base):
    """One hour (or the last part of one) a staged replica was held: the storage meter (migration 0020).

    Keyed (transfer, generation, hour): a sweep repeated after a crash finds the row and the ledger
    charge ``usage:<transfer>:<generation>:<hour + 1>`` already there, so no hour is lost or doubled.
    """

    __tablename__ = "storage_usage"
    transfer_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, primary_key=True)
    hour: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0: the hour from arrival
    dataset_id: Mapped[str] = mapped_column(String(40))
    tenant_id: Mapped[str] = mapped_column(String(64))
    site: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[float] = mapped_column(Float)


class JobInputRow(Base):
    """A dataset version a job reads: it starts only once a verified replica is at its site."""

    __tablename__ = "job_inputs"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), primary_key=True)


class JobOutputRow(Base):
    """A job's declared output (migration 0016): the dataset id reserved at submit; ``settled`` once its job ended
    (registered as a new version if it succeeded with its output reported)."""

    __tablename__ = "job_outputs"
    __table_args__ = (Index("ix_job_outputs_settled", "settled"), UniqueConstraint("dataset_id"))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    dataset_id: Mapped[str] = mapped_column(String(40))
    settled: Mapped[bool] = mapped_column(Boolean, default=False)


class WorkflowRunRow(Base):
    """One run of a workflow: its validated steps and their states (migration 0012)."""

    __tablename__ = "workflow_runs"
    __table_args__ = (Index("ix_workflow_runs_tenant", "tenant_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    reason: Mapped[str] = mapped_column(String(2000), default="")


class WorkflowStepRow(Base):
    __tablename__ = "workflow_steps"
    run_id: Mapped[str] = mapped_column(ForeignKey("workflow_runs.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    state: Mapped[str] = mapped_column(String(20))
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    jobs: Mapped[list[str]] = mapped_column(JSON, default=list)  # every job this step ran, retries included
    reason: Mapped[str] = mapped_column(String(2000), default="")
