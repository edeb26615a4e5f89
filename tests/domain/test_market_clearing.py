"""The clearing core against the rule book (docs/market.md): hypothesis books and worked examples."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanwang.domain.market import Link, canonical_book, clear_book
from suanwang.domain.market.greedy import greedy_welfare
from suanwang.errors import InvalidSpec
from tests.domain.market_builders import a_bid, an_ask, books, check_equilibrium, check_rules

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(books())
def test_every_rule_holds_on_any_book(book_parts) -> None:
    asks, bids, links = book_parts
    result = clear_book(asks, bids, links)
    book = canonical_book(asks, bids, links)
    check_rules(book, result)
    check_equilibrium(book, result)
    assert result.lp_welfare_fen >= greedy_welfare(book) - 1e-6


@FAST
@given(books(links=False))
def test_welfare_of_whole_fills_is_at_least_greedy_without_links(book_parts) -> None:
    asks, bids, _ = book_parts
    result = clear_book(asks, bids)
    assert result.welfare_fen >= greedy_welfare(canonical_book(asks, bids))
    assert result.gap == 0.0


@FAST
@given(books(), st.randoms(use_true_random=False))
def test_a_shuffled_book_gives_a_byte_identical_result(book_parts, rnd: random.Random) -> None:
    asks, bids, links = book_parts
    first = clear_book(asks, bids, links).canonical_json()
    rnd.shuffle(asks)
    rnd.shuffle(bids)
    rnd.shuffle(links)
    assert clear_book(asks, bids, links).canonical_json() == first


@FAST
@given(books(links=False), st.integers(0, 7), st.integers(1, 300))
def test_raising_a_divisible_bids_limit_never_lowers_its_fill(book_parts, which: int, raise_by: int) -> None:
    asks, bids, _ = book_parts
    divisible = [i for i, b in enumerate(bids) if not b.all_or_nothing]
    if not divisible:
        return
    i = divisible[which % len(divisible)]
    before = {b.bid_id: b.filled for b in clear_book(asks, bids).bids}.get(bids[i].id, 0)
    bids[i] = replace(bids[i], limit_fen=bids[i].limit_fen + raise_by)
    after = {b.bid_id: b.filled for b in clear_book(asks, bids).bids}.get(bids[i].id, 0)
    assert after >= before


@pytest.mark.parametrize(("asks", "bids"), [([], []), ([an_ask("a1")], []), ([], [a_bid("b1")])])
def test_empty_and_one_sided_books_clear_to_nothing(asks, bids) -> None:
    result = clear_book(asks, bids)
    assert result.bid_fills == () and result.ask_fills == () and result.welfare_fen == 0
    assert result.congestion_rent_fen == result.rounding_fen == result.make_whole_fen == 0


def test_uniform_price_is_set_by_the_marginal_order() -> None:
    # 10 units offered at 100 and 10 at 150; 15 wanted at 300 and 10 at 120: the 120 bid is marginal
    result = clear_book([an_ask("a1", units=10, floor=100, end=1), an_ask("a2", units=10, floor=150, end=1)],
                        [a_bid("b1", quantity=15, rate=15, limit=300, end=1),
                         a_bid("b2", quantity=10, rate=10, limit=120, end=1)])
    assert [(p.price_cf, p.volume) for p in result.prices] == [(15000, 15)]
    assert {b.bid_id: (b.filled, b.pays_fen) for b in result.bids} == {"b1": (15, 2250)}
    assert {a.ask_id: (a.sold, a.earns_fen) for a in result.asks} == {"a1": (10, 1500), "a2": (5, 750)}


def test_a_binding_link_prices_congestion_and_its_rent_is_collected() -> None:
    # wuhu has cheap capacity but the consumer's data is in qingyang, over a 4 GB-per-slot link
    asks = [an_ask("a1", site="qingyang", units=10, floor=200, end=1),
            an_ask("a2", site="wuhu", units=10, floor=100, end=1)]
    bids = [a_bid("b1", sites=("qingyang", "wuhu"), quantity=6, rate=6, limit=300, end=1,
                  data_site="qingyang", data_gb=2)]
    result = clear_book(asks, bids, [Link("qingyang", "wuhu", 4)])
    fills = {(f.site, f.units, f.price_cf) for f in result.bid_fills}
    # 2 units fit through the link at wuhu (price 100 + 2 GB x 50 congestion), 4 stay in qingyang at 200
    assert fills == {("wuhu", 2, 20000), ("qingyang", 4, 20000)}
    assert [(c.price_cf, c.flow_gb) for c in result.congestion] == [(5000, 4)]
    assert result.congestion_rent_fen == 200
    assert result.bids[0].pays_fen == 1200 and result.bids[0].congestion_fen == 200


def test_an_all_or_nothing_bid_is_filled_whole_or_not_at_all() -> None:
    asks = [an_ask("a1", units=6, floor=100, end=2)]
    gang = a_bid("g1", quantity=16, rate=8, limit=500, gang=True, end=2)  # 8 cards, only 6 offered
    small = a_bid("b1", quantity=4, rate=2, limit=150, end=2)
    result = clear_book(asks, [gang, small])
    assert {b.bid_id: b.filled for b in result.bids} == {"b1": 4}
    result = clear_book([an_ask("a1", units=10, floor=100, end=2)], [gang, small])
    assert {b.bid_id: b.filled for b in result.bids} == {"g1": 16, "b1": 4}


def test_an_all_or_nothing_bid_priced_above_its_limit_gets_make_whole() -> None:
    # the gang (limit 120) is worth taking whole; the divisible bid at 150 sets the price above 120
    asks = [an_ask("a1", units=10, floor=100, end=1)]
    bids = [a_bid("g1", quantity=8, rate=8, limit=130, gang=True, end=1),
            a_bid("b1", quantity=4, rate=4, limit=150, end=1)]
    result = clear_book(asks, bids)
    by_id = {b.bid_id: b for b in result.bids}
    assert by_id["g1"].filled == 8
    assert by_id["g1"].pays_fen <= 130 * 8
    assert result.make_whole_fen == sum(b.make_whole_fen for b in result.bids)
    check_rules(canonical_book(asks, bids), result)


def test_equal_bids_are_split_by_canonical_rank() -> None:
    asks = [an_ask("a1", units=4, floor=100, end=1)]
    bids = [a_bid("b2", quantity=4, rate=4, limit=200, end=1), a_bid("b1", quantity=4, rate=4, limit=200, end=1)]
    assert {b.bid_id: b.filled for b in clear_book(asks, bids).bids} == {"b1": 4}


@pytest.mark.parametrize(("bid", "field"), [
    (a_bid("b1", quantity=0), "quantity"), (a_bid("b1", quantity=-3), "quantity"),
    (a_bid("b1", start=3, end=2), "end_slot"), (a_bid("b1", limit=10**12), "limit_fen"),
    (a_bid("b1", rate=2**70), "rate_per_slot"), (a_bid("b1", sites=()), "sites"),
    (a_bid("b1", gang=True, quantity=3, rate=2), "all-or-nothing"),
])
def test_a_bad_order_is_refused_naming_the_field(bid, field: str) -> None:
    with pytest.raises(InvalidSpec, match=field):
        clear_book([an_ask("a1")], [bid])


@pytest.mark.parametrize("seed", [1, 2])
def test_a_large_book_of_gangs_and_links_is_relaxed_and_fixed_within_every_rule(seed: int) -> None:
    """More all-or-nothing bids in a part than RELAX_AND_FIX_OVER: no search, the relaxation's whole decisions
    kept (row generation warm-started); every rule still holds, the gap is stated, a shuffle changes nothing."""
    from suanwang.domain.market.lp import RELAX_AND_FIX_OVER

    rnd = random.Random(seed)
    sites = ["s1", "s2", "s3", "s4"]
    asks = [an_ask(f"a{i:03d}", site=rnd.choice(sites), start=rnd.randrange(0, 3), end=rnd.randrange(3, 6),
                   units=rnd.randint(2, 20), floor=rnd.randint(50, 150)) for i in range(40)]
    bids = []
    for i in range(240):
        start = rnd.randrange(0, 5)
        end = min(6, start + rnd.randint(1, 3))
        rate, gang = rnd.randint(1, 6), i % 2 == 0
        data = rnd.choice(sites) if rnd.random() < 0.5 else None
        bids.append(a_bid(f"b{i:03d}", sites=tuple(sorted(rnd.sample(sites, rnd.randint(1, 3)))), start=start,
                          end=end, rate=rate, quantity=rate * (end - start), limit=rnd.randint(60, 300), gang=gang,
                          data_site=data, data_gb=rnd.randint(1, 3) if data else 0))
    links = [Link(a, b, rnd.randint(2, 12)) for i, a in enumerate(sites) for b in sites[i + 1:]]
    assert sum(b.all_or_nothing for b in bids) > RELAX_AND_FIX_OVER
    result = clear_book(asks, bids, links)
    check_rules(canonical_book(asks, bids, links), result)
    assert result.status in ("optimal", "feasible") and 0 <= result.gap < 1
    rnd.shuffle(asks)
    rnd.shuffle(bids)
    assert clear_book(asks, bids, links[::-1]).canonical_json() == result.canonical_json()


def test_one_bid_in_a_part_per_slot_gets_each_slots_link_row() -> None:
    """The same orders form one part per slot: each part keeps its own solution between rounds."""
    asks = [an_ask("a1", units=10, floor=100)]
    bids = [a_bid("b1", quantity=12, rate=6, limit=300, data_site="wuhu", data_gb=1)]
    result = clear_book(asks, bids, [Link("qingyang", "wuhu", 1)])
    assert result.bids[0].filled == 2 and [c.flow_gb for c in result.congestion] == [1, 1]


def test_a_solver_failure_raises_instead_of_clearing_to_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """HiGHS refusing to run (e.g. a thread count the process's scheduler was not started with) must fail the
    clear, to be tried again, never book a session as cleared with no fills."""
    import highspy

    from suanwang.domain.market import lp

    monkeypatch.setattr(highspy.Highs, "run", lambda self: highspy.HighsStatus.kError)
    with pytest.raises(lp.SolverError, match="HiGHS failed"):
        clear_book([an_ask("a0")], [a_bid("b0")])
