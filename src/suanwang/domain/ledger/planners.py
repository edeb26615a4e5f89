"""Planners (pure): intent plus the state the caller read, turned into a transfer; and folds of
transfers into balances (L3) and audit records."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from suanwang.domain.ledger.core import (
    OPERATOR_FUNDING,
    REVERSIBLE,
    Account,
    Audit,
    Hold,
    HoldId,
    Posting,
    Transfer,
    TransferKey,
    TransferKind,
    digest,
    earnings,
    hold_account,
    reversal_postings,
    voucher_fund,
    wallet,
)
from suanwang.domain.money import Fen, check_fen
from suanwang.errors import InvalidSpec


def _positive(fen: Fen, what: str) -> Fen:
    check_fen(fen, what)
    if fen <= 0:
        raise InvalidSpec(f"{what} must be positive, got {fen} fen")
    return fen


def plan_topup(key: TransferKey, *, consumer: str, fen: Fen, at: datetime, actor: str, reason: str = "") -> Transfer:
    """Operator adds ``fen`` to a consumer's wallet.  Raises InvalidSpec if not positive."""
    _positive(fen, "top-up")
    postings = (Posting(OPERATOR_FUNDING, -fen), Posting(wallet(consumer), fen))
    return Transfer(key, TransferKind.TOPUP, postings, at, Audit(actor, reason, consumer=consumer))


def plan_hold(
    key: TransferKey,
    *,
    hold_id: HoldId,
    consumer: str,
    fen: Fen,
    at: datetime,
    actor: str,
    job_id: str = "",
    expires_at: datetime | None = None,
) -> Transfer:
    """Reserve ``fen`` of a consumer's wallet (and credit) for a job, at submit, from its quote."""
    _positive(fen, "hold")
    if expires_at is not None and expires_at <= at:
        raise InvalidSpec(f"hold {hold_id} would expire before it is placed")
    postings = (Posting(wallet(consumer), -fen), Posting(hold_account(consumer), fen))
    audit = Audit(actor, "hold placed", consumer=consumer, job_id=job_id)
    return Transfer(
        key, TransferKind.HOLD_PLACE, postings, at, audit, hold_id=hold_id, hold_fen=fen, hold_expires_at=expires_at
    )


def plan_release(
    key: TransferKey, *, hold: Hold, at: datetime, actor: str, void: bool = False, job_id: str = "", reason: str = ""
) -> Transfer:
    """Close an open hold, returning what remains to the wallet (VOID: cancelled before any capture).

    At completion this is the second phase of the two-phase hold: what the
    job's charges captured stays captured, the remainder is released.
    """
    fen = hold.remaining_fen
    postings = (Posting(hold_account(hold.consumer), -fen), Posting(wallet(hold.consumer), fen)) if fen else ()
    kind = TransferKind.HOLD_VOID if void else TransferKind.HOLD_RELEASE
    why = reason or ("hold voided" if void else "hold released")
    audit = Audit(actor, why, consumer=hold.consumer, job_id=job_id)
    # The request is "close this hold": a retry planned after the close still answers EXISTS.
    return Transfer(key, kind, postings, at, audit, request=digest(kind, hold.id), hold_id=hold.id, hold_fen=fen)


def plan_voucher_funding(key: TransferKey, *, programme: str, fen: Fen, at: datetime, actor: str) -> Transfer:
    _positive(fen, "voucher funding")
    postings = (Posting(OPERATOR_FUNDING, -fen), Posting(voucher_fund(programme), fen))
    return Transfer(
        key,
        TransferKind.VOUCHER_FUND,
        postings,
        at,
        Audit(actor, "voucher programme funded"),
        voucher_programme=programme,
    )


def plan_payout(key: TransferKey, *, provider: str, fen: Fen, at: datetime, actor: str) -> Transfer:
    _positive(fen, "payout")
    postings = (Posting(earnings(provider), -fen), Posting(OPERATOR_FUNDING, fen))
    return Transfer(key, TransferKind.PAYOUT, postings, at, Audit(actor, "payout", provider=provider))


def plan_adjustment(
    key: TransferKey, *, postings: Iterable[Posting], at: datetime, actor: str, reason: str
) -> Transfer:
    """An operator's balanced manual correction; the reason is mandatory."""
    if not reason:
        raise InvalidSpec("an adjustment needs a reason")
    return Transfer(key, TransferKind.ADJUSTMENT, tuple(postings), at, Audit(actor, reason))


def plan_reversal(key: TransferKey, *, original: Transfer, at: datetime, actor: str, reason: str) -> Transfer:
    """Negate ``original``.  What a charge captured from a hold is refunded to the wallet."""
    if original.kind not in REVERSIBLE:
        raise InvalidSpec(f"transfer {original.key} ({original.kind}) cannot be reversed")
    if at < original.booked_at:
        raise InvalidSpec(f"reversal of {original.key} must be booked after it")
    if not reason:
        raise InvalidSpec("a reversal needs a reason")
    postings = reversal_postings(original)
    audit = Audit(
        actor,
        reason,
        consumer=original.audit.consumer,
        provider=original.audit.provider,
        job_id=original.audit.job_id,
        usage_key=original.audit.usage_key,
        price_book_version=original.audit.price_book_version,
        resource_class=original.audit.resource_class,
        pool=original.audit.pool,
    )
    request = digest(TransferKind.REVERSAL, original.key)
    return Transfer(
        key,
        TransferKind.REVERSAL,
        postings,
        at,
        audit,
        request=request,
        voucher_programme=original.voucher_programme,
        voucher_fen=-original.voucher_fen,
        reverses=original.key,
    )


@dataclass(frozen=True, slots=True)
class Balances:
    """Balances folded from transfers; ``as_of`` excludes transfers booked at or after it."""

    fen: Mapping[Account, Fen] = field(default_factory=dict)

    def __getitem__(self, account: Account) -> Fen:
        return self.fen.get(account, 0)


def fold_balances(transfers: Iterable[Transfer], *, as_of: datetime | None = None) -> Balances:
    """L3: a balance is the fold of its postings (optionally as of a time, half-open)."""
    totals: dict[Account, Fen] = {}
    for t in transfers:
        if as_of is not None and t.booked_at >= as_of:
            continue
        for p in t.postings:
            totals[p.account] = totals.get(p.account, 0) + p.fen
    return Balances(totals)


def audit_record(t: Transfer) -> dict[str, str]:
    """A flat, printable trace of a transfer for the audit view: key, kind, time, legs and provenance."""
    a = t.audit
    return {
        "key": t.key,
        "kind": t.kind.value,
        "booked_at": t.booked_at.isoformat(),
        "actor": a.actor,
        "reason": a.reason,
        "consumer": a.consumer,
        "provider": a.provider,
        "job_id": a.job_id,
        "usage_key": a.usage_key,
        "price_book_version": "" if a.price_book_version is None else str(a.price_book_version),
        "resource_class": a.resource_class,
        "pool": a.pool,
        "usage_start": a.usage_start.isoformat() if a.usage_start else "",
        "usage_end": a.usage_end.isoformat() if a.usage_end else "",
        "hold_id": t.hold_id,
        "voucher_programme": t.voucher_programme,
        "reverses": t.reverses,
        "postings": "; ".join(f"{p.account} {p.fen:+d}" for p in t.postings),
        "request": t.request,
    }
