"""The audit and ledger hash chains: sealing, verifying, and tampering that verify must name."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import delete, event, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from suanwang.domain.ledger import plan_topup
from suanwang.services import billing, chain
from suanwang.services.audit import record_audit
from suanwang.services.ledger_store import SqlLedger
from suanwang.store.db import Database, is_postgres
from suanwang.store.ledger_tables import PostingRow, TransferRow
from suanwang.store.tables import AuditRow, ChainGapRow, ChainLinkRow
from tests.domain.money_builders import at
from tests.services.test_rating_fast import SME, _seed


def _audit(db: Database, n: int, start: int = 0) -> None:
    with db.transaction() as s:
        for i in range(start, start + n):
            record_audit(s, None, "job.submit", f"j-{i}", count=i, price=1.25, note="算网")


def _topups(db: Database, n: int) -> None:
    with db.transaction() as s:
        SqlLedger(s).apply_many([plan_topup(f"t{i}", consumer="acme", fen=100 + i, at=at(0), actor="op")
                                 for i in range(n)])


def _chains(db: Database, **kw: float) -> dict[str, chain.ChainReport]:
    return {c.chain: c for c in chain.verify(db, **kw).chains}


def _drop_guard(db: Database, table: str) -> None:
    """What a tamperer with database rights does first: drop the append-only triggers."""
    with db.engine.begin() as conn:
        if is_postgres(db.engine):
            conn.execute(text(f"DROP TRIGGER {table}_append_only ON {table}"))
        else:
            conn.execute(text(f"DROP TRIGGER {table}_no_update"))
            conn.execute(text(f"DROP TRIGGER {table}_no_delete"))


def test_sealed_rows_verify_and_the_head_moves_with_each_seal(db: Database) -> None:
    _audit(db, 5)
    _topups(db, 3)
    assert chain.seal_all(db) == 8
    report = chain.verify(db)
    assert report.ok and report.as_json()["rows_checked"] == 8
    head = _chains(db)["audit"].head
    _audit(db, 2, start=5)
    assert chain.seal_all(db) == 2 and chain.seal_all(db) == 0
    again = _chains(db)["audit"]
    assert again.ok and again.head["seq"] == 7 and again.head["hash"] != head["hash"]


def test_audit_rows_and_links_refuse_update_and_delete(db: Database) -> None:
    _audit(db, 1)
    chain.seal_all(db)
    for stmt in (update(AuditRow).values(action="x"), delete(AuditRow),
                 update(ChainLinkRow).values(hash="0" * 64), delete(ChainLinkRow)):
        with pytest.raises(DBAPIError, match="append-only"), db.transaction() as s:
            s.execute(stmt)


def test_a_changed_detail_is_named_by_row(db: Database) -> None:
    _audit(db, 6)
    chain.seal_all(db)
    _drop_guard(db, "audit")
    with db.transaction() as s:
        victim = s.scalars(select(AuditRow.id).order_by(AuditRow.id).offset(3).limit(1)).one()
        s.execute(update(AuditRow).where(AuditRow.id == victim).values(detail={"count": 999}))
    report = _chains(db)["audit"]
    assert not report.ok and report.broken == 1  # one row changed: one break, not every later link
    assert report.first_break is not None and report.first_break.row_id == victim
    assert f"row {victim} differs" in report.first_break.problem


def test_a_deleted_row_is_named(db: Database) -> None:
    _audit(db, 4)
    chain.seal_all(db)
    _drop_guard(db, "audit")
    with db.transaction() as s:
        victim = s.scalars(select(AuditRow.id).order_by(AuditRow.id).offset(1).limit(1)).one()
        s.execute(delete(AuditRow).where(AuditRow.id == victim))
    brk = _chains(db)["audit"].first_break
    assert brk is not None and brk.row_id == victim and "deleted" in brk.problem


def _row(row_id: int | None = None, at: float = 1000.0) -> dict[str, object]:
    row = {"at": at, "actor": "system", "tenant_id": "", "action": "x", "object": "", "detail": {}}
    return row if row_id is None else {**row, "id": row_id}


def test_a_row_inserted_behind_the_sealer_is_named(db: Database) -> None:
    with db.transaction() as s:  # ids 3 and 4 are skipped, as rolled-back transactions leave them
        s.execute(insert(AuditRow), [_row(1), _row(2), _row(5)])
    chain.seal_all(db, now=1000.0)
    chain.seal_all(db, now=1000.0 + chain.GAP_HORIZON_S + 1)  # the gaps are forgotten
    assert chain.verify(db, now=1000.0).ok
    with db.transaction() as s:  # a back-dated row forged into a forgotten gap (no trigger needed to insert)
        s.execute(insert(AuditRow), [_row(4, at=1000.5)])
    chain.seal_all(db, now=2000.0)
    report = _chains(db, now=1001.0)["audit"]
    assert not report.ok and report.unsealed_behind == [4] and report.broken == 0


def test_a_forged_row_is_named_until_sealed(db: Database) -> None:
    _audit(db, 2)
    chain.seal_all(db)
    with db.transaction() as s:
        s.execute(insert(AuditRow), [_row(at=50.0)])  # back-dated, inserted behind the platform's back
    report = _chains(db)["audit"]
    assert not report.ok and report.unsealed_late == [3]
    # The limit of a chain: once the sealer takes a forged row past the head it is sealed like any other.
    # The triggers and database rights keep writers out; the chain proves nothing sealed changed since.


def test_a_row_unsealed_for_a_few_passes_is_reported(db: Database) -> None:
    with db.transaction() as s:
        s.execute(insert(AuditRow).values(at=100.0, actor="system", action="x", object="", detail={}))
    assert _chains(db, now=105.0)["audit"].ok  # younger than LATE_S: the sealer's next pass takes it
    late = _chains(db, now=100.0 + chain.LATE_S + 1)["audit"]
    assert not late.ok and late.unsealed_late == [1] and late.unsealed == 1


def test_a_changed_or_added_posting_breaks_its_transfer(db: Database) -> None:
    _topups(db, 3)
    chain.seal_all(db)
    _drop_guard(db, "ledger_postings")
    with db.transaction() as s:
        seq = s.scalar(select(TransferRow.seq).where(TransferRow.key == "t1"))
        s.execute(update(PostingRow).where(PostingRow.transfer_key == "t1", PostingRow.fen > 0).values(fen=5))
        s.execute(insert(PostingRow).values(transfer_key="t2", account="wallet:acme", fen=0, booked_us=1))
        s.execute(insert(PostingRow).values(transfer_key="nowhere", account="wallet:acme", fen=0, booked_us=1))
    report = _chains(db)["ledger"]
    assert report.broken == 2 and report.first_break is not None and report.first_break.row_id == seq
    assert report.orphan_postings == ["nowhere"] and not report.ok


def test_charges_from_the_rating_fast_path_seal_and_verify(db: Database) -> None:
    _seed(db, {"usage": [(0, 10.0, 3600.0, 7200.0, 0.0, 10**9), (1, 20.0, 60.0, 1.0, 0.0, 5),
                         (2, 0.0, 9000.5, 0.0, 100.25, 7)], "funds": [2_000_000] * 3, "credit": [0, 500, 0],
               "holds": [50_000, 0, 300, 0, 0, 0], "vouchers": [SME], "settled": False, "charged_before": 1,
               "fee_bps": 250})
    billing.rate_all(db)
    with db.transaction() as s:
        assert s.scalar(select(TransferRow.seq).where(TransferRow.kind == "charge")) is not None
    chain.seal_all(db)
    assert chain.verify(db).ok


def test_a_rolled_back_id_is_a_gap_until_the_horizon(db: Database) -> None:
    _audit(db, 1)

    def audit_then_fail() -> None:
        with db.transaction() as s:
            record_audit(s, None, "job.submit", "rolled back")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        audit_then_fail()
    _audit(db, 1, start=1)
    chain.seal_all(db, now=1000.0)
    with db.transaction() as s:
        gaps = s.scalars(select(ChainGapRow.row_id)).all()
    assert gaps == ([2] if is_postgres(db.engine) else [])  # SQLite hands the id out again
    chain.seal_all(db, now=1000.0 + chain.GAP_HORIZON_S + 1)
    with db.transaction() as s:
        assert s.scalars(select(ChainGapRow.row_id)).all() == []
    assert chain.verify(db).ok


@pytest.mark.postgres
def test_writers_committing_out_of_id_order_still_verify(db: Database) -> None:
    if not is_postgres(db.engine):
        pytest.skip("SQLite has one writer: ids commit in order")
    inserted, sealed = threading.Event(), threading.Event()

    def slow_writer() -> None:  # takes the lower id and commits last
        with db.transaction() as s:
            record_audit(s, None, "job.submit", "slow")
            inserted.set()
            assert sealed.wait(10)

    worker = threading.Thread(target=slow_writer)
    worker.start()
    assert inserted.wait(10)
    _audit(db, 2, start=10)  # higher ids, committed first
    _topups(db, 1)
    assert chain.seal_all(db) == 3  # the slow row's id is kept as a gap
    assert chain.verify(db).ok  # an open transaction's row is not yet anyone's to seal
    sealed.set()
    worker.join(10)
    assert chain.seal_all(db) == 1
    with db.transaction() as s:
        order = s.execute(select(ChainLinkRow.row_id).where(ChainLinkRow.chain == "audit")
                          .order_by(ChainLinkRow.seq)).scalars().all()
        slow = s.scalar(select(AuditRow.id).where(AuditRow.object == "slow"))
    assert slow == min(order) and order[-1] == slow  # sealed after the rows with higher ids
    report = chain.verify(db)
    assert report.ok and report.chains[0].checked == 3


@pytest.mark.postgres
def test_one_replica_seals_at_a_time(db: Database) -> None:
    if not is_postgres(db.engine):
        pytest.skip("the claim is a PostgreSQL advisory lock")
    _audit(db, 3)
    with db.transaction() as s:
        assert chain.claim_sealing(s)
        assert chain.seal_all(db) == 0  # the other "replica" finds the claim held and leaves the work
    assert chain.seal_all(db) == 3


def test_the_cli_verifies_the_database_and_exits_1_naming_the_row(db: Database) -> None:
    import json

    from typer.testing import CliRunner

    from suanwang.cli.main import app

    _audit(db, 3)
    chain.seal_all(db)
    ok = CliRunner().invoke(app, ["audit", "verify", "--database-url", db.url, "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["ok"]
    _drop_guard(db, "audit")
    with db.transaction() as s:
        s.execute(update(AuditRow).where(AuditRow.id == 2).values(object="j-forged"))
    bad = CliRunner().invoke(app, ["audit", "verify", "--database-url", db.url, "--json"])
    assert bad.exit_code == 1 and json.loads(bad.stdout)["chains"][0]["first_break"]["row_id"] == 2


def test_a_forged_transfer_with_an_unreadable_body_does_not_stop_the_sealer() -> None:
    from suanwang.domain.chain import postings_of_body

    for body in ("text", {"postings": 5}, {"postings": [["a", "NaN", "CNY"]]}, {"postings": [[1, 2]]}, None):
        assert postings_of_body(body, 1) == []
    assert postings_of_body({"postings": [["wallet:a", -5, "CNY"]]}, 7) == [("wallet:a", -5, "CNY", 7)]


def test_the_walk_names_the_one_record_changed_and_only_it() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from suanwang.domain.chain import GENESIS, ChainWalk, Link, canonical, link_hash

    records = st.lists(st.dictionaries(st.text(max_size=5), st.integers() | st.floats() | st.text(max_size=5),
                                       max_size=4), min_size=1, max_size=20)

    @settings(max_examples=50)
    @given(records, st.data())
    def check(rows: list[dict[str, object]], data: st.DataObject) -> None:
        links, prev = [], GENESIS
        for i, row in enumerate(rows, 1):
            prev = link_hash(prev, canonical(row))
            links.append(Link(i, i * 10, prev, canonical(row)))
        clean = ChainWalk()
        clean.feed(links)
        assert clean.broken == 0 and clean.checked == len(rows)
        victim = data.draw(st.integers(0, len(rows) - 1))
        links[victim] = links[victim]._replace(record=canonical({"forged": True, **rows[victim]}))
        walk = ChainWalk()
        walk.feed(links)
        assert walk.broken == 1 and walk.first_break is not None and walk.first_break.row_id == (victim + 1) * 10

    check()


def test_an_idle_pass_is_one_query_and_a_new_row_after_it_is_still_sealed(db: Database) -> None:
    _audit(db, 2)
    _topups(db, 1)
    assert chain.seal_all(db) == 3
    statements: list[str] = []

    def seen(conn, cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if statement != "BEGIN IMMEDIATE":  # SQLite's own BEGIN (store.db)
            statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        assert chain.seal_all(db) == 0
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert len(statements) == 1, statements  # no claim, no chain heads: nothing was there to seal
    with db.transaction() as s:  # only the ledger chain moves
        SqlLedger(s).apply_many([plan_topup("t-later", consumer="acme", fen=7, at=at(0), actor="op")])
    assert chain.seal_all(db) == 1
    _audit(db, 1, start=5)
    assert chain.seal_all(db) == 1
    assert chain.verify(db).ok
