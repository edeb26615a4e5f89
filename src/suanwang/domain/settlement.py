"""Settlement (结算): close a period ``[start, end)`` into statements that reconcile to the fen.

Why: consumers, providers and the operator each need a statement of what
moved, and an auditor needs to see that every statement is the ledger's own
fold (L3, P4), not a second calculation that could drift from it.

Invariants owned here
- A statement's closing balance equals the fold of all postings booked before
  ``end`` on its accounts, and opening + the period's lines == closing
  (:meth:`ConsumerStatement.reconciles`, :meth:`ProviderStatement.reconciles`).
- The trial balance sums to zero at opening and at closing (L2).
- Periods are contiguous and settled once: the next period starts where the
  last one ended; settling an overlapping period raises Conflict; posting into a
  settled period is refused by the ledger (PERIOD_SETTLED).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from suanwang.domain.ledger import (
    PLATFORM_FEES,
    ROUNDING,
    Account,
    AccountKind,
    Transfer,
    TransferKind,
    earnings,
    fold_balances,
    hold_account,
    plan_payout,
    wallet,
)
from suanwang.domain.market.statement import MarketLine, market_lines
from suanwang.domain.money import Fen, format_yuan
from suanwang.errors import Conflict, InvalidSpec


@dataclass(frozen=True, slots=True)
class ChargeLine:
    """Charges of one job in one resource class within the period (after reversals of them)."""

    job_id: str
    resource_class: str
    records: int
    gross_fen: Fen  # price of the usage
    voucher_fen: Fen  # paid by vouchers
    paid_fen: Fen  # paid by the consumer (gross - voucher)
    fee_fen: Fen  # platform fee
    rounding_fen: Fen  # integer residue of the provider/fee split
    net_fen: Fen  # provider earnings (gross - fee - rounding)


@dataclass(frozen=True, slots=True)
class ConsumerStatement:
    consumer: str
    opening_fen: Fen  # wallet + hold
    topups_fen: Fen
    charged_fen: Fen  # sum of paid_fen of charges
    voucher_fen: Fen
    reversals_fen: Fen  # corrections credited (+) or debited (-)
    adjustments_fen: Fen
    closing_fen: Fen
    closing_held_fen: Fen  # part of closing still held for running jobs
    charges: tuple[ChargeLine, ...]

    def reconciles(self) -> bool:
        flow = self.topups_fen - self.charged_fen + self.reversals_fen + self.adjustments_fen
        return self.opening_fen + flow == self.closing_fen


@dataclass(frozen=True, slots=True)
class ProviderStatement:
    provider: str
    fee_bps: int | None
    opening_fen: Fen
    gross_fen: Fen
    fee_fen: Fen
    rounding_fen: Fen
    earned_fen: Fen  # gross - fee - rounding
    payouts_fen: Fen
    reversals_fen: Fen
    adjustments_fen: Fen
    closing_fen: Fen
    charges: tuple[ChargeLine, ...]

    def reconciles(self) -> bool:
        flow = self.earned_fen - self.payouts_fen + self.reversals_fen + self.adjustments_fen
        return self.opening_fen + flow == self.closing_fen


@dataclass(frozen=True, slots=True)
class AccountLine:
    account: Account
    opening_fen: Fen
    debits_fen: Fen  # sum of negative postings, as a positive number
    credits_fen: Fen
    closing_fen: Fen


@dataclass(frozen=True, slots=True)
class Settlement:
    start: datetime
    end: datetime
    consumers: tuple[ConsumerStatement, ...]
    providers: tuple[ProviderStatement, ...]
    trial_balance: tuple[AccountLine, ...]
    transfer_count: int
    market: tuple[MarketLine, ...] = ()  # contract charges, sales, congestion rent, rounding, failures (market)


def check_period(settled_until: datetime | None, *, start: datetime, end: datetime, now: datetime) -> None:
    """Raise unless ``[start, end)`` is the next period to settle."""
    if end <= start:
        raise InvalidSpec(f"settlement period must end after it starts ({start.isoformat()} .. {end.isoformat()})")
    if end > now:
        raise InvalidSpec(f"cannot settle a period that ends in the future ({end.isoformat()} > {now.isoformat()})")
    if settled_until is not None and start < settled_until:
        raise Conflict(
            f"period from {start.isoformat()} overlaps one already settled (until "
            f"{settled_until.isoformat()}); a settled period is immutable"
        )
    if settled_until is not None and start > settled_until:
        raise InvalidSpec(f"settlement must continue from {settled_until.isoformat()}, not {start.isoformat()}")


class _LineAcc:
    def __init__(self) -> None:
        self.lines: dict[tuple[str, str], list[int]] = {}

    def add(self, t: Transfer, paid: Fen, net: Fen) -> None:
        sign = -1 if t.kind is TransferKind.REVERSAL else 1
        fee, rounding = t.delta(PLATFORM_FEES), t.delta(ROUNDING)
        acc = self.lines.setdefault((t.audit.job_id, t.audit.resource_class), [0] * 6)
        for i, v in enumerate((sign, net + fee + rounding, t.voucher_fen, paid, fee, rounding)):
            acc[i] += v

    def result(self) -> tuple[ChargeLine, ...]:
        return tuple(
            ChargeLine(job, cls, n, gross, voucher, paid, fee, rnd, gross - fee - rnd)
            for (job, cls), (n, gross, voucher, paid, fee, rnd) in sorted(self.lines.items())
        )


def _is_charge_flow(t: Transfer, transfers_by_key: dict[str, Transfer]) -> bool:
    if t.kind is TransferKind.CHARGE:
        return True
    original = transfers_by_key.get(t.reverses)
    return t.kind is TransferKind.REVERSAL and original is not None and original.kind is TransferKind.CHARGE


def consumer_statement(
    consumer: str, transfers: Sequence[Transfer], *, start: datetime, end: datetime
) -> ConsumerStatement:
    """One consumer's statement for ``[start, end)`` (wallet and hold together)."""
    folds = _Folds(transfers, start, end)
    return _consumer_statement(consumer, folds, _in_period(transfers, start, end))


def provider_statement(
    provider: str, transfers: Sequence[Transfer], *, start: datetime, end: datetime, fee_bps: int | None = None
) -> ProviderStatement:
    """One provider's statement for ``[start, end)`` (its earnings account)."""
    folds = _Folds(transfers, start, end)
    return _provider_statement(provider, folds, _in_period(transfers, start, end), fee_bps)


class _Folds:
    """Opening and closing balances (L3 folds) and the transfers by key, computed once per settlement."""

    def __init__(self, transfers: Sequence[Transfer], start: datetime, end: datetime) -> None:
        self.before = fold_balances(transfers, as_of=start)
        self.after = fold_balances(transfers, as_of=end)
        self.by_key = {t.key: t for t in transfers}


def _consumer_statement(consumer: str, folds: _Folds, period: Sequence[Transfer]) -> ConsumerStatement:
    accounts = (wallet(consumer), hold_account(consumer))
    sums = dict.fromkeys(TransferKind, 0)
    voucher = 0
    lines = _LineAcc()
    for t in period:
        delta = sum(t.delta(a) for a in accounts)
        if _is_charge_flow(t, folds.by_key) and t.audit.consumer == consumer:
            lines.add(t, -delta, t.delta(earnings(t.audit.provider)) if t.audit.provider else 0)
            voucher += t.voucher_fen
            if t.kind is TransferKind.CHARGE:
                sums[TransferKind.CHARGE] += -delta
                continue
        sums[t.kind] += delta
    return ConsumerStatement(
        consumer,
        sum(folds.before[a] for a in accounts),
        sums[TransferKind.TOPUP],
        sums[TransferKind.CHARGE],
        voucher,
        sums[TransferKind.REVERSAL],
        sums[TransferKind.ADJUSTMENT],
        sum(folds.after[a] for a in accounts),
        folds.after[hold_account(consumer)],
        lines.result(),
    )


def _provider_statement(
    provider: str, folds: _Folds, period: Sequence[Transfer], fee_bps: int | None
) -> ProviderStatement:
    account = earnings(provider)
    sums = dict.fromkeys(TransferKind, 0)
    lines = _LineAcc()
    for t in period:
        delta = t.delta(account)
        if t.kind is TransferKind.CHARGE and t.audit.provider == provider:
            consumer = t.audit.consumer
            paid = -(t.delta(wallet(consumer)) + t.delta(hold_account(consumer)))
            lines.add(t, paid, delta)
        sums[t.kind] += delta
    charges = lines.result()
    return ProviderStatement(
        provider,
        fee_bps,
        folds.before[account],
        sum(c.gross_fen for c in charges),
        sum(c.fee_fen for c in charges),
        sum(c.rounding_fen for c in charges),
        sums[TransferKind.CHARGE],
        -sums[TransferKind.PAYOUT],
        sums[TransferKind.REVERSAL],
        sums[TransferKind.ADJUSTMENT],
        folds.after[account],
        charges,
    )


def _by_party(
    period: Sequence[Transfer], kinds: tuple[AccountKind, ...], audit_field: str
) -> dict[str, list[Transfer]]:
    """Period transfers grouped by the owners they touch (accounts of ``kinds``) or name in ``audit_field``."""
    groups: dict[str, list[Transfer]] = {}
    for t in period:
        owners = {p.account.owner for p in t.postings if p.account.kind in kinds}
        named = getattr(t.audit, audit_field)
        for owner in sorted(owners | ({named} if named else set())):
            groups.setdefault(owner, []).append(t)
    return groups


def _in_period(transfers: Iterable[Transfer], start: datetime, end: datetime) -> list[Transfer]:
    return [t for t in transfers if start <= t.booked_at < end]


def trial_balance(transfers: Sequence[Transfer], *, start: datetime, end: datetime) -> tuple[AccountLine, ...]:
    """Opening, debits, credits and closing of every account for ``[start, end)``."""
    return _trial_balance(_Folds(transfers, start, end), _in_period(transfers, start, end))


def _trial_balance(folds: _Folds, period: Sequence[Transfer]) -> tuple[AccountLine, ...]:
    debits: dict[Account, Fen] = {}
    credits: dict[Account, Fen] = {}
    for t in period:
        for p in t.postings:
            side = credits if p.fen > 0 else debits
            side[p.account] = side.get(p.account, 0) + abs(p.fen)
    accounts = sorted(set(folds.after.fen) | set(folds.before.fen))
    return tuple(AccountLine(a, folds.before[a], debits.get(a, 0), credits.get(a, 0), folds.after[a]) for a in accounts)


def compute_settlement(
    transfers: Sequence[Transfer], *, start: datetime, end: datetime, fee_bps: dict[str, int] | None = None
) -> Settlement:
    """Statements for every consumer and provider with an account touched before ``end``.

    Cost: two folds over all transfers plus one pass over the period's.
    """
    folds = _Folds(transfers, start, end)
    period = _in_period(transfers, start, end)
    tb = _trial_balance(folds, period)
    owners = {
        kind: sorted({line.account.owner for line in tb if line.account.kind is kind})
        for kind in (AccountKind.WALLET, AccountKind.HOLD, AccountKind.EARNINGS)
    }
    consumers = sorted(set(owners[AccountKind.WALLET]) | set(owners[AccountKind.HOLD]))
    by_consumer = _by_party(period, (AccountKind.WALLET, AccountKind.HOLD), "consumer")
    by_provider = _by_party(period, (AccountKind.EARNINGS,), "provider")
    return Settlement(
        start,
        end,
        tuple(_consumer_statement(c, folds, by_consumer.get(c, [])) for c in consumers),
        tuple(
            _provider_statement(p, folds, by_provider.get(p, []), (fee_bps or {}).get(p))
            for p in owners[AccountKind.EARNINGS]
        ),
        tb,
        len(period),
        market_lines(period),
    )


def plan_payouts(settlement: Settlement, *, at: datetime, actor: str) -> list[Transfer]:
    """Pay each provider its positive closing earnings; keys are derived from the period, so a rerun is EXISTS."""
    period = f"{settlement.start.isoformat()}/{settlement.end.isoformat()}"
    return [
        plan_payout(f"payout:{p.provider}:{period}", provider=p.provider, fen=p.closing_fen, at=at, actor=actor)
        for p in settlement.providers
        if p.closing_fen > 0
    ]


CSV_COLUMNS = ("section", "party", "job_id", "resource_class", "item", "fen", "yuan")


def settlement_csv(settlement: Settlement) -> str:
    """One CSV for the period: consumer and provider statements, charge lines, trial balance."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)

    def row(section: str, party: str, item: str, fen: Fen, job: str = "", cls: str = "") -> None:
        writer.writerow((section, party, job, cls, item, fen, format_yuan(fen)))

    for c in settlement.consumers:
        for item in ("opening", "topups", "charged", "voucher", "reversals", "adjustments", "closing", "closing_held"):
            row("consumer", c.consumer, item, getattr(c, f"{item}_fen"))
        for line in c.charges:
            row("consumer_charge", c.consumer, "paid", line.paid_fen, line.job_id, line.resource_class)
            row("consumer_charge", c.consumer, "voucher", line.voucher_fen, line.job_id, line.resource_class)
    for p in settlement.providers:
        for item in ("opening", "gross", "fee", "rounding", "earned", "payouts", "reversals", "adjustments", "closing"):
            row("provider", p.provider, item, getattr(p, f"{item}_fen"))
        for line in p.charges:
            row("provider_charge", p.provider, "gross", line.gross_fen, line.job_id, line.resource_class)
            row("provider_charge", p.provider, "fee", line.fee_fen, line.job_id, line.resource_class)
            row("provider_charge", p.provider, "net", line.net_fen, line.job_id, line.resource_class)
    for m in settlement.market:
        row("market", m.account, f"{m.session} {m.item} {m.ref}".strip(), m.fen)
    for account_line in settlement.trial_balance:
        row("account", str(account_line.account), "opening", account_line.opening_fen)
        row("account", str(account_line.account), "closing", account_line.closing_fen)
    return out.getvalue()
