"""Market clearing time on synthetic books, welfare against greedy, and a determinism check.

    PYTHONPATH=src python bench/market.py [--quick] [--runs N]

Books: 20 sites, 6 resource classes, 24 hourly slots, 20 % asks (a site and class, 4-24 slots,
10-200 units per slot, a floor by class), 80 % bids (1-5 acceptable sites, a 1-4 slot window,
1-16 units per slot for the whole window, a limit around the class's floors; 5 % of them
all-or-nothing, which makes the parts they touch MIPs).  The link case gives
half the bids a data site (1-4 GB per unit-slot) and every pair of sites a link of 40-400 GB per
slot.  Each figure is ``clear_book`` end to end (canonical order, programmes, whole-unit fills,
prices, money) as a session's clear runs it, over >= 3 runs (median, min, max, runs).  Welfare
ratio: the clearing's welfare / greedy matching's on the 10,000-order book.  Determinism: the
10,000-order book with links, shuffled, clears to byte-identical canonical JSON.
Wall seconds are the figures; CPU seconds of the process are recorded beside them, since on a
shared machine the wall clock also counts other people's work.
Writes bench/results/market.json; the last stdout line is one JSON object.
Targets: 10k <= 3 s, 100k <= 60 s, 10k with links <= 10 s.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from suanwang.domain.market import Ask, Bid, Link, canonical_book, clear_book
from suanwang.domain.market.greedy import greedy_welfare

SITES = [f"site{i:02d}" for i in range(20)]
CLASSES = ["general", "intelligent", "super", "quantum", "edge", "storage"]
BASE_FEN = {c: 100 * (i + 1) for i, c in enumerate(CLASSES)}
SLOTS = 24
AON_SHARE = 0.05  # bids that are all-or-nothing (gangs: rate units at one site in every slot of the window)


def make_book(n_orders: int, *, links: bool, seed: int) -> tuple[list[Ask], list[Bid], list[Link]]:
    rnd = random.Random(seed)  # nosec B311  # a reproducible synthetic order book, not a secret
    n_asks = n_orders // 5
    asks = []
    for i in range(n_asks):
        cls = rnd.choice(CLASSES)
        start = rnd.randrange(0, SLOTS - 4)
        asks.append(Ask(f"a{i:06d}", f"p{i % 50}", rnd.choice(SITES), cls, start,
                        min(SLOTS, start + rnd.randint(4, 24)), rnd.randint(10, 200),
                        int(BASE_FEN[cls] * rnd.uniform(0.5, 1.5))))
    bids = []
    for i in range(n_orders - n_asks):
        cls = rnd.choice(CLASSES)
        start = rnd.randrange(0, SLOTS)
        end = min(SLOTS, start + rnd.randint(1, 4))
        rate = rnd.randint(1, 16)
        data_site = rnd.choice(SITES) if links and rnd.random() < 0.5 else None
        gang = rnd.random() < AON_SHARE
        bids.append(Bid(f"b{i:06d}", f"c{i % 500}", cls, tuple(rnd.sample(SITES, rnd.randint(1, 5))), start, end,
                        rate * (end - start), rate, int(BASE_FEN[cls] * rnd.uniform(0.4, 1.8)), gang,
                        data_site=data_site, data_gb_per_unit=rnd.randint(1, 4) if data_site else 0))
    link_list = [Link(a, b, rnd.randint(40, 400)) for i, a in enumerate(SITES) for b in SITES[i + 1:]] if links else []
    return asks, bids, link_list


def timed(n_orders: int, *, links: bool, runs: int) -> dict[str, Any]:
    asks, bids, link_list = make_book(n_orders, links=links, seed=n_orders + links)
    bids_by_id = {b.id: b for b in bids}
    values, cpu = [], []
    result = None
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = clear_book(asks, bids, link_list, time_limit_s=120.0)
        values.append(round(time.perf_counter() - started, 3))
        cpu.append(round(time.process_time() - started_cpu, 3))
    assert result is not None
    return {"orders": n_orders, "links": links, "median_s": statistics.median(values), "min_s": min(values),
            "max_s": max(values), "runs": values,
            "cpu_median_s": statistics.median(cpu), "cpu_runs": cpu, "status": result.status, "parts": result.parts,
            "welfare_fen": result.welfare_fen, "traded_unit_slots": sum(b.filled for b in result.bids),
            "binding_link_slots": sum(1 for c in result.congestion if c.price_cf > 0),
            "all_or_nothing_bids": sum(1 for b in bids if b.all_or_nothing),
            "all_or_nothing_filled": sum(1 for b in result.bids if b.filled and bids_by_id[b.bid_id].all_or_nothing),
            "make_whole_fen": result.make_whole_fen, "gap": result.gap,
            "congestion_rent_fen": result.congestion_rent_fen, "rounding_fen": result.rounding_fen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller books (2,000 / 20,000 / 2,000 orders)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = max(3, args.runs)
    small, large = (2_000, 20_000) if args.quick else (10_000, 100_000)
    figures = {"10k": timed(small, links=False, runs=runs)}
    print(f"{small} orders: {figures['10k']['median_s']} s", file=sys.stderr)
    figures["10k_links"] = timed(small, links=True, runs=runs)
    print(f"{small} orders with links: {figures['10k_links']['median_s']} s", file=sys.stderr)
    figures["100k"] = timed(large, links=False, runs=runs)
    print(f"{large} orders: {figures['100k']['median_s']} s", file=sys.stderr)
    asks, bids, link_list = make_book(small, links=False, seed=small)
    greedy = greedy_welfare(canonical_book(asks, bids))
    ratio = figures["10k"]["welfare_fen"] / greedy if greedy else 1.0
    asks, bids, link_list = make_book(small, links=True, seed=small + 1)
    first = clear_book(asks, bids, link_list).canonical_json()
    rnd = random.Random(7)  # nosec B311  # a reproducible synthetic order book, not a secret
    rnd.shuffle(asks)
    rnd.shuffle(bids)
    rnd.shuffle(link_list)
    deterministic = clear_book(asks, bids, link_list).canonical_json() == first
    summary = {"clear_s_10k": figures["10k"]["median_s"], "clear_s_100k": figures["100k"]["median_s"],
               "clear_s_10k_links": figures["10k_links"]["median_s"],
               "welfare_ratio_to_greedy": round(ratio, 4), "deterministic": deterministic,
               "cpu_s_10k": figures["10k"]["cpu_median_s"], "cpu_s_100k": figures["100k"]["cpu_median_s"],
               "cpu_s_10k_links": figures["10k_links"]["cpu_median_s"],
               "orders": {"10k": small, "100k": large}, "quick": args.quick}
    out = Path(__file__).parent / "results" / "market.json"
    out.write_text(json.dumps({"summary": summary, "figures": figures, "greedy_welfare_fen": greedy,
                               "machine": platform.platform(), "python": platform.python_version()}, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
