"""Billing: wallets, top-ups, price books, quotes, holds, rating, vouchers, settlement and the audit view.

Why: the pure money core (``suanwang.domain.{money,pricing,rating,ledger,
voucher,settlement}``) decides every amount; this module reads the platform's
rows, asks the core, and books the result through ``SqlLedger`` in the
caller's transaction (one transaction per use case, as every service here).

Rules this module adds
- No price book in force means the platform is free: no hold at submit, and
  usage whose start has no book in force is rated with no charge
  (usage is always priced by the book in force at its start).
- A hold is placed at submit for the dearest eligible pool's quote (the
  scheduler, not the consumer, picks the pool), keyed ``hold:<job>``; no funds
  or credit raises InsufficientFunds (HTTP 402) and the submit writes nothing.
- A job that reaches a terminal state has its hold released (``release:<job>``).
- Rating books one CHARGE per usage record, keyed by the usage key: a retried
  report, a crash between steps or two workers at once all end in one charge
  (the key is unique in the database).  A job is cancelled when what is left
  (hold, wallet, credit) could not pay another report like its last one; a
  charge that still passes the credit line is booked (the compute was
  delivered), flagged over_limit, and stops the job the same way.
- Usage no price entry covers is rated without a charge and audited
  (``usage.unpriced``); configure the price book to avoid it.

The package is split along those use cases: ``wallets`` (wallets, credit, top-ups, contracts),
``books`` (price books), ``vouchers``, ``holds`` (quotes and holds), ``rating``, ``statements``
(settlement and the audit view); ``codec`` parses and renders billing JSON, ``common`` holds what they
share.  Every name is re-exported here, so ``from suanwang.services import billing`` keeps working.
"""

from __future__ import annotations

from suanwang.services.billing.books import (
    PriceBookDraft,
    PublishedBook,
    list_price_books,
    load_books,
    set_price_book,
)
from suanwang.services.billing.codec import (
    PERIOD_EARLIEST,
    PERIOD_LATEST,
    book_from_json,
    entry_from_json,
    money_json,
    parse_period,
    parse_time,
    programme_from_json,
    quote_json,
    settlement_json,
    tariff_from_json,
)
from suanwang.services.billing.common import SYSTEM, now_utc, retrying
from suanwang.services.billing.holds import (
    HOLD_GRACE_S,
    HoldBound,
    Quoter,
    hold_bound,
    hold_for_submit,
    price_queue,
    quote_for,
    quote_spec,
    release_job_hold,
    release_rated_holds,
)
from suanwang.services.billing.rating import RatingReport, rate_all, rate_pending_usage, stop_overspent_jobs
from suanwang.services.billing.statements import (
    accounts_view,
    get_settlement,
    ledger_transfers,
    list_settlements,
    reconcile_view,
    reverse_transfer,
    settle,
    settlement_csv_text,
    settlement_view,
    unbilled_usage,
)
from suanwang.services.billing.vouchers import (
    create_programme,
    fund_programme,
    list_programmes,
    load_programmes,
    programme_json,
)
from suanwang.services.billing.wallets import contracts, set_contract, set_credit_limit, top_up, wallet_view

__all__ = [
    "HOLD_GRACE_S",
    "PERIOD_EARLIEST",
    "PERIOD_LATEST",
    "SYSTEM",
    "HoldBound",
    "PriceBookDraft",
    "PublishedBook",
    "Quoter",
    "RatingReport",
    "accounts_view",
    "book_from_json",
    "contracts",
    "create_programme",
    "entry_from_json",
    "fund_programme",
    "get_settlement",
    "hold_bound",
    "hold_for_submit",
    "ledger_transfers",
    "list_price_books",
    "list_programmes",
    "list_settlements",
    "load_books",
    "load_programmes",
    "money_json",
    "now_utc",
    "parse_period",
    "parse_time",
    "price_queue",
    "programme_from_json",
    "programme_json",
    "quote_for",
    "quote_json",
    "quote_spec",
    "rate_all",
    "rate_pending_usage",
    "reconcile_view",
    "release_job_hold",
    "release_rated_holds",
    "retrying",
    "reverse_transfer",
    "set_contract",
    "set_credit_limit",
    "set_price_book",
    "settle",
    "settlement_csv_text",
    "settlement_json",
    "settlement_view",
    "stop_overspent_jobs",
    "tariff_from_json",
    "top_up",
    "unbilled_usage",
    "wallet_view",
]
