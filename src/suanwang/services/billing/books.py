"""Price books: each owner's series of versions, published forward only and read through a cache
(a version is immutable once stored)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.clock import SYSTEM_CLOCK, Clock
from suanwang.domain.pricing import (
    OPERATOR,
    PriceBook,
    check_new_price_book,
)
from suanwang.errors import InvalidSpec
from suanwang.services.audit import record_audit
from suanwang.services.auth import Principal, Role
from suanwang.services.billing.codec import _plain, book_from_json, price_book_json
from suanwang.services.billing.common import _actor, log, now_utc
from suanwang.store.cache import caches_of
from suanwang.store.ledger_tables import (
    PriceBookRow,
)
from suanwang.store.sql_ledger import (
    to_us,
)
from suanwang.store.tables import SiteRow


def load_books(session: Session) -> list[PriceBook]:
    """Every owner's price books (each parsed once per database: a stored version is immutable)."""
    books = []
    cache = caches_of(session).books
    for owner, version, body in session.execute(select(PriceBookRow.owner, PriceBookRow.version,
                                                       PriceBookRow.body)):
        book = cache.get((owner, version))
        if book is None:
            try:
                book = book_from_json(body, owner)
            except InvalidSpec as exc:  # stored before today's bounds: ignored, so it cannot freeze the platform
                log.error("price book %s:%s ignored: %s", owner or "operator", version, exc.message)
                continue
            cache.put((owner, version), book)
        books.append(book)
    return books


def set_price_book(session: Session, actor: Principal, data: Mapping[str, Any], *,
                   clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """Publish the next book of the actor's own series: the operator's, or a provider's for its own sites.

    Each owner's versions and start times only move forward, and only against
    its own series: one owner's book never blocks or shadows another's.  Where
    several price a pool, the pool's provider's book wins, then the operator's.
    """
    owner = OPERATOR if actor.role is Role.OPERATOR else actor.tenant_id
    books = load_books(session)
    now = now_utc(clock)
    extra = set(data) - {"version", "effective_from", "entries", "currency"}
    if extra:
        raise InvalidSpec(f"unknown price book fields: {sorted(map(str, extra))[:5]}")
    body = dict(data)
    body.setdefault("version", max((b.version for b in books if b.owner == owner), default=0) + 1)
    body.setdefault("effective_from", now.isoformat())
    if owner != OPERATOR:
        _check_own_sites(session, actor, body.get("entries"))
    book = book_from_json(body, owner)  # every number checked before any is formatted or computed with
    check_new_price_book(books, book, now=now - timedelta(seconds=1))
    body = _plain(body)
    caches_of(session).any_book.invalidate()  # this replica at once; others within the cache's second
    session.add(PriceBookRow(owner=owner, version=book.version, effective_us=to_us(book.effective_from),
                             created_at=clock.time(), created_by=_actor(actor), body=body))
    session.flush()
    record_audit(session, actor, "price_book.set", f"{owner or 'operator'}:{book.version}", entries=len(book.entries))
    return price_book_json(body, book)


def _check_own_sites(session: Session, actor: Principal, entries: object) -> None:
    own = set(session.scalars(select(SiteRow.name).where(SiteRow.tenant_id == actor.tenant_id)))
    if not isinstance(entries, list) or not entries:
        raise InvalidSpec("a price book needs a non-empty 'entries' list")
    for e in entries:
        if not isinstance(e, Mapping) or e.get("site") not in own:
            shown = repr(e)[:200]
            raise InvalidSpec(f"a provider may only price its own sites ({sorted(own)[:20]}); entry {shown}")


def list_price_books(session: Session) -> list[dict[str, Any]]:
    """Every owner's books: the operator's series first, then each provider's, oldest version first."""
    books = {(b.owner, b.version): b for b in load_books(session)}
    rows = session.execute(select(PriceBookRow.owner, PriceBookRow.version, PriceBookRow.body)
                           .order_by(PriceBookRow.owner, PriceBookRow.version))
    return [price_book_json(body, books[(owner, version)]) for owner, version, body in rows
            if (owner, version) in books]  # a stored book that fails today's bounds is ignored (load_books)


def _any_book(session: Session) -> bool:
    """Whether any price book exists (cached for a second, ``store.cache``: the submit path is hot)."""
    return caches_of(session).any_book.get(lambda: session.scalar(select(PriceBookRow.version).limit(1)) is not None)
