"""Market lines on settlement statements (pure): what each party's accounts moved for the market, by session.

Read back from the ledger's transfers by their keys (``market:<session>:<item>[:<ref>]``, written by
``domain/market/money.py``), so a statement needs nothing but the transfers it already folds: contract
charges (buyers), sales (providers), congestion rent, rounding, uplift (make-whole), failure refunds and
penalties, lent-capacity credits.  Holds and their releases are left out (they move money within a
consumer's own accounts), and so is the session's suspense account (zero once the clear is applied).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from suanwang.domain.ledger import AccountKind, Transfer
from suanwang.domain.money import Fen

_KEY = re.compile(r"^market:(?P<session>(?:da|id)-[0-9T-]+(?::\d\d){0,2}):"
                  r"(?P<item>charge|earn|congestion|rounding|uplift|failed-congestion|failed|lent)(?::(?P<ref>.*))?$")
ITEMS = {"charge": "contract charge", "earn": "contract sale", "congestion": "congestion rent",
         "rounding": "rounding", "uplift": "make-whole uplift", "failed": "failed delivery: refund and penalty",
         "failed-congestion": "failed delivery: congestion refund", "lent": "lent capacity credit"}


@dataclass(frozen=True, slots=True)
class MarketLine:
    """``fen`` moved on ``account`` (signed, as the account sees it) by one market transfer."""

    session: str
    item: str  # a key of ITEMS
    ref: str  # the bid, ask or contract line the transfer is for ("" for session-wide items)
    account: str
    fen: Fen


def market_lines(transfers: Iterable[Transfer]) -> tuple[MarketLine, ...]:
    """The market lines of ``transfers`` (any others are ignored), in the transfers' order."""
    out: list[MarketLine] = []
    for t in transfers:
        m = _KEY.match(t.key)
        if m is None:
            continue
        for p in t.postings:
            if not (p.account.kind is AccountKind.FUNDING and p.account.owner.startswith("market-")):
                out.append(MarketLine(m["session"], m["item"], m["ref"] or "", str(p.account), p.fen))
    return tuple(out)
