"""Provider failure from real site status: a contract line whose site is offline in its slot is refunded with
the penalty, once, and the ledger reconciles (SQLite and PostgreSQL).  The book and clear are the real ones."""

from __future__ import annotations

from sqlalchemy import select

from suanwang.domain.ledger import earnings, wallet
from suanwang.domain.market.contract import PENALTY_BPS
from suanwang.services import market
from suanwang.services.ledger_store import cached_balances, reconcile
from suanwang.services.market_reservations import settle_failed_contracts
from suanwang.store.db import Database
from suanwang.store.market_tables import MarketContractRow
from suanwang.store.tables import SiteRow
from tests.services.test_market_service import AFTER, SESSION, _book
from tests.services.test_market_service import seeded as seeded


def test_an_offline_site_in_a_contracted_slot_refunds_the_buyer_and_pays_the_penalty(seeded: Database) -> None:
    _book(seeded)
    assert market.clear_session(seeded, SESSION.id, now=AFTER)
    with seeded.transaction() as s:
        lines = list(s.scalars(select(MarketContractRow)))
        first = min(line.slot_start for line in lines)
        in_slot = [line for line in lines if line.slot_start == first]
        before = cached_balances(s)
    now = first + 60
    with seeded.transaction() as s:  # the site is up: nothing to settle
        s.get(SiteRow, "qingyang").online = True  # type: ignore[union-attr]
        s.get(SiteRow, "wuhu").online = True  # type: ignore[union-attr]
    with seeded.transaction() as s:
        assert settle_failed_contracts(s, now=now) == []
    with seeded.transaction() as s:
        s.get(SiteRow, "qingyang").online = False  # type: ignore[union-attr]  # as mark_offline_sites sets it
    with seeded.transaction() as s:
        keys = settle_failed_contracts(s, now=now)
    assert keys and all(":failed:" in k for k in keys)
    with seeded.transaction() as s:
        assert settle_failed_contracts(s, now=now + 600) == []  # later passes in the slot: nothing again
        after = cached_balances(s)
        assert reconcile(s).ok
    for consumer in ("c1", "c2"):
        mine = [line for line in in_slot if line.consumer == consumer]
        paid = sum(line.units * line.buyer_price_cf for line in mine) // 100
        seller = sum(line.units * line.seller_price_cf for line in mine) // 100
        assert after[wallet(consumer)] - before[wallet(consumer)] == paid + seller * PENALTY_BPS // 10_000
    clawed = sum(line.units * line.seller_price_cf for line in in_slot) // 100
    assert before[earnings("p1")] - after[earnings("p1")] == clawed + clawed * PENALTY_BPS // 10_000


def test_statements_show_the_market_lines_and_they_balance(seeded: Database) -> None:
    from datetime import UTC, datetime

    from suanwang.domain.settlement import compute_settlement, settlement_csv
    from suanwang.store.sql_ledger import load_transfers

    _book(seeded)
    assert market.clear_session(seeded, SESSION.id, now=AFTER)
    with seeded.transaction() as s:
        transfers = load_transfers(s, before=datetime(2999, 1, 1, tzinfo=UTC))
        paid = {c: -b for c, b in ((c, cached_balances(s)[wallet(c)] - 100_000) for c in ("c1", "c2"))}
    settlement = compute_settlement(transfers, start=datetime(1970, 1, 1, tzinfo=UTC),
                                    end=datetime(2999, 1, 1, tzinfo=UTC))
    lines = settlement.market
    assert {m.item for m in lines} >= {"charge", "earn"}
    for consumer in ("c1", "c2"):  # each buyer's contract charges are what its wallet paid for them
        assert -sum(m.fen for m in lines if m.item == "charge" and m.account == f"hold:{consumer}") == paid[consumer]
    assert sum(m.fen for m in lines) == 0  # the clear's legs net out (its suspense account ends at zero)
    assert f"market,earnings:p1,,,{SESSION.id} earn" in settlement_csv(settlement)


def test_a_link_of_limited_bandwidth_prices_congestion_and_the_rent_reaches_the_statements(seeded: Database) -> None:
    from datetime import UTC, datetime

    from suanwang.domain.market.money import CONGESTION
    from suanwang.domain.settlement import compute_settlement
    from suanwang.store.sql_ledger import load_transfers
    from suanwang.store.tables import LinkRow
    from tests.services.test_market_service import C1, P1, _post

    with seeded.transaction() as s:  # 0.0025 Gbit/s: 1 whole GB in an hourly slot
        s.add(LinkRow(a="wuhu", b="qingyang", latency_ms=20.0, bandwidth_gbps=0.0025))
    _post(seeded, P1, "ask", site="qingyang", units_per_slot=10, floor_fen=100)
    _post(seeded, C1, "bid", sites=["qingyang"], quantity=12, rate_per_slot=6, limit_fen=300, data_site="wuhu",
          data_gb_per_unit=1)  # its data is at wuhu: each unit run at qingyang moves 1 GB over the link
    assert market.clear_session(seeded, SESSION.id, now=AFTER)
    with seeded.transaction() as s:
        result = market.result_json(s, C1, SESSION.id)
        rent = cached_balances(s).get(CONGESTION, 0)
        assert reconcile(s).ok
        transfers = load_transfers(s, before=datetime(2999, 1, 1, tzinfo=UTC))
    assert result["bids"][0]["filled"] == 2  # one unit per slot: the link carries 1 GB a slot
    assert {c["slot"] for c in result["congestion"]} == {0, 1} and all(c["price_cf"] > 0 for c in result["congestion"])
    assert rent > 0
    lines = compute_settlement(transfers, start=datetime(1970, 1, 1, tzinfo=UTC),
                               end=datetime(2999, 1, 1, tzinfo=UTC)).market
    assert sum(m.fen for m in lines if m.item == "congestion" and m.account == str(CONGESTION)) == rent
