"""Benchmark of the pure money core: rating, MemoryLedger apply, settlement.

Run:  PYTHONPATH=src python bench/money_rating.py [--quick]
Writes bench/results/money_rating.json; the last stdout line is one JSON object.
These are in-memory figures of the pure core (no database): an upper bound for
what the store adapters can reach, not a replacement for their benchmarks.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from suanwang.domain.ledger import plan_topup
from suanwang.domain.memory_ledger import MemoryLedger
from suanwang.domain.pricing import PriceBook, PriceEntry, PriceUnit
from suanwang.domain.rating import ProviderContract, UsageRecord, plan_charge, rate_usage
from suanwang.domain.resources import ResourceClass, ServiceLevel
from suanwang.domain.tou import CHINA_TZ, tou_tariff_for_province

T0 = datetime(2026, 3, 2, tzinfo=CHINA_TZ)


def records(n: int) -> list[UsageRecord]:
    """n one-hour-ish usage records spread over a month, so many cross time-of-use boundaries."""
    out = []
    for i in range(n):
        start = T0 + timedelta(minutes=37 * i % (30 * 24 * 60))
        out.append(
            UsageRecord(
                f"job-{i // 10}",
                0,
                i % 10,
                f"c{i % 50}",
                f"p{i % 5}",
                "qingyang",
                "qy-cpu",
                ResourceClass.GENERAL,
                "standard",
                ServiceLevel.STANDARD,
                start,
                start + timedelta(minutes=75),
                ((PriceUnit.SCU, Decimal("2.5")),),
            )
        )
    return out


def run(n: int) -> dict[str, object]:
    book = PriceBook(
        1,
        T0 - timedelta(days=1),
        (
            PriceEntry(
                ResourceClass.GENERAL,
                "standard",
                ServiceLevel.STANDARD,
                Decimal("123.4567"),
                tou=tou_tariff_for_province("Gansu"),
                green_discount_pct=Decimal(5),
            ),
        ),
    )
    contracts = {f"p{i}": ProviderContract(f"p{i}", 700) for i in range(5)}
    recs = records(n)
    ledger = MemoryLedger()
    for c in range(50):
        ledger.apply(plan_topup(f"t{c}", consumer=f"c{c}", fen=10**9, at=T0, actor="bench"))

    t0 = time.perf_counter()
    charges = [rate_usage(r, book, contract=contracts[r.provider]) for r in recs]
    t1 = time.perf_counter()
    transfers = [plan_charge(c, hold=None, actor="bench") for c in charges]
    t2 = time.perf_counter()
    results = [ledger.apply(t) for t in transfers]
    t3 = time.perf_counter()
    retries = [ledger.apply(t) for t in transfers[: n // 10]]
    t4 = time.perf_counter()
    settlement = ledger.settle(start=T0 - timedelta(days=1), end=T0 + timedelta(days=40), now=T0 + timedelta(days=40))
    t5 = time.perf_counter()
    assert all(r.ok for r in results) and all(r.code.value == "exists" for r in retries)
    assert all(s.reconciles() for s in settlement.consumers)
    return {
        "records": n,
        "rate_per_s": round(n / (t1 - t0)),
        "plan_per_s": round(n / (t2 - t1)),
        "apply_per_s": round(n / (t3 - t2)),
        "retry_exists_per_s": round(len(retries) / (t4 - t3)) if retries else None,
        "settle_s": round(t5 - t4, 3),
        "end_to_end_per_s": round(n / (t3 - t0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small run, well under a minute")
    args = parser.parse_args()
    figures = run(2_000 if args.quick else 50_000)
    result = {"bench": "money_rating", "quick": args.quick, "python": platform.python_version(), **figures}
    out = Path(__file__).parent / "results" / "money_rating.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
