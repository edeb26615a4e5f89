from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.ledger import (
    PLATFORM_FEES,
    ROUNDING,
    HoldState,
    ResultCode,
    earnings,
    hold_account,
    plan_hold,
    plan_release,
    plan_topup,
    plan_voucher_funding,
    voucher_fund,
    wallet,
)
from suanwang.domain.memory_ledger import MemoryLedger
from suanwang.domain.pricing import PriceUnit
from suanwang.domain.rating import VoucherState, booking_time, credit_headroom_fen, plan_charge, rate_usage, usage_key
from suanwang.domain.voucher import VoucherProgramme
from suanwang.errors import InvalidSpec
from tests.domain.money_builders import T0, a_book, a_contract, a_record, an_entry, at, gansu_tou, hold_of


def funded_ledger(fen: int = 10_000) -> MemoryLedger:
    ledger = MemoryLedger()
    assert ledger.apply(plan_topup("t0", consumer="acme", fen=fen, at=at(0), actor="op")).ok
    return ledger


def test_usage_spanning_a_time_of_use_boundary_is_split() -> None:
    book = a_book(an_entry("100", tou=gansu_tou()))
    charge = rate_usage(a_record(start=at(9.5), hours=1, scu="2"), book, contract=a_contract(fee_bps=0))
    assert {s.band.value: s.units for s in charge.price.shares} == {"flat": 1, "peak": 1}
    assert charge.gross_fen == 225  # 1 x 100 + 1 x 125


def test_charge_splits_into_fee_provider_and_rounding_to_the_fen() -> None:
    book = a_book(an_entry("33.3333"))
    charge = rate_usage(a_record(scu="1"), book, contract=a_contract(fee_bps=333))
    # exact 33.3333: gross 33; fee 1.1099989 -> 1; provider 32.2233 -> 32; rounding 0
    assert (charge.gross_fen, charge.fee_fen, charge.provider_fen, charge.rounding_fen) == (33, 1, 32, 0)
    assert charge.residue == Fraction("0.3333")


def test_rounding_residue_of_the_split_goes_to_the_rounding_account() -> None:
    book = a_book(an_entry("10.5"))  # exact 10.5 -> gross 10 (half even)
    charge = rate_usage(a_record(scu="1"), book, contract=a_contract(fee_bps=5_000))
    # fee 5.25 -> 5, provider 5.25 -> 5, rounding 10 - 10 = 0; now an odd split:
    assert charge.fee_fen + charge.provider_fen + charge.rounding_fen == charge.gross_fen
    odd = rate_usage(a_record(scu="1"), a_book(an_entry("11.5")), contract=a_contract(fee_bps=5_000))
    # exact 11.5 -> gross 12; fee 5.75 -> 6; provider 5.75 -> 6; rounding 12 - 12 = 0
    assert (odd.gross_fen, odd.fee_fen, odd.provider_fen, odd.rounding_fen) == (12, 6, 6, 0)
    minus = rate_usage(a_record(scu="1"), a_book(an_entry("3")), contract=a_contract(fee_bps=5_000))
    # exact 3: fee 1.5 -> 2, provider 1.5 -> 2, rounding -1
    assert (minus.gross_fen, minus.fee_fen, minus.provider_fen, minus.rounding_fen) == (3, 2, 2, -1)
    ledger = funded_ledger()
    assert ledger.apply(plan_charge(minus, hold=None, actor="rater")).ok
    assert ledger.balance(ROUNDING) == -1 and ledger.balance(PLATFORM_FEES) == 2


@settings(deadline=None)
@given(st.integers(0, 10**7), st.integers(0, 10**4), st.integers(0, 10_000), st.integers(0, 300))
def test_every_leg_is_the_nearest_fen_to_its_exact_share(
    price_cents: int, scu_hundredths: int, bps: int, minutes: int
) -> None:
    book = a_book(an_entry(str(Decimal(price_cents) / 100), tou=gansu_tou()))
    record = a_record(start=at(8), hours=minutes / 60, scu=str(Decimal(scu_hundredths) / 100))
    charge = rate_usage(record, book, contract=a_contract(fee_bps=bps))
    exact = charge.price.net
    assert abs(charge.gross_fen - exact) <= Fraction(1, 2) and charge.residue == exact - charge.gross_fen
    assert abs(charge.fee_fen - exact * bps / 10_000) <= Fraction(1, 2)
    assert abs(charge.provider_fen - exact * (10_000 - bps) / 10_000) <= Fraction(1, 2)
    assert charge.rounding_fen in (-1, 0, 1)
    transfer = plan_charge(charge, hold=None, actor="rater")
    assert sum(p.fen for p in transfer.postings) == 0
    assert all(type(p.fen) is int for p in transfer.postings)


def test_the_charge_transfer_is_keyed_by_the_usage_record_and_carries_audit() -> None:
    record = a_record("job-7", 3, attempt=1)
    charge = rate_usage(record, a_book(version=4), contract=a_contract())
    t = plan_charge(charge, hold=None, actor="rater@qy")
    assert t.key == usage_key("job-7", 1, 3) == "usage:job-7:1:3"
    audit = t.audit
    assert (audit.job_id, audit.usage_key, audit.price_book_version) == ("job-7", t.key, 4)
    assert audit.actor == "rater@qy"
    assert (audit.consumer, audit.provider, audit.resource_class) == ("acme", "qy-dc", "general")


def test_a_retried_report_is_charged_once_even_after_the_hold_closed() -> None:
    ledger = funded_ledger()
    assert ledger.apply(plan_hold("h", hold_id="job-1", consumer="acme", fen=500, at=at(9), actor="api")).ok
    charge = rate_usage(a_record(), a_book(), contract=a_contract())
    assert ledger.apply(plan_charge(charge, hold=ledger.hold("job-1"), actor="w1")).code is ResultCode.CREATED
    assert ledger.apply(plan_release("r", hold=hold_of(ledger, "job-1"), at=at(12), actor="api")).ok
    replanned = plan_charge(charge, hold=ledger.hold("job-1"), actor="w2")  # hold closed: would hit the wallet
    assert ledger.apply(replanned).code is ResultCode.EXISTS
    assert ledger.balance(wallet("acme")) == 10_000 - 100


def test_the_same_key_with_different_usage_is_refused() -> None:
    ledger = funded_ledger()
    charge = rate_usage(a_record(scu="1"), a_book(), contract=a_contract())
    assert ledger.apply(plan_charge(charge, hold=None, actor="w")).ok
    other = rate_usage(a_record(scu="2"), a_book(), contract=a_contract())
    assert ledger.apply(plan_charge(other, hold=None, actor="w")).code is ResultCode.EXISTS_WITH_DIFFERENT_PAYLOAD


def test_two_workers_rating_at_once_charge_once() -> None:
    ledger = funded_ledger()
    records = [a_record(seq=i) for i in range(20)]
    codes: list[ResultCode] = []

    def worker() -> None:
        for r in records:
            charge = rate_usage(r, a_book(), contract=a_contract())
            codes.append(ledger.apply(plan_charge(charge, hold=None, actor="w")).code)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert codes.count(ResultCode.CREATED) == 20 and codes.count(ResultCode.EXISTS) == 60
    assert ledger.balance(wallet("acme")) == 10_000 - 20 * 100


def test_charges_capture_from_the_hold_first_then_the_wallet() -> None:
    ledger = funded_ledger(1_000)
    assert ledger.apply(plan_hold("h", hold_id="job-1", consumer="acme", fen=150, at=at(9), actor="api")).ok
    for seq in (0, 1):
        charge = rate_usage(a_record(seq=seq), a_book(), contract=a_contract())
        assert ledger.apply(plan_charge(charge, hold=ledger.hold("job-1"), actor="w")).ok
    hold = ledger.hold("job-1")
    assert hold is not None and (hold.captured_fen, hold.remaining_fen) == (150, 0)
    assert ledger.balance(wallet("acme")) == 1_000 - 150 - 50
    assert ledger.balance(hold_account("acme")) == 0


def test_a_charge_on_a_stale_hold_is_refused_and_can_be_replanned() -> None:
    ledger = funded_ledger()
    assert ledger.apply(plan_hold("h", hold_id="job-1", consumer="acme", fen=500, at=at(9), actor="api")).ok
    stale = ledger.hold("job-1")
    assert stale is not None
    assert ledger.apply(plan_release("r", hold=stale, at=at(12), actor="api")).ok
    charge = rate_usage(a_record(), a_book(), contract=a_contract())
    assert ledger.apply(plan_charge(charge, hold=stale, actor="w")).code is ResultCode.HOLD_CLOSED
    assert ledger.apply(plan_charge(charge, hold=ledger.hold("job-1"), actor="w")).code is ResultCode.CREATED


def test_delivered_compute_is_charged_past_the_credit_line_and_flagged() -> None:
    ledger = funded_ledger(50)
    charge = rate_usage(a_record(), a_book(), contract=a_contract())
    result = ledger.apply(plan_charge(charge, hold=None, actor="w"))
    assert result.code is ResultCode.CREATED and result.over_limit
    assert ledger.balance(wallet("acme")) == -50
    assert (
        ledger.apply(plan_hold("h", hold_id="j2", consumer="acme", fen=1, at=at(12), actor="api")).code
        is ResultCode.EXCEEDS_CREDIT
    )


def test_vouchers_pay_their_share_within_the_cap() -> None:
    programme = VoucherProgramme("sme", Decimal(40), 70, T0 - timedelta(days=1), T0 + timedelta(days=1))
    ledger = funded_ledger()
    assert ledger.apply(plan_voucher_funding("f", programme="sme", fen=1_000, at=at(0), actor="op")).ok
    paid = []
    for seq in range(3):
        state = VoucherState(programme, ledger.voucher_used("sme", "acme"), ledger.balance(voucher_fund("sme")))
        charge = rate_usage(a_record(seq=seq), a_book(), contract=a_contract(), voucher=state)
        assert ledger.apply(plan_charge(charge, hold=None, actor="w")).ok
        paid.append((charge.voucher_fen, charge.consumer_fen))
    assert paid == [(40, 60), (30, 70), (0, 100)]
    assert ledger.voucher_used("sme", "acme") == 70 and ledger.balance(voucher_fund("sme")) == 930
    assert ledger.balance(earnings("qy-dc")) == 3 * 95


def test_the_ledger_enforces_the_voucher_cap_under_a_race() -> None:
    programme = VoucherProgramme("sme", Decimal(100), 150, T0 - timedelta(days=1), T0 + timedelta(days=1))
    ledger = funded_ledger()
    assert ledger.apply(plan_voucher_funding("f", programme="sme", fen=1_000, at=at(0), actor="op")).ok
    state = VoucherState(programme, 0, 1_000)  # both workers read the same state
    first, second = (rate_usage(a_record(seq=s), a_book(), contract=a_contract(), voucher=state) for s in (0, 1))
    assert ledger.apply(plan_charge(first, hold=None, actor="w1")).ok
    assert ledger.apply(plan_charge(second, hold=None, actor="w2")).code is ResultCode.VOUCHER_CAP_EXCEEDED


def test_late_usage_is_booked_into_the_open_period() -> None:
    assert booking_time(at(5), at(10)) == at(10)
    assert booking_time(at(11), at(10)) == at(11)
    assert booking_time(at(5), None) == at(5)
    charge = rate_usage(a_record(start=at(1)), a_book(), contract=a_contract(), settled_until=at(10))
    assert charge.booked_at == at(10)
    assert plan_charge(charge, hold=None, actor="w").audit.usage_end == at(2)


def test_rating_refuses_a_book_not_yet_in_force_at_the_usage() -> None:
    with pytest.raises(InvalidSpec, match="price_book_in_force"):
        rate_usage(a_record(start=at(10)), a_book(effective_from=at(11)), contract=a_contract())


def test_rating_refuses_unpriced_usage_and_the_wrong_contract() -> None:
    with pytest.raises(InvalidSpec, match="no price for general/flagship/standard"):
        rate_usage(a_record(tier="flagship"), a_book(), contract=a_contract())
    with pytest.raises(InvalidSpec, match="contract of other"):
        rate_usage(a_record(), a_book(), contract=a_contract("other"))


def test_native_units_are_used_when_the_book_prices_them() -> None:
    book = a_book(an_entry("100"), an_entry("2", unit=PriceUnit.CORE_HOUR))
    charge = rate_usage(a_record(scu="1", extra={PriceUnit.CORE_HOUR: "64"}), book, contract=a_contract())
    assert charge.price.entry.unit is PriceUnit.CORE_HOUR and charge.gross_fen == 128


def test_bad_usage_records_are_rejected() -> None:
    with pytest.raises(InvalidSpec, match="ends before it starts"):
        a_record(hours=-1)
    with pytest.raises(InvalidSpec, match="must not be negative"):
        a_record(scu="-1")
    good = a_record()
    with pytest.raises(InvalidSpec, match="float"):
        replace(good, quantities=((PriceUnit.CORE_HOUR, 1.5),))  # type: ignore[arg-type]
    with pytest.raises(InvalidSpec, match="measures no quantity"):
        replace(good, quantities=())


def test_a_retry_that_spells_the_same_usage_differently_is_still_the_same_request() -> None:
    ledger = funded_ledger()
    first = a_record(scu="1.5", start=at(10))
    same = a_record(scu="1.50", start=at(10).astimezone(UTC))
    assert ledger.apply(plan_charge(rate_usage(first, a_book(), contract=a_contract()), hold=None, actor="w")).ok
    retry = plan_charge(rate_usage(same, a_book(), contract=a_contract()), hold=None, actor="w")
    assert ledger.apply(retry).code is ResultCode.EXISTS


def test_credit_headroom_counts_the_open_hold_the_wallet_and_the_line() -> None:
    ledger = funded_ledger(1_000)
    assert ledger.apply(plan_hold("h", hold_id="job-1", consumer="acme", fen=300, at=at(9), actor="api")).ok
    hold = hold_of(ledger, "job-1")
    room = credit_headroom_fen(hold=hold, wallet_fen=ledger.balance(wallet("acme")), credit_limit_fen=200)
    assert room == 300 + 700 + 200
    closed = replace(hold, state=HoldState.RELEASED)
    assert credit_headroom_fen(hold=closed, wallet_fen=-200, credit_limit_fen=200) == 0
