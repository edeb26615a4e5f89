"""Clear a session's book: fills, uniform locational prices, congestion prices, money (pure).

:func:`clear_book` is the one entry point.  Structure (why it is fast enough):

1. Each resource class is its own programme (classes share nothing but links), solved by
   :func:`~suanwang.domain.market.lp.solve_group` in network-flow form: no link rows.
2. If the fills then push some link over its bandwidth in some slot, that link gets rows in every
   slot, the classes whose bids cross it are solved together, and the check repeats (row
   generation).  Links that never bind never enter the programme; their congestion price is 0.
3. Fills are made whole units: divisible fills are rounded down, and at each node the asks that
   sold in the programme supply the rounded demand in merit order ``(floor_fen, canonical rank)``.
   Node balance, capacities, rate caps and link bandwidth still hold (only less is traded).

Prices (in centi-fen, 0.01 fen, per unit-slot, half-even): the node-balance dual of
``(site, class, slot)`` and the link-row dual of ``(link, slot)``.  A bid pays, per unit-slot
filled at site s in slot t, ``price(s, t) + data_gb_per_unit * congestion(link, t)``; an ask earns
``price(s, t)``.  Each order's total is rounded once to whole fen.  A bid never pays more than
``limit_fen x filled``; any excess (an all-or-nothing bid priced above its limit by the fixed-integer
LP, or a price tick) is its **make-whole**, paid by the market's uplift account.  Identity, to the
fen::

    sum(bid pays) + make_whole = sum(ask earns) + congestion_rent + rounding
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from suanwang.domain.market.lp import Solved, solve_group
from suanwang.domain.market.order import Ask, Bid, Book, Link, LinkKey, ResourceClass, SiteId, Slot, canonical_book
from suanwang.domain.money import round_ratio

CF = 100  # centi-fen per fen: the price tick


@dataclass(frozen=True, slots=True)
class BidFill:
    bid_id: str
    site: SiteId
    slot: Slot
    units: int
    price_cf: int  # per unit-slot: node price + congestion for this bid's data


@dataclass(frozen=True, slots=True)
class AskFill:
    ask_id: str
    slot: Slot
    units: int
    price_cf: int


@dataclass(frozen=True, slots=True)
class BidOutcome:
    bid_id: str
    consumer: str
    filled: int  # unit-slots
    pays_fen: int
    make_whole_fen: int
    congestion_fen: int  # the part of pays_fen that is congestion (before rounding of the total)


@dataclass(frozen=True, slots=True)
class AskOutcome:
    ask_id: str
    provider: str
    sold: int
    earns_fen: int


@dataclass(frozen=True, slots=True)
class NodePrice:
    site: SiteId
    resource_class: ResourceClass
    slot: Slot
    price_cf: int
    volume: int  # unit-slots traded


@dataclass(frozen=True, slots=True)
class LinkPrice:
    a: SiteId
    b: SiteId
    slot: Slot
    price_cf: int  # per GB
    flow_gb: int


@dataclass(frozen=True, slots=True)
class Clearing:
    """The result of one clear.  ``canonical_json`` is byte-identical for the same book in any order."""

    status: str  # optimal / time limit reached / empty / ...
    gap: float  # MIP relative gap (0 without all-or-nothing bids)
    welfare_fen: int  # sum limit x filled - sum floor x sold, of the integer fills
    lp_welfare_fen: float  # the programme's welfare before fills were made whole units
    solve_s: float
    prices: tuple[NodePrice, ...]
    congestion: tuple[LinkPrice, ...]
    bid_fills: tuple[BidFill, ...]
    ask_fills: tuple[AskFill, ...]
    bids: tuple[BidOutcome, ...]
    asks: tuple[AskOutcome, ...]
    congestion_rent_fen: int
    make_whole_fen: int
    rounding_fen: int
    groups: int  # programmes solved (classes, or classes joined by binding links)

    def canonical_json(self) -> str:
        body = asdict(self)
        body.pop("solve_s")
        body["lp_welfare_fen"] = round(self.lp_welfare_fen, 3)
        return json.dumps(body, sort_keys=True, separators=(",", ":"))


def clear_book(asks: Iterable[Ask], bids: Iterable[Bid], links: Iterable[Link] = (), *,
               time_limit_s: float = 30.0) -> Clearing:
    """Clear a book (see the module docstring).  Raises InvalidSpec on a bad order."""
    started = time.perf_counter()
    book = canonical_book(asks, bids, links)
    solved = _solve(book, time_limit_s)
    return _settle(book, solved, time.perf_counter() - started)


# ---------------------------------------------------------------- solving


def _solve(book: Book, time_limit_s: float) -> dict[frozenset[str], tuple[Solved, list[int], list[int]]]:
    n_orders = len(book.asks) + len(book.bids)
    classes = sorted({a.resource_class for a in book.asks} & {b.resource_class for b in book.bids})
    ask_by_class: dict[str, list[int]] = defaultdict(list)
    bid_by_class: dict[str, list[int]] = defaultdict(list)
    for i, ask in enumerate(book.asks):
        ask_by_class[ask.resource_class].append(i)
    for i, bid in enumerate(book.bids):
        bid_by_class[bid.resource_class].append(i)
    capacity = {link.key: link.gb_per_slot for link in book.links}
    crossing: dict[str, set[LinkKey]] = {c: _links_crossed(book, bid_by_class[c], capacity) for c in classes}
    active: set[LinkKey] = set()
    results: dict[frozenset[str], tuple[Solved, list[int], list[int]]] = {}
    while True:
        groups = _groups(classes, crossing, active)
        for group in groups:
            links = {k: capacity[k] for k in sorted(active) if any(k in crossing[c] for c in group)}
            if group in results and set(results[group][0].congestion_links) == set(links):
                continue
            a_idx = sorted(i for c in group for i in ask_by_class[c])
            b_idx = sorted(i for c in group for i in bid_by_class[c])
            solved = solve_group(asks=[(i, book.asks[i]) for i in a_idx],
                                 bids=[(len(book.asks) + i, book.bids[i]) for i in b_idx],
                                 n_orders=n_orders, links=links, time_limit_s=time_limit_s)
            results[group] = (solved, a_idx, b_idx)
        results = {g: r for g, r in results.items() if g in groups}
        over = _overloaded(book, results, capacity) - active
        if not over:
            return results
        active |= over


def _links_crossed(book: Book, bid_idx: list[int], capacity: dict[LinkKey, int]) -> set[LinkKey]:
    out: set[LinkKey] = set()
    for i in bid_idx:
        bid = book.bids[i]
        for site in bid.sites:
            key = bid.link_to(site)
            if key is not None and key in capacity:
                out.add(key)
    return out


def _groups(classes: list[str], crossing: dict[str, set[LinkKey]], active: set[LinkKey]) -> list[frozenset[str]]:
    """Classes joined when their bids cross the same binding link (union-find, canonical order)."""
    parent = {c: c for c in classes}

    def find(c: str) -> str:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    owner: dict[LinkKey, str] = {}
    for c in classes:
        for key in sorted(crossing[c] & active):
            if key in owner:
                parent[find(c)] = find(owner[key])
            else:
                owner[key] = c
    groups: dict[str, set[str]] = defaultdict(set)
    for c in classes:
        groups[find(c)].add(c)
    return [frozenset(g) for _, g in sorted(groups.items())]


def _overloaded(book: Book, results: dict[frozenset[str], tuple[Solved, list[int], list[int]]],
                capacity: dict[LinkKey, int]) -> set[LinkKey]:
    if not capacity:
        return set()
    use: dict[tuple[LinkKey, Slot], float] = defaultdict(float)
    for solved, _, b_idx in results.values():
        for (b, site, t), units in solved.x.items():
            bid = book.bids[b_idx[b]]
            key = bid.link_to(site)
            if key is not None and key in capacity:
                use[(key, t)] += units * bid.data_gb_per_unit
        for b, site in solved.y:
            bid = book.bids[b_idx[b]]
            key = bid.link_to(site)
            if key is not None and key in capacity:
                for t in range(bid.start_slot, bid.end_slot):
                    use[(key, t)] += bid.rate_per_slot * bid.data_gb_per_unit
    return {key for (key, _), gb in use.items() if gb > capacity[key] + 1e-6}


# ---------------------------------------------------------------- money


def _cf(value: float) -> int:
    return max(0, int(round(value * CF))) if math.isfinite(value) else 0


def _settle(book: Book, results: dict[frozenset[str], tuple[Solved, list[int], list[int]]],
            elapsed: float) -> Clearing:
    prices: dict[tuple[SiteId, ResourceClass, Slot], int] = {}
    congestion: dict[tuple[LinkKey, Slot], int] = {}
    bid_units: dict[int, dict[tuple[SiteId, Slot], int]] = defaultdict(dict)
    sold_lp: dict[tuple[SiteId, ResourceClass, Slot], list[int]] = defaultdict(list)
    status, gap, lp_welfare = "empty", 0.0, 0.0
    for group in sorted(results, key=sorted):
        solved, a_idx, b_idx = results[group]
        lp_welfare += solved.lp_welfare
        gap = max(gap, solved.gap)
        if solved.status != "empty":
            status = solved.status if status in ("empty", "optimal") else status
        prices.update({node: _cf(p) for node, p in solved.prices.items()})
        for key, mu in solved.congestion.items():
            congestion[key] = max(congestion.get(key, 0), _cf(mu))
        for (b, site, t), units in solved.x.items():
            whole = math.floor(units + 1e-6)
            if whole > 0:
                bid_units[b_idx[b]][(site, t)] = whole
        for b, site in solved.y:
            bid = book.bids[b_idx[b]]
            for t in range(bid.start_slot, bid.end_slot):
                bid_units[b_idx[b]][(site, t)] = bid.rate_per_slot
        for (a, t) in solved.z:
            ask = book.asks[a_idx[a]]
            sold_lp[(ask.site, ask.resource_class, t)].append(a_idx[a])
    bid_fills, bids_out, demand, flows = _bid_money(book, bid_units, prices, congestion)
    ask_fills, asks_out = _ask_money(book, demand, sold_lp, prices)
    rent_exact = sum(flow * congestion.get(key, 0) for key, flow in flows.items())
    rent = round_ratio(rent_exact, CF)
    charged = sum(b.pays_fen + b.make_whole_fen for b in bids_out)
    make_whole = sum(b.make_whole_fen for b in bids_out)
    rounding = charged - sum(a.earns_fen for a in asks_out) - rent
    welfare = sum(book.bids[i].limit_fen * sum(u.values()) for i, u in bid_units.items()) - sum(
        book.asks[i].floor_fen * f.units for f in ask_fills for i in [_ask_index(book, f.ask_id)])
    node_prices = tuple(NodePrice(s, c, t, p, demand.get((s, c, t), 0)) for (s, c, t), p in sorted(prices.items()))
    link_prices = tuple(LinkPrice(k[0], k[1], t, p, flows.get((k, t), 0)) for (k, t), p in sorted(congestion.items()))
    return Clearing(status, gap, welfare, lp_welfare, elapsed, node_prices, link_prices, tuple(bid_fills),
                    tuple(ask_fills), tuple(bids_out), tuple(asks_out), rent, make_whole, rounding, len(results))


def _ask_index(book: Book, ask_id: str) -> int:
    lo, hi = 0, len(book.asks)
    while lo < hi:
        mid = (lo + hi) // 2
        if book.asks[mid].id < ask_id:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _bid_money(book: Book, bid_units: dict[int, dict[tuple[SiteId, Slot], int]],
               prices: dict[tuple[SiteId, ResourceClass, Slot], int], congestion: dict[tuple[LinkKey, Slot], int],
               ) -> tuple[list[BidFill], list[BidOutcome], dict[tuple[SiteId, ResourceClass, Slot], int],
                          dict[tuple[LinkKey, Slot], int]]:
    fills: list[BidFill] = []
    outcomes: list[BidOutcome] = []
    demand: dict[tuple[SiteId, ResourceClass, Slot], int] = defaultdict(int)
    flows: dict[tuple[LinkKey, Slot], int] = defaultdict(int)
    for i in sorted(bid_units):
        bid = book.bids[i]
        charge_cf = congestion_cf = 0
        for (site, t), units in sorted(bid_units[i].items()):
            node = (site, bid.resource_class, t)
            key = bid.link_to(site)
            mu = congestion.get((key, t), 0) if key is not None else 0
            price = prices[node] + bid.data_gb_per_unit * mu
            fills.append(BidFill(bid.id, site, t, units, price))
            demand[node] += units
            if key is not None:
                flows[(key, t)] += units * bid.data_gb_per_unit
            charge_cf += units * price
            congestion_cf += units * bid.data_gb_per_unit * mu
        filled = sum(bid_units[i].values())
        charge = round_ratio(charge_cf, CF)
        make_whole = max(0, charge - bid.limit_fen * filled)
        outcomes.append(BidOutcome(bid.id, bid.consumer, filled, charge - make_whole, make_whole,
                                   round_ratio(congestion_cf, CF)))
    return fills, outcomes, demand, {k: v for k, v in flows.items() if v}


def _ask_money(book: Book, demand: dict[tuple[SiteId, ResourceClass, Slot], int],
               sold_lp: dict[tuple[SiteId, ResourceClass, Slot], list[int]],
               prices: dict[tuple[SiteId, ResourceClass, Slot], int]) -> tuple[list[AskFill], list[AskOutcome]]:
    """Supply each node's whole-unit demand from the asks that sold there, in merit order."""
    sold: dict[int, list[tuple[Slot, int]]] = defaultdict(list)
    for node in sorted(demand):
        need = demand[node]
        for a in sorted(sold_lp.get(node, []), key=lambda a: (book.asks[a].floor_fen, a)):
            if need == 0:
                break
            take = min(need, book.asks[a].units_per_slot)
            sold[a].append((node[2], take))
            need -= take
        assert need == 0, f"node {node} short of supply by {need}"
    fills: list[AskFill] = []
    outcomes: list[AskOutcome] = []
    for a in sorted(sold):
        ask = book.asks[a]
        earns_cf = 0
        for t, units in sorted(sold[a]):
            price = prices[(ask.site, ask.resource_class, t)]
            fills.append(AskFill(ask.id, t, units, price))
            earns_cf += units * price
        outcomes.append(AskOutcome(ask.id, ask.provider, sum(u for _, u in sold[a]), round_ratio(earns_cf, CF)))
    return fills, outcomes
