"""Read caches are objects each Database owns (store.cache), moved by a test clock instead of sleeps, and
the store speaks the project's errors (store.db.translate_errors)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from suanwang.api.price_books import draft_from_json
from suanwang.clock import ManualClock
from suanwang.errors import StoreConflict
from suanwang.services import billing
from suanwang.services.auth import Principal, Role
from suanwang.services.bootstrap import bootstrap
from suanwang.store.cache import Memo, ReadCaches, Ttl, caches_of
from suanwang.store.db import Database

OPERATOR = Principal("test", Role.OPERATOR, "t-operator")
BOOK = {"entries": [{"resource_class": "general", "unit_price_fen": 100, "unit": "core_hour"}]}


def test_a_ttl_value_is_read_again_only_once_its_time_has_passed() -> None:
    clock, loads = ManualClock(), []
    value: Ttl[int] = Ttl(1.0, clock)

    def load() -> int:
        loads.append(clock.monotonic())
        return len(loads)

    assert [value.get(load), value.get(load)] == [1, 1]
    clock.advance(0.999)
    assert value.get(load) == 1
    clock.advance(0.001)
    assert value.get(load) == 2
    value.invalidate()
    assert value.get(load) == 3 and loads == [0.0, 1.0, 1.0]


def test_a_memo_is_emptied_when_full_and_never_serves_another_key() -> None:
    memo: Memo[str, int] = Memo(max_items=2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1 and "c" not in memo
    memo.put("c", 3)  # full: emptied first
    assert (memo.get("a"), memo.get("b"), memo.get("c")) == (None, None, 3)


def test_a_second_replica_sees_a_new_price_book_within_the_cache_time(db_url: str, tmp_path: Path) -> None:
    """Two Databases on one URL are two replicas: the one that publishes drops its cache at once, the other
    reads the table again once its clock has passed the one-second time-to-live."""
    first, second = Database(db_url), Database(db_url)
    try:
        first.migrate()
        bootstrap(first, tmp_path)
        clock = ManualClock()
        second.caches = ReadCaches(clock=clock)
        with first.transaction() as s:
            assert billing.books._any_book(s) is False
        with second.transaction() as s:
            assert caches_of(s) is second.caches and billing.books._any_book(s) is False
        with first.transaction() as s:
            billing.set_price_book(s, OPERATOR, draft_from_json(BOOK))
        with first.transaction() as s:
            assert billing.books._any_book(s) is True  # invalidated by the publish, on this replica
        with second.transaction() as s:
            assert billing.books._any_book(s) is False  # still within the other replica's second
        clock.advance(1.0)
        with second.transaction() as s:
            assert billing.books._any_book(s) is True
    finally:
        first.dispose()
        second.dispose()


def test_a_unique_key_stored_meanwhile_leaves_the_store_as_a_conflict(db: Database) -> None:
    with db.transaction() as s:
        s.execute(text("CREATE TABLE twin (k VARCHAR(10) PRIMARY KEY)"))
        s.execute(text("INSERT INTO twin VALUES ('a')"))

    def insert_again() -> None:
        with db.transaction() as s:
            s.execute(text("INSERT INTO twin VALUES ('a')"))

    with pytest.raises(StoreConflict) as raised:
        insert_again()
    assert raised.value.status_code == 409 and "retry" in raised.value.message
