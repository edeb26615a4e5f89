"""Price books at the HTTP edge: a request body parsed into a draft of domain entries, a published book
rendered as the answer.  The service (``services/billing/books.py``) takes and returns domain values.

The body is read by ``exact_json`` (every non-integer number a Decimal, never a float), then checked here
field by field with the same bounds as before (``domain.pricing``, ``billing.codec.entry_from_json``):
pydantic would read a price as a float, so it types the answer, not the prices of the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from suanwang.domain.money import check_currency
from suanwang.domain.pricing import check_version
from suanwang.errors import InvalidSpec
from suanwang.services.billing import PriceBookDraft, PublishedBook
from suanwang.services.billing.codec import entries_from_json, parse_time

FIELDS = frozenset({"version", "effective_from", "entries", "currency"})


class PriceBookOut(BaseModel):
    owner: str  # "operator", or the provider tenant whose series it is
    version: int
    effective_from: str  # ISO 8601, UTC
    entries: list[Any]  # as the owner published them (prices as exact decimal strings)
    stand_in_tou: list[str]  # entries' tariffs that are the documented stand-in, not a published tariff


def draft_from_json(data: Mapping[str, Any]) -> PriceBookDraft:
    """A price book request's body, every number bounded before it is used; InvalidSpec (422) says what is
    wrong.  Absent ``version`` and ``effective_from`` are the owner's next version and now (the service's)."""
    extra = set(data) - FIELDS
    if extra:
        raise InvalidSpec(f"unknown price book fields: {sorted(map(str, extra))[:5]}")
    entries = entries_from_json(data.get("entries"))
    if "currency" in data:
        check_currency(str(data["currency"])[:10])
    version = check_version(data["version"]) if "version" in data else None
    start = parse_time(data["effective_from"], "effective_from") if "effective_from" in data else None
    return PriceBookDraft(entries, data["entries"], version, start)


def price_book_out(published: PublishedBook) -> PriceBookOut:
    book = published.book
    return PriceBookOut(owner=book.owner or "operator", version=book.version,
                        effective_from=book.effective_from.isoformat(), entries=published.published,
                        stand_in_tou=published.stand_in_tou)
