"""MemoryLedger: the in-memory store of the ledger, and the reference model for the database adapter.

Why: tests, the simulator and the DB adapter's contract tests need one
obviously-correct store.  It keeps an append-only list of transfers and derives
everything else (balances, holds, voucher use, reversals) from what it applied,
under one lock, running the same :func:`ledger.check_transfer` rule book the
database adapter must run inside its transaction.

The database adapter should mirror, per transfer, in ONE transaction:
1. look up ``key`` (unique index): found -> EXISTS if ``request`` matches, else
   EXISTS_WITH_DIFFERENT_PAYLOAD; nothing written;
2. lock the touched accounts / hold rows (SELECT ... FOR UPDATE, in account order),
   build a LedgerView over them, ``check_transfer``; refused -> roll back, return code;
3. insert the transfer and postings, update cached balances and the hold row
   (``ledger.hold_after``), commit.  A unique-key violation at commit means a
   concurrent twin won: re-read and answer as in 1.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from copy import copy
from datetime import datetime
from typing import Protocol

from suanwang.domain.ledger import (
    Account,
    AccountKind,
    Balances,
    Hold,
    HoldId,
    LedgerView,
    ResultCode,
    Transfer,
    TransferKey,
    TransferKind,
    TransferResult,
    check_transfer,
    currency_totals,
    fold_balances,
    hold_after,
    wallet,
)
from suanwang.domain.money import Fen, check_fen
from suanwang.domain.settlement import Settlement, check_period, compute_settlement
from suanwang.errors import InvalidSpec


class LedgerStore(LedgerView, Protocol):
    """The port every ledger store implements (MemoryLedger here; SQLite/PostgreSQL adapters later).

    The stateful test ``tests/domain/test_money_machine.py`` drives any
    implementation: subclass ``MoneyMachine`` with another ``make_ledger``.
    """

    def set_credit_limit(self, consumer: str, fen: Fen) -> None: ...
    def apply(self, transfer: Transfer) -> TransferResult: ...
    def apply_batch(self, transfers: Sequence[Transfer]) -> list[TransferResult]: ...
    def settle(
        self, *, start: datetime, end: datetime, now: datetime, fee_bps: dict[str, int] | None = None
    ) -> Settlement: ...
    @property
    def transfers(self) -> tuple[Transfer, ...]: ...
    @property
    def settlements(self) -> tuple[Settlement, ...]: ...
    def balances(self, *, as_of: datetime | None = None) -> Balances: ...
    def holds(self) -> tuple[Hold, ...]: ...
    def available(self, consumer: str) -> Fen: ...
    def accounts(self, kind: AccountKind | None = None) -> list[Account]: ...


class _State:
    """Everything derived from the applied transfers; copied to make a batch atomic."""

    def __init__(self) -> None:
        self.transfers: list[Transfer] = []
        self.results: dict[TransferKey, TransferResult] = {}
        self.by_key: dict[TransferKey, Transfer] = {}
        self.balances: dict[Account, Fen] = {}
        self.holds: dict[HoldId, Hold] = {}
        self.reversed: dict[TransferKey, TransferKey] = {}
        self.voucher_used: dict[tuple[str, str], Fen] = {}

    def clone(self) -> _State:
        other = _State()
        for name, value in vars(self).items():
            setattr(other, name, copy(value))
        return other


class MemoryLedger:
    """An append-only ledger in memory that enforces every rule of ``ledger.check_transfer``."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._state = _State()
        self._limits: dict[str, Fen] = {}
        self._settlements: list[Settlement] = []

    # ---- LedgerView ---------------------------------------------------------------------------------------
    def balance(self, account: Account) -> Fen:
        return self._state.balances.get(account, 0)

    def credit_limit(self, consumer: str) -> Fen:
        return self._limits.get(consumer, 0)

    def hold(self, hold_id: HoldId) -> Hold | None:
        return self._state.holds.get(hold_id)

    def transfer(self, key: TransferKey) -> Transfer | None:
        return self._state.by_key.get(key)

    def reversed_by(self, key: TransferKey) -> TransferKey | None:
        return self._state.reversed.get(key)

    def voucher_used(self, programme: str, consumer: str) -> Fen:
        return self._state.voucher_used.get((programme, consumer), 0)

    def settled_until(self) -> datetime | None:
        return self._settlements[-1].end if self._settlements else None

    # ---- commands -----------------------------------------------------------------------------------------
    def set_credit_limit(self, consumer: str, fen: Fen) -> None:
        """Operator sets a consumer's credit line (how far below zero the wallet may go)."""
        check_fen(fen, "credit limit")
        if fen < 0:
            raise InvalidSpec(f"credit limit must not be negative, got {fen}")
        with self._lock:
            self._limits[consumer] = fen

    def apply(self, transfer: Transfer) -> TransferResult:
        """Apply one transfer: CREATED, EXISTS, or the code of the rule it breaks (nothing written)."""
        with self._lock:
            return self._apply_one(transfer)  # writes nothing unless every check passed

    def apply_batch(self, transfers: Sequence[Transfer]) -> list[TransferResult]:
        """All-or-nothing (L8): if any transfer fails, none is applied and the others say LINKED_FAILED."""
        with self._lock:
            if len(transfers) <= 1:
                return [self._apply_one(t) for t in transfers]
            saved = self._state
            self._state = saved.clone()
            results = [self._apply_one(t) for t in transfers]
            if all(r.ok for r in results):
                return results
            self._state = saved
            return [r if not r.ok else TransferResult(r.key, ResultCode.LINKED_FAILED) for r in results]

    def _apply_one(self, t: Transfer) -> TransferResult:
        state = self._state
        existing = state.by_key.get(t.key)
        if existing is not None:
            if existing.request != t.request:
                return TransferResult(t.key, ResultCode.EXISTS_WITH_DIFFERENT_PAYLOAD)
            return TransferResult(t.key, ResultCode.EXISTS, state.results[t.key].over_limit)
        check = check_transfer(self, t)
        if check.code is not None:
            return TransferResult(t.key, check.code)
        assert not any(currency_totals(t.postings).values()), f"unbalanced transfer {t.key}"  # L1, kept on
        for p in t.postings:
            state.balances[p.account] = state.balances.get(p.account, 0) + p.fen
        new_hold = hold_after(state.holds.get(t.hold_id), t)
        if new_hold is not None:
            state.holds[new_hold.id] = new_hold
        if t.kind is TransferKind.REVERSAL:
            state.reversed[t.reverses] = t.key
        if t.voucher_programme and t.voucher_fen:
            slot = (t.voucher_programme, t.audit.consumer)
            state.voucher_used[slot] = state.voucher_used.get(slot, 0) + t.voucher_fen
        result = TransferResult(t.key, ResultCode.CREATED, check.over_limit)
        state.transfers.append(t)
        state.by_key[t.key] = t
        state.results[t.key] = result
        return result

    def settle(
        self, *, start: datetime, end: datetime, now: datetime, fee_bps: dict[str, int] | None = None
    ) -> Settlement:
        """Close ``[start, end)``: compute statements and make the period immutable."""
        with self._lock:
            check_period(self.settled_until(), start=start, end=end, now=now)
            settlement = compute_settlement(self._state.transfers, start=start, end=end, fee_bps=fee_bps)
            self._settlements.append(settlement)
            return settlement

    # ---- reads --------------------------------------------------------------------------------------------
    @property
    def transfers(self) -> tuple[Transfer, ...]:
        """Applied transfers in apply order (the audit trail)."""
        return tuple(self._state.transfers)

    @property
    def settlements(self) -> tuple[Settlement, ...]:
        return tuple(self._settlements)

    def balances(self, *, as_of: datetime | None = None) -> Balances:
        """Cached balances now, or the fold of postings booked before ``as_of``."""
        if as_of is None:
            return Balances(dict(self._state.balances))
        return fold_balances(self._state.transfers, as_of=as_of)

    def holds(self) -> tuple[Hold, ...]:
        return tuple(self._state.holds.values())

    def available(self, consumer: str) -> Fen:
        """What a new hold may take: wallet balance plus the credit line."""
        return self.balance(wallet(consumer)) + self.credit_limit(consumer)

    def accounts(self, kind: AccountKind | None = None) -> list[Account]:
        return sorted(a for a in self._state.balances if kind is None or a.kind is kind)
