"""Database rows of money: accounts, transfers, postings, holds, vouchers, price books, settlements.

Why a separate module: the foundation's tables know nothing of money; these
rows are what ``suanwang.store.sql_ledger`` and ``services.billing``
persist the pure money core (``suanwang.domain.ledger`` ...) into.

Storage rules
- Amounts are BIGINT fen; never a float.  Times that take part in money
  (booking, validity, periods) are BIGINT microseconds since the Unix epoch,
  so as-of folds compare exact instants.
- ``ledger_transfers.key`` is unique: the database itself makes a transfer
  (and so a usage record's charge) exist at most once (L5, M5).
- Transfers and postings are append-only: no code path updates or deletes
  them; a correction is a REVERSAL transfer.  ``ledger_accounts.balance_fen``
  is a cache of the sum of the account's postings, checked by reconciliation.
- Settlements are written once and never updated.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from suanwang.store.tables import Base

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
SeqType = BigInteger().with_variant(Integer(), "sqlite")


class AccountRow(Base):
    __tablename__ = "ledger_accounts"
    id: Mapped[str] = mapped_column(String(160), primary_key=True)  # "kind:owner"
    kind: Mapped[str] = mapped_column(String(20))
    owner: Mapped[str] = mapped_column(String(140))
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    balance_fen: Mapped[int] = mapped_column(BigInteger, default=0)  # cache of sum(postings)
    credit_limit_fen: Mapped[int] = mapped_column(BigInteger, default=0)  # wallets only


class TransferRow(Base):
    __tablename__ = "ledger_transfers"
    __table_args__ = (
        Index("ix_ledger_transfers_booked", "booked_us"),
        Index("ix_ledger_transfers_job", "job_id"),
        Index("ix_ledger_transfers_reverses", "reverses"),
    )
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)  # apply order
    key: Mapped[str] = mapped_column(String(200), unique=True)  # idempotency key (L5)
    kind: Mapped[str] = mapped_column(String(20))
    booked_us: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[float] = mapped_column(Float)  # wall clock of the apply, for operators only
    request: Mapped[str] = mapped_column(String(64))  # digest compared on retries
    hold_id: Mapped[str] = mapped_column(String(100), default="")
    voucher_programme: Mapped[str] = mapped_column(String(100), default="")
    voucher_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    reverses: Mapped[str] = mapped_column(String(200), default="")
    consumer: Mapped[str] = mapped_column(String(140), default="")
    provider: Mapped[str] = mapped_column(String(140), default="")
    job_id: Mapped[str] = mapped_column(String(100), default="")
    usage_key: Mapped[str] = mapped_column(String(200), default="")
    price_book_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor: Mapped[str] = mapped_column(String(100), default="")
    over_limit: Mapped[bool] = mapped_column(Boolean, default=False)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)  # ledger.transfer_to_row: the full transfer


class PostingRow(Base):
    __tablename__ = "ledger_postings"
    __table_args__ = (
        Index("ix_ledger_postings_account", "account", "booked_us"),
        # No index on transfer_key: only reconciliation reads by it, over the whole table (migration 0005).
    )
    id: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    transfer_key: Mapped[str] = mapped_column(String(200))
    account: Mapped[str] = mapped_column(String(160))
    fen: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    booked_us: Mapped[int] = mapped_column(BigInteger)


class HoldRow(Base):
    __tablename__ = "ledger_holds"
    __table_args__ = (Index("ix_ledger_holds_state", "state", "expires_us"),)
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    consumer: Mapped[str] = mapped_column(String(140))
    job_id: Mapped[str] = mapped_column(String(100), default="")
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    captured_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    released_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(String(20))
    expires_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class VoucherUsageRow(Base):
    __tablename__ = "ledger_voucher_usage"
    programme: Mapped[str] = mapped_column(String(100), primary_key=True)
    consumer: Mapped[str] = mapped_column(String(140), primary_key=True)
    used_fen: Mapped[int] = mapped_column(BigInteger, default=0)


class PriceBookRow(Base):
    """One published book of one owner's series: '' is the operator's, else a provider tenant's (its own sites)."""

    __tablename__ = "price_books"
    owner: Mapped[str] = mapped_column(String(140), primary_key=True, default="", server_default="")
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    effective_us: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(100))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)  # the book as submitted (validated)


class VoucherProgrammeRow(Base):
    __tablename__ = "voucher_programmes"
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(100))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)


class ProviderContractRow(Base):
    __tablename__ = "provider_contracts"
    provider: Mapped[str] = mapped_column(String(140), primary_key=True)
    fee_bps: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[float] = mapped_column(Float)


class SettlementRow(Base):
    """A closed period: written once, never updated (a settled period is immutable)."""

    __tablename__ = "settlements"
    __table_args__ = (UniqueConstraint("start_us"), UniqueConstraint("end_us"))
    id: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    start_us: Mapped[int] = mapped_column(BigInteger)
    end_us: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(100))
    transfer_count: Mapped[int] = mapped_column(Integer)
    statements: Mapped[dict[str, Any]] = mapped_column(JSON)
    csv: Mapped[str] = mapped_column(Text)
