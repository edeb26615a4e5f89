from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

from suanwang.domain.ledger import (
    ResultCode,
    earnings,
    plan_hold,
    plan_release,
    plan_reversal,
    plan_topup,
    plan_voucher_funding,
    voucher_fund,
)
from suanwang.domain.memory_ledger import MemoryLedger
from suanwang.domain.rating import VoucherState, plan_charge, rate_usage
from suanwang.domain.resources import ResourceClass
from suanwang.domain.settlement import CSV_COLUMNS, compute_settlement, plan_payouts, settlement_csv
from suanwang.domain.voucher import VoucherProgramme
from tests.domain.money_builders import T0, a_book, a_contract, a_record, an_entry, at, hold_of

PROGRAMME = VoucherProgramme("sme", Decimal(50), 1_000, T0 - timedelta(days=1), T0 + timedelta(days=9))


def a_day_of_business() -> MemoryLedger:
    """acme tops up 100.00, runs job-1 (2 records) under a hold and job-2 (intelligent) with a voucher."""
    ledger = MemoryLedger()
    book = a_book(an_entry("100"), an_entry("1000", cls=ResourceClass.INTELLIGENT))
    for t in (
        plan_topup("t0", consumer="acme", fen=10_000, at=at(1), actor="op"),
        plan_voucher_funding("f0", programme="sme", fen=500, at=at(1), actor="op"),
        plan_hold("h1", hold_id="job-1", consumer="acme", fen=300, at=at(2), actor="api", job_id="job-1"),
    ):
        assert ledger.apply(t).ok
    for seq in (1, 0):  # out of order
        charge = rate_usage(a_record("job-1", seq, scu="1"), book, contract=a_contract(fee_bps=1_000))
        assert ledger.apply(plan_charge(charge, hold=ledger.hold("job-1"), actor="rater")).ok
    assert ledger.apply(plan_release("r1", hold=hold_of(ledger, "job-1"), at=at(12), actor="api")).ok
    state = VoucherState(PROGRAMME, 0, ledger.balance(voucher_fund("sme")))
    gpu = a_record("job-2", 0, scu="1", cls=ResourceClass.INTELLIGENT, pool="qy-gpu", provider="gpu-dc")
    charge = rate_usage(gpu, book, contract=a_contract("gpu-dc", fee_bps=500), voucher=state)
    assert ledger.apply(plan_charge(charge, hold=None, actor="rater")).ok
    return ledger


def test_statements_show_charges_by_job_and_class_and_reconcile() -> None:
    ledger = a_day_of_business()
    s = ledger.settle(start=at(0), end=at(24), now=at(24), fee_bps={"qy-dc": 1_000, "gpu-dc": 500})
    [acme] = s.consumers
    assert (acme.opening_fen, acme.topups_fen, acme.charged_fen, acme.voucher_fen, acme.closing_fen) == (
        0,
        10_000,
        200 + 500,
        500,
        9_300,
    )
    lines = [(c.job_id, c.resource_class, c.records, c.gross_fen, c.voucher_fen, c.paid_fen) for c in acme.charges]
    assert lines == [("job-1", "general", 2, 200, 0, 200), ("job-2", "intelligent", 1, 1_000, 500, 500)]
    assert acme.reconciles() and acme.closing_held_fen == 0
    gpu, qy = s.providers
    assert (qy.provider, qy.gross_fen, qy.fee_fen, qy.earned_fen, qy.closing_fen, qy.fee_bps) == (
        "qy-dc",
        200,
        20,
        180,
        180,
        1_000,
    )
    assert (gpu.gross_fen, gpu.fee_fen, gpu.earned_fen) == (1_000, 50, 950)
    assert all(p.reconciles() for p in s.providers)
    assert sum(line.closing_fen for line in s.trial_balance) == 0
    assert s.transfer_count == len(ledger.transfers)


def test_a_reversed_charge_shows_as_a_reversal_and_still_reconciles() -> None:
    ledger = a_day_of_business()
    original = ledger.transfer("usage:job-2:0:0")
    assert original is not None
    reversal = plan_reversal("rev", original=original, at=at(13), actor="op", reason="failed GPU")
    assert ledger.apply(reversal).code is ResultCode.CREATED
    assert ledger.voucher_used("sme", "acme") == 0 and ledger.balance(voucher_fund("sme")) == 500
    s = compute_settlement(ledger.transfers, start=at(0), end=at(24))
    [acme] = s.consumers
    assert acme.reversals_fen == 500 and acme.closing_fen == 9_800 and acme.reconciles()
    assert [c.records for c in acme.charges] == [2, 0]
    gpu = s.providers[0]
    assert gpu.reversals_fen == -950 and gpu.closing_fen == 0 and gpu.reconciles()


def test_a_second_period_opens_with_the_first_ones_closing() -> None:
    ledger = a_day_of_business()
    first = ledger.settle(start=at(0), end=at(24), now=at(24))
    payouts = plan_payouts(first, at=at(24), actor="op")
    assert next((p.key, p.postings[0].fen) for p in payouts)[1] == -950
    assert all(ledger.apply(p).ok for p in payouts)
    assert all(ledger.apply(p).code is ResultCode.EXISTS for p in plan_payouts(first, at=at(25), actor="op"))
    second = ledger.settle(start=at(24), end=at(48), now=at(48))
    for before, after in zip(first.providers, second.providers, strict=True):
        assert after.opening_fen == before.closing_fen and after.payouts_fen == before.closing_fen
        assert after.closing_fen == 0 and after.reconciles()
    assert ledger.balance(earnings("qy-dc")) == 0


def test_csv_has_a_header_and_amounts_in_fen_and_yuan() -> None:
    s = a_day_of_business().settle(start=at(0), end=at(24), now=at(24))
    rows = list(csv.DictReader(io.StringIO(settlement_csv(s))))
    assert tuple(rows[0]) == CSV_COLUMNS
    closing = [r for r in rows if (r["section"], r["party"], r["item"]) == ("consumer", "acme", "closing")]
    assert closing == [
        {
            "section": "consumer",
            "party": "acme",
            "job_id": "",
            "resource_class": "",
            "item": "closing",
            "fen": "9300",
            "yuan": "93.00",
        }
    ]
    gpu = [r for r in rows if r["section"] == "provider_charge" and r["job_id"] == "job-2"]
    assert {r["item"]: int(r["fen"]) for r in gpu} == {"gross": 1_000, "fee": 50, "net": 950}
    assert sum(int(r["fen"]) for r in rows if r["section"] == "account" and r["item"] == "closing") == 0
