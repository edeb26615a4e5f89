"""The market's use cases on SQLite and PostgreSQL: orders, holds, a clear that happens once, the ledger clean."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select

from suanwang.domain.ledger import HoldState, earnings, plan_topup, wallet
from suanwang.domain.market.session import day_ahead
from suanwang.errors import Conflict, InsufficientFunds, InvalidSpec, NotFound
from suanwang.services import market
from suanwang.services.auth import Principal, Role
from suanwang.services.ledger_store import SqlLedger, cached_balances, reconcile
from suanwang.store.db import Database
from suanwang.store.ledger_tables import HoldRow
from suanwang.store.market_tables import MarketClearRow, MarketContractRow, MarketOrderRow
from suanwang.store.tables import SiteRow, TenantRow

DAY = datetime(2026, 12, 9, tzinfo=UTC).timestamp()
SESSION = day_ahead(DAY)
BEFORE = SESSION.gate_at - 3600
AFTER = SESSION.gate_at + 1
P1 = Principal("t-p1", Role.PROVIDER, "p1")
C1 = Principal("t-c1", Role.CONSUMER, "c1")
C2 = Principal("t-c2", Role.CONSUMER, "c2")


@pytest.fixture
def seeded(db: Database) -> Database:
    with db.transaction() as session:
        session.execute(insert(TenantRow), [{"id": t, "name": t, "kind": k, "created_at": 0.0, "attrs": {}}
                                            for t, k in (("p1", "provider"), ("c1", "consumer"), ("c2", "consumer"))])
        session.add_all([SiteRow(name="qingyang", tenant_id="p1", created_at=0.0),
                         SiteRow(name="wuhu", tenant_id="p1", created_at=0.0)])
        session.flush()
        SqlLedger(session).apply_many([
            plan_topup("top:c1", consumer="c1", fen=100_000, at=datetime.fromtimestamp(0, UTC), actor="op"),
            plan_topup("top:c2", consumer="c2", fen=100_000, at=datetime.fromtimestamp(0, UTC), actor="op")])
    return db


def _post(db: Database, actor: Principal, side: str, now: float = BEFORE, **body: object) -> dict[str, object]:
    with db.transaction() as session:
        return market.post_order(session, actor, side, {"session": SESSION.id, "resource_class": "intelligent",
                                                        "start_slot": 0, "end_slot": 2, **body}, now=now)


def _book(db: Database) -> None:
    _post(db, P1, "ask", site="qingyang", units_per_slot=10, floor_fen=100)
    _post(db, C1, "bid", sites=["qingyang"], quantity=12, rate_per_slot=6, limit_fen=300)
    _post(db, C2, "bid", sites=["qingyang"], quantity=16, rate_per_slot=8, limit_fen=150)


def test_a_session_clears_once_moves_the_money_and_writes_contracts(seeded: Database) -> None:
    _book(seeded)
    assert market.clear_session(seeded, SESSION.id, now=AFTER) is True
    assert market.clear_session(seeded, SESSION.id, now=AFTER + 60) is False  # once
    with seeded.transaction() as session:
        result = market.result_json(session, C1, SESSION.id)
        (mine,) = result["bids"]
        assert mine["filled"] == 12  # 10 per slot offered: c1 (300) takes 6, c2 (150) the other 4
        price = result["prices"][0]["price_cf"] // 100
        assert price == 150
        balances = cached_balances(session)
        assert balances[wallet("c1")] == 100_000 - 12 * price
        assert balances[wallet("c2")] == 100_000 - 8 * price
        assert balances[earnings("p1")] == 20 * price
        assert all(h == HoldState.RELEASED.value for h in session.scalars(select(HoldRow.state)))
        assert session.scalar(select(func.sum(MarketContractRow.units))) == 20
        assert reconcile(session).ok
        assert {c["consumer"] for c in market.contracts_json(session, C2)} == {"c2"}


def test_two_replicas_clearing_at_once_clear_once(seeded: Database) -> None:
    _book(seeded)
    outcomes: list[bool] = []
    threads = [threading.Thread(target=lambda: outcomes.append(market.clear_session(seeded, SESSION.id, now=AFTER)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == [False, True]
    with seeded.transaction() as session:
        assert session.scalar(select(func.count()).select_from(MarketClearRow)) == 1
        assert reconcile(session).ok


def test_a_crash_mid_clear_leaves_nothing_and_the_next_try_clears(seeded: Database,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _book(seeded)

    def crash(*_: object) -> None:
        raise RuntimeError("killed mid-clear")

    monkeypatch.setattr(market, "plan_contracts", crash)
    with pytest.raises(RuntimeError):
        market.clear_session(seeded, SESSION.id, now=AFTER)
    with seeded.transaction() as session:
        assert session.scalar(select(func.count()).select_from(MarketClearRow)) == 0
        assert all(h == HoldState.OPEN.value for h in session.scalars(select(HoldRow.state)))
    monkeypatch.undo()
    assert market.clear_session(seeded, SESSION.id, now=AFTER) is True
    with seeded.transaction() as session:
        assert reconcile(session).ok


def test_a_bid_the_wallet_cannot_cover_is_a_402_and_writes_nothing(seeded: Database) -> None:
    with pytest.raises(InsufficientFunds, match="hold of limit x quantity"):
        _post(seeded, C1, "bid", sites=["qingyang"], quantity=1000, rate_per_slot=500, limit_fen=300)
    with seeded.transaction() as session:
        assert session.scalar(select(func.count()).select_from(MarketOrderRow)) == 0


@pytest.mark.parametrize(("body", "field"), [
    ({"quantity": 0}, "quantity"), ({"quantity": -5}, "quantity"), ({"quantity": 2**70}, "quantity"),
    ({"start_slot": 2, "end_slot": 1}, "end_slot"), ({"end_slot": 30}, "end_slot"),
    ({"limit_fen": 10**12}, "limit_fen"), ({"sites": ["atlantis"]}, "site"),
    ({"resource_class": "psychic"}, "resource_class"), ({"limit_fen": 1.5}, "limit_fen"),
    ({"colour": "red"}, "colour"), ({"session": "da-2999-13-40"}, "session"),
])
def test_bad_input_names_the_field_and_writes_nothing(seeded: Database, body: dict[str, object], field: str) -> None:
    fields = {"sites": ["qingyang"], "quantity": 4, "rate_per_slot": 2, "limit_fen": 100, **body}
    with pytest.raises(InvalidSpec, match=field):
        _post(seeded, C1, "bid", **fields)
    with seeded.transaction() as session:
        assert session.scalar(select(func.count()).select_from(MarketOrderRow)) == 0


def test_a_bid_after_the_gate_is_refused_and_a_withdrawn_bid_returns_its_hold(seeded: Database) -> None:
    with pytest.raises(Conflict, match="gate closed"):
        _post(seeded, C1, "bid", now=AFTER, sites=["qingyang"], quantity=4, rate_per_slot=2, limit_fen=100)
    order = _post(seeded, C1, "bid", sites=["qingyang"], quantity=4, rate_per_slot=2, limit_fen=100)
    with seeded.transaction() as session, pytest.raises(NotFound):
        market.withdraw_order(session, C2, str(order["id"]), now=BEFORE)  # another tenant's order
    with seeded.transaction() as session:
        market.withdraw_order(session, C1, str(order["id"]), now=BEFORE)
    with seeded.transaction() as session:
        assert cached_balances(session)[wallet("c1")] == 100_000


def test_the_control_loop_clears_sessions_whose_gate_closed_and_only_those(seeded: Database) -> None:
    _book(seeded)
    assert market.clear_due(seeded, now=BEFORE) == []  # still open
    assert market.clear_due(seeded, now=AFTER) == [SESSION.id]
    assert market.clear_due(seeded, now=AFTER + 900) == []  # once


_STALLED_CLEAR = """
import pathlib, sys, time
from suanwang.services import market
from suanwang.store.db import Database

url, session_id, now, flag = sys.argv[1], sys.argv[2], float(sys.argv[3]), pathlib.Path(sys.argv[4])

def stall(*_):  # inside the clear's transaction: claim row, ledger transfers staged, nothing committed
    flag.write_text("clearing")
    time.sleep(120)

market.plan_contracts = stall
market.clear_session(Database(url), session_id, now=now)
"""


def test_a_platform_killed_mid_clear_clears_the_session_exactly_once_after_restart(seeded: Database,
                                                                                   tmp_path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    _book(seeded)
    flag = tmp_path / "in-clear"
    proc = subprocess.Popen([sys.executable, "-c", _STALLED_CLEAR, seeded.url, SESSION.id, str(AFTER), str(flag)])
    try:
        deadline = time.monotonic() + 60
        while not flag.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # poll: the child says when it is inside the clear
        assert flag.exists(), "the clearing process never reached the clear"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with seeded.transaction() as session:
        assert session.scalar(select(func.count()).select_from(MarketClearRow)) == 0
        assert all(h == HoldState.OPEN.value for h in session.scalars(select(HoldRow.state)))
    assert market.clear_due(seeded, now=AFTER + 5) == [SESSION.id]  # the restarted loop
    assert market.clear_due(seeded, now=AFTER + 905) == []
    with seeded.transaction() as session:
        assert session.scalar(select(func.sum(MarketContractRow.units))) == 20
        assert all(h == HoldState.RELEASED.value for h in session.scalars(select(HoldRow.state)))
        assert reconcile(session).ok


def test_an_amended_bid_moves_its_hold_and_a_402_amend_changes_nothing(seeded: Database) -> None:
    order = _post(seeded, C1, "bid", sites=["qingyang"], quantity=4, rate_per_slot=2, limit_fen=100)
    with seeded.transaction() as session:
        new = market.amend_order(session, C1, str(order["id"]), {"limit_fen": 200}, now=BEFORE)
    assert new["replaces"] == order["id"] and new["limit_fen"] == 200
    with seeded.transaction() as session:
        assert cached_balances(session)[wallet("c1")] == 100_000 - 4 * 200
    with pytest.raises(InsufficientFunds), seeded.transaction() as session:
        market.amend_order(session, C1, str(new["id"]), {"quantity": 4000, "rate_per_slot": 2000}, now=BEFORE)
    with seeded.transaction() as session:
        assert cached_balances(session)[wallet("c1")] == 100_000 - 4 * 200
        live = session.scalars(select(MarketOrderRow.id).where(MarketOrderRow.state == "live")).all()
        assert live == [new["id"]]
