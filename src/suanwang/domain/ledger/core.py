"""The ledger's values and its rule book: accounts, postings, transfers, holds, results, and
:func:`check_transfer`, which every store runs before it appends (invariants L1, L4-L7 in the package docstring)."""

from __future__ import annotations

import enum
import functools
import hashlib
import json
import json.encoder
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, is_dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any, Protocol

from suanwang.domain.money import CURRENCY, Fen, check_currency, check_fen
from suanwang.errors import Conflict, InsufficientFunds, InvalidSpec, NotFound, SuanwangError

TransferKey = str  # client-generated idempotency key, e.g. "usage:job-1:0:3"


HoldId = str


@enum.unique
class AccountKind(enum.StrEnum):
    """What an account is for; decides its floor."""

    WALLET = "wallet"  # a consumer's spendable funds (floor: -credit_limit)
    HOLD = "hold"  # a consumer's funds reserved for running jobs (floor 0)
    EARNINGS = "earnings"  # what the platform owes a provider (floor 0)
    FEES = "fees"  # platform fee income
    VOUCHER = "voucher"  # a voucher programme's fund (floor 0)
    FUNDING = "funding"  # operator cash: source of top-ups and voucher funds, sink of payouts
    ROUNDING = "rounding"  # integer residue of splitting a charge into provider and fee legs


@dataclass(frozen=True, slots=True, order=True)
class Account:
    kind: AccountKind
    owner: str

    def __post_init__(self) -> None:
        if not self.owner or ":" in self.owner:
            raise InvalidSpec(f"account owner must be non-empty without ':': {self.owner!r}")

    def __str__(self) -> str:
        return self.kind + ":" + self.owner  # a StrEnum concatenates as its value (no enum property lookup)

    def __hash__(self) -> int:  # the generated hash calls Enum.__hash__ in Python; accounts key hot dicts
        return hash((str.__hash__(self.kind), self.owner))

    @classmethod
    def parse(cls, text: str) -> Account:
        kind, _, owner = text.partition(":")
        try:
            return cls(AccountKind(kind), owner)
        except ValueError as exc:
            raise InvalidSpec(f"unknown account {text!r}") from exc


# An Account is immutable, so the few thousand a platform uses are built (and validated) once each.
@functools.lru_cache(maxsize=65_536)
def wallet(consumer: str) -> Account:
    return Account(AccountKind.WALLET, consumer)


@functools.lru_cache(maxsize=65_536)
def hold_account(consumer: str) -> Account:
    return Account(AccountKind.HOLD, consumer)


@functools.lru_cache(maxsize=65_536)
def earnings(provider: str) -> Account:
    return Account(AccountKind.EARNINGS, provider)


@functools.lru_cache(maxsize=4_096)
def voucher_fund(programme: str) -> Account:
    return Account(AccountKind.VOUCHER, programme)


PLATFORM_FEES = Account(AccountKind.FEES, "platform")


OPERATOR_FUNDING = Account(AccountKind.FUNDING, "operator")


ROUNDING = Account(AccountKind.ROUNDING, "platform")


@dataclass(frozen=True, slots=True)
class Posting:
    """One leg: ``fen`` (signed, non-zero) added to ``account``."""

    account: Account
    fen: Fen
    currency: str = CURRENCY

    def __post_init__(self) -> None:
        check_fen(self.fen, "posting amount")
        check_currency(self.currency)
        if self.fen == 0:
            raise InvalidSpec(f"zero posting to {self.account}")


@enum.unique
class TransferKind(enum.StrEnum):
    TOPUP = "topup"  # operator funding -> consumer wallet
    HOLD_PLACE = "hold_place"  # wallet -> hold, at submit, from the quote
    HOLD_RELEASE = "hold_release"  # hold -> wallet: what remains at completion; closes the hold
    HOLD_VOID = "hold_void"  # hold -> wallet: cancelled before any capture; closes the hold
    CHARGE = "charge"  # one usage record: (hold|wallet) + voucher -> earnings + fee + rounding
    VOUCHER_FUND = "voucher_fund"  # operator funding -> voucher programme fund
    PAYOUT = "payout"  # provider earnings -> operator funding (paid out of the platform)
    REVERSAL = "reversal"  # negates an earlier transfer (a correction)
    ADJUSTMENT = "adjustment"  # an operator's manual balanced correction


REVERSIBLE = frozenset(
    {TransferKind.TOPUP, TransferKind.CHARGE, TransferKind.VOUCHER_FUND, TransferKind.PAYOUT, TransferKind.ADJUSTMENT}
)


_HOLD_KINDS = frozenset({TransferKind.HOLD_PLACE, TransferKind.HOLD_RELEASE, TransferKind.HOLD_VOID})


_HOLD_OR_CHARGE = _HOLD_KINDS | {TransferKind.CHARGE}


_INT = {int}


@dataclass(frozen=True, slots=True)
class Audit:
    """Who and what a transfer traces back to (the audit view reads these)."""

    actor: str
    reason: str = ""
    consumer: str = ""
    provider: str = ""
    job_id: str = ""
    usage_key: str = ""
    price_book_version: int | None = None
    resource_class: str = ""
    pool: str = ""
    usage_start: datetime | None = None
    usage_end: datetime | None = None

    def __post_init__(self) -> None:
        if not self.actor:
            raise InvalidSpec("every transfer needs an actor")


@dataclass(frozen=True, slots=True)
class Transfer:
    """A balanced, immutable journal entry.

    ``request`` is the digest of the request the key stands for (for a charge,
    the usage record; for a release, the hold id; by default the legs, kind
    and links, but not ``booked_at`` or ``audit``); idempotency compares it, so
    a retry made later, or re-planned against newer state, still answers EXISTS.
    ``hold_fen`` is the amount placed, captured or released on ``hold_id``;
    ``voucher_fen`` what the voucher programme paid (negative in a reversal);
    ``voucher_cap_fen`` that programme's per-consumer cap at planning time.
    """

    key: TransferKey
    kind: TransferKind
    postings: tuple[Posting, ...]
    booked_at: datetime
    audit: Audit
    request: str = ""
    hold_id: HoldId = ""
    hold_fen: Fen = 0
    voucher_programme: str = ""
    voucher_fen: Fen = 0
    voucher_cap_fen: Fen = 0
    reverses: TransferKey = ""
    hold_expires_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.key:
            raise InvalidSpec("a transfer needs an idempotency key")
        if self.booked_at.tzinfo is None:
            raise InvalidSpec(f"transfer {self.key}: booked_at must be timezone-aware")
        if set(map(type, (self.hold_fen, self.voucher_fen, self.voucher_cap_fen))) != _INT:
            for value, what in (
                (self.hold_fen, "hold_fen"),
                (self.voucher_fen, "voucher_fen"),
                (self.voucher_cap_fen, "voucher_cap_fen"),
            ):
                check_fen(value, what)
        total = held = 0
        currencies = set()
        for p in self.postings:  # one pass: rating builds thousands of transfers a second
            total += p.fen
            currencies.add(p.currency)
            if p.account.kind is AccountKind.HOLD:
                held += p.fen
        if total or len(currencies) > 1:
            totals = currency_totals(self.postings)
            if any(totals.values()):
                raise InvalidSpec(f"transfer {self.key} does not balance: {totals}")
        self._check_links(held)
        if not self.request:
            object.__setattr__(
                self,
                "request",
                digest(
                    self.kind,
                    self.postings,
                    self.hold_id,
                    self.hold_fen,
                    self.voucher_programme,
                    self.voucher_fen,
                    self.reverses,
                ),
            )

    def _check_links(self, held: Fen) -> None:
        """The hold and voucher fields must say what the postings do, or the hold/voucher books drift.
        ``held`` is the sum of the postings to hold accounts."""
        expected_held = self.hold_fen if self.kind is TransferKind.HOLD_PLACE else -self.hold_fen
        if held != expected_held:
            raise InvalidSpec(f"transfer {self.key}: hold postings {held} do not match hold_fen {self.hold_fen}")
        if (self.kind in _HOLD_KINDS or self.hold_fen) and not self.hold_id:
            raise InvalidSpec(f"transfer {self.key}: {self.kind} needs a hold_id")
        if self.kind not in _HOLD_OR_CHARGE and (self.hold_id or self.hold_fen):
            raise InvalidSpec(f"transfer {self.key}: {self.kind} cannot move a hold")
        if self.kind in (TransferKind.CHARGE, TransferKind.REVERSAL) and self.voucher_programme:
            paid = -sum(p.fen for p in self.postings if p.account == voucher_fund(self.voucher_programme))
            if paid != self.voucher_fen:
                raise InvalidSpec(f"transfer {self.key}: voucher postings {paid} do not match voucher_fen")

    def delta(self, account: Account) -> Fen:
        return sum(p.fen for p in self.postings if p.account == account)

    def accounts(self) -> list[Account]:
        return sorted({p.account for p in self.postings})


def currency_totals(postings: Iterable[Posting]) -> dict[str, Fen]:
    totals: dict[str, Fen] = {}
    for p in postings:
        totals[p.currency] = totals.get(p.currency, 0) + p.fen
    return totals


def _canonical(value: object) -> object:
    """The JSON form a digest hashes: by the exact type's handler (found once per type, in the
    order of :func:`_handler_for`), because rating digests thousands of records a second."""
    handler = _HANDLERS.get(type(value))
    if handler is None:
        handler = _HANDLERS[type(value)] = _handler_for(type(value))
    return handler(value)


def _handler_for(kind: type) -> Any:
    """How values of exactly ``kind`` canonicalise; the branch order decides for types that are several things."""
    if issubclass(kind, float):
        return _refuse_float
    if is_dataclass(kind) and not issubclass(kind, type):
        names = tuple(f.name for f in fields(kind))
        return lambda value: {name: _canonical(getattr(value, name)) for name in names}
    if issubclass(kind, enum.Enum):
        return lambda value: value.value
    if issubclass(kind, datetime):  # the same instant digests the same in any zone
        return lambda value: value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if issubclass(kind, Decimal):  # 1, 1.0 and 1.00 are the same quantity
        return lambda value: format(value.normalize(), "f")
    if issubclass(kind, Fraction):
        return str
    if issubclass(kind, tuple | list):
        return lambda value: [_canonical(v) for v in value]
    if issubclass(kind, frozenset | set):
        return lambda value: sorted(str(_canonical(v)) for v in value)
    if issubclass(kind, Mapping):
        return lambda value: {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    return _same


def _refuse_float(value: object) -> object:
    raise TypeError(f"float {value!r} in a money request: use int fen or Decimal")


def _same(value: object) -> object:
    return value


_HANDLERS: dict[type, Any] = {str: _same, int: _same, bool: _same, type(None): _same}


_DIGEST_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False)  # json.dumps would build one per call


def digest(*parts: object) -> str:
    """A stable sha256 of plain values and frozen dataclasses (no float allowed in money)."""
    return digest_text(_DIGEST_JSON.encode([_canonical(p) for p in parts]))


def digest_text(text: str) -> str:
    """The sha256 of a canonical JSON text: what :func:`digest` hashes (for writers of that text)."""
    return hashlib.sha256(text.encode()).hexdigest()


@enum.unique
class HoldState(enum.StrEnum):
    OPEN = "open"  # placed; charges capture from it
    RELEASED = "released"  # completed: the remainder went back to the wallet
    VOIDED = "voided"  # cancelled before any capture


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation for one job; ``expires_at`` (if set) is when a sweeper releases it."""

    id: HoldId
    consumer: str
    amount_fen: Fen
    captured_fen: Fen = 0
    released_fen: Fen = 0
    state: HoldState = HoldState.OPEN
    expires_at: datetime | None = None

    @property
    def remaining_fen(self) -> Fen:
        return self.amount_fen - self.captured_fen - self.released_fen


def holds_to_expire(holds: Iterable[Hold], *, now: datetime) -> list[Hold]:
    """Open holds whose expiry has come, by (expires_at, id): release each with ``plan_release``."""
    due = [h for h in holds if h.state is HoldState.OPEN and h.expires_at is not None and h.expires_at <= now]
    return sorted(due, key=lambda h: (h.expires_at, h.id))


@enum.unique
class ResultCode(enum.StrEnum):
    CREATED = "created"
    EXISTS = "exists"  # identical retry: the original result stands
    EXISTS_WITH_DIFFERENT_PAYLOAD = "exists_with_different_payload"
    EXCEEDS_CREDIT = "exceeds_credit"  # a wallet would pass its credit line
    EXCEEDS_BALANCE = "exceeds_balance"  # a hold, earnings or voucher account would go negative
    HOLD_EXISTS = "hold_exists"
    HOLD_NOT_FOUND = "hold_not_found"
    HOLD_CLOSED = "hold_closed"  # already released or voided
    HOLD_EXCEEDED = "hold_exceeded"  # capture larger than what remains
    HOLD_STALE = "hold_stale"  # release planned from an outdated remaining amount
    HOLD_CAPTURED = "hold_captured"  # void asked after a capture; release instead
    VOUCHER_CAP_EXCEEDED = "voucher_cap_exceeded"
    PERIOD_SETTLED = "period_settled"  # booked inside a settled period
    REVERSAL_TARGET_MISSING = "reversal_target_missing"
    ALREADY_REVERSED = "already_reversed"
    NOT_REVERSIBLE = "not_reversible"
    LINKED_FAILED = "linked_failed"  # another transfer of an atomic batch failed


@dataclass(frozen=True, slots=True)
class TransferResult:
    key: TransferKey
    code: ResultCode
    over_limit: bool = False  # applied, but a wallet passed its credit line (stop the job)

    @property
    def ok(self) -> bool:
        return self.code in (ResultCode.CREATED, ResultCode.EXISTS)


_ERROR_BY_CODE: dict[ResultCode, type[SuanwangError]] = {
    ResultCode.EXCEEDS_CREDIT: InsufficientFunds,
    ResultCode.EXCEEDS_BALANCE: Conflict,
    ResultCode.HOLD_NOT_FOUND: NotFound,
    ResultCode.REVERSAL_TARGET_MISSING: NotFound,
}


def result_error(result: TransferResult, transfer: Transfer | None = None) -> SuanwangError | None:
    """The exception an adapter raises for a refused result (None if ok): EXCEEDS_CREDIT -> 402, ..."""
    if result.ok:
        return None
    error = _ERROR_BY_CODE.get(result.code, Conflict)
    what = f" ({transfer.kind}, booked {transfer.booked_at.isoformat()})" if transfer else ""
    messages = {
        ResultCode.EXCEEDS_CREDIT: "insufficient funds: wallet balance plus credit line cannot cover it",
        ResultCode.EXISTS_WITH_DIFFERENT_PAYLOAD: "idempotency key reused with a different request",
        ResultCode.PERIOD_SETTLED: "the period it would be booked in is settled and immutable",
    }
    message = messages.get(result.code, result.code.value.replace("_", " "))
    return error(f"transfer {result.key}{what} refused: {message}", code=result.code.value)


class LedgerView(Protocol):
    """What :func:`check_transfer` needs to read; a store answers it under its lock."""

    def balance(self, account: Account) -> Fen: ...
    def credit_limit(self, consumer: str) -> Fen: ...
    def hold(self, hold_id: HoldId) -> Hold | None: ...
    def transfer(self, key: TransferKey) -> Transfer | None: ...
    def reversed_by(self, key: TransferKey) -> TransferKey | None: ...
    def voucher_used(self, programme: str, consumer: str) -> Fen: ...
    def settled_until(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class Check:
    code: ResultCode | None  # None: the transfer may be applied
    over_limit: bool = False


def check_transfer(view: LedgerView, t: Transfer) -> Check:
    """The rule book.  Call only after the idempotency lookup found no transfer with ``t.key``."""
    settled = view.settled_until()
    if settled is not None and t.booked_at < settled:
        return Check(ResultCode.PERIOD_SETTLED)
    for rule in (_check_hold, _check_reversal, _check_voucher):
        code = rule(view, t)
        if code is not None:
            return Check(code)
    return _check_floors(view, t)


def _check_hold(view: LedgerView, t: Transfer) -> ResultCode | None:
    if not t.hold_id:
        return None
    hold = view.hold(t.hold_id)
    if t.kind is TransferKind.HOLD_PLACE:
        return ResultCode.HOLD_EXISTS if hold is not None else None
    if hold is None:
        return ResultCode.HOLD_NOT_FOUND
    if hold.state is not HoldState.OPEN:
        return ResultCode.HOLD_CLOSED
    if t.kind is TransferKind.CHARGE:
        return ResultCode.HOLD_EXCEEDED if t.hold_fen > hold.remaining_fen else None
    if t.kind is TransferKind.HOLD_VOID and hold.captured_fen > 0:
        return ResultCode.HOLD_CAPTURED
    return ResultCode.HOLD_STALE if t.hold_fen != hold.remaining_fen else None


def _check_reversal(view: LedgerView, t: Transfer) -> ResultCode | None:
    if t.kind is not TransferKind.REVERSAL:
        return None
    original = view.transfer(t.reverses)
    if original is None:
        return ResultCode.REVERSAL_TARGET_MISSING
    if original.kind not in REVERSIBLE:
        return ResultCode.NOT_REVERSIBLE
    if view.reversed_by(original.key) is not None:
        return ResultCode.ALREADY_REVERSED
    if t.booked_at < original.booked_at or t.postings != reversal_postings(original):
        return ResultCode.NOT_REVERSIBLE  # a reversal follows its original and negates it exactly
    return None


def _check_voucher(view: LedgerView, t: Transfer) -> ResultCode | None:
    if t.voucher_fen <= 0 or not t.voucher_programme:
        return None
    used = view.voucher_used(t.voucher_programme, t.audit.consumer)
    return ResultCode.VOUCHER_CAP_EXCEEDED if used + t.voucher_fen > t.voucher_cap_fen else None


def floor_of(view: LedgerView, account: Account) -> Fen | None:
    """The lowest balance ``account`` may reach, or None if unbounded."""
    if account.kind is AccountKind.WALLET:
        return -view.credit_limit(account.owner)
    if account.kind in (AccountKind.HOLD, AccountKind.EARNINGS, AccountKind.VOUCHER):
        return 0
    return None


# Flows that pass a floor flagged (over_limit) instead of refused: the money was already earned.
_MAY_PASS_FLOOR = frozenset({(TransferKind.CHARGE, AccountKind.WALLET), (TransferKind.REVERSAL, AccountKind.EARNINGS)})


def _check_floors(view: LedgerView, t: Transfer) -> Check:
    """Refuse (the first account in sorted order that fails decides the code) or flag over_limit."""
    deltas: dict[Account, Fen] = {}
    for p in t.postings:
        deltas[p.account] = deltas.get(p.account, 0) + p.fen
    over, refused = False, []
    for account, delta in deltas.items():
        if delta >= 0:
            continue
        floor = floor_of(view, account)
        if floor is None or view.balance(account) + delta >= floor:
            continue
        if (t.kind, account.kind) in _MAY_PASS_FLOOR:
            over = True
        else:
            refused.append(account)
    if refused:
        first = min(refused)
        return Check(ResultCode.EXCEEDS_CREDIT if first.kind is AccountKind.WALLET else ResultCode.EXCEEDS_BALANCE)
    return Check(None, over)


def hold_after(hold: Hold | None, t: Transfer) -> Hold | None:
    """The hold's state once ``t`` (already checked) is applied; None if ``t`` has no hold."""
    if not t.hold_id:
        return None
    if t.kind is TransferKind.HOLD_PLACE:
        return Hold(t.hold_id, t.audit.consumer, t.hold_fen, expires_at=t.hold_expires_at)
    assert hold is not None
    if t.kind is TransferKind.CHARGE:
        return replace(hold, captured_fen=hold.captured_fen + t.hold_fen)
    state = HoldState.VOIDED if t.kind is TransferKind.HOLD_VOID else HoldState.RELEASED
    return replace(hold, released_fen=hold.released_fen + t.hold_fen, state=state)


def reversal_postings(original: Transfer) -> tuple[Posting, ...]:
    """The legs that undo ``original``; what it captured from a hold goes back to the wallet."""
    merged: dict[Account, Fen] = {}
    for p in original.postings:
        account = wallet(p.account.owner) if p.account.kind is AccountKind.HOLD else p.account
        merged[account] = merged.get(account, 0) - p.fen
    return tuple(Posting(a, fen) for a, fen in sorted(merged.items()) if fen)
