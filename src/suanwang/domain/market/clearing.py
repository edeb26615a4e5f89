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

from suanwang.domain.market.lp import RELAX_AND_FIX_OVER, Node, Solved, Warm, add_link_rows, solve_group
from suanwang.domain.market.order import Ask, Bid, Book, Link, LinkKey, ResourceClass, SiteId, Slot, canonical_book
from suanwang.domain.money import round_ratio

CF = 100  # centi-fen per fen: the price tick
NEAR_FULL = 0.95  # a link-slot this full gets its rows with the overloaded ones (fewer rounds)


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
    parts: int  # independent programmes the book fell apart into (see _components)

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
    solved, n_parts = _solve(book, time_limit_s)
    return _settle(book, solved, n_parts, time.perf_counter() - started)


# ---------------------------------------------------------------- solving


LinkSlot = tuple[LinkKey, Slot]
Part = tuple[list[int], list[int], set[Node]]  # ask indexes, bid indexes, the nodes it prices
PartId = tuple[tuple[int, ...], tuple[int, ...], tuple[Node, ...]]  # asks, bids, nodes: one bid may span parts
PartKey = tuple[tuple[int, ...], tuple[int, ...], tuple[Node, ...], tuple[LinkSlot, ...]]


def _solve(book: Book, time_limit_s: float) -> tuple[Solved, int]:
    """Row generation over (link, slot): solve the parts, add the rows of overloaded link-slots, repeat.

    A part whose orders and link rows did not change keeps its solution (a cache keyed by them).
    """
    n_orders = len(book.asks) + len(book.bids)
    capacity = {link.key: link.gb_per_slot for link in book.links}
    active: set[LinkSlot] = set()
    cache: dict[tuple[PartKey, bool], Solved] = {}
    warm: dict[PartId, Warm] = {}  # linear parts kept for the next round's rows
    gangs_and_links = relax = bool(capacity) and any(b.all_or_nothing for b in book.bids)  # relaxation's rounds
    while True:
        parts = _components(book, active, capacity)
        solved: list[Solved] = []
        fresh: dict[tuple[PartKey, bool], Solved] = {}
        kept: dict[PartId, Warm] = {}
        for pa, pb, pn in parts:
            links = _part_links(book, pb, pn, active, capacity)
            gangs = any(book.bids[i].all_or_nothing for i in pb)
            orders: PartId = (tuple(pa), tuple(pb), tuple(sorted(pn)))  # the same orders may form a part per slot
            key = ((*orders, tuple(sorted(links))), relax and gangs)
            part = cache.get(key)
            linear = relax or not gangs
            kept_part = warm.get(orders)
            if kept_part is not None and not kept_part.m.link_rows.keys() <= links.keys():
                kept_part = None
            big = kept_part is not None and len(kept_part.m.integer) > RELAX_AND_FIX_OVER
            if part is None and kept_part is not None and (linear or big):  # warm: add the new link rows
                part = add_link_rows(kept_part, links, book.bids, relax=key[1], fix_whole=not linear)
                kept[orders] = kept_part
            elif part is None:
                keep: list[Warm] = []
                part = solve_group(asks=[(i, book.asks[i]) for i in pa], bids=[(i, book.bids[i]) for i in pb],
                                   nodes=pn, n_asks=len(book.asks), n_orders=n_orders, links=links,
                                   time_limit_s=time_limit_s, relax=key[1], keep=keep if capacity else None)
                if keep:
                    kept[orders] = keep[0]
            elif orders in warm:
                kept[orders] = warm[orders]
            fresh[key] = part
            solved.append(part)
        cache, warm = fresh, {**warm, **kept}
        merged = _merge(solved)
        over, near = _overloaded(book, merged, capacity)
        if not over - active:
            if relax:  # the link rows the relaxation needs are in: now the whole-number programmes
                relax = False
                continue
            return merged, len(parts)
        active |= over | near  # rows for nearly full link-slots too: they tend to overload next round
        relax = gangs_and_links  # whole fills overloaded a link-slot: back to the (warm) relaxation's rounds


def _part_links(book: Book, bids: list[int], nodes: set[Node], active: set[LinkSlot],
                capacity: dict[LinkKey, int]) -> dict[LinkSlot, int]:
    out: dict[LinkSlot, int] = {}
    if not active:
        return out
    for i in bids:
        bid = book.bids[i]
        for site in bid.sites:
            key = bid.link_to(site)
            if key is None or key not in capacity:
                continue
            for t in range(bid.start_slot, bid.end_slot):
                if (key, t) in active and (site, bid.resource_class, t) in nodes:
                    out[(key, t)] = capacity[key]
    return out


def _components(book: Book, active: set[LinkSlot], capacity: dict[LinkKey, int]) -> list[Part]:
    """Split the book into parts that share no row: nodes joined by a bid's rows or an active link row.

    Classes share nothing but links, so without binding links every part is within one class.  A
    divisible bid whose quantity cannot bind (quantity >= rate x window) couples its sites only within
    each slot, so a book of such bids falls apart into one small programme per (class, slot) (the
    network-flow form); a flexible or all-or-nothing bid joins all its nodes.
    """
    node_of_ask: list[tuple[int, list[Node]]] = []
    nodes: set[Node] = set()
    for i, ask in enumerate(book.asks):
        own = [(ask.site, ask.resource_class, t) for t in range(ask.start_slot, ask.end_slot)]
        nodes.update(own)
        node_of_ask.append((i, own))
    parent: dict[Node | tuple[LinkKey, Slot], Node | tuple[LinkKey, Slot]] = {n: n for n in nodes}

    def find(n: Node | tuple[LinkKey, Slot]) -> Node | tuple[LinkKey, Slot]:
        root = n
        while parent[root] != root:
            root = parent[root]
        while parent[n] != root:
            parent[n], n = root, parent[n]
        return root

    def union(group: list[Node | tuple[LinkKey, Slot]]) -> None:
        if len(group) > 1:
            root = find(group[0])
            for n in group[1:]:
                other = find(n)
                if other != root:
                    parent[other] = root

    bid_nodes: list[tuple[int, list[Node]]] = []
    for i, bid in enumerate(book.bids):
        slots = range(bid.start_slot, bid.end_slot)
        own = [(s, bid.resource_class, t) for t in slots for s in bid.sites if (s, bid.resource_class, t) in nodes]
        if not own:
            continue
        whole = bid.all_or_nothing or bid.quantity < bid.rate_per_slot * len({n[2] for n in own})
        per_slot: dict[Slot, list[Node | tuple[LinkKey, Slot]]] = defaultdict(list)
        for node in own:
            per_slot[0 if whole else node[2]].append(node)
            key = bid.link_to(node[0])
            if key is not None and (key, node[2]) in active:
                link_node = (key, node[2])
                parent.setdefault(link_node, link_node)
                per_slot[0 if whole else node[2]].append(link_node)
        for group in per_slot.values():
            union(group)
        bid_nodes.append((i, own))
    parts: dict[Node | tuple[LinkKey, Slot], Part] = {}
    for i, own in bid_nodes:
        for root in {find(n) for n in own}:
            parts.setdefault(root, ([], [], set()))[1].append(i)
    for i, own in node_of_ask:
        for n in own:
            part = parts.get(find(n))
            if part is not None:
                if not part[0] or part[0][-1] != i:
                    part[0].append(i)
                part[2].add(n)
    return [parts[r] for r in sorted(parts, key=repr) if parts[r][0]]


def _merge(parts: list[Solved]) -> Solved:
    if not parts:
        return Solved("empty", 0.0, 0.0, 0.0, {}, {}, {}, {}, {})
    statuses = {p.status for p in parts} - {"empty"}
    status = "optimal" if statuses <= {"optimal"} else ",".join(sorted(statuses - {"optimal"}))
    merged = Solved(status if statuses else "empty", max(p.gap for p in parts), sum(p.lp_welfare for p in parts),
                    sum(p.solve_s for p in parts), {}, {}, {}, {}, {})
    for p in parts:
        merged.x.update(p.x)
        merged.y.update(p.y)
        merged.prices.update(p.prices)
        merged.congestion.update(p.congestion)
        merged.z.update(p.z)
    return merged


def _overloaded(book: Book, solved: Solved, capacity: dict[LinkKey, int]) -> tuple[set[LinkSlot], set[LinkSlot]]:
    """Link-slots over their bandwidth, and those above ``NEAR_FULL`` of it."""
    if not capacity:
        return set(), set()
    use: dict[LinkSlot, float] = defaultdict(float)
    for (b, site, t), units in solved.x.items():
        bid = book.bids[b]
        key = bid.link_to(site)
        if key is not None and key in capacity:
            use[(key, t)] += units * bid.data_gb_per_unit
    for b, site in solved.y:
        bid = book.bids[b]
        key = bid.link_to(site)
        if key is not None and key in capacity:
            for t in range(bid.start_slot, bid.end_slot):
                use[(key, t)] += bid.rate_per_slot * bid.data_gb_per_unit
    over = {ks for ks, gb in use.items() if gb > capacity[ks[0]] + 1e-6}
    return over, {ks for ks, gb in use.items() if gb >= NEAR_FULL * capacity[ks[0]]}


# ---------------------------------------------------------------- money


def _cf(value: float) -> int:
    return max(0, round(value * CF)) if math.isfinite(value) else 0


def _settle(book: Book, solved: Solved, n_parts: int, elapsed: float) -> Clearing:
    prices = {node: _cf(p) for node, p in solved.prices.items()}
    congestion = {key: _cf(mu) for key, mu in solved.congestion.items()}
    bid_units: dict[int, dict[tuple[SiteId, Slot], int]] = defaultdict(dict)
    sold_lp: dict[tuple[SiteId, ResourceClass, Slot], list[int]] = defaultdict(list)
    for (b, site, t), units in solved.x.items():
        whole = math.floor(units + 1e-6)
        if whole > 0:
            bid_units[b][(site, t)] = whole
    for b, site in solved.y:
        bid = book.bids[b]
        for t in range(bid.start_slot, bid.end_slot):
            bid_units[b][(site, t)] = bid.rate_per_slot
    for (a, t) in solved.z:
        ask = book.asks[a]
        sold_lp[(ask.site, ask.resource_class, t)].append(a)
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
    return Clearing(solved.status, solved.gap, welfare, solved.lp_welfare, elapsed, node_prices, link_prices,
                    tuple(bid_fills), tuple(ask_fills), tuple(bids_out), tuple(asks_out), rent, make_whole, rounding,
                    n_parts)


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
