"""Orders on the board (订单簿): asks, bids, links, and the book a session clears.

Everything here is plain, immutable data in integers: quantities in compute
units per slot (unit-slots), prices in whole fen per unit-slot, link capacity
in GB per slot.  :func:`canonical_book` puts a book in the one order the
clearing reads it in, so that the same set of orders, posted in any order,
gives a byte-identical result.

Invariants checked by :func:`validate_book` (a bad book raises
:class:`~suanwang.errors.InvalidSpec` naming the order and field):
ids unique per side; quantities, rates and capacities > 0; windows
``start_slot < end_slot``; prices within ``0 <= price <= PRICE_FEN_MAX``; an
all-or-nothing bid asks for its rate in every slot of its window at one site.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from suanwang.errors import InvalidSpec

SiteId = str
ResourceClass = str
Slot = int  # an hour (day-ahead) or quarter hour (intraday) since the session's epoch
LinkKey = tuple[str, str]  # (site a, site b) with a < b: links are undirected

PRICE_FEN_MAX = 10_000_000  # 100,000 yuan per unit-slot: far above any sane compute price
QUANTITY_MAX = 10_000_000  # unit-slots in one order
SLOT_MAX = 1_000_000


@dataclass(frozen=True, slots=True)
class Ask:
    """A provider's offer: ``units_per_slot`` at ``site`` in every slot of ``[start_slot, end_slot)``,
    not sold below ``floor_fen`` per unit-slot.  Divisible in units and slots."""

    id: str
    provider: str
    site: SiteId
    resource_class: ResourceClass
    start_slot: Slot
    end_slot: Slot
    units_per_slot: int
    floor_fen: int


@dataclass(frozen=True, slots=True)
class Bid:
    """A consumer's request for ``quantity`` unit-slots of ``resource_class`` at any of ``sites``,
    at most ``rate_per_slot`` in one slot, within ``[start_slot, end_slot)``, paying at most
    ``limit_fen`` per unit-slot.

    ``all_or_nothing`` (a gang): ``rate_per_slot`` units at one site in every slot of the window, or
    nothing.  ``data_site``/``data_gb_per_unit``: each unit-slot run away from ``data_site`` moves that
    much data across the link between the two sites, in the same slot.
    """

    id: str
    consumer: str
    resource_class: ResourceClass
    sites: tuple[SiteId, ...]
    start_slot: Slot
    end_slot: Slot
    quantity: int
    rate_per_slot: int
    limit_fen: int
    all_or_nothing: bool = False
    data_site: SiteId | None = None
    data_gb_per_unit: int = 0

    def link_to(self, site: SiteId) -> LinkKey | None:
        """The link this bid's data crosses when it runs at ``site`` (None: no data moves)."""
        if self.data_site is None or self.data_gb_per_unit == 0 or site == self.data_site:
            return None
        return link_key(self.data_site, site)


@dataclass(frozen=True, slots=True)
class Link:
    """A network link between two sites with ``gb_per_slot`` of bandwidth for market traffic."""

    a: SiteId
    b: SiteId
    gb_per_slot: int

    @property
    def key(self) -> LinkKey:
        return link_key(self.a, self.b)


@dataclass(frozen=True, slots=True)
class Book:
    """What one session clears: every live ask and bid at its gate, and the links that can bind."""

    asks: tuple[Ask, ...] = ()
    bids: tuple[Bid, ...] = ()
    links: tuple[Link, ...] = ()


def link_key(a: SiteId, b: SiteId) -> LinkKey:
    return (a, b) if a < b else (b, a)


def canonical_book(asks: Iterable[Ask], bids: Iterable[Bid], links: Iterable[Link] = ()) -> Book:
    """The book in canonical order: asks and bids by id, a bid's sites sorted and unique, links by key.

    Ids are unique per side (the board assigns them), so this order does not depend on the order
    the orders arrived in.  It is also the tie-break rank: at equal prices the order earlier in this
    order is preferred (see ``docs/market.md``).
    """
    tidy = (b if b.sites == tuple(sorted(set(b.sites))) else _with_sites(b, tuple(sorted(set(b.sites))))
            for b in bids)
    bids_sorted = tuple(sorted(tidy, key=lambda b: b.id))
    book = Book(asks=tuple(sorted(asks, key=lambda a: a.id)), bids=bids_sorted,
                links=tuple(sorted(links, key=lambda link: link.key)))
    validate_book(book)
    return book


def _with_sites(bid: Bid, sites: tuple[SiteId, ...]) -> Bid:
    return Bid(bid.id, bid.consumer, bid.resource_class, sites, bid.start_slot, bid.end_slot, bid.quantity,
               bid.rate_per_slot, bid.limit_fen, bid.all_or_nothing, bid.data_site, bid.data_gb_per_unit)


def _int_in(value: object, low: int, high: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidSpec(f"{what} must be an integer within {low}..{high}, got {value!r}")


def _window(order_id: str, start: object, end: object) -> None:
    _int_in(start, 0, SLOT_MAX, f"{order_id}: start_slot")
    _int_in(end, 1, SLOT_MAX, f"{order_id}: end_slot")
    assert isinstance(start, int) and isinstance(end, int)
    if end <= start:
        raise InvalidSpec(f"{order_id}: end_slot must be after start_slot (window [{start}, {end}))")


def validate_ask(ask: Ask) -> None:
    _window(ask.id, ask.start_slot, ask.end_slot)
    _int_in(ask.units_per_slot, 1, QUANTITY_MAX, f"{ask.id}: units_per_slot")
    _int_in(ask.floor_fen, 0, PRICE_FEN_MAX, f"{ask.id}: floor_fen")
    if not ask.site or not ask.resource_class:
        raise InvalidSpec(f"{ask.id}: site and resource_class are required")


def validate_bid(bid: Bid) -> None:
    _window(bid.id, bid.start_slot, bid.end_slot)
    _int_in(bid.quantity, 1, QUANTITY_MAX, f"{bid.id}: quantity")
    _int_in(bid.rate_per_slot, 1, QUANTITY_MAX, f"{bid.id}: rate_per_slot")
    _int_in(bid.limit_fen, 1, PRICE_FEN_MAX, f"{bid.id}: limit_fen")  # a bid that pays nothing buys nothing
    _int_in(bid.data_gb_per_unit, 0, QUANTITY_MAX, f"{bid.id}: data_gb_per_unit")
    if not bid.sites or not all(bid.sites):
        raise InvalidSpec(f"{bid.id}: sites must name at least one site")
    if not bid.resource_class:
        raise InvalidSpec(f"{bid.id}: resource_class is required")
    if bid.all_or_nothing and bid.quantity != bid.rate_per_slot * (bid.end_slot - bid.start_slot):
        raise InvalidSpec(f"{bid.id}: quantity of an all-or-nothing bid must be rate_per_slot x window length")


def validate_book(book: Book) -> None:
    """Raise InvalidSpec on the first bad order, naming it and the field."""
    for side, orders in (("ask", book.asks), ("bid", book.bids)):
        ids = [o.id for o in orders]
        if len(set(ids)) != len(ids):
            raise InvalidSpec(f"{side} ids must be unique")
    for ask in book.asks:
        validate_ask(ask)
    for bid in book.bids:
        validate_bid(bid)
    for link in book.links:
        _int_in(link.gb_per_slot, 0, 10**12, f"link {link.a}-{link.b}: gb_per_slot")
        if link.a == link.b:
            raise InvalidSpec(f"link {link.a}-{link.b}: a link joins two different sites")
    if len({link.key for link in book.links}) != len(book.links):
        raise InvalidSpec("links must be unique per pair of sites")
