"""Price books at the edge: the body becomes domain entries; the answer lists the entries as published."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from suanwang.api.price_books import draft_from_json, price_book_out
from suanwang.domain.pricing import PriceBook, PriceUnit
from suanwang.errors import InvalidSpec
from suanwang.services.billing import PublishedBook
from tests.api.conftest import Grid

API = "/api/v1"
GANSU = {"resource_class": "general", "unit": "core_hour", "unit_price_fen": "1.5", "tou": {"province": "Gansu"}}


def test_a_draft_holds_domain_entries_and_the_entries_as_sent() -> None:
    draft = draft_from_json({"entries": [GANSU | {"unit_price_fen": Decimal("1.5")}]})
    [entry] = draft.entries
    assert entry.unit is PriceUnit.CORE_HOUR and entry.unit_price_fen == Decimal("1.5") and entry.tou is not None
    assert draft.published == [GANSU | {"unit_price_fen": Decimal("1.5")}]
    assert draft.version is None and draft.effective_from is None  # the owner's next version, from now


@pytest.mark.parametrize(("body", "says"), [
    ({"entries": [GANSU], "colour": "red"}, "unknown price book fields"),
    ({"entries": []}, "non-empty 'entries'"),
    ({"entries": ["x"]}, "must be an object"),
    ({"entries": [GANSU], "version": 0}, "version"),
    ({"entries": [GANSU], "effective_from": 1e17}, "effective_from"),
    ({"entries": [GANSU | {"unit_price_fen": "1.000001"}]}, "decimal places"),
])
def test_a_bad_body_is_refused_with_what_is_wrong(body: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidSpec, match=says):
        draft_from_json(body)


def test_the_answer_names_the_owner_and_the_stand_in_tariffs() -> None:
    draft = draft_from_json({"entries": [GANSU]})
    start = datetime(2026, 1, 1, tzinfo=UTC)
    out = price_book_out(PublishedBook(PriceBook(3, start, draft.entries), [GANSU]))
    assert out.model_dump() == {"owner": "operator", "version": 3, "effective_from": "2026-01-01T00:00:00+00:00",
                                "entries": [GANSU], "stand_in_tou": out.stand_in_tou}
    assert out.stand_in_tou == sorted({e.tou.name for e in draft.entries if e.tou and e.tou.is_stand_in})


def test_a_published_book_lists_back_as_it_was_sent(grid: Grid) -> None:
    start = int(time.time()) + 3600  # Unix seconds, an hour ahead
    body = {"entries": [GANSU], "effective_from": start}
    made = grid.operator.post(f"{API}/price-books", json=body)
    assert made.status_code == 201, made.text
    [listed] = grid.consumer.get(f"{API}/price-books").json()
    assert listed == made.json()
    assert listed["entries"] == [GANSU] and listed["version"] == 1
    assert listed["effective_from"] == datetime.fromtimestamp(start, UTC).isoformat()
