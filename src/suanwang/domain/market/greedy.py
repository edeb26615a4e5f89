"""A greedy matching of a book: the yardstick the clearing's welfare is measured against.

Bids in order of ``(-limit_fen, canonical rank)``; each takes, slot by slot, the cheapest
remaining supply ``(floor_fen, rank)`` at its sites whose floor is at or below its limit, within its
rate cap, quantity and the links' bandwidth.  An all-or-nothing bid takes its rate in every slot at the
first site (in its sorted order) where that fits, or nothing.  It respects every constraint the
clearing does, so its welfare is a lower bound on the optimum.
"""

from __future__ import annotations

from collections import defaultdict

from suanwang.domain.market.order import Book, LinkKey, ResourceClass, SiteId, Slot


def greedy_welfare(book: Book) -> int:
    """Welfare in fen (sum of (limit - floor) per unit-slot matched) of the greedy matching."""
    supply: dict[tuple[SiteId, ResourceClass, Slot], list[list[int]]] = defaultdict(list)
    for rank, ask in enumerate(book.asks):
        for t in range(ask.start_slot, ask.end_slot):
            supply[(ask.site, ask.resource_class, t)].append([ask.floor_fen, rank, ask.units_per_slot])
    for entries in supply.values():
        entries.sort()
    bandwidth: dict[tuple[LinkKey, Slot], int] = {}
    capacity = {link.key: link.gb_per_slot for link in book.links}
    welfare = 0
    order = sorted(range(len(book.bids)), key=lambda i: (-book.bids[i].limit_fen, i))
    for i in order:
        bid = book.bids[i]

        def room(site: SiteId, t: Slot, bid=bid) -> float:  # type: ignore[no-untyped-def]
            key = bid.link_to(site)
            if key is None or key not in capacity:
                return float("inf")
            left = bandwidth.get((key, t), capacity[key])
            return float(left // bid.data_gb_per_unit)

        def take(site: SiteId, t: Slot, units: int, bid=bid) -> int:  # type: ignore[no-untyped-def]
            gained = 0
            for entry in supply.get((site, bid.resource_class, t), []):
                if units == 0 or entry[0] > bid.limit_fen:
                    break
                got = min(units, entry[2])
                entry[2] -= got
                units -= got
                gained += got * (bid.limit_fen - entry[0])
            return gained

        if bid.all_or_nothing:
            welfare += _gang(bid, supply, room, take, bandwidth, capacity)
            continue
        left = bid.quantity
        for t in range(bid.start_slot, bid.end_slot):
            rate = min(bid.rate_per_slot, left)
            for site in bid.sites:
                if rate == 0:
                    break
                avail = sum(e[2] for e in supply.get((site, bid.resource_class, t), []) if e[0] <= bid.limit_fen)
                units = int(min(rate, avail, room(site, t)))
                if units <= 0:
                    continue
                _use_link(bid.link_to(site), t, units * bid.data_gb_per_unit, bandwidth, capacity)
                welfare += take(site, t, units)
                rate -= units
                left -= units
    return welfare


def _use_link(key: LinkKey | None, t: Slot, gb: int, bandwidth: dict[tuple[LinkKey, Slot], int],
              capacity: dict[LinkKey, int]) -> None:
    if key is not None and key in capacity:
        bandwidth[(key, t)] = bandwidth.get((key, t), capacity[key]) - gb


def _gang(bid, supply, room, take, bandwidth, capacity) -> int:  # type: ignore[no-untyped-def]
    slots = range(bid.start_slot, bid.end_slot)
    for site in bid.sites:
        fits = all(
            sum(e[2] for e in supply.get((site, bid.resource_class, t), []) if e[0] <= bid.limit_fen)
            >= bid.rate_per_slot and room(site, t) >= bid.rate_per_slot for t in slots)
        if fits:
            gained = 0
            for t in slots:
                _use_link(bid.link_to(site), t, bid.rate_per_slot * bid.data_gb_per_unit, bandwidth, capacity)
                gained += take(site, t, bid.rate_per_slot)
            return int(gained)
    return 0
