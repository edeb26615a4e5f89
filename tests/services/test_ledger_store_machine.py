"""The core's model-based money test (random top-ups, holds, charges, retries, reversals, settlements)
driven against the database adapter instead of MemoryLedger (LEDGER.md tests 3 and 4)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings

from suanwang.domain.memory_ledger import LedgerStore
from suanwang.services.ledger_store import DbLedgerStore
from suanwang.store.db import Database
from tests.domain.test_money_machine import MoneyMachine

_TEMPLATE: list[Path] = []


def _migrated_copy() -> str:
    """A fresh, migrated SQLite database per example (copied from one migrated template: fast)."""
    if not _TEMPLATE:
        path = Path(tempfile.mkdtemp(prefix="suanwang-machine-")) / "template.db"
        db = Database(f"sqlite:///{path}")
        db.migrate()
        db.dispose()
        _TEMPLATE.append(path)
    target = Path(tempfile.mkdtemp(prefix="suanwang-machine-")) / "ledger.db"
    shutil.copy(_TEMPLATE[0], target)
    return f"sqlite:///{target}"


class DbMoneyMachine(MoneyMachine):
    @staticmethod
    def make_ledger() -> LedgerStore:
        return DbLedgerStore(Database(_migrated_copy()))


DbMoneyMachine.TestCase.settings = settings(
    max_examples=20, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_db_money_machine = DbMoneyMachine.TestCase
