"""Contract suite: one scenario against MemoryLedger (the model) and SqlLedger on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from suanwang.domain.ledger import (
    AccountKind,
    ResultCode,
    Transfer,
    TransferResult,
    plan_hold,
    plan_payout,
    plan_release,
    plan_reversal,
    plan_topup,
    plan_voucher_funding,
    voucher_fund,
    wallet,
)
from suanwang.domain.memory_ledger import MemoryLedger
from suanwang.domain.rating import VoucherState, plan_charge, rate_usage
from suanwang.domain.voucher import VoucherProgramme
from suanwang.errors import StoreConflict
from suanwang.services.ledger_store import SqlLedger, cached_balances, reconcile
from suanwang.store.db import Database
from suanwang.store.ledger_tables import AccountRow
from tests.domain.money_builders import a_book, a_contract, a_record, an_entry, at

Applier = Callable[[list[Transfer]], list[TransferResult]]
PROGRAMME = VoucherProgramme("starter", share_pct=Decimal(30), cap_per_consumer_fen=5_000,
                             valid_from=at(0, day=-1), valid_until=at(0, day=30))


def scenario(view_of: Callable[[], object], apply: Applier, set_limit: Callable[[str, int], None]) -> list[str]:
    """Top-ups, holds, charges (hold then wallet, vouchers), releases, reversal, payout and refusals."""
    codes: list[str] = []

    def run(*transfers: Transfer) -> list[TransferResult]:
        results = apply(list(transfers))
        codes.extend(f"{r.key}:{r.code}:{r.over_limit}" for r in results)
        return results

    set_limit("acme", 2_000)
    run(plan_topup("t1", consumer="acme", fen=10_000, at=at(0), actor="op"),
        plan_topup("t2", consumer="beta", fen=500, at=at(0), actor="op"),
        plan_voucher_funding("vf", programme="starter", fen=3_000, at=at(0), actor="op"))
    run(plan_topup("t1", consumer="acme", fen=10_000, at=at(0), actor="op"))  # EXISTS
    run(plan_topup("t1", consumer="acme", fen=9_999, at=at(0), actor="op"))  # different payload
    run(plan_hold("h1", hold_id="hold-1", consumer="acme", fen=11_000, at=at(1), actor="api", job_id="job-1"))
    run(plan_hold("h2", hold_id="hold-2", consumer="acme", fen=5_000, at=at(1), actor="api"))  # past credit
    run(plan_hold("h3", hold_id="hold-1", consumer="beta", fen=10, at=at(1), actor="api"))  # hold exists
    book = a_book(an_entry("1000"))
    for seq in range(4):
        view = view_of()
        record = a_record("job-1", seq, scu="3", start=at(2 + seq))
        voucher = VoucherState(PROGRAMME, view.voucher_used("starter", "acme"),  # type: ignore[attr-defined]
                               view.balance(voucher_fund("starter")))  # type: ignore[attr-defined]
        charge = rate_usage(record, book, contract=a_contract(), voucher=voucher)
        run(plan_charge(charge, hold=view.hold("hold-1"), actor="rater"))  # type: ignore[attr-defined]
        run(plan_charge(charge, hold=view.hold("hold-1"), actor="rater"))  # type: ignore[attr-defined]  # retry
    hold = view_of().hold("hold-1")  # type: ignore[attr-defined]
    run(plan_release("r1", hold=hold, at=at(9), actor="api"))
    run(plan_release("r1", hold=hold, at=at(9), actor="api"))  # retried close: EXISTS
    first = a_record("job-1", 0, scu="3", start=at(2)).key
    original = next(t for t in transfers_of(view_of) if t.key == first) if transfers_of(view_of) else None
    if original is not None:
        run(plan_reversal("rev1", original=original, at=at(10), actor="op", reason="bad meter"))
        run(plan_reversal("rev2", original=original, at=at(10), actor="op", reason="again"))  # already reversed
    run(plan_payout("p1", provider="qy-dc", fen=100, at=at(11), actor="op"),
        plan_payout("p2", provider="qy-dc", fen=10**9, at=at(11), actor="op"))  # non-atomic: p1 ok, p2 refused
    return codes


def transfers_of(view_of: Callable[[], object]) -> list[Transfer]:
    view = view_of()
    if isinstance(view, MemoryLedger):
        return list(view.transfers)
    from suanwang.services.ledger_store import load_transfers

    return load_transfers(view.session)  # type: ignore[attr-defined]


def memory_run() -> tuple[list[str], dict[str, int], MemoryLedger]:
    ledger = MemoryLedger()
    codes = scenario(lambda: ledger, lambda ts: [ledger.apply(t) for t in ts], ledger.set_credit_limit)
    return codes, {str(a): b for a, b in ledger.balances().fen.items()}, ledger


def test_sql_ledger_matches_the_memory_model(db: Database) -> None:
    expected_codes, expected_balances, model = memory_run()
    open_view: list = []

    def close_view() -> None:
        while open_view:
            open_view.pop().close()

    def apply(ts: list[Transfer]) -> list[TransferResult]:
        close_view()  # SQLite: a reader holds the write lock until it ends
        with db.transaction() as s:
            return SqlLedger(s).apply_many(ts)

    def set_limit(consumer: str, fen: int) -> None:
        close_view()
        with db.transaction() as s:
            SqlLedger(s).set_credit_limit(consumer, fen)

    def fresh_view() -> SqlLedger:
        close_view()
        s = db.sessions()
        open_view.append(s)
        return SqlLedger(s)

    codes = scenario(fresh_view, apply, set_limit)
    close_view()
    assert codes == expected_codes
    with db.transaction() as s:
        balances = {str(a): b for a, b in cached_balances(s).items() if b}
        assert balances == {k: v for k, v in expected_balances.items() if v}
        assert reconcile(s).ok
        ledger = SqlLedger(s)
        assert ledger.hold("hold-1") == model.hold("hold-1")
        assert ledger.voucher_used("starter", "acme") == model.voucher_used("starter", "acme") > 0
    assert any(":exists:" in c for c in codes) and any("exceeds_credit" in c for c in codes)
    assert any("already_reversed" in c for c in codes) and any("p2:exceeds_balance" in c for c in codes)


def test_an_atomic_batch_writes_nothing_when_one_transfer_fails(db: Database) -> None:
    with db.transaction() as s:
        results = SqlLedger(s).apply_many([
            plan_topup("a", consumer="acme", fen=100, at=at(0), actor="op"),
            plan_hold("h", hold_id="h", consumer="acme", fen=1_000, at=at(0), actor="op"),
        ], atomic=True)
    assert [r.code for r in results] == [ResultCode.LINKED_FAILED, ResultCode.EXCEEDS_CREDIT]
    with db.transaction() as s:
        assert cached_balances(s) == {} or not any(cached_balances(s).values())
        assert reconcile(s).transfers == 0


def test_reconciliation_finds_a_tampered_cached_balance(db: Database) -> None:
    with db.transaction() as s:
        SqlLedger(s).apply(plan_topup("a", consumer="acme", fen=100, at=at(0), actor="op"))
    with db.transaction() as s:
        assert reconcile(s).ok
        s.execute(update(AccountRow).where(AccountRow.id == "wallet:acme").values(balance_fen=101))
    with db.transaction() as s:
        found = reconcile(s)
        assert not found.ok and found.balance_mismatches == (("wallet:acme", 101, 100),)


@pytest.mark.parametrize("threads", [8])
def test_concurrent_twins_of_one_transfer_apply_once(db: Database, threads: int) -> None:
    """Several connections apply the same top-up key at once: one CREATED, the rest EXISTS."""
    codes: list[ResultCode] = []
    barrier = threading.Barrier(threads)

    def worker() -> None:
        barrier.wait()
        with db.transaction() as s:
            codes.append(SqlLedger(s).apply(plan_topup("same", consumer="acme", fen=7, at=at(0), actor="op")).code)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert sorted(codes) == sorted([ResultCode.CREATED] + [ResultCode.EXISTS] * (threads - 1))
    with db.transaction() as s:
        assert s.scalar(select(AccountRow.balance_fen).where(AccountRow.id == str(wallet("acme")))) == 7
        assert cached_balances(s, AccountKind.WALLET)[wallet("acme")] == 7


def test_reversing_a_voucher_charge_in_a_later_transaction_gives_the_voucher_back(db: Database) -> None:
    """Found by the model-based test: a reversal's voucher slot must be read before it is written."""
    with db.transaction() as s:
        ledger = SqlLedger(s)
        ledger.apply(plan_topup("t", consumer="acme", fen=10_000, at=at(0), actor="op"))
        ledger.apply(plan_voucher_funding("vf", programme="starter", fen=3_000, at=at(0), actor="op"))
        voucher = VoucherState(PROGRAMME, 0, 3_000)
        charge = rate_usage(a_record("job-1", 0, scu="3", start=at(2)), a_book(an_entry("1000")),
                            contract=a_contract(), voucher=voucher)
        assert ledger.apply(plan_charge(charge, hold=None, actor="rater")).code is ResultCode.CREATED
    with db.transaction() as s:
        ledger = SqlLedger(s)
        original = ledger.transfer(charge.record.key)
        assert original is not None and original.voucher_fen > 0
        reversal = plan_reversal("rev", original=original, at=at(5), actor="op", reason="bad meter")
        assert ledger.apply(reversal).code is ResultCode.CREATED
    with db.transaction() as s:
        assert SqlLedger(s).voucher_used("starter", "acme") == 0
        assert reconcile(s).ok


@pytest.mark.parametrize("statement", [
    "UPDATE ledger_transfers SET kind = 'topup'", "DELETE FROM ledger_transfers",
    "UPDATE ledger_postings SET fen = fen + 1", "DELETE FROM ledger_postings",
])
def test_the_database_refuses_to_edit_posted_transfers(db: Database, statement: str) -> None:
    """L4 enforced by the database itself: corrections are reversals, never updates or deletes."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    with db.transaction() as s:
        SqlLedger(s).apply(plan_topup("a", consumer="acme", fen=100, at=at(0), actor="op"))
    with pytest.raises(DBAPIError, match="append-only"), db.transaction() as s:
        s.execute(text(statement))
    with db.transaction() as s:
        assert reconcile(s).ok and reconcile(s).transfers == 1


@pytest.mark.parametrize("size", [3, 80])  # a multi-row INSERT, and COPY on PostgreSQL
def test_a_twin_that_slipped_past_the_lookup_fails_as_an_integrity_error(db: Database, size: int) -> None:
    """The unique key is the last line (module docstring): however a batch is written, a duplicate surfaces
    as the store's StoreConflict (translated from the driver's IntegrityError), which ``billing.retrying``
    retries and the API answers with 409."""
    transfers = [plan_topup(f"twin-{i}", consumer="acme", fen=5, at=at(0), actor="op") for i in range(size)]
    with db.transaction() as s:
        assert SqlLedger(s).apply(transfers[0]).code is ResultCode.CREATED

    def apply_behind_a_stale_lookup() -> None:
        with db.transaction() as s:
            ledger = SqlLedger(s)
            ledger.load_keys([t.key for t in transfers])
            ledger._known[transfers[0].key] = None  # as if a concurrent twin committed after our lookup
            ledger.apply_many(transfers)

    with pytest.raises(StoreConflict) as raised:
        apply_behind_a_stale_lookup()
    assert raised.value.status_code == 409 and isinstance(raised.value.__cause__, IntegrityError)
    with db.transaction() as s:
        assert cached_balances(s)[wallet("acme")] == 5 and reconcile(s).ok
