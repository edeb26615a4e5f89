"""Double-entry ledger core: accounts, postings, transfers, holds and the rules a store enforces.

Why: every movement of money is a :class:`Transfer` of :class:`Posting` legs in
integer fen.  Planners here (``plan_*``) are pure: they turn intent plus the
state the caller read into a transfer.  :func:`check_transfer` is the one rule
book any store (``MemoryLedger``, the database adapter) runs, against a
:class:`LedgerView`, inside the same atomic step that appends the transfer.

Invariants owned here (LEDGER.md)
- L1 each transfer's postings sum to zero per currency (checked on construction,
  asserted again on apply; the assert stays on in production).
- L4 append-only: a correction is a REVERSAL transfer linked to the original,
  booked after it; an original can be reversed once; hold movements are not
  reversible (release or void them instead).
- L5 one transfer per idempotency key: same key and same request -> EXISTS;
  same key, different request -> EXISTS_WITH_DIFFERENT_PAYLOAD.  Deviation from
  TigerBeetle: a *failed* key is not burnt, because charge keys are derived from
  usage-record keys and a charge must be re-planned and retried after a race.
- L6 a hold resolves once (RELEASE or VOID); charges capture from it while open,
  never more than remains.
- L7 floors, counting holds pessimistically (held money has left the wallet):
  wallet >= -credit_limit, hold / earnings / voucher fund >= 0.  Two flows may
  pass a floor and are flagged ``over_limit`` instead of refused, because the
  money was already earned: a CHARGE (compute already delivered) may overdraw a
  wallet, a REVERSAL may overdraw provider earnings (a claw-back).
- Settled periods are immutable: nothing may be booked before ``settled_until``.

Sign convention: a posting adds ``fen`` to its account; a positive balance is
value the account holds.  Top-ups come from FUNDING (operator cash), which
therefore goes negative; the sum over all accounts is always zero.

Layout: ``core`` (values and the rule book), ``planners`` (pure plan_* and folds), ``rows`` (the
encoding store adapters write).  Every public name is re-exported here.
"""

from __future__ import annotations

from suanwang.domain.ledger.core import (
    OPERATOR_FUNDING,
    PLATFORM_FEES,
    REVERSIBLE,
    ROUNDING,
    Account,
    AccountKind,
    Audit,
    Check,
    Hold,
    HoldId,
    HoldState,
    LedgerView,
    Posting,
    ResultCode,
    Transfer,
    TransferKey,
    TransferKind,
    TransferResult,
    check_transfer,
    currency_totals,
    digest,
    digest_text,
    earnings,
    floor_of,
    hold_account,
    hold_after,
    holds_to_expire,
    result_error,
    reversal_postings,
    voucher_fund,
    wallet,
)
from suanwang.domain.ledger.planners import (
    Balances,
    audit_record,
    fold_balances,
    plan_adjustment,
    plan_hold,
    plan_payout,
    plan_release,
    plan_reversal,
    plan_topup,
    plan_voucher_funding,
)
from suanwang.domain.ledger.rows import transfer_from_row, transfer_json, transfer_text, transfer_to_row

__all__ = [
    "OPERATOR_FUNDING",
    "PLATFORM_FEES",
    "REVERSIBLE",
    "ROUNDING",
    "Account",
    "AccountKind",
    "Audit",
    "Balances",
    "Check",
    "Hold",
    "HoldId",
    "HoldState",
    "LedgerView",
    "Posting",
    "ResultCode",
    "Transfer",
    "TransferKey",
    "TransferKind",
    "TransferResult",
    "audit_record",
    "check_transfer",
    "currency_totals",
    "digest",
    "digest_text",
    "earnings",
    "floor_of",
    "fold_balances",
    "hold_account",
    "hold_after",
    "holds_to_expire",
    "plan_adjustment",
    "plan_hold",
    "plan_payout",
    "plan_release",
    "plan_reversal",
    "plan_topup",
    "plan_voucher_funding",
    "result_error",
    "reversal_postings",
    "transfer_from_row",
    "transfer_json",
    "transfer_text",
    "transfer_to_row",
    "voucher_fund",
    "wallet",
]
