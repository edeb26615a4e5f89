"""SqlLedger: the money core's ledger, stored in the platform database, inside the caller's transaction.

Why: ``domain.memory_ledger.MemoryLedger`` is the reference model; this adapter
must behave the same (the contract tests run one scenario against both) while
many API workers and control loops apply transfers at once.  It implements
``domain.ledger.LedgerView`` over rows it has *locked*, runs the core's
``check_transfer`` rule book, and writes transfers, postings, cached balances,
hold state and voucher use in the caller's transaction.

How concurrency is made safe
- PostgreSQL: every account a transfer touches is read ``SELECT ... FOR
  UPDATE`` in sorted id order (batches lock their whole set at once, sorted, so
  two writers never wait on each other in a cycle); hold rows are locked the
  same way.  The idempotency lookup runs after the locks, so a concurrent twin
  (same key, same accounts) is seen as EXISTS once the first commits.  Writers
  take a shared advisory lock that settlement takes exclusively, so nothing is
  booked into a period while it is being closed.
- SQLite: ``BEGIN IMMEDIATE`` (store.db) already serialises writers.
- The unique index on ``ledger_transfers.key`` is the last line: a twin that
  slipped past (different accounts) fails at flush, leaves ``Database.transaction``
  as StoreConflict (``store.db.translate_errors``), and the caller retries its
  transaction, which then answers EXISTS.

Writes are batched (one INSERT per table per flush, one executemany UPDATE of
balances), which is what makes rating thousands of records a second possible.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, any_, bindparam, func, insert, literal_column, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from suanwang.domain.ledger import (
    Account,
    AccountKind,
    Balances,
    Hold,
    HoldId,
    HoldState,
    ResultCode,
    Transfer,
    TransferKey,
    TransferKind,
    TransferResult,
    check_transfer,
    currency_totals,
    fold_balances,
    hold_after,
    transfer_from_row,
    transfer_json,
    wallet,
)
from suanwang.domain.money import CURRENCY, Fen, check_fen
from suanwang.domain.rating_batch import ChargeRow
from suanwang.domain.settlement import Settlement, check_period, compute_settlement, settlement_csv
from suanwang.errors import InvalidSpec
from suanwang.store import locks
from suanwang.store.db import is_postgres
from suanwang.store.ledger_tables import (
    AccountRow,
    HoldRow,
    PostingRow,
    SettlementRow,
    TransferRow,
    VoucherUsageRow,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
SETTLE_LOCK = 7_270_001  # advisory lock id: shared by bookers, exclusive while settling
_CHUNK = 2000  # rows per IN (...) lookup


def to_us(at: datetime) -> int:
    """A timezone-aware instant as exact integer microseconds since the epoch."""
    if at.tzinfo is None:
        raise InvalidSpec(f"time {at.isoformat()} must be timezone-aware")
    return (at - EPOCH) // _US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def among(column: Any, values: Iterable[Any], *, pg: bool) -> Any:
    """``column IN (values)`` with the values as one parameter: ``= ANY(array)`` on PostgreSQL, a JSON
    array read by ``json_each`` on SQLite.  A batch asks about thousands of keys, and a parameter each
    costs more to compile and send (psycopg even parses them out of the text) than the lookup."""
    if pg:
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    array = bindparam(None, json.dumps(list(values)), type_=String())
    return column.in_(select(literal_column("value")).select_from(func.json_each(array)))


def _upsert_ignore(session: Session, table: Any) -> Any:
    dialect = postgresql if is_postgres(session.get_bind()) else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


@dataclass
class _Acc:
    balance: Fen
    credit_limit: Fen
    dirty: bool = False


# Staged rows are tuples in these column orders (JSON columns already encoded): one executemany / COPY each.
_TRANSFER_COLUMNS = ("key", "kind", "booked_us", "created_at", "request", "hold_id", "voucher_programme",
                     "voucher_fen", "reverses", "consumer", "provider", "job_id", "usage_key", "price_book_version",
                     "actor", "over_limit", "body")
_POSTING_COLUMNS = ("transfer_key", "account", "fen", "currency", "booked_us")


@dataclass
class _Staged:
    transfers: list[tuple[Any, ...]] = field(default_factory=list)
    postings: list[tuple[Any, ...]] = field(default_factory=list)
    new_holds: set[HoldId] = field(default_factory=set)
    dirty_holds: set[HoldId] = field(default_factory=set)
    new_slots: set[tuple[str, str]] = field(default_factory=set)
    dirty_slots: set[tuple[str, str]] = field(default_factory=set)


class SqlLedger:
    """A unit of work over the ledger tables, bound to one session (one transaction).

    Use one instance per transaction: it caches the rows it locked.  ``apply`` /
    ``apply_many`` write at once; ``stage`` + ``flush`` let a caller plan each
    transfer against the effects of the previous ones (rating a batch).
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.pg = is_postgres(session.get_bind())
        self._accounts: dict[str, _Acc] = {}
        self._holds: dict[HoldId, Hold | None] = {}
        self._holds_job: dict[HoldId, str] = {}
        self._known: dict[TransferKey, tuple[str, bool] | None] = {}  # key -> (request, over_limit) | absent
        self._transfers: dict[TransferKey, Transfer | None] = {}
        self._reversed: dict[TransferKey, TransferKey | None] = {}
        self._voucher: dict[tuple[str, str], Fen | None] = {}
        self._settled: tuple[datetime | None] | None = None
        self._shared_lock = False
        self._staged = _Staged()

    # ---- loading (and locking) -------------------------------------------------------------------------
    def _take_shared_lock(self) -> None:
        if self.pg and not self._shared_lock:
            self.session.execute(locks.XACT_SHARED, {"k": SETTLE_LOCK})
        self._shared_lock = True

    def lock_accounts(self, accounts: Iterable[Account | str]) -> None:
        """Lock (creating if need be) and cache these accounts, in sorted order."""
        ids = sorted({str(a) for a in accounts} - self._accounts.keys())
        if not ids:
            return
        self._take_shared_lock()
        if self.pg:
            # Create first (in sorted order), then lock all in sorted order: locking the existing rows
            # and creating the missing ones afterwards would take locks out of order and can deadlock.
            self._create_accounts(ids)
            self._select_accounts(ids)
            return
        missing = set(ids) - self._select_accounts(ids)
        if missing:
            self._create_accounts(sorted(missing))
            self._select_accounts(sorted(missing))

    def _create_accounts(self, ids: Sequence[str]) -> None:
        rows = []
        for account_id in ids:
            account = Account.parse(account_id)
            rows.append({"id": account_id, "kind": account.kind.value, "owner": account.owner, "currency": "CNY",
                         "balance_fen": 0, "credit_limit_fen": 0})
        if self.pg:  # one multi-row statement per chunk, in sorted order (an executemany sends one per row)
            for start in range(0, len(rows), 1000):
                table = AccountRow.__table__
                self.session.execute(postgresql.insert(table).values(rows[start:start + 1000]).on_conflict_do_nothing())
            return
        self.session.execute(_upsert_ignore(self.session, AccountRow.__table__), rows)

    def _select_accounts(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(ids):
            query = (select(AccountRow.id, AccountRow.balance_fen, AccountRow.credit_limit_fen)
                     .where(among(AccountRow.id, chunk, pg=self.pg)).order_by(AccountRow.id))
            if self.pg:
                query = query.with_for_update()
            for account_id, balance, limit in self.session.execute(query):
                self._accounts[account_id] = _Acc(balance, limit)
                found.add(account_id)
        return found

    def load_holds(self, hold_ids: Iterable[HoldId]) -> None:
        ids = sorted(set(hold_ids) - self._holds.keys() - {""})
        for chunk in _chunks(ids):
            query = (select(HoldRow.id, HoldRow.consumer, HoldRow.amount_fen, HoldRow.captured_fen,
                            HoldRow.released_fen, HoldRow.state, HoldRow.expires_us, HoldRow.job_id)
                     .where(among(HoldRow.id, chunk, pg=self.pg)).order_by(HoldRow.id))
            if self.pg:
                query = query.with_for_update()
            for hold_id, consumer, amount, captured, released, state, expires, job_id in self.session.execute(query):
                self._holds[hold_id] = Hold(hold_id, consumer, amount, captured, released, HoldState(state),
                                            from_us(expires) if expires is not None else None)
                self._holds_job[hold_id] = job_id
        for hold_id in ids:
            self._holds.setdefault(hold_id, None)

    def load_keys(self, keys: Iterable[TransferKey]) -> None:
        ids = sorted(set(keys) - self._known.keys())
        for chunk in _chunks(ids):
            query = (select(TransferRow.key, TransferRow.request, TransferRow.over_limit)
                     .where(among(TransferRow.key, chunk, pg=self.pg)))
            for key, request, over in self.session.execute(query):
                self._known[key] = (request, over)
        for key in ids:
            self._known.setdefault(key, None)

    def load_voucher_slots(self, slots: Iterable[tuple[str, str]]) -> None:
        wanted = set(slots) - self._voucher.keys()
        for programme in sorted({p for p, _ in wanted}):
            consumers = sorted(c for p, c in wanted if p == programme)
            for chunk in _chunks(consumers):
                query = select(VoucherUsageRow.consumer, VoucherUsageRow.used_fen).where(
                    VoucherUsageRow.programme == programme, among(VoucherUsageRow.consumer, chunk, pg=self.pg))
                for consumer, used in self.session.execute(query):
                    self._voucher[(programme, consumer)] = used
        for slot in wanted:
            self._voucher.setdefault(slot, None)

    def preload(self, transfers: Sequence[Transfer]) -> None:
        """Lock and cache everything these transfers will read, in a few bulk queries."""
        self.lock_accounts(a for t in transfers for a in t.accounts())
        self.load_holds(t.hold_id for t in transfers if t.hold_id)
        self.load_keys(t.key for t in transfers)
        self.load_voucher_slots((t.voucher_programme, t.audit.consumer) for t in transfers if t.voucher_programme)

    # ---- LedgerView -------------------------------------------------------------------------------------
    def _acc(self, account: Account | str) -> _Acc:
        key = str(account)
        if key not in self._accounts:
            self.lock_accounts([key])
        return self._accounts[key]

    def balance(self, account: Account) -> Fen:
        return self._acc(account).balance

    def credit_limit(self, consumer: str) -> Fen:
        return self._acc(wallet(consumer)).credit_limit

    def hold(self, hold_id: HoldId) -> Hold | None:
        if hold_id not in self._holds:
            self.load_holds([hold_id])
        return self._holds[hold_id]

    def transfer(self, key: TransferKey) -> Transfer | None:
        if key not in self._transfers:
            if self._known.get(key) is not None:
                self.flush()  # staged by stage_charge, without a Transfer: read it back from its row
            body = self.session.scalar(select(TransferRow.body).where(TransferRow.key == key))
            self._transfers[key] = transfer_from_row(body) if body is not None else None
        return self._transfers[key]

    def reversed_by(self, key: TransferKey) -> TransferKey | None:
        if key not in self._reversed:
            self._reversed[key] = self.session.scalar(
                select(TransferRow.key).where(TransferRow.reverses == key,
                                              TransferRow.kind == TransferKind.REVERSAL.value))
        return self._reversed[key]

    def voucher_used(self, programme: str, consumer: str) -> Fen:
        if (programme, consumer) not in self._voucher:
            self.load_voucher_slots([(programme, consumer)])
        return self._voucher[(programme, consumer)] or 0

    def settled_until(self) -> datetime | None:
        if self._settled is None:
            end = self.session.scalar(select(func.max(SettlementRow.end_us)))
            self._settled = (from_us(end) if end is not None else None,)
        return self._settled[0]

    # ---- commands ---------------------------------------------------------------------------------------
    def set_credit_limit(self, consumer: str, fen: Fen) -> None:
        """Operator sets how far below zero a consumer's wallet may go."""
        check_fen(fen, "credit limit")
        if fen < 0:
            raise InvalidSpec(f"credit limit must not be negative, got {fen}")
        account = wallet(consumer)
        self._acc(account).credit_limit = fen
        self.session.execute(update(AccountRow).where(AccountRow.id == str(account)).values(credit_limit_fen=fen))

    def apply(self, transfer: Transfer) -> TransferResult:
        """Apply one transfer now: CREATED, EXISTS, or the code of the rule it breaks (nothing written)."""
        result = self.stage(transfer)
        self.flush()
        return result

    def apply_many(self, transfers: Sequence[Transfer], *, atomic: bool = False) -> list[TransferResult]:
        """Apply each transfer (a result per item).  ``atomic``: all or none, like MemoryLedger.apply_batch."""
        self.preload(transfers)
        if not atomic or len(transfers) <= 1:
            results = [self.stage(t) for t in transfers]
        else:
            saved = self._checkpoint()
            results = [self.stage(t) for t in transfers]
            if not all(r.ok for r in results):
                self._restore(saved)
                results = [r if not r.ok else TransferResult(r.key, ResultCode.LINKED_FAILED) for r in results]
        self.flush()
        return results

    def stage(self, t: Transfer) -> TransferResult:
        """Check ``t`` against the locked state and stage its writes; ``flush`` sends them."""
        self._take_shared_lock()
        ids = [str(p.account) for p in t.postings]
        if not self._accounts.keys() >= set(ids):
            self.lock_accounts(ids)  # locks first: a concurrent twin is then seen as EXISTS
        if t.hold_id:
            self.hold(t.hold_id)
        if t.key not in self._known:
            self.load_keys([t.key])
        known = self._known[t.key]
        if known is not None:
            request, over = known
            code = ResultCode.EXISTS if request == t.request else ResultCode.EXISTS_WITH_DIFFERENT_PAYLOAD
            return TransferResult(t.key, code, over if code is ResultCode.EXISTS else False)
        check = check_transfer(self, t)
        if check.code is not None:
            return TransferResult(t.key, check.code)
        assert not any(currency_totals(t.postings).values()), f"unbalanced transfer {t.key}"  # L1, kept on
        self._stage_effects(t, check.over_limit, ids)
        return TransferResult(t.key, ResultCode.CREATED, check.over_limit)

    def _stage_effects(self, t: Transfer, over_limit: bool, ids: list[str]) -> None:
        booked = (t.booked_at - EPOCH) // _US  # to_us: the transfer checked that it is aware
        postings = self._staged.postings
        for p, account_id in zip(t.postings, ids, strict=True):
            acc = self._accounts[account_id]
            acc.balance += p.fen
            acc.dirty = True
            postings.append((t.key, account_id, p.fen, p.currency, booked))
        new_hold = hold_after(self.hold(t.hold_id) if t.hold_id else None, t)
        if new_hold is not None:
            if t.kind is TransferKind.HOLD_PLACE:
                self._staged.new_holds.add(new_hold.id)
                self._holds_job[new_hold.id] = t.audit.job_id
            else:
                self._staged.dirty_holds.add(new_hold.id)
            self._holds[new_hold.id] = new_hold
        if t.kind is TransferKind.REVERSAL:
            self._reversed[t.reverses] = t.key
        if t.voucher_programme and t.voucher_fen:
            slot = (t.voucher_programme, t.audit.consumer)
            if slot not in self._voucher:  # a reversal (negative voucher_fen) was never checked, so not loaded
                self.load_voucher_slots([slot])
            used = self._voucher[slot]
            if used is None:
                self._staged.new_slots.add(slot)
            else:
                self._staged.dirty_slots.add(slot)
            self._voucher[slot] = (used or 0) + t.voucher_fen
        self._known[t.key] = (t.request, over_limit)
        self._transfers[t.key] = t
        a = t.audit
        self._staged.transfers.append((
            t.key, str(t.kind), booked, time.time(), t.request, t.hold_id, t.voucher_programme, t.voucher_fen,
            t.reverses, a.consumer, a.provider, a.job_id, a.usage_key, a.price_book_version, a.actor[:100],
            over_limit, transfer_json(t),
        ))

    def knows(self, key: TransferKey) -> bool:
        """Whether a transfer with ``key`` is booked or staged (load_keys first for a batch)."""
        if key not in self._known:
            self.load_keys([key])
        return self._known[key] is not None

    def stage_charge(self, c: ChargeRow) -> None:
        """Stage a charge that ``rating_batch.plan_row`` planned against this ledger (its rule book
        already applied there): the writes ``stage`` would make for the same transfer."""
        self._take_shared_lock()
        p, postings, accounts = c.priced, self._staged.postings, self._accounts
        for account_id, fen in c.legs:
            acc = accounts[account_id]
            acc.balance += fen
            acc.dirty = True
            postings.append((p.key, account_id, fen, CURRENCY, p.booked_us))
        if c.hold is not None:
            self._holds[c.hold.id] = c.hold
            self._staged.dirty_holds.add(c.hold.id)
        if c.voucher_fen:
            slot = (c.voucher_programme, p.consumer)
            used = self._voucher[slot]  # plan_row read it (voucher_used)
            (self._staged.new_slots if used is None else self._staged.dirty_slots).add(slot)
            self._voucher[slot] = (used or 0) + c.voucher_fen
        self._known[p.key] = (p.request, c.over_limit)
        self._staged.transfers.append((
            p.key, "charge", p.booked_us, time.time(), p.request, c.hold_id, c.voucher_programme, c.voucher_fen, "",
            p.consumer, p.provider,
            p.job_id, p.key, p.version, c.actor[:100], c.over_limit, c.body))

    def _checkpoint(self) -> tuple[Any, ...]:
        accs = {k: _Acc(v.balance, v.credit_limit, v.dirty) for k, v in self._accounts.items()}
        s = self._staged
        staged = _Staged(list(s.transfers), list(s.postings), set(s.new_holds), set(s.dirty_holds),
                         set(s.new_slots), set(s.dirty_slots))
        return (accs, dict(self._holds), dict(self._known), dict(self._transfers), dict(self._reversed),
                dict(self._voucher), staged)

    def _restore(self, saved: tuple[Any, ...]) -> None:
        (self._accounts, self._holds, self._known, self._transfers, self._reversed, self._voucher,
         self._staged) = saved

    def flush(self) -> None:
        """Send the staged writes: one statement per table (executemany)."""
        s, conn = self._staged, self.session.connection()
        if s.transfers:
            self._bulk_insert(conn, TransferRow.__table__, _TRANSFER_COLUMNS, s.transfers)
        if s.postings:
            self._bulk_insert(conn, PostingRow.__table__, _POSTING_COLUMNS, s.postings)
        dirty = [{"k": k, "b": a.balance} for k, a in self._accounts.items() if a.dirty]
        if dirty:
            table = AccountRow.__table__
            if self.pg:
                _update_from_arrays(conn, "ledger_accounts", ("id",), ("balance_fen",), ("text", "bigint"),
                                    [(d["k"], d["b"]) for d in dirty])
            else:
                conn.execute(update(table).where(table.c.id == bindparam("k")).values(balance_fen=bindparam("b")),
                             dirty)
            for k in self._accounts:
                self._accounts[k].dirty = False
        self._flush_holds(conn)
        self._flush_vouchers(conn)
        self._staged = _Staged()

    def _bulk_insert(self, conn: Any, table: Any, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """A driver-level executemany (SQLAlchemy's per-row parameter processing costs more than the
        insert), or COPY for a large batch on PostgreSQL (psycopg would otherwise send a statement per
        row).  JSON columns arrive encoded: the driver sees text and the column's type reads it back."""
        names = ", ".join(f'"{c}"' for c in columns)
        if not self.pg:
            # B608 is a false alarm: table and column names come from the mapped Table, values are bound
            sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join("?" for _ in columns)})'  # nosec B608
            conn.exec_driver_sql(sql, rows)
            return
        if len(rows) < 50:  # one statement, all rows in its VALUES
            group = f'({", ".join("%s" for _ in columns)})'
            sql = f'INSERT INTO "{table.name}" ({names}) VALUES {", ".join(group for _ in rows)}'  # nosec B608
            conn.exec_driver_sql(sql, tuple(v for row in rows for v in row))
            return
        sql = f'COPY "{table.name}" ({names}) FROM STDIN'
        dbapi = conn.dialect.loaded_dbapi
        try:
            with conn.connection.dbapi_connection.cursor() as cursor, cursor.copy(sql) as copy:
                for row in rows:
                    copy.write_row(row)
        except dbapi.Error as exc:  # as SQLAlchemy reports errors: a duplicate key is an IntegrityError
            raise DBAPIError.instance(sql, None, exc, dbapi.Error, dialect=conn.dialect) from exc

    def _flush_holds(self, conn: Any) -> None:
        s = self._staged
        if s.new_holds:
            conn.execute(insert(HoldRow.__table__), [self._hold_row(h) for h in sorted(s.new_holds)])
        changed = [h for h in (self._holds[i] for i in sorted(s.dirty_holds - s.new_holds)) if h is not None]
        if changed and self.pg:
            _update_from_arrays(conn, "ledger_holds", ("id",), ("captured_fen", "released_fen", "state"),
                                ("text", "bigint", "bigint", "text"),
                                [(h.id, h.captured_fen, h.released_fen, h.state.value) for h in changed])
        elif changed:
            table = HoldRow.__table__
            conn.execute(update(table).where(table.c.id == bindparam("k")).values(
                captured_fen=bindparam("c"), released_fen=bindparam("r"), state=bindparam("s")),
                [{"k": h.id, "c": h.captured_fen, "r": h.released_fen, "s": h.state.value} for h in changed])

    def _hold_row(self, hold_id: HoldId) -> dict[str, Any]:
        h = self._holds[hold_id]
        assert h is not None
        return {"id": h.id, "consumer": h.consumer, "job_id": self._holds_job.get(h.id, ""), "amount_fen": h.amount_fen,
                "captured_fen": h.captured_fen, "released_fen": h.released_fen, "state": h.state.value,
                "expires_us": to_us(h.expires_at) if h.expires_at else None}

    def _flush_vouchers(self, conn: Any) -> None:
        s = self._staged
        if s.new_slots:
            conn.execute(insert(VoucherUsageRow.__table__), [
                {"programme": p, "consumer": c, "used_fen": self._voucher[(p, c)]} for p, c in sorted(s.new_slots)])
        changed = sorted(s.dirty_slots - s.new_slots)
        if changed and self.pg:
            _update_from_arrays(conn, "ledger_voucher_usage", ("programme", "consumer"), ("used_fen",),
                                ("text", "text", "bigint"), [(p, c, self._voucher[(p, c)]) for p, c in changed])
        elif changed:
            table = VoucherUsageRow.__table__
            conn.execute(update(table).where(table.c.programme == bindparam("p"), table.c.consumer == bindparam("c"))
                         .values(used_fen=bindparam("u")),
                         [{"p": p, "c": c, "u": self._voucher[(p, c)]} for p, c in changed])


# ---- reads without locks (views, settlement, reconciliation) -----------------------------------------------


def cached_balances(session: Session, kind: AccountKind | None = None) -> dict[Account, Fen]:
    query = select(AccountRow.id, AccountRow.balance_fen)
    if kind is not None:
        query = query.where(AccountRow.kind == kind.value)
    return {Account.parse(i): b for i, b in session.execute(query)}


def credit_limit_of(session: Session, consumer: str) -> Fen:
    return session.scalar(select(AccountRow.credit_limit_fen).where(AccountRow.id == str(wallet(consumer)))) or 0


def load_transfers(session: Session, *, before: datetime | None = None, job_id: str | None = None,
                   limit: int | None = None) -> list[Transfer]:
    """Transfers in apply order (optionally booked before ``before``, or of one job)."""
    query = select(TransferRow.body).order_by(TransferRow.seq)
    if before is not None:
        query = query.where(TransferRow.booked_us < to_us(before))
    if job_id is not None:
        query = query.where(TransferRow.job_id == job_id)
    if limit is not None:
        query = query.limit(limit)
    return [transfer_from_row(body) for body in session.scalars(query)]


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """What reconciliation found: empty problem lists mean the ledger is consistent."""

    accounts: int
    transfers: int
    postings: int
    total_fen: Fen  # sum of every account's postings: must be 0 (L2)
    balance_mismatches: tuple[tuple[str, Fen, Fen], ...]  # (account, cached, sum of postings)
    unbalanced_transfers: tuple[str, ...]  # transfers whose postings do not sum to zero (L1)
    hold_mismatches: tuple[tuple[str, Fen, Fen], ...]  # (consumer, hold account, sum of open holds' remainders)

    @property
    def ok(self) -> bool:
        return (self.total_fen == 0 and not self.balance_mismatches and not self.unbalanced_transfers
                and not self.hold_mismatches)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "accounts": self.accounts, "transfers": self.transfers, "postings": self.postings,
                "total_fen": self.total_fen,
                "balance_mismatches": [{"account": a, "cached_fen": c, "postings_fen": p}
                                       for a, c, p in self.balance_mismatches],
                "unbalanced_transfers": list(self.unbalanced_transfers),
                "hold_mismatches": [{"consumer": a, "hold_account_fen": c, "open_holds_fen": p}
                                    for a, c, p in self.hold_mismatches]}


def reconcile(session: Session) -> Reconciliation:
    """Prove each cached balance is the sum of its postings, every transfer balances and all accounts sum to 0."""
    by_account = select(PostingRow.account, func.sum(PostingRow.fen)).group_by(PostingRow.account)
    sums = dict(session.execute(by_account).all())
    cached = dict(session.execute(select(AccountRow.id, AccountRow.balance_fen)).all())
    mismatches = tuple(sorted((a, cached.get(a, 0), int(sums.get(a, 0) or 0))
                              for a in set(sums) | set(cached) if cached.get(a, 0) != int(sums.get(a, 0) or 0)))
    unbalanced = tuple(session.scalars(select(PostingRow.transfer_key).group_by(PostingRow.transfer_key)
                                       .having(func.sum(PostingRow.fen) != 0)))
    open_holds: dict[str, Fen] = {}
    for consumer, amount, captured, released in session.execute(
            select(HoldRow.consumer, HoldRow.amount_fen, HoldRow.captured_fen, HoldRow.released_fen)
            .where(HoldRow.state == HoldState.OPEN.value)):
        open_holds[consumer] = open_holds.get(consumer, 0) + amount - captured - released
    hold_accounts = {Account.parse(a).owner: b for a, b in cached.items() if a.startswith("hold:")}
    hold_problems = tuple(sorted((c, hold_accounts.get(c, 0), open_holds.get(c, 0))
                                 for c in set(open_holds) | set(hold_accounts)
                                 if hold_accounts.get(c, 0) != open_holds.get(c, 0)))
    return Reconciliation(
        accounts=len(cached), transfers=session.scalar(select(func.count()).select_from(TransferRow)) or 0,
        postings=session.scalar(select(func.count()).select_from(PostingRow)) or 0,
        total_fen=int(sum(int(v or 0) for v in sums.values())), balance_mismatches=mismatches,
        unbalanced_transfers=unbalanced, hold_mismatches=hold_problems)


def lock_for_settlement(session: Session) -> None:
    """Keep bookers out while a period is closed (PostgreSQL; SQLite's write lock already does)."""
    if is_postgres(session.get_bind()):
        session.execute(locks.XACT, {"k": SETTLE_LOCK})


class DbLedgerStore:
    """The core's ``LedgerStore`` port over a Database, one transaction per call.

    What the platform uses is ``SqlLedger`` inside a use case's transaction;
    this facade exists so that the core's model-based test
    (``tests/domain/test_money_machine.py``) can drive the database adapter
    with the very sequences it checks ``MemoryLedger`` with.
    """

    def __init__(self, db: Any) -> None:
        self.db = db

    def _run(self, fn: Any) -> Any:
        with self.db.transaction() as session:
            return fn(session)

    # LedgerView: plain reads (a read must not create accounts)
    def balance(self, account: Account) -> Fen:
        return self._run(lambda s: s.scalar(select(AccountRow.balance_fen).where(AccountRow.id == str(account)))) or 0

    def credit_limit(self, consumer: str) -> Fen:
        return self._run(lambda s: credit_limit_of(s, consumer))

    def hold(self, hold_id: HoldId) -> Hold | None:
        return self._run(lambda s: SqlLedger(s).hold(hold_id))

    def transfer(self, key: TransferKey) -> Transfer | None:
        return self._run(lambda s: SqlLedger(s).transfer(key))

    def reversed_by(self, key: TransferKey) -> TransferKey | None:
        return self._run(lambda s: SqlLedger(s).reversed_by(key))

    def voucher_used(self, programme: str, consumer: str) -> Fen:
        return self._run(lambda s: SqlLedger(s).voucher_used(programme, consumer))

    def settled_until(self) -> datetime | None:
        return self._run(lambda s: SqlLedger(s).settled_until())

    # commands
    def set_credit_limit(self, consumer: str, fen: Fen) -> None:
        self._run(lambda s: SqlLedger(s).set_credit_limit(consumer, fen))

    def apply(self, transfer: Transfer) -> TransferResult:
        return self._run(lambda s: SqlLedger(s).apply(transfer))

    def apply_batch(self, transfers: Sequence[Transfer]) -> list[TransferResult]:
        return self._run(lambda s: SqlLedger(s).apply_many(transfers, atomic=True))

    def settle(self, *, start: datetime, end: datetime, now: datetime,
               fee_bps: dict[str, int] | None = None) -> Settlement:
        def run(s: Session) -> Settlement:
            lock_for_settlement(s)
            check_period(SqlLedger(s).settled_until(), start=start, end=end, now=now)
            settlement = compute_settlement(load_transfers(s, before=end), start=start, end=end, fee_bps=fee_bps)
            s.add(SettlementRow(start_us=to_us(start), end_us=to_us(end), created_at=time.time(), created_by="store",
                                transfer_count=settlement.transfer_count, statements={},
                                csv=settlement_csv(settlement)))
            return settlement
        return self._run(run)

    # reads
    @property
    def transfers(self) -> tuple[Transfer, ...]:
        return tuple(self._run(load_transfers))

    @property
    def settlements(self) -> tuple[Settlement, ...]:
        def run(s: Session) -> tuple[Settlement, ...]:
            periods = s.execute(select(SettlementRow.start_us, SettlementRow.end_us).order_by(SettlementRow.start_us))
            transfers = load_transfers(s)
            return tuple(compute_settlement(transfers, start=from_us(a), end=from_us(b)) for a, b in periods)
        return self._run(run)

    def balances(self, *, as_of: datetime | None = None) -> Balances:
        if as_of is None:
            return Balances(self._run(cached_balances))
        return fold_balances(self.transfers, as_of=as_of)

    def holds(self) -> tuple[Hold, ...]:
        def run(s: Session) -> tuple[Hold, ...]:
            ledger = SqlLedger(s)
            ids = list(s.scalars(select(HoldRow.id).order_by(HoldRow.id)))
            ledger.load_holds(ids)
            return tuple(h for h in (ledger.hold(i) for i in ids) if h is not None)
        return self._run(run)

    def available(self, consumer: str) -> Fen:
        return self.balance(wallet(consumer)) + self.credit_limit(consumer)

    def accounts(self, kind: AccountKind | None = None) -> list[Account]:
        return sorted(self._run(lambda s: cached_balances(s, kind)))


def _update_from_arrays(conn: Any, table: str, keys: Sequence[str], values: Sequence[str], types: Sequence[str],
                        rows: Sequence[tuple[Any, ...]]) -> None:
    """PostgreSQL: update many rows in one statement, ``UPDATE … FROM unnest(arrays)``, one array per column
    (an executemany sends a statement per row).  Names are the mapped tables' own; the values are bound."""
    columns = [*keys, *values]
    arrays = ", ".join(f"%s::{kind}[]" for kind in types)
    sets = ", ".join(f'"{c}" = v."{c}"' for c in values)
    match = " AND ".join(f't."{c}" = v."{c}"' for c in keys)
    names = ", ".join(f'"{c}"' for c in columns)
    sql = f'UPDATE "{table}" AS t SET {sets} FROM unnest({arrays}) AS v({names}) WHERE {match}'  # nosec B608
    conn.exec_driver_sql(sql, tuple(list(column) for column in zip(*rows, strict=True)))
