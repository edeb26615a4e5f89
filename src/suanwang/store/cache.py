"""Read caches as objects the composition root creates: one ``ReadCaches`` per ``Database``.

Why: module-level dicts keyed by the database URL were shared by every test in a process, never
invalidated on purpose, and silently stale on a second replica.  Here each cache is a field of the
``Database`` that owns the rows, a session carries it (``session.info``, set by ``Database.transaction``),
and each kind says how it is invalidated:

- ``Memo`` holds values that never change once stored (a price book version, a job's service level,
  fixed at submit): nothing to invalidate, on this replica or another; it is emptied only when full.
- ``Ttl`` holds a value that may change (whether any price book exists, the pool list): it is read
  again after ``ttl_s`` by the clock's monotonic time, and dropped at once by ``invalidate()`` on the
  replica that changed it.  Another replica sees the change within ``ttl_s`` (1 s): the callers use it
  only where a second's lag is harmless (refusing jobs no pool could run, skipping holds while the
  platform is free; placement and rating read fresh rows).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from suanwang.clock import SYSTEM_CLOCK, Clock
from suanwang.domain.grid import Pool
from suanwang.domain.pricing import PriceBook
from suanwang.domain.resources import ServiceLevel

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(Generic[K, V]):
    """Values that never change once stored, bounded by ``max_items`` (emptied when full)."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self._items: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def put(self, key: K, value: V) -> None:
        if len(self._items) >= self.max_items:
            self._items.clear()
        self._items[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def clear(self) -> None:
        self._items.clear()


class Ttl(Generic[V]):
    """One value, loaded again once ``ttl_s`` has passed on ``clock`` or after ``invalidate()``."""

    def __init__(self, ttl_s: float, clock: Clock) -> None:
        self.ttl_s, self.clock = ttl_s, clock
        self._value: V | None = None
        self._until: float | None = None

    def get(self, load: Callable[[], V]) -> V:
        now = self.clock.monotonic()
        if self._until is None or now >= self._until:
            self._value, self._until = load(), now + self.ttl_s
        return self._value  # type: ignore[return-value]  # set on the line above or on an earlier call

    def invalidate(self) -> None:
        self._until = None


@dataclass
class ReadCaches:
    """The services' read caches for one database (see the module docstring for their invalidation)."""

    clock: Clock = SYSTEM_CLOCK
    books: Memo[tuple[str, int], PriceBook] = field(default_factory=lambda: Memo(100_000))  # (owner, version)
    levels: Memo[str, ServiceLevel] = field(default_factory=lambda: Memo(200_000))  # job id -> its level
    any_book: Ttl[bool] = field(init=False)  # whether any price book is stored
    pools: Ttl[list[Pool]] = field(init=False)  # every pool, as ``sites.all_pools`` reads them

    def __post_init__(self) -> None:
        self.any_book = Ttl(1.0, self.clock)
        self.pools = Ttl(1.0, self.clock)

    def clear(self) -> None:
        self.books.clear()
        self.levels.clear()
        self.any_book.invalidate()
        self.pools.invalidate()


def caches_of(session: Session) -> ReadCaches:
    """The caches of the database ``session`` belongs to; a session opened outside ``Database.transaction``
    gets empty ones (correct, only not cached)."""
    caches: ReadCaches | None = session.info.get("caches")
    if caches is None:
        caches = session.info["caches"] = ReadCaches()
    return caches
