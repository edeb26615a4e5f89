"""Builders and a checker for market tests: books in the domain language, and every rule of the
rule book (docs/market.md) asserted on a clearing result."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import strategies as st

from suanwang.domain.market import Ask, Bid, Clearing, Link
from suanwang.domain.market.clearing import CF
from suanwang.domain.market.order import Book

SITES = ("qingyang", "wuhu", "zhongwei")
CLASSES = ("general", "intelligent")


def an_ask(id: str, *, site: str = "qingyang", cls: str = "intelligent", start: int = 0, end: int = 2,
           units: int = 8, floor: int = 100, provider: str = "p1") -> Ask:
    return Ask(id, provider, site, cls, start, end, units, floor)


def a_bid(id: str, *, sites: tuple[str, ...] = ("qingyang",), cls: str = "intelligent", start: int = 0,
          end: int = 2, quantity: int = 8, rate: int = 4, limit: int = 200, gang: bool = False,
          data_site: str | None = None, data_gb: int = 0, consumer: str = "c1") -> Bid:
    return Bid(id, consumer, cls, sites, start, end, quantity, rate, limit, gang, data_site, data_gb)


@st.composite
def books(draw: st.DrawFn, *, links: bool = True, gangs: bool = True) -> tuple[list[Ask], list[Bid], list[Link]]:
    asks = []
    for i in range(draw(st.integers(0, 6))):
        start = draw(st.integers(0, 3))
        asks.append(an_ask(f"a{i}", site=draw(st.sampled_from(SITES)), cls=draw(st.sampled_from(CLASSES)),
                           start=start, end=start + draw(st.integers(1, 3)), units=draw(st.integers(1, 10)),
                           floor=draw(st.integers(0, 300)), provider=f"p{i % 2}"))
    bids = []
    for i in range(draw(st.integers(0, 8))):
        start = draw(st.integers(0, 3))
        end = start + draw(st.integers(1, 3))
        rate = draw(st.integers(1, 8))
        gang = gangs and draw(st.booleans()) and draw(st.booleans())
        quantity = rate * (end - start) if gang else draw(st.integers(1, 20))
        data_site = draw(st.sampled_from(SITES)) if links and draw(st.booleans()) else None
        sites = tuple(sorted(draw(st.sets(st.sampled_from(SITES), min_size=1, max_size=3))))
        bids.append(a_bid(f"b{i}", sites=sites, cls=draw(st.sampled_from(CLASSES)), start=start, end=end,
                          quantity=quantity, rate=rate, limit=draw(st.integers(1, 400)), gang=gang,
                          data_site=data_site, data_gb=draw(st.integers(1, 3)) if data_site else 0,
                          consumer=f"c{i % 3}"))
    link_list = []
    if links:
        for a, b in (("qingyang", "wuhu"), ("wuhu", "zhongwei")):
            if draw(st.booleans()):
                link_list.append(Link(a, b, draw(st.integers(0, 12))))
    return asks, bids, link_list


def check_rules(book: Book, result: Clearing) -> None:
    """Every invariant of the rule book that holds for any book."""
    bids = {b.id: b for b in book.bids}
    asks = {a.id: a for a in book.asks}
    caps = {link.key: link.gb_per_slot for link in book.links}
    node_buy: dict[tuple[str, str, int], int] = defaultdict(int)
    node_sell: dict[tuple[str, str, int], int] = defaultdict(int)
    per_bid_slot: dict[tuple[str, int], int] = defaultdict(int)
    link_use: dict[tuple[tuple[str, str], int], int] = defaultdict(int)
    for f in result.bid_fills:
        bid = bids[f.bid_id]
        assert f.units > 0 and f.site in bid.sites and bid.start_slot <= f.slot < bid.end_slot
        node_buy[(f.site, bid.resource_class, f.slot)] += f.units
        per_bid_slot[(f.bid_id, f.slot)] += f.units
        key = bid.link_to(f.site)
        if key is not None and key in caps:
            link_use[(key, f.slot)] += f.units * bid.data_gb_per_unit
        # no divisible fill priced above its limit (a price tick for each GB of congestion it carries);
        # an all-or-nothing bid may be, and is then made whole (its money still never exceeds the limit)
        assert bid.all_or_nothing or f.price_cf <= bid.limit_fen * CF + 1 + bid.data_gb_per_unit, (f, bid.limit_fen)
    for (bid_id, _), units in per_bid_slot.items():
        assert units <= bids[bid_id].rate_per_slot
    for f in result.ask_fills:
        ask = asks[f.ask_id]
        assert 0 < f.units <= ask.units_per_slot and ask.start_slot <= f.slot < ask.end_slot
        assert f.price_cf >= ask.floor_fen * CF, (f, ask.floor_fen)  # never below the floor
        node_sell[(ask.site, ask.resource_class, f.slot)] += f.units
    assert dict(node_buy) == dict(node_sell)  # every unit bought was sold at the same node
    for (key, _), gb in link_use.items():
        assert gb <= caps[key]
    for out in result.bids:
        bid = bids[out.bid_id]
        assert out.filled == sum(f.units for f in result.bid_fills if f.bid_id == out.bid_id)
        assert out.filled <= bid.quantity
        assert out.pays_fen <= bid.limit_fen * out.filled  # money never above the limit
        if bid.all_or_nothing:
            assert out.filled in (0, bid.quantity)
            assert len({f.site for f in result.bid_fills if f.bid_id == out.bid_id}) <= 1
    pays = sum(b.pays_fen + b.make_whole_fen for b in result.bids)
    earns = sum(a.earns_fen for a in result.asks)
    assert pays - earns == result.congestion_rent_fen + result.rounding_fen
    assert result.congestion_rent_fen >= 0
    assert abs(result.rounding_fen) <= len(result.bids) + len(result.asks) + 1
    if not book.links:
        assert result.congestion_rent_fen == 0


def check_equilibrium(book: Book, result: Clearing) -> None:
    """Accepted divisible bids' limits >= their price; rejected ones' <= their price where supply is."""
    prices = {(p.site, p.resource_class, p.slot): p.price_cf for p in result.prices}
    mu = {((c.a, c.b), c.slot): c.price_cf for c in result.congestion}
    filled = {b.bid_id: b.filled for b in result.bids}
    for bid in book.bids:
        if bid.all_or_nothing:
            continue
        for site in bid.sites:
            for t in range(bid.start_slot, bid.end_slot):
                node = (site, bid.resource_class, t)
                if node not in prices:
                    continue  # nobody supplies there: no price, nothing to trade
                key = bid.link_to(site)
                price = prices[node] + (bid.data_gb_per_unit * mu.get((key, t), 0) if key else 0)
                tol = 1 + bid.data_gb_per_unit
                if filled.get(bid.id, 0) == 0:
                    assert bid.limit_fen * CF <= price + tol, (bid, node, price)
