"""Compute vouchers (算力券): an operator-funded programme that pays part of eligible bills.

Why: governments and operators subsidise small consumers' compute.  A
programme pays ``share_pct`` of each eligible charge, up to a per-consumer cap,
from a fund the operator tops up (``ledger.plan_voucher_funding``).

Invariants owned here
- 0 <= share_pct <= 100 (above 100 would pay the consumer to compute) with at
  most 4 decimal places, 0 <= cap <= money.MAX_FEN, validity is a half-open
  window ``[valid_from, valid_until)`` judged at usage start; a new programme
  ends at most ``MAX_AHEAD`` from now (:func:`check_new_programme`).  All are
  checked as parsed, before any arithmetic (``1e999999`` never becomes a number).
- The share is computed from the integer gross charge, rounded half-even, then
  cut to what the cap and the fund still allow: never negative, never more than
  the gross.  The ledger re-checks the cap when it applies the charge.
- When several programmes apply, the one paying the largest share wins (ties:
  programme id), so the choice is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from suanwang.domain.money import MAX_FEN, Fen, check_fen, parse_bounded, round_fen
from suanwang.domain.resources import ResourceClass
from suanwang.errors import InvalidSpec

MAX_AHEAD = timedelta(days=731)  # a programme is published at most two years before it ends
SHARE_PLACES = 4


@dataclass(frozen=True, slots=True)
class VoucherProgramme:
    """A voucher programme.  ``consumers`` None means every consumer is eligible."""

    id: str
    share_pct: Decimal
    cap_per_consumer_fen: Fen
    valid_from: datetime
    valid_until: datetime
    resource_classes: frozenset[ResourceClass] = frozenset(ResourceClass)
    consumers: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if not self.id or ":" in self.id:
            raise InvalidSpec(f"voucher programme id must be non-empty without ':': {self.id!r}")
        share = parse_bounded(self.share_pct, what=f"voucher {self.id} share_pct", low=0, high=100,
                              places=SHARE_PLACES)
        object.__setattr__(self, "share_pct", share)
        check_fen(self.cap_per_consumer_fen, f"voucher {self.id} cap")
        if not 0 <= self.cap_per_consumer_fen <= MAX_FEN:
            raise InvalidSpec(f"voucher {self.id}: cap must lie within 0..{MAX_FEN:,} fen")
        if self.valid_from.tzinfo is None or self.valid_until.tzinfo is None:
            raise InvalidSpec(f"voucher {self.id}: validity times must be timezone-aware")
        if self.valid_until <= self.valid_from:
            raise InvalidSpec(f"voucher {self.id}: valid_until must be after valid_from")
        if not self.resource_classes:
            raise InvalidSpec(f"voucher {self.id}: at least one resource class must be eligible")

    def shows_to(self, consumer: str) -> bool:
        """Whether ``consumer`` may see this programme: open to all, or naming it."""
        return self.consumers is None or consumer in self.consumers

    def is_eligible(self, *, consumer: str, resource_class: ResourceClass, at: datetime) -> bool:
        return (
            self.valid_from <= at < self.valid_until
            and resource_class in self.resource_classes
            and (self.consumers is None or consumer in self.consumers)
        )


def check_new_programme(programme: VoucherProgramme, *, now: datetime) -> VoucherProgramme:
    """Refuse a programme whose window reaches beyond ``MAX_AHEAD`` from now; return it otherwise.

    (A window in the past is harmless: it pays nothing.  Stored programmes are re-read without this
    check: their windows stay valid as time goes by.)
    """
    for what, at in (("valid_from", programme.valid_from), ("valid_until", programme.valid_until)):
        if at > now + MAX_AHEAD:
            raise InvalidSpec(f"voucher {programme.id}: {what} {at.isoformat()} is more than {MAX_AHEAD.days} "
                              f"days ahead")
    return programme


def pick_programme(
    programmes: Iterable[VoucherProgramme], *, consumer: str, resource_class: ResourceClass, at: datetime
) -> VoucherProgramme | None:
    """The eligible programme paying the largest share (ties: smallest id), or None."""
    eligible = [p for p in programmes if p.is_eligible(consumer=consumer, resource_class=resource_class, at=at)]
    if not eligible:
        return None
    return min(eligible, key=lambda p: (-p.share_pct, p.id))


def voucher_share(programme: VoucherProgramme, *, gross_fen: Fen, used_fen: Fen, fund_fen: Fen) -> Fen:
    """What ``programme`` pays of a ``gross_fen`` charge, given what this consumer already used and the fund.

    share = round_half_even(gross * share_pct / 100), then min(share, cap - used, fund), floored at 0.
    """
    check_fen(gross_fen, "gross")
    if gross_fen <= 0:
        return 0
    wanted, _ = round_fen(Fraction(gross_fen) * Fraction(programme.share_pct) / 100)
    return max(0, min(wanted, programme.cap_per_consumer_fen - used_fen, fund_fen, gross_fen))
