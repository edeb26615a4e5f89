"""Model-based test of the whole money flow (LEDGER.md test 3, TigerBeetle's auditor in miniature).

Random sequences of top-ups, credit lines, holds at submit, usage reports
(duplicates, out-of-order, conflicting retries, late after settlement),
completions, cancellations, reversals, price-book changes, payouts and
settlements run against MemoryLedger; a dict model predicts every result code
and the invariants below are checked after every step.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import timedelta
from decimal import Decimal

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from suanwang.domain.ledger import (
    AccountKind,
    Hold,
    HoldState,
    ResultCode,
    TransferKind,
    currency_totals,
    earnings,
    fold_balances,
    hold_account,
    plan_hold,
    plan_payout,
    plan_release,
    plan_reversal,
    plan_topup,
    plan_voucher_funding,
    transfer_from_row,
    transfer_to_row,
    voucher_fund,
    wallet,
)
from suanwang.domain.memory_ledger import LedgerStore, MemoryLedger
from suanwang.domain.pricing import PriceBook, check_new_price_book, price_book_in_force
from suanwang.domain.rating import UsageRecord, VoucherState, plan_charge, rate_usage
from suanwang.domain.settlement import consumer_statement, provider_statement
from suanwang.domain.voucher import VoucherProgramme
from suanwang.errors import Conflict, InvalidSpec
from tests.domain.money_builders import T0, a_book, a_contract, a_record, an_entry, gansu_tou

CONSUMERS = ("acme", "beta")
PROVIDERS = ("p1", "p2")
PROGRAMME = VoucherProgramme(
    "small-biz", Decimal("30"), 2_000, T0 - timedelta(days=1), T0 + timedelta(days=30), consumers=frozenset({"acme"})
)


def vars_of(value: object) -> dict[str, object]:
    return {f.name: getattr(value, f.name) for f in fields(value)}  # type: ignore[arg-type]


class MoneyMachine(RuleBasedStateMachine):
    """Override ``make_ledger`` in a subclass to run the same sequences against another store."""

    @staticmethod
    def make_ledger() -> LedgerStore:
        return MemoryLedger()

    def __init__(self) -> None:
        super().__init__()
        self.ledger = self.make_ledger()
        self.now = T0
        self.books: list[PriceBook] = [a_book(an_entry("250.5", tou=gansu_tou(), green="5"))]
        self.jobs: dict[str, tuple[str, str]] = {}  # job -> (consumer, provider)
        self.sent: dict[str, UsageRecord] = {}  # usage key -> record as first sent
        self.charged: set[str] = set()  # model: usage keys charged
        self.over_limit: set[str] = set()  # consumers overdrawn by a charge
        self.clawed_back: set[str] = set()  # providers overdrawn by a reversal
        self.limits = dict.fromkeys(CONSUMERS, 0)
        self.n = 0

    def key(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n}"

    @initialize(fund=st.integers(1, 5_000), wallets=st.tuples(st.integers(1, 40_000), st.integers(1, 40_000)))
    def open_accounts(self, fund: int, wallets: tuple[int, int]) -> None:
        t = plan_voucher_funding("fund-1", programme=PROGRAMME.id, fen=fund, at=self.now, actor="op")
        assert self.ledger.apply(t).code is ResultCode.CREATED
        for consumer, fen in zip(CONSUMERS, wallets, strict=True):
            t = plan_topup(f"open-{consumer}", consumer=consumer, fen=fen, at=self.now, actor="op")
            assert self.ledger.apply(t).code is ResultCode.CREATED

    @rule(hours=st.integers(1, 30))
    def advance(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    @rule(consumer=st.sampled_from(CONSUMERS), fen=st.integers(-100, 50_000))
    def top_up(self, consumer: str, fen: int) -> None:
        if fen <= 0:
            with pytest.raises(InvalidSpec, match="must be positive"):
                plan_topup(self.key("t"), consumer=consumer, fen=fen, at=self.now, actor="op")
            return
        t = plan_topup(self.key("t"), consumer=consumer, fen=fen, at=self.now, actor="op")
        assert self.ledger.apply(t).code is ResultCode.CREATED

    @rule(consumer=st.sampled_from(CONSUMERS), limit=st.integers(0, 20_000))
    def set_credit(self, consumer: str, limit: int) -> None:
        self.ledger.set_credit_limit(consumer, limit)
        self.limits[consumer] = limit
        if self.ledger.balance(wallet(consumer)) < -limit:
            self.over_limit.add(consumer)  # a lowered line may leave a wallet below it

    @rule(consumer=st.sampled_from(CONSUMERS), provider=st.sampled_from(PROVIDERS), fen=st.integers(1, 30_000))
    def submit(self, consumer: str, provider: str, fen: int) -> None:
        job = self.key("job")
        available = self.ledger.balance(wallet(consumer)) + self.limits[consumer]
        t = plan_hold(f"hold:{job}", hold_id=job, consumer=consumer, fen=fen, at=self.now, actor="api", job_id=job)
        result = self.ledger.apply(t)
        event(f"hold: {result.code.value}")
        if fen <= available:
            assert result.code is ResultCode.CREATED
            self.jobs[job] = (consumer, provider)
        else:
            assert result.code is ResultCode.EXCEEDS_CREDIT  # the API answers 402
        assert self.ledger.balance(wallet(consumer)) >= -self.limits[consumer] or consumer in self.over_limit

    def _rate_and_apply(self, record: UsageRecord) -> ResultCode:
        book = price_book_in_force(self.books, record.start)
        used = self.ledger.voucher_used(PROGRAMME.id, record.consumer)
        vs = VoucherState(PROGRAMME, used, self.ledger.balance(voucher_fund(PROGRAMME.id)))
        charge = rate_usage(
            record,
            book,
            contract=a_contract(record.provider, 700),
            voucher=vs,
            settled_until=self.ledger.settled_until(),
        )
        result = self.ledger.apply(plan_charge(charge, hold=self.ledger.hold(record.job_id), actor="rater"))
        event(f"charge: {result.code.value}{' over limit' if result.over_limit else ''}")
        hold = self.ledger.hold(record.job_id)
        if result.code is ResultCode.CREATED and hold is not None:
            event(
                f"charge: voucher {bool(charge.voucher_fen)}, hold {hold.state}, late {charge.booked_at != record.end}"
            )
        if result.code is ResultCode.CREATED and result.over_limit:
            self.over_limit.add(record.consumer)
        if result.ok:
            t = self.ledger.transfer(record.key)
            assert t is not None and t.audit.usage_key == record.key and t.audit.job_id == record.job_id
            assert t.audit.price_book_version == price_book_in_force(self.books, record.start).version
        return result.code

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), seq=st.integers(0, 4), back=st.integers(1, 40), scu=st.integers(0, 40))
    def report_usage(self, data: st.DataObject, seq: int, back: int, scu: int) -> None:
        job = data.draw(st.sampled_from(sorted(self.jobs)))
        consumer, provider = self.jobs[job]
        record = a_record(
            job,
            seq,
            consumer=consumer,
            provider=provider,
            start=self.now - timedelta(hours=back),
            hours=1,
            scu=str(Decimal(scu) / 4),
        )
        first = self.sent.setdefault(record.key, record)
        code = self._rate_and_apply(first)  # a resend carries the record as first sent
        if record.key in self.charged:
            assert code is ResultCode.EXISTS
        else:
            assert code is ResultCode.CREATED, code
            self.charged.add(record.key)

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def duplicate_resend(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.sent)))
        assert self._rate_and_apply(self.sent[key]) is ResultCode.EXISTS

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def conflicting_resend(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.sent)))
        old = self.sent[key]
        changed = a_record(
            old.job_id,
            old.seq,
            consumer=old.consumer,
            provider=old.provider,
            start=old.start,
            scu=str(old.quantities[0][1] + 1),
        )
        assert self._rate_and_apply(changed) is ResultCode.EXISTS_WITH_DIFFERENT_PAYLOAD

    def _open_hold(self, data: st.DataObject) -> Hold | None:
        open_holds = sorted(h.id for h in self.ledger.holds() if h.state is HoldState.OPEN)
        if not open_holds:
            return None
        return self.ledger.hold(data.draw(st.sampled_from(open_holds)))

    @rule(data=st.data(), void=st.booleans())
    def finish_job(self, data: st.DataObject, void: bool) -> None:
        hold = self._open_hold(data)
        if hold is None:
            return
        t = plan_release(self.key("rel"), hold=hold, at=self.now, actor="api", void=void)
        code = self.ledger.apply(t).code
        event(f"release: {code.value}")
        expected = ResultCode.HOLD_CAPTURED if void and hold.captured_fen else ResultCode.CREATED
        assert code is expected
        again = plan_release(self.key("rel"), hold=hold, at=self.now, actor="api", void=void)
        assert self.ledger.apply(again).code in (ResultCode.HOLD_CLOSED, ResultCode.HOLD_CAPTURED)

    @precondition(lambda self: self.charged)
    @rule(data=st.data())
    def reverse_charge(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.charged)))
        original = self.ledger.transfer(key)
        assert original is not None
        t = plan_reversal(f"rev:{key}", original=original, at=self.now, actor="op", reason="disputed")
        result = self.ledger.apply(t)
        event(f"reversal: {result.code.value}")
        if self.ledger.reversed_by(key) != t.key:
            assert result.code is ResultCode.ALREADY_REVERSED
        elif result.code is ResultCode.CREATED and result.over_limit:
            self.clawed_back.add(original.audit.provider)
        else:
            assert result.ok, result

    @rule(provider=st.sampled_from(PROVIDERS), fen=st.integers(1, 5_000))
    def pay_out(self, provider: str, fen: int) -> None:
        have = self.ledger.balance(earnings(provider))
        code = self.ledger.apply(plan_payout(self.key("pay"), provider=provider, fen=fen, at=self.now, actor="op")).code
        assert code is (ResultCode.CREATED if fen <= have else ResultCode.EXCEEDS_BALANCE)

    @rule(price=st.integers(1, 100_000), hours=st.integers(0, 5))
    def new_price_book(self, price: int, hours: int) -> None:
        version = self.books[-1].version + 1
        starts = max(self.now + timedelta(hours=hours), self.books[-1].effective_from)
        new = a_book(an_entry(str(Decimal(price) / 100), tou=gansu_tou()), version=version, effective_from=starts)
        self.books.append(check_new_price_book(self.books, new, now=self.now))
        with pytest.raises(InvalidSpec, match="in the past"):  # a retroactive price book is refused
            check_new_price_book(
                self.books, a_book(version=version + 1, effective_from=self.now - timedelta(seconds=1)), now=self.now
            )

    @precondition(lambda self: self.now - (self.ledger.settled_until() or T0) >= timedelta(hours=24))
    @rule()
    def settle(self) -> None:
        start = self.ledger.settled_until() or T0 - timedelta(days=1)
        if start >= self.now:
            return
        s = self.ledger.settle(start=start, end=self.now, now=self.now)
        event(f"settled, {len(self.ledger.settlements)} so far")
        closing = fold_balances(self.ledger.transfers, as_of=self.now)
        for c in s.consumers:
            assert c.reconciles(), c
            assert c.closing_fen == closing[wallet(c.consumer)] + closing[hold_account(c.consumer)]
        transfers = self.ledger.transfers
        for c in s.consumers:  # the batch run agrees with one-party statements
            assert c == consumer_statement(c.consumer, transfers, start=start, end=self.now)
        for p in s.providers:
            assert p == provider_statement(p.provider, transfers, start=start, end=self.now, fee_bps=None)
        for statement in (*s.consumers, *s.providers):
            assert all(type(v) is int for k, v in vars_of(statement).items() if k.endswith("_fen"))
        for p in s.providers:
            assert p.reconciles(), p
            assert p.closing_fen == closing[earnings(p.provider)]
        assert sum(line.closing_fen for line in s.trial_balance) == 0
        try:
            self.ledger.settle(start=start, end=self.now, now=self.now)
        except Conflict:
            pass
        else:
            raise AssertionError("a settled period was settled twice")
        late = plan_topup(self.key("late"), consumer="acme", fen=1, at=self.now - timedelta(seconds=1), actor="op")
        assert self.ledger.apply(late).code is ResultCode.PERIOD_SETTLED

    # ---- invariants -------------------------------------------------------------------------------------
    @invariant()
    def every_transfer_balances_and_is_integer(self) -> None:
        for t in self.ledger.transfers:
            assert not any(currency_totals(t.postings).values())
            assert all(type(p.fen) is int for p in t.postings)
        for t in self.ledger.transfers[-3:]:  # what a store persists rebuilds the same transfer
            assert transfer_from_row(transfer_to_row(t)) == t

    @invariant()
    def accounts_sum_to_zero_and_equal_the_fold(self) -> None:
        cached = self.ledger.balances()
        assert sum(cached.fen.values()) == 0
        folded = fold_balances(self.ledger.transfers)
        assert {a: v for a, v in folded.fen.items() if v} == {a: v for a, v in cached.fen.items() if v}
        assert all(type(v) is int for v in cached.fen.values())

    @invariant()
    def each_usage_record_charged_exactly_once(self) -> None:
        charges = [t.key for t in self.ledger.transfers if t.kind is TransferKind.CHARGE]
        assert len(charges) == len(set(charges))
        assert set(charges) == self.charged

    @invariant()
    def hold_accounts_clear_to_open_holds(self) -> None:
        for consumer in CONSUMERS:
            remaining = sum(
                h.remaining_fen for h in self.ledger.holds() if h.consumer == consumer and h.state is HoldState.OPEN
            )
            assert self.ledger.balance(hold_account(consumer)) == remaining >= 0

    @invariant()
    def floors_hold(self) -> None:
        for consumer in CONSUMERS:
            assert self.ledger.balance(wallet(consumer)) >= -self.limits[consumer] or consumer in self.over_limit
        for account in self.ledger.accounts(AccountKind.VOUCHER):
            assert self.ledger.balance(account) >= 0
        for account in self.ledger.accounts(AccountKind.EARNINGS):
            assert self.ledger.balance(account) >= 0 or account.owner in self.clawed_back
        for consumer in CONSUMERS:
            assert self.ledger.voucher_used(PROGRAMME.id, consumer) <= PROGRAMME.cap_per_consumer_fen


MoneyMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_money_machine = MoneyMachine.TestCase
