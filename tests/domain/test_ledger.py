from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.domain.ledger import (
    OPERATOR_FUNDING,
    Account,
    Audit,
    HoldState,
    Posting,
    ResultCode,
    Transfer,
    TransferKind,
    audit_record,
    fold_balances,
    hold_account,
    holds_to_expire,
    plan_adjustment,
    plan_hold,
    plan_payout,
    plan_release,
    plan_reversal,
    plan_topup,
    result_error,
    transfer_from_row,
    transfer_to_row,
    wallet,
)
from suanwang.domain.memory_ledger import MemoryLedger
from suanwang.errors import Conflict, InsufficientFunds, InvalidSpec
from tests.domain.money_builders import at, hold_of


def postings(text: str) -> list[Posting]:
    """Parse ledger text, one ``account  fen`` leg per line: the tests' own tiny journal format."""
    legs = [line.split() for line in text.strip().splitlines() if line.strip()]
    return [Posting(Account.parse(account), int(fen)) for account, fen in legs]


@pytest.fixture
def ledger() -> MemoryLedger:
    book = MemoryLedger()
    assert book.apply(plan_topup("t0", consumer="acme", fen=1_000, at=at(0), actor="op")).ok
    return book


def test_an_unbalanced_transfer_cannot_be_built() -> None:
    with pytest.raises(InvalidSpec, match=r"does not balance: \{'CNY': 1\}"):
        plan_adjustment(
            "a1",
            postings=postings("""
            wallet:acme      101
            funding:operator -100
        """),
            at=at(0),
            actor="op",
            reason="typo",
        )


def test_negative_or_zero_top_up_is_rejected_with_a_clear_message() -> None:
    with pytest.raises(InvalidSpec, match="top-up must be positive, got -5 fen"):
        plan_topup("t", consumer="acme", fen=-5, at=at(0), actor="op")
    with pytest.raises(InvalidSpec, match="integer number of fen"):
        plan_topup("t", consumer="acme", fen=5.0, at=at(0), actor="op")  # type: ignore[arg-type]


def test_zero_postings_and_naive_times_are_rejected() -> None:
    with pytest.raises(InvalidSpec, match="zero posting"):
        Posting(wallet("acme"), 0)
    with pytest.raises(InvalidSpec, match="timezone-aware"):
        plan_topup("t", consumer="acme", fen=1, at=at(0).replace(tzinfo=None), actor="op")


def test_identical_retry_is_exists_and_a_changed_retry_is_refused(ledger: MemoryLedger) -> None:
    again = plan_topup("t0", consumer="acme", fen=1_000, at=at(0), actor="op")
    assert ledger.apply(again).code is ResultCode.EXISTS
    changed = plan_topup("t0", consumer="acme", fen=999, at=at(0), actor="op")
    result = ledger.apply(changed)
    assert result.code is ResultCode.EXISTS_WITH_DIFFERENT_PAYLOAD
    assert isinstance(result_error(result), Conflict)
    assert ledger.balance(wallet("acme")) == 1_000


def test_hold_beyond_funds_and_credit_is_a_402(ledger: MemoryLedger) -> None:
    big = plan_hold("h", hold_id="job-1", consumer="acme", fen=1_001, at=at(1), actor="api")
    result = ledger.apply(big)
    assert result.code is ResultCode.EXCEEDS_CREDIT
    error = result_error(result, big)
    assert isinstance(error, InsufficientFunds) and error.status_code == 402
    assert "insufficient funds" in str(error)
    assert ledger.hold("job-1") is None  # failed keys are not burnt
    ledger.set_credit_limit("acme", 1)
    assert ledger.apply(big).code is ResultCode.CREATED
    assert ledger.balance(wallet("acme")) == -1


def test_held_money_counts_against_the_credit_line(ledger: MemoryLedger) -> None:
    ledger.set_credit_limit("acme", 500)
    assert ledger.apply(plan_hold("h1", hold_id="j1", consumer="acme", fen=1_200, at=at(1), actor="api")).ok
    assert ledger.available("acme") == 300
    second = ledger.apply(plan_hold("h2", hold_id="j2", consumer="acme", fen=301, at=at(1), actor="api"))
    assert second.code is ResultCode.EXCEEDS_CREDIT


def test_a_hold_resolves_at_most_once(ledger: MemoryLedger) -> None:
    assert ledger.apply(plan_hold("h", hold_id="j1", consumer="acme", fen=400, at=at(1), actor="api")).ok
    hold = ledger.hold("j1")
    assert hold is not None
    assert ledger.apply(plan_release("r1", hold=hold, at=at(2), actor="api", void=True)).code is ResultCode.CREATED
    assert hold_of(ledger, "j1").state is HoldState.VOIDED
    assert ledger.apply(plan_release("r2", hold=hold, at=at(2), actor="api")).code is ResultCode.HOLD_CLOSED
    assert ledger.balance(wallet("acme")) == 1_000 and ledger.balance(hold_account("acme")) == 0


def test_a_release_planned_from_stale_state_is_refused(ledger: MemoryLedger) -> None:
    assert ledger.apply(plan_hold("h", hold_id="j1", consumer="acme", fen=400, at=at(1), actor="api")).ok
    stale = ledger.hold("j1")
    assert stale is not None
    again = plan_hold("h-again", hold_id="j1", consumer="acme", fen=1, at=at(1), actor="api")
    assert ledger.apply(again).code is ResultCode.HOLD_EXISTS
    fake = plan_release("r", hold=stale.__class__(stale.id, stale.consumer, 500), at=at(2), actor="api")
    assert ledger.apply(fake).code is ResultCode.HOLD_STALE


def test_payout_cannot_exceed_earnings() -> None:
    ledger = MemoryLedger()
    result = ledger.apply(plan_payout("p", provider="dc", fen=1, at=at(0), actor="op"))
    assert result.code is ResultCode.EXCEEDS_BALANCE


def test_a_reversal_links_to_its_original_and_happens_once(ledger: MemoryLedger) -> None:
    original = ledger.transfer("t0")
    assert original is not None
    reversal = plan_reversal("rev", original=original, at=at(1), actor="op", reason="wrong consumer")
    assert reversal.reverses == "t0" and reversal.kind is TransferKind.REVERSAL
    assert ledger.apply(reversal).code is ResultCode.CREATED
    assert ledger.balance(wallet("acme")) == 0 and ledger.balance(OPERATOR_FUNDING) == 0
    twice = plan_reversal("rev-2", original=original, at=at(1), actor="op", reason="again")
    assert ledger.apply(twice).code is ResultCode.ALREADY_REVERSED
    assert [t.key for t in ledger.transfers] == ["t0", "rev"]  # append-only: the original is still there


def test_a_spent_top_up_cannot_be_reversed_past_the_credit_line(ledger: MemoryLedger) -> None:
    assert ledger.apply(plan_hold("h", hold_id="j", consumer="acme", fen=600, at=at(1), actor="api")).ok
    original = ledger.transfer("t0")
    assert original is not None
    reversal = plan_reversal("rev", original=original, at=at(2), actor="op", reason="chargeback")
    assert ledger.apply(reversal).code is ResultCode.EXCEEDS_CREDIT


def test_hold_movements_are_not_reversible(ledger: MemoryLedger) -> None:
    hold = plan_hold("h", hold_id="j", consumer="acme", fen=10, at=at(1), actor="api")
    with pytest.raises(InvalidSpec, match="cannot be reversed"):
        plan_reversal("rev", original=hold, at=at(2), actor="op", reason="x")
    original = ledger.transfer("t0")
    assert original is not None
    unknown = plan_reversal("rev", original=original, at=at(2), actor="op", reason="x")
    fresh = MemoryLedger()
    assert fresh.apply(unknown).code is ResultCode.REVERSAL_TARGET_MISSING


def test_a_batch_is_all_or_nothing(ledger: MemoryLedger) -> None:
    good = plan_topup("t1", consumer="beta", fen=5, at=at(1), actor="op")
    bad = plan_hold("h", hold_id="j", consumer="acme", fen=5_000, at=at(1), actor="api")
    results = ledger.apply_batch([good, bad])
    assert [r.code for r in results] == [ResultCode.LINKED_FAILED, ResultCode.EXCEEDS_CREDIT]
    assert ledger.transfer("t1") is None and ledger.balance(wallet("beta")) == 0


def test_nothing_may_be_booked_into_a_settled_period(ledger: MemoryLedger) -> None:
    ledger.settle(start=at(-1), end=at(5), now=at(6))
    late = plan_topup("late", consumer="acme", fen=1, at=at(4), actor="op")
    result = ledger.apply(late)
    assert result.code is ResultCode.PERIOD_SETTLED
    assert "settled and immutable" in str(result_error(result, late))
    assert ledger.apply(plan_topup("ok", consumer="acme", fen=1, at=at(5), actor="op")).ok


def test_a_settled_period_cannot_be_settled_again_or_skipped(ledger: MemoryLedger) -> None:
    ledger.settle(start=at(-1), end=at(5), now=at(6))
    with pytest.raises(Conflict, match="immutable"):
        ledger.settle(start=at(-1), end=at(5), now=at(6))
    with pytest.raises(InvalidSpec, match="continue from"):
        ledger.settle(start=at(6), end=at(7), now=at(8))
    with pytest.raises(InvalidSpec, match="future"):
        ledger.settle(start=at(5), end=at(9), now=at(8))


def test_every_transfer_names_its_actor() -> None:
    with pytest.raises(InvalidSpec, match="actor"):
        plan_topup("t", consumer="acme", fen=1, at=at(0), actor="")


amounts = st.lists(st.tuples(st.sampled_from(["acme", "beta", "gamma"]), st.integers(1, 10**9)), max_size=30)


@given(amounts, st.integers(0, 40))
def test_balances_are_the_fold_of_postings_as_of_any_time(topups: list[tuple[str, int]], cut: int) -> None:
    ledger = MemoryLedger()
    for i, (consumer, fen) in enumerate(topups):
        assert ledger.apply(plan_topup(f"t{i}", consumer=consumer, fen=fen, at=at(i), actor="op")).ok
    as_of = ledger.balances(as_of=at(cut))
    assert sum(as_of.fen.values()) == 0
    for consumer in ("acme", "beta", "gamma"):
        expected = sum(fen for i, (c, fen) in enumerate(topups) if c == consumer and i < cut)
        assert as_of[wallet(consumer)] == expected
    assert fold_balances(ledger.transfers).fen == dict(ledger.balances().fen.items())


def test_transfer_requests_are_digested_stably() -> None:
    a = plan_topup("t", consumer="acme", fen=5, at=at(0), actor="op")
    b = plan_topup("t", consumer="acme", fen=5, at=at(0), actor="op")
    assert a.request == b.request and len(a.request) == 64
    assert isinstance(a, Transfer)


def test_retries_made_later_or_after_the_state_moved_still_answer_exists(ledger: MemoryLedger) -> None:
    assert ledger.apply(plan_topup("t0", consumer="acme", fen=1_000, at=at(9), actor="op-2")).code is ResultCode.EXISTS
    assert ledger.apply(plan_hold("h", hold_id="j", consumer="acme", fen=10, at=at(1), actor="api")).ok
    hold = ledger.hold("j")
    assert hold is not None
    assert ledger.apply(plan_release("r", hold=hold, at=at(2), actor="api")).code is ResultCode.CREATED
    closed = ledger.hold("j")
    assert closed is not None and closed.remaining_fen == 0
    assert ledger.apply(plan_release("r", hold=closed, at=at(3), actor="api")).code is ResultCode.EXISTS


def test_the_audit_record_traces_a_transfer(ledger: MemoryLedger) -> None:
    original = ledger.transfer("t0")
    assert original is not None
    reversal = plan_reversal("rev", original=original, at=at(1), actor="auditor-bob", reason="test")
    row = audit_record(reversal)
    assert row["reverses"] == "t0" and row["actor"] == "auditor-bob" and row["kind"] == "reversal"
    assert row["postings"] == "funding:operator +1000; wallet:acme -1000"


def test_expired_holds_are_found_in_order_and_released(ledger: MemoryLedger) -> None:
    for i, hours in enumerate((5, 3, 9)):
        t = plan_hold(f"h{i}", hold_id=f"j{i}", consumer="acme", fen=10, at=at(1), actor="api", expires_at=at(hours))
        assert ledger.apply(t).ok
    due = holds_to_expire(ledger.holds(), now=at(5))
    assert [h.id for h in due] == ["j1", "j0"]
    for hold in due:
        assert ledger.apply(
            plan_release(f"x-{hold.id}", hold=hold, at=at(5), actor="sweeper", reason="hold expired")
        ).ok
    assert holds_to_expire(ledger.holds(), now=at(5)) == []
    assert ledger.balance(hold_account("acme")) == 10
    with pytest.raises(InvalidSpec, match="expire before"):
        plan_hold("h", hold_id="j", consumer="acme", fen=1, at=at(5), actor="api", expires_at=at(5))


def test_transfers_round_trip_through_rows(ledger: MemoryLedger) -> None:
    hold = plan_hold("h", hold_id="j", consumer="acme", fen=10, at=at(1), actor="api", job_id="j", expires_at=at(9))
    original = ledger.transfer("t0")
    assert original is not None
    reversal = plan_reversal("rev", original=original, at=at(2), actor="op", reason="x")
    for t in (original, hold, reversal):
        row = transfer_to_row(t)
        assert json.loads(json.dumps(row)) == row  # JSON-ready, no Decimal or float
        assert transfer_from_row(row) == t


def test_hold_and_voucher_fields_must_match_the_postings() -> None:
    legs = tuple(
        postings("""
        wallet:acme  -10
        hold:acme     10
    """)
    )
    audit = Audit("api")
    with pytest.raises(InvalidSpec, match="do not match hold_fen"):
        Transfer("x", TransferKind.HOLD_PLACE, legs, at(0), audit, hold_id="j", hold_fen=9)
    with pytest.raises(InvalidSpec, match="do not match hold_fen"):
        Transfer("x", TransferKind.ADJUSTMENT, legs, at(0), audit)
    with pytest.raises(InvalidSpec, match="needs a hold_id"):
        Transfer("x", TransferKind.HOLD_PLACE, legs, at(0), audit, hold_fen=10)
    fund = tuple(
        postings("""
        voucher:sme     -5
        earnings:dc      5
    """)
    )
    with pytest.raises(InvalidSpec, match="voucher postings 5 do not match"):
        Transfer("x", TransferKind.CHARGE, fund, at(0), audit, voucher_programme="sme", voucher_fen=4)


def test_a_tampered_or_backdated_reversal_is_refused(ledger: MemoryLedger) -> None:
    original = ledger.transfer("t0")
    assert original is not None
    honest = plan_reversal("rev", original=original, at=at(1), actor="op", reason="x")
    tampered = replace(
        honest,
        postings=tuple(
            postings("""
        wallet:acme       -999
        funding:operator   999
    """)
        ),
        request="",
    )
    assert ledger.apply(tampered).code is ResultCode.NOT_REVERSIBLE
    backdated = replace(honest, booked_at=at(-1))
    assert ledger.apply(backdated).code is ResultCode.NOT_REVERSIBLE
    assert ledger.apply(honest).code is ResultCode.CREATED
