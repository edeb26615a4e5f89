"""Price books: each owner's series of versions, published forward only and read through a cache
(a version is immutable once stored)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.clock import SYSTEM_CLOCK, Clock
from suanwang.domain.pricing import (
    OPERATOR,
    PriceBook,
    PriceEntry,
    check_new_price_book,
)
from suanwang.errors import InvalidSpec
from suanwang.services.audit import record_audit
from suanwang.services.auth import Principal, Role
from suanwang.services.billing.codec import _plain, book_from_json
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


@dataclass(frozen=True, slots=True)
class PriceBookDraft:
    """A price book as a request names it, parsed at the edge: its entries, and the version and start that
    default to the owner's next version and now.  ``published`` is the entries' JSON as sent: stored and
    listed verbatim (a ``{"province": ...}`` tariff stays so), and read back into ``entries`` on load."""

    entries: tuple[PriceEntry, ...]
    published: list[Any]
    version: int | None = None
    effective_from: datetime | None = None


@dataclass(frozen=True, slots=True)
class PublishedBook:
    """A stored price book and its entries as their owner published them."""

    book: PriceBook
    published: list[Any]

    @property
    def stand_in_tou(self) -> list[str]:
        """The time-of-use tariffs of its entries that are the documented stand-in, not a published tariff."""
        return sorted({e.tou.name for e in self.book.entries if e.tou is not None and e.tou.is_stand_in})


def set_price_book(session: Session, actor: Principal, draft: PriceBookDraft, *,
                   clock: Clock = SYSTEM_CLOCK) -> PublishedBook:
    """Publish the next book of the actor's own series: the operator's, or a provider's for its own sites.

    Each owner's versions and start times only move forward, and only against
    its own series: one owner's book never blocks or shadows another's.  Where
    several price a pool, the pool's provider's book wins, then the operator's.
    """
    owner = OPERATOR if actor.role is Role.OPERATOR else actor.tenant_id
    books = load_books(session)
    now = now_utc(clock)
    if owner != OPERATOR:
        _check_own_sites(session, actor, draft.entries)
    version = draft.version
    if version is None:
        version = max((b.version for b in books if b.owner == owner), default=0) + 1
    book = PriceBook(version, draft.effective_from or now, draft.entries, owner=owner)
    check_new_price_book(books, book, now=now - timedelta(seconds=1))
    published = _plain(draft.published)
    caches_of(session).any_book.invalidate()  # this replica at once; others within the cache's second
    session.add(PriceBookRow(owner=owner, version=book.version, effective_us=to_us(book.effective_from),
                             created_at=clock.time(), created_by=_actor(actor),
                             body={"version": book.version, "effective_from": book.effective_from.isoformat(),
                                   "entries": published}))
    session.flush()
    record_audit(session, actor, "price_book.set", f"{owner or 'operator'}:{book.version}", entries=len(book.entries))
    return PublishedBook(book, published)


def _check_own_sites(session: Session, actor: Principal, entries: tuple[PriceEntry, ...]) -> None:
    own = set(session.scalars(select(SiteRow.name).where(SiteRow.tenant_id == actor.tenant_id)))
    for e in entries:
        if e.site not in own:
            shown = f"site={e.site!r} pool={e.pool!r} {e.resource_class.value}"[:200]
            raise InvalidSpec(f"a provider may only price its own sites ({sorted(own)[:20]}); entry {shown}")


def list_price_books(session: Session) -> list[PublishedBook]:
    """Every owner's books: the operator's series first, then each provider's, oldest version first."""
    books = {(b.owner, b.version): b for b in load_books(session)}
    rows = session.execute(select(PriceBookRow.owner, PriceBookRow.version, PriceBookRow.body)
                           .order_by(PriceBookRow.owner, PriceBookRow.version))
    return [PublishedBook(books[(owner, version)], body.get("entries", [])) for owner, version, body in rows
            if (owner, version) in books]  # a stored book that fails today's bounds is ignored (load_books)


def _any_book(session: Session) -> bool:
    """Whether any price book exists (cached for a second, ``store.cache``: the submit path is hot)."""
    return caches_of(session).any_book.get(lambda: session.scalar(select(PriceBookRow.version).limit(1)) is not None)
