"""Moved to :mod:`suanwang.store.sql_ledger` (a SQL adapter lives in the store); kept so old imports work."""

from __future__ import annotations

from suanwang.store.sql_ledger import (
    EPOCH,
    SETTLE_LOCK,
    DbLedgerStore,
    Reconciliation,
    SqlLedger,
    among,
    cached_balances,
    credit_limit_of,
    from_us,
    load_transfers,
    lock_for_settlement,
    reconcile,
    to_us,
)

__all__ = [
    "EPOCH",
    "SETTLE_LOCK",
    "DbLedgerStore",
    "Reconciliation",
    "SqlLedger",
    "among",
    "cached_balances",
    "credit_limit_of",
    "from_us",
    "load_transfers",
    "lock_for_settlement",
    "reconcile",
    "to_us",
]
