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
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from suanwang.domain.grid import Pool
from suanwang.domain.job import JobSpec, JobState
from suanwang.domain.ledger import (
    PLATFORM_FEES,
    ROUNDING,
    Account,
    AccountKind,
    HoldState,
    ResultCode,
    audit_record,
    earnings,
    hold_account,
    plan_hold,
    plan_release,
    plan_reversal,
    plan_topup,
    plan_voucher_funding,
    result_error,
    voucher_fund,
    wallet,
)
from suanwang.domain.money import Fen, check_currency, format_yuan, parse_fen
from suanwang.domain.placement import QueuedJob, rule_out
from suanwang.domain.pricing import (
    MAX_ENTRIES,
    OPERATOR,
    BooksInForce,
    PoolQuote,
    PriceBook,
    PriceEntry,
    PriceUnit,
    QuoteRequest,
    check_new_price_book,
    check_version,
    price_book_in_force,
    quote,
)
from suanwang.domain.rating import (
    LOST_ATTEMPT,
    Charge,
    ProviderContract,
    UsageRecord,
    VoucherState,
    apply_voucher,
    credit_headroom_fen,
    plan_charge,
    rate_usage,
    usage_key,
)
from suanwang.domain.rating_batch import FREE, PricedUsage, RatingContext, plan_row, price_row, quantities, utc
from suanwang.domain.resources import ResourceClass, ServiceLevel
from suanwang.domain.settlement import Settlement, check_period, compute_settlement, plan_payouts, settlement_csv
from suanwang.domain.tou import (
    DEFAULT_MULTIPLIERS,
    TouBand,
    TouTariff,
    check_multiplier,
    tou_tariff_for_province,
    uniform_tariff,
)
from suanwang.domain.voucher import VoucherProgramme, check_new_programme, pick_programme
from suanwang.errors import Conflict, InsufficientFunds, InvalidSpec, NotFound
from suanwang.services.attempts import AttemptOutcome, end_attempt, lost_attempts, may_still_report
from suanwang.services.audit import record_audit
from suanwang.services.auth import Principal, Role
from suanwang.services.ledger_store import (
    SqlLedger,
    among,
    cached_balances,
    credit_limit_of,
    from_us,
    load_transfers,
    lock_for_settlement,
    reconcile,
    to_us,
)
from suanwang.store.db import is_postgres
from suanwang.store.ledger_tables import (
    HoldRow,
    PriceBookRow,
    ProviderContractRow,
    SettlementRow,
    TransferRow,
    VoucherProgrammeRow,
)
from suanwang.store.tables import JobRow, PoolRow, SiteRow, TenantRow, UnratedUsageRow, UsageRow

log = logging.getLogger("suanwang.billing")
SYSTEM = "system"
T = TypeVar("T")


def now_utc() -> datetime:
    return utc(time.time())


# Instants a request may name: Unix seconds or ISO 8601, inside [1970, 3000).  Anything else (1e17, NaN,
# "abc", a year past 9999) is a 422 naming the field, never an overflow deep in a datetime.
_LATEST_S = 32_503_680_000  # 3000-01-01T00:00:00Z


def parse_time(value: object, what: str) -> datetime:
    """Unix seconds or an ISO 8601 string with a zone, between 1970 and 3000."""
    if isinstance(value, str) and len(value) > 64:
        raise InvalidSpec(f"{what} is not a time: {value[:40]!r}...")
    seconds: Decimal | None = None
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        seconds = Decimal(value) if not isinstance(value, float) else Decimal(repr(value))
    elif isinstance(value, str):
        try:
            seconds = Decimal(value.strip())  # Unix seconds stored as an exact decimal string
        except ArithmeticError:
            seconds = None
    elif not isinstance(value, str):
        raise InvalidSpec(f"{what} must be Unix seconds or an ISO 8601 time, got {str(value)[:40]!r}")
    if seconds is not None:
        if not seconds.is_finite() or not 0 <= seconds < _LATEST_S:
            raise InvalidSpec(f"{what} must be Unix seconds between 1970 and 3000: {str(value)[:40]}")
        return utc(float(seconds))
    assert isinstance(value, str)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidSpec(f"{what} is not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise InvalidSpec(f"{what} must carry a time zone (e.g. +08:00): {value!r}")
    try:
        instant = parsed.timestamp()
    except (OverflowError, ValueError):
        raise InvalidSpec(f"{what} is out of range: {value!r}") from None
    if not 0 <= instant < _LATEST_S:
        raise InvalidSpec(f"{what} must lie between 1970 and 3000: {value!r}")
    return parsed


def money_json(fen: Fen) -> dict[str, Any]:
    """Money at the API edge: integer fen, and yuan as a display string."""
    return {"fen": fen, "yuan": format_yuan(fen), "currency": "CNY"}


def _actor(principal: Principal | None) -> str:
    return principal.token_id if principal else SYSTEM


def _raise_if_refused(result: Any, transfer: Any) -> None:
    error = result_error(result, transfer)
    if error is not None:
        raise error


def retrying(fn: Callable[[], T], attempts: int = 5) -> T:
    """Run a transaction function again on a lost race (unique key, deadlock, serialization failure)."""
    for i in range(attempts):
        try:
            return fn()
        except (IntegrityError, DBAPIError) as exc:
            if isinstance(exc, DBAPIError) and not isinstance(exc, IntegrityError) and not _transient(exc):
                raise
            if i == attempts - 1:
                raise
            time.sleep(0.01 * (i + 1))
    raise AssertionError("unreachable")


def _transient(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "sqlstate", None) or ""
    return code in ("40001", "40P01") or "database is locked" in str(exc.orig)


# ---- wallets, credit and top-ups ---------------------------------------------------------------------------


def _consumer_visible(actor: Principal, consumer: str) -> None:
    if not actor.sees_all and actor.tenant_id != consumer:
        raise NotFound(f"wallet {consumer} not found")


def _check_tenant(session: Session, consumer: str) -> None:
    if session.get(TenantRow, consumer) is None:
        raise NotFound(f"tenant {consumer} not found")


def wallet_view(session: Session, actor: Principal, consumer: str) -> dict[str, Any]:
    _consumer_visible(actor, consumer)
    _check_tenant(session, consumer)
    balances = cached_balances(session)
    balance = balances.get(wallet(consumer), 0)
    held = balances.get(hold_account(consumer), 0)
    limit = credit_limit_of(session, consumer)
    return {"consumer": consumer, "balance": money_json(balance), "held": money_json(held),
            "credit_limit": money_json(limit), "available": money_json(balance + limit)}


def top_up(session: Session, actor: Principal, consumer: str, amount: object, *, currency: str = "CNY",
           key: str | None = None, reason: str = "") -> dict[str, Any]:
    """Operator adds money to a consumer's wallet; ``key`` makes a retry answer the first result."""
    check_currency(currency)
    fen = parse_fen(amount, currency=currency, what="top-up amount")
    _check_tenant(session, consumer)
    transfer = plan_topup(f"topup:{key}" if key else f"topup:{time.time_ns()}:{consumer}", consumer=consumer,
                          fen=fen, at=now_utc(), actor=_actor(actor), reason=reason or "top-up")
    result = SqlLedger(session).apply(transfer)
    _raise_if_refused(result, transfer)
    record_audit(session, actor, "wallet.topup", consumer, fen=fen, key=transfer.key, result=result.code.value)
    return {"transfer": transfer.key, "result": result.code.value, **wallet_view(session, actor, consumer)}


def set_credit_limit(session: Session, actor: Principal, consumer: str, amount: object) -> dict[str, Any]:
    fen = parse_fen(amount, what="credit limit")
    _check_tenant(session, consumer)
    SqlLedger(session).set_credit_limit(consumer, fen)
    record_audit(session, actor, "wallet.credit_limit", consumer, fen=fen)
    return wallet_view(session, actor, consumer)


# ---- price books -------------------------------------------------------------------------------------------


def _enum(kind: type[Any], value: object, what: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise InvalidSpec(f"unknown {what} {value!r} (one of: {allowed})") from None


def _hour(value: object, band: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 24:
        raise InvalidSpec(f"tou band {band}: hours must be integers 0..24, got {str(value)[:40]}")
    return value


def _text(value: object, what: str, width: int = 100) -> str:
    if not isinstance(value, str) or len(value) > width or "\x00" in value:
        raise InvalidSpec(f"{what} must be a string of at most {width} characters")
    return value


def tariff_from_json(data: object) -> TouTariff | None:
    """``{"province": "Gansu"}`` (packaged windows or the documented stand-in), or explicit
    ``{"bands": {"peak": [[10, 15]], ...}, "multipliers": {"peak": "1.25"}}``.  Every number is checked
    before use: hours are integers 0..24, multipliers lie within ``tou.check_multiplier``'s bounds."""
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise InvalidSpec("tou must be an object with 'province' or 'bands'")
    multipliers = dict(DEFAULT_MULTIPLIERS)
    given = data.get("multipliers") or {}
    if not isinstance(given, Mapping):
        raise InvalidSpec("tou multipliers must be an object of band -> multiplier")
    for band, value in given.items():
        if isinstance(value, float):
            raise InvalidSpec(f"tou multiplier for {band} must be a string or integer, not a float")
        kind = _enum(TouBand, band, "time-of-use band")
        multipliers[kind] = check_multiplier(value, what=f"tou multiplier for {kind}")
    if "province" in data:
        return tou_tariff_for_province(_text(data["province"], "tou province"), multipliers)
    bands = data.get("bands")
    if not isinstance(bands, Mapping) or not bands:
        raise InvalidSpec("tou needs 'province' or a non-empty 'bands' object")
    windows = {}
    for band, wins in bands.items():
        kind = _enum(TouBand, band, "time-of-use band")
        if not isinstance(wins, list) or len(wins) > 24 or not all(isinstance(w, list) and len(w) == 2 for w in wins):
            raise InvalidSpec(f"tou band {band}: windows must be [[start_hour, end_hour], ...] (at most 24)")
        windows[kind] = tuple((_hour(a, band), _hour(b, band)) for a, b in wins)
    return uniform_tariff(_text(data.get("name", "custom"), "tou name"), windows, multipliers, source="price book")


def entry_from_json(data: Mapping[str, Any]) -> PriceEntry:
    known = {"resource_class", "tier", "service_level", "unit_price_fen", "unit", "site", "pool", "tou",
             "green_discount_pct"}
    extra = set(data) - known
    if extra:
        raise InvalidSpec(f"unknown price entry fields: {sorted(extra)}")
    if "unit_price_fen" not in data:
        raise InvalidSpec("price entry needs unit_price_fen")
    for name, column in (("site", PoolRow.site), ("pool", PoolRow.name), ("tier", PoolRow.tier)):
        width = column.type.length  # no wider than the pool names it can match
        if width is not None and len(str(data.get(name, ""))) > width:
            raise InvalidSpec(f"price entry {name} must be at most {width} characters")
    return PriceEntry(
        resource_class=_enum(ResourceClass, data.get("resource_class", "general"), "resource_class"),
        tier=str(data.get("tier", "standard")),
        service_level=_enum(ServiceLevel, data.get("service_level", "standard"), "service_level"),
        unit_price_fen=data["unit_price_fen"], unit=_enum(PriceUnit, data.get("unit", PriceUnit.SCU.value), "unit"),
        site=str(data.get("site", "")), pool=str(data.get("pool", "")), tou=tariff_from_json(data.get("tou")),
        green_discount_pct=data.get("green_discount_pct", 0))


def book_from_json(data: Mapping[str, Any], owner: str = OPERATOR) -> PriceBook:
    """A book from its JSON body; every number bounded before it is used (see domain.pricing)."""
    entries = data.get("entries")
    if not isinstance(entries, list) or not entries:
        raise InvalidSpec("a price book needs a non-empty 'entries' list")
    if len(entries) > MAX_ENTRIES:
        raise InvalidSpec(f"a price book has at most {MAX_ENTRIES} entries, got {len(entries)}")
    if not all(isinstance(e, Mapping) for e in entries):
        raise InvalidSpec("every price book entry must be an object")
    if "currency" in data:
        check_currency(str(data["currency"])[:10])
    return PriceBook(check_version(data.get("version")), parse_time(data.get("effective_from"), "effective_from"),
                     tuple(entry_from_json(e) for e in entries), owner=owner)


def _plain(value: Any) -> Any:
    """JSON-ready form of stored input (Decimals as strings, so nothing becomes a float)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


_book_cache: dict[tuple[str, str, int], PriceBook] = {}


def load_books(session: Session) -> list[PriceBook]:
    """Every owner's price books (each parsed once per process: a version is immutable)."""
    books = []
    database = str(session.get_bind().url)  # versions are per database: tests run many in one process
    for owner, version, body in session.execute(select(PriceBookRow.owner, PriceBookRow.version,
                                                       PriceBookRow.body)):
        book = _book_cache.get((database, owner, version))
        if book is None:
            try:
                book = book_from_json(body, owner)
            except InvalidSpec as exc:  # stored before today's bounds: ignored, so it cannot freeze the platform
                log.error("price book %s:%s ignored: %s", owner or "operator", version, exc.message)
                continue
            _book_cache[(database, owner, version)] = book
        books.append(book)
    return books


def set_price_book(session: Session, actor: Principal, data: Mapping[str, Any]) -> dict[str, Any]:
    """Publish the next book of the actor's own series: the operator's, or a provider's for its own sites.

    Each owner's versions and start times only move forward, and only against
    its own series: one owner's book never blocks or shadows another's.  Where
    several price a pool, the pool's provider's book wins, then the operator's.
    """
    owner = OPERATOR if actor.role is Role.OPERATOR else actor.tenant_id
    books = load_books(session)
    now = now_utc()
    extra = set(data) - {"version", "effective_from", "entries", "currency"}
    if extra:
        raise InvalidSpec(f"unknown price book fields: {sorted(map(str, extra))[:5]}")
    body = dict(data)
    body.setdefault("version", max((b.version for b in books if b.owner == owner), default=0) + 1)
    body.setdefault("effective_from", now.isoformat())
    if owner != OPERATOR:
        _check_own_sites(session, actor, body.get("entries"))
    book = book_from_json(body, owner)  # every number checked before any is formatted or computed with
    check_new_price_book(books, book, now=now - timedelta(seconds=1))
    body = _plain(body)
    _any_book_cache.clear()
    session.add(PriceBookRow(owner=owner, version=book.version, effective_us=to_us(book.effective_from),
                             created_at=time.time(), created_by=_actor(actor), body=body))
    session.flush()
    record_audit(session, actor, "price_book.set", f"{owner or 'operator'}:{book.version}", entries=len(book.entries))
    return price_book_json(body, book)


def _check_own_sites(session: Session, actor: Principal, entries: object) -> None:
    own = set(session.scalars(select(SiteRow.name).where(SiteRow.tenant_id == actor.tenant_id)))
    if not isinstance(entries, list) or not entries:
        raise InvalidSpec("a price book needs a non-empty 'entries' list")
    for e in entries:
        if not isinstance(e, Mapping) or e.get("site") not in own:
            shown = repr(e)[:200]
            raise InvalidSpec(f"a provider may only price its own sites ({sorted(own)[:20]}); entry {shown}")


def price_book_json(body: Mapping[str, Any], book: PriceBook) -> dict[str, Any]:
    stand_ins = sorted({e.tou.name for e in book.entries if e.tou is not None and e.tou.is_stand_in})
    return {"owner": book.owner or "operator", "version": book.version,
            "effective_from": book.effective_from.isoformat(), "entries": body.get("entries", []),
            "stand_in_tou": stand_ins}


def list_price_books(session: Session) -> list[dict[str, Any]]:
    """Every owner's books: the operator's series first, then each provider's, oldest version first."""
    books = {(b.owner, b.version): b for b in load_books(session)}
    rows = session.execute(select(PriceBookRow.owner, PriceBookRow.version, PriceBookRow.body)
                           .order_by(PriceBookRow.owner, PriceBookRow.version))
    return [price_book_json(body, books[(owner, version)]) for owner, version, body in rows
            if (owner, version) in books]  # a stored book that fails today's bounds is ignored (load_books)


# ---- provider contracts ------------------------------------------------------------------------------------


def set_contract(session: Session, actor: Principal, provider: str, fee_bps: int) -> dict[str, Any]:
    _check_tenant(session, provider)
    ProviderContract(provider, fee_bps)  # validates 0..10000
    row = session.get(ProviderContractRow, provider)
    if row is None:
        session.add(ProviderContractRow(provider=provider, fee_bps=fee_bps, updated_at=time.time()))
    else:
        row.fee_bps, row.updated_at = fee_bps, time.time()
    record_audit(session, actor, "contract.set", provider, fee_bps=fee_bps)
    return {"provider": provider, "fee_bps": fee_bps}


def contracts(session: Session) -> dict[str, int]:
    """Provider -> platform fee in basis points; a provider without a contract pays no fee."""
    return dict(session.execute(select(ProviderContractRow.provider, ProviderContractRow.fee_bps)).all())


# ---- vouchers ----------------------------------------------------------------------------------------------


_PROGRAMME_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_MAX_NAMED = 10_000  # consumers a programme may name


def programme_from_json(data: Mapping[str, Any]) -> VoucherProgramme:
    known = {"id", "share_pct", "cap_per_consumer_fen", "valid_from", "valid_until", "resource_classes", "consumers",
             "fund_fen"}
    extra = set(data) - known
    if extra:
        raise InvalidSpec(f"unknown voucher programme fields: {sorted(extra)}")
    for name in ("id", "share_pct", "cap_per_consumer_fen", "valid_from", "valid_until"):
        if name not in data:
            raise InvalidSpec(f"voucher programme needs {name}")
    if not isinstance(data["id"], str) or not _PROGRAMME_ID.fullmatch(data["id"]):
        # The id names the fund's account and, with an Idempotency-Key of up to 150, its funding transfer.
        raise InvalidSpec("voucher programme id must be 1-32 letters, digits, '_', '.' or '-'")
    classes = data.get("resource_classes")
    consumers = data.get("consumers")
    if classes is not None and (not isinstance(classes, list) or len(classes) > len(ResourceClass)):
        raise InvalidSpec("voucher resource_classes must be a list of resource classes")
    if consumers is not None and (not isinstance(consumers, list) or len(consumers) > _MAX_NAMED
                                  or not all(isinstance(c, str) and 0 < len(c) <= 140 for c in consumers)):
        raise InvalidSpec(f"voucher consumers must be a list of at most {_MAX_NAMED} tenant ids")
    return VoucherProgramme(
        id=str(data["id"]), share_pct=data["share_pct"],
        cap_per_consumer_fen=parse_fen(data["cap_per_consumer_fen"], what="voucher cap"),
        valid_from=parse_time(data["valid_from"], "valid_from"),
        valid_until=parse_time(data["valid_until"], "valid_until"),
        resource_classes=frozenset(_enum(ResourceClass, c, "resource_class") for c in classes) if classes
        else frozenset(ResourceClass),
        consumers=frozenset(str(c) for c in consumers) if consumers is not None else None)


def load_programmes(session: Session) -> list[VoucherProgramme]:
    """Every programme; one stored before today's bounds that fails them is ignored (logged)."""
    programmes = []
    for body in session.scalars(select(VoucherProgrammeRow.body)):
        try:
            programmes.append(programme_from_json(body))
        except InvalidSpec as exc:
            log.error("voucher programme %s ignored: %s", str(body.get("id"))[:40], exc.message)
    return programmes


def create_programme(session: Session, actor: Principal, data: Mapping[str, Any], *,
                     key: str | None = None) -> dict[str, Any]:
    """Operator creates a voucher programme and (optionally, ``fund_fen``) funds it."""
    body = dict(data)
    fund = body.pop("fund_fen", None)
    programme = check_new_programme(programme_from_json(body), now=now_utc())  # all bounded before use
    fund = parse_fen(fund, what="fund_fen") if fund is not None else None
    if fund is not None and fund < 0:
        raise InvalidSpec("fund_fen must not be negative")
    body = _plain(body)
    if session.get(VoucherProgrammeRow, programme.id) is not None:
        raise Conflict(f"voucher programme {programme.id} already exists")
    session.add(VoucherProgrammeRow(id=programme.id, created_at=time.time(), created_by=_actor(actor), body=body))
    session.flush()
    record_audit(session, actor, "voucher.create", programme.id, share_pct=str(programme.share_pct))
    if fund:
        fund_programme(session, actor, programme.id, fund, key=key or f"create:{programme.id}")
    return programme_json(session, programme)


def fund_programme(session: Session, actor: Principal, programme_id: str, amount: object, *,
                   key: str | None = None) -> dict[str, Any]:
    body = session.scalar(select(VoucherProgrammeRow.body).where(VoucherProgrammeRow.id == programme_id))
    if body is None:
        raise NotFound(f"voucher programme {programme_id} not found")
    fen = parse_fen(amount, what="voucher funding")
    transfer = plan_voucher_funding(f"voucher-fund:{programme_id}:{key or time.time_ns()}", programme=programme_id,
                                    fen=fen, at=now_utc(), actor=_actor(actor))
    result = SqlLedger(session).apply(transfer)
    _raise_if_refused(result, transfer)
    record_audit(session, actor, "voucher.fund", programme_id, fen=fen, result=result.code.value)
    return programme_json(session, programme_from_json(body))


def programme_json(session: Session, p: VoucherProgramme) -> dict[str, Any]:
    fund = cached_balances(session, AccountKind.VOUCHER).get(voucher_fund(p.id), 0)
    spent = sum(t.voucher_fen for t in _voucher_transfers(session, p.id))
    return {"id": p.id, "share_pct": format(p.share_pct, "f"), "cap_per_consumer": money_json(p.cap_per_consumer_fen),
            "valid_from": p.valid_from.isoformat(), "valid_until": p.valid_until.isoformat(),
            "resource_classes": sorted(c.value for c in p.resource_classes),
            "consumers": sorted(p.consumers) if p.consumers is not None else None,
            "fund": money_json(fund), "spent": money_json(spent)}


def _voucher_transfers(session: Session, programme: str) -> list[TransferRow]:
    return list(session.scalars(select(TransferRow).where(TransferRow.voucher_programme == programme,
                                                          TransferRow.kind.in_(("charge", "reversal")))))


def list_programmes(session: Session, actor: Principal) -> list[dict[str, Any]]:
    """Operator and auditor see every programme; anyone else only those open to its tenant, and never
    which other consumers a programme names."""
    programmes = sorted(load_programmes(session), key=lambda p: p.id)
    if actor.sees_all:
        return [programme_json(session, p) for p in programmes]
    mine = actor.tenant_id
    return [programme_json(session, p) | {"consumers": None if p.consumers is None else [mine]}
            for p in programmes if p.shows_to(mine)]


# ---- quotes and holds --------------------------------------------------------------------------------------


def _job_quantities(spec: JobSpec, pool: Pool) -> dict[PriceUnit, Decimal]:
    """What ``spec`` would consume on ``pool`` over its expected duration, per price unit."""
    from suanwang.services.agents import units_nano

    core_s = spec.cores * spec.duration_s
    device_s = spec.devices * spec.duration_s
    scu_nano = units_nano(pool, core_s=core_s, device_s=device_s)  # type: ignore[arg-type]
    quantities = {PriceUnit.SCU: Decimal(scu_nano).scaleb(-9)}
    if spec.cores:
        quantities[PriceUnit.CORE_HOUR] = Decimal(str(core_s)) / 3600
    if spec.devices:
        quantities[PriceUnit.CARD_HOUR] = Decimal(str(device_s)) / 3600
    if spec.shots:
        quantities[PriceUnit.SHOT] = Decimal(spec.shots)
    return quantities


class Quoter:
    """Quotes for many jobs in one transaction: books, programmes and voucher state are read once.

    ``quotes`` prices a job at each eligible pool with the books in force
    (providers' for their own sites first, then the operator's); ``list_quotes``
    with the operator's book alone, the platform's list price.
    """

    def __init__(self, session: Session, at: datetime) -> None:
        self.session, self.at = session, at
        self.books = load_books(session)
        self.operator_books = [b for b in self.books if b.owner == OPERATOR]
        self.priced = _in_force(self.books, at) is not None
        self.operator_priced = _in_force(self.operator_books, at) is not None
        self.programmes = load_programmes(session) if self.priced else []
        self._vouchers: dict[str, tuple[dict[str, Fen], dict[str, Fen]]] = {}
        self._cache: dict[tuple[object, ...], list[PoolQuote] | None] = {}

    def quotes(self, consumer: str, spec: JobSpec, pools: Sequence[Pool]) -> list[PoolQuote] | None:
        """Per eligible priced pool, what ``spec`` would cost now; None when no book is in force (free)."""
        return self._quote(consumer, spec, pools, self.books) if self.priced else None

    def list_quotes(self, consumer: str, spec: JobSpec, pools: Sequence[Pool]) -> list[PoolQuote]:
        """The same under the operator's book alone (empty when it is not in force)."""
        return self._quote(consumer, spec, pools, self.operator_books) or [] if self.operator_priced else []

    def _quote(self, consumer: str, spec: JobSpec, pools: Sequence[Pool],
               books: list[PriceBook]) -> list[PoolQuote] | None:
        key = (consumer, _signature(spec), id(books), len(pools))
        if key not in self._cache:
            if consumer not in self._vouchers:
                self._vouchers[consumer] = _voucher_state(self.session, consumer)
            used, fund = self._vouchers[consumer]
            quotes: list[PoolQuote] = []
            for pool in pools:
                if rule_out(spec, pool) is not None:
                    continue
                request = QuoteRequest(consumer, spec.resource_class, spec.service_level, self.at,
                                       timedelta(seconds=spec.duration_s), {pool.name: _job_quantities(spec, pool)})
                quotes.extend(quote(request, [pool], books, programmes=self.programmes, voucher_used_fen=used,
                                    voucher_fund_fen=fund))
            self._cache[key] = sorted(quotes, key=lambda q: (q.total_fen, q.site, q.pool))
        return self._cache[key]


def _in_force(books: list[PriceBook], at: datetime) -> PriceBook | None:
    try:
        return price_book_in_force(books, at)
    except InvalidSpec:
        return None


def _signature(spec: JobSpec) -> tuple[object, ...]:
    """What of a spec decides its quotes and its hold (the fields ``rule_out``, the quantities and the
    bound read): jobs alike in these share one quote."""
    return (spec.resource_class, spec.service_level, spec.device_model, spec.device_memory_gb_min, spec.region,
            spec.cores, spec.memory_gb, spec.devices, spec.duration_s, spec.max_price_fen, spec.device_models,
            spec.exclude_device_models, spec.qubits, spec.gates, spec.shots)


def quote_spec(session: Session, consumer: str, spec: JobSpec, pools: Sequence[Pool], *,
               at: datetime) -> list[PoolQuote] | None:
    """Per eligible pool, what ``spec`` would cost; None when no price book is in force (free)."""
    return Quoter(session, at).quotes(consumer, spec, pools)


def _voucher_state(session: Session, consumer: str) -> tuple[dict[str, Fen], dict[str, Fen]]:
    from suanwang.store.ledger_tables import VoucherUsageRow

    used = dict(session.execute(select(VoucherUsageRow.programme, VoucherUsageRow.used_fen)
                                .where(VoucherUsageRow.consumer == consumer)).all())
    fund = {a.owner: b for a, b in cached_balances(session, AccountKind.VOUCHER).items()}
    return used, fund


def quote_json(quotes: list[PoolQuote] | None, hold: Fen | None = None) -> dict[str, Any]:
    if quotes is None:
        return {"priced": False, "note": "no price book is in force: jobs run free of charge", "pools": []}
    pools = []
    for q in quotes:
        bands = [{"band": s.band.value, "multiplier": format(s.multiplier, "f"), "seconds": str(s.seconds),
                  "units": str(s.units)} for s in q.price.shares]
        pools.append({"site": q.site, "pool": q.pool, "book_version": q.price.book_version,
                      "book_owner": q.price.entry.owner or "operator",
                      "unit": q.price.entry.unit.value, "unit_price_fen": format(q.unit_price_fen, "f"),
                      "units": format(q.price.units, "f"), "tou": bands, "gross": money_json(q.gross_fen),
                      "voucher_programme": q.voucher_programme, "voucher": money_json(q.voucher_fen),
                      "total": money_json(q.total_fen)})
    return {"priced": True, "pools": pools, "hold": money_json(hold or 0),
            "cheapest": pools[0] if pools else None}


def quote_for(session: Session, actor: Principal, spec: JobSpec) -> dict[str, Any]:
    """Every eligible pool's quote, and the hold a submit of ``spec`` would take (``hold_bound``)."""
    from suanwang.services.sites import all_pools

    pools = all_pools(session)
    quoter = Quoter(session, now_utc())
    quotes = quoter.quotes(actor.tenant_id, spec, pools)
    try:
        bound = hold_bound(quoter, actor.tenant_id, spec, pools) if quotes is not None else None
        hold = bound.hold_fen if bound is not None else None
    except InvalidSpec as exc:  # a submit would be refused: say why beside the quotes
        return quote_json(quotes) | {"hold": None, "refused": exc.message}
    return quote_json(quotes, hold)


@dataclass(frozen=True, slots=True)
class HoldBound:
    """What a submit holds and the job's price limit (``max_price_fen``, the scheduler's price rule).

    The limit is in gross fen (before vouchers: a voucher pays part of a charge, not of the price), so a
    voucher used up by other jobs never strands a queued one; the hold is what the consumer expects to pay.
    """

    hold_fen: Fen
    limit_fen: Fen


def hold_bound(quoter: Quoter, consumer: str, spec: JobSpec, pools: Sequence[Pool]) -> HoldBound | None:
    """What a job is held for at submit, and the most it may cost where it runs (None: it runs free).

    A hold is what the consumer agreed to risk; a provider's price cannot inflate it:
    - with ``max_price_fen``, that: the consumer said so;
    - without, the dearest eligible quote at the operator's list prices, or the cheapest eligible quote
      if that is more (so some pool is always within it).  A provider pricing its own pool above the
      list raises neither: that pool only stops running jobs whose bound it exceeds.
    Raises InvalidSpec when no pool could run the job within ``max_price_fen``, or (as before) when the
    operator's book is in force and prices no pool that could run it.
    """
    quotes = quoter.quotes(consumer, spec, pools)
    if quotes is None:
        return None
    priced = {(q.site, q.pool) for q in quotes}
    free = any(rule_out(spec, p) is None and (p.site, p.name) not in priced for p in pools)
    if not quotes and quoter.operator_priced:  # with only providers' books in force, unpriced pools are free
        raise InvalidSpec(f"no pool that could run this job has a price in the price book in force "
                          f"(class {spec.resource_class}, level {spec.service_level}); ask the operator")
    if spec.max_price_fen is not None:
        cheapest = min(quotes, key=lambda q: (q.gross_fen, q.site, q.pool), default=None)
        if cheapest is not None and not free and cheapest.gross_fen > spec.max_price_fen:
            raise InvalidSpec(f"no pool can run this job within max_price_fen {spec.max_price_fen}: the cheapest "
                              f"quote is {cheapest.gross_fen} fen ({cheapest.site}/{cheapest.pool})")
        return HoldBound(spec.max_price_fen, spec.max_price_fen)
    if not quotes:
        return None  # only unpriced pools could run it: they are free
    listed = quoter.list_quotes(consumer, spec, pools)
    least = [] if free else [min(quotes, key=lambda q: (q.gross_fen, q.total_fen))]
    return HoldBound(max((q.total_fen for q in [*listed, *least]), default=0),
                     max((q.gross_fen for q in [*listed, *least]), default=0))


def hold_for_submit(session: Session, actor: Principal, jobs: Sequence[tuple[str, JobSpec]], pools: Sequence[Pool],
                    *, now: float) -> dict[str, Fen]:
    """At submit: place a hold per job for its :func:`hold_bound`.  Called by ``jobs.submit_jobs``.

    Returns job id -> the price limit (gross fen) for jobs that gave no ``max_price_fen``: the caller
    records it as the job's ``max_price_fen``, the limit the scheduler's price rule keeps it within.  Raises
    InsufficientFunds (402) when the wallet plus credit line cannot cover a hold; the caller's
    transaction then writes nothing.  Free (no hold, no limit) when no book is in force.
    """
    if not jobs or not _any_book(session):
        return {}
    at = utc(now)
    consumer = actor.tenant_id
    quoter = Quoter(session, at)
    bounds: dict[tuple[object, ...], HoldBound | None] = {}
    planned, limits = [], {}
    for job_id, spec in jobs:
        signature = _signature(spec)
        if signature not in bounds:
            bounds[signature] = hold_bound(quoter, consumer, spec, pools)
        bound = bounds[signature]
        if bound is None:
            continue
        if spec.max_price_fen is None:
            limits[job_id] = bound.limit_fen
        if bound.hold_fen:
            planned.append(plan_hold(f"hold:{job_id}", hold_id=job_id, consumer=consumer, fen=bound.hold_fen,
                                     at=at, actor=_actor(actor), job_id=job_id))
    if not planned:
        return limits
    ledger = SqlLedger(session)
    for transfer, result in zip(planned, ledger.apply_many(planned, atomic=True), strict=True):
        if result.code.value == "exceeds_credit":
            raise _insufficient(session, consumer, planned)
        _raise_if_refused(result, transfer)
    return limits


def price_queue(session: Session, queue: Sequence[QueuedJob], pools: Sequence[Pool], *,
                now: float) -> list[QueuedJob]:
    """The queue with each limited job's quote per pool now (``QueuedJob.prices_fen``) where some pool is
    quoted above its limit, for the scheduler's price rule (``placement.priced_out``); a job no pool
    prices out is left as it is (the scheduler's fast paths).  Unchanged when no book is in force."""
    if not queue or not _any_book(session):
        return list(queue)
    quoter: Quoter | None = None
    over: dict[tuple[object, ...], Mapping[tuple[str, str], Fen] | None] = {}
    out = []
    for job in queue:
        limit = job.spec.max_price_fen
        if limit is None:
            out.append(job)
            continue
        key = (job.tenant, _signature(job.spec))
        if key not in over:
            quoter = quoter or Quoter(session, utc(now))
            quotes = quoter.quotes(job.tenant, job.spec, pools) or []
            over[key] = {(q.site, q.pool): q.gross_fen for q in quotes} \
                if any(q.gross_fen > limit for q in quotes) else None  # gross: as the limit
        prices = over[key]
        out.append(job if prices is None else replace(job, prices_fen=prices))
    return out


def _insufficient(session: Session, consumer: str, planned: Sequence[Any]) -> InsufficientFunds:
    balances = cached_balances(session)
    balance, limit = balances.get(wallet(consumer), 0), credit_limit_of(session, consumer)
    need = sum(t.hold_fen for t in planned)
    return InsufficientFunds(
        f"insufficient funds: submitting needs a hold of {format_yuan(need)} yuan ({need} fen) but wallet "
        f"{consumer} has {format_yuan(balance)} yuan plus a credit line of {format_yuan(limit)} yuan "
        f"({balance + limit} fen available); top up or ask for credit", need_fen=need,
        available_fen=balance + limit)


_any_book_cache: dict[str, tuple[float, bool]] = {}


def _any_book(session: Session) -> bool:
    """Whether any price book exists (cached for a second: the submit path is hot)."""
    key = str(session.get_bind().url)
    hit = _any_book_cache.get(key)
    mono = time.monotonic()
    if hit is None or hit[0] < mono:
        hit = (mono + 1.0, session.scalar(select(PriceBookRow.version).limit(1)) is not None)
        _any_book_cache[key] = hit
    return hit[1]


HOLD_GRACE_S = 600.0  # a cancelled attempt's agent has this long to send its last usage before the hold goes


def release_job_hold(session: Session, job: JobRow, *, now: float | None = None) -> bool:
    """At a terminal state: give back what remains of the job's hold (no-op for free jobs).  Called by
    ``jobs.move`` and, for holds it left open, by the rating pass (:func:`release_rated_holds`).

    The hold stays open while usage of the job can still be charged to it: records not yet rated, or a
    cancelled attempt whose agent has not sent its final status (for ``HOLD_GRACE_S``).  Returns
    whether the hold was released now.
    """
    state = session.scalar(select(HoldRow.state).where(HoldRow.id == job.id))
    if state != HoldState.OPEN.value:
        return False
    now = now if now is not None else time.time()
    if _usage_unrated(session, job.id) or may_still_report(session, job, now=now, grace_s=HOLD_GRACE_S):
        return False  # the rating pass releases it after the last usage is charged
    ledger = SqlLedger(session)
    ledger.lock_accounts([hold_account(job.tenant_id), wallet(job.tenant_id)])  # accounts before the hold row
    hold = ledger.hold(job.id)
    if hold is None or hold.state is not HoldState.OPEN:
        return False
    at = utc(now)
    settled = ledger.settled_until()
    if settled is not None and at < settled:
        at = settled
    transfer = plan_release(f"release:{job.id}", hold=hold, at=at, actor=SYSTEM, void=False, job_id=job.id,
                            reason=f"job {job.state}")
    result = ledger.apply(transfer)
    _raise_if_refused(result, transfer)
    return True


def _usage_unrated(session: Session, job_id: str) -> bool:
    queue = UnratedUsageRow.__table__
    return session.scalar(select(UsageRow.id).join(queue, queue.c.id == UsageRow.id)
                          .where(UsageRow.job_id == job_id).limit(1)) is not None


def release_rated_holds(session: Session, *, now: float, limit: int = 1000) -> list[str]:
    """Release the holds of terminal jobs that ``release_job_hold`` left open, now that their usage is rated."""
    terminal = [s.value for s in JobState if s.is_terminal]
    jobs = session.scalars(select(JobRow).join(HoldRow, HoldRow.id == JobRow.id)
                           .where(HoldRow.state == HoldState.OPEN.value, JobRow.state.in_(terminal))
                           .order_by(JobRow.id).limit(limit))
    return [job.id for job in list(jobs) if release_job_hold(session, job, now=now)]


# ---- rating ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RatingReport:
    rated: int  # usage rows marked rated in this step
    charged: int  # charges created now (EXISTS not counted)
    free: int  # rows with no book in force or no price: no charge
    over_limit_jobs: tuple[str, ...]  # jobs at or past the credit line: stop them (stop_overspent_jobs)
    unbilled: int = 0  # rows of attempts the platform declared lost: no charge, the provider bears them
    late: int = 0  # rows charged after their job's hold was released: paid from the wallet (audited)


_USAGE_COLUMNS = ("id", "job_id", "attempt", "seq", "tenant_id", "site", "pool", "resource_class", "start", "end",
                  "core_s", "device_s", "units_nano", "shots")  # rows are unpacked in this order (by name costs more)


def _claim(session: Session, limit: int) -> list[Any]:
    """Take up to ``limit`` usage records off the rating queue and return them (oldest first) as plain
    tuples.  The claim commits only with the charges (the caller's transaction), so a crash leaves them
    queued; PostgreSQL workers skip ids another worker claimed, so they share the queue (the charge key
    alone makes it exactly once)."""
    queue = UnratedUsageRow.__table__
    pending = select(queue.c.id).order_by(queue.c.id).limit(limit)
    pg = is_postgres(session.get_bind())
    if pg:
        pending = pending.with_for_update(skip_locked=True)
    conn = session.connection()
    ids = list(conn.execute(delete(queue).where(queue.c.id.in_(pending)).returning(queue.c.id)).scalars())
    if not ids:
        return []
    table = UsageRow.__table__
    return list(conn.execute(select(*(table.c[c] for c in _USAGE_COLUMNS)).where(among(table.c.id, ids, pg=pg))
                             .order_by(table.c.id)))


def rate_pending_usage(session: Session, *, limit: int = 1000, fast: bool = True) -> RatingReport:
    """Rate up to ``limit`` unrated usage records into charges, in the caller's transaction.

    Safe to run in several workers at once and to re-run after a crash at any
    point: the charge key is the usage key, unique in the database.  ``fast``
    prices the common case in integers (domain.rating_batch); False sends every
    record the general way (the reference the tests compare it with).
    """
    rows = _claim(session, limit)
    if not rows:
        return RatingReport(0, 0, 0, ())
    ctx = _rating_context(session, rows)
    lost = lost_attempts(session, {r[1] for r in rows})
    items: list[tuple[Any, PricedUsage | Charge]] = []
    free, unbilled = 0, []
    for row in rows:  # first what needs no ledger state: price, split, request digest
        if lost and (row[1], row[2]) in lost:
            unbilled.append(row[0])  # declared lost: not the consumer's to pay for (DESIGN.md)
            continue
        priced = price_row(row, ctx) if fast else None
        if priced == FREE or (priced is None and _is_free(row, ctx)):
            free += 1  # no book in force when this usage started: free
            continue
        charge = priced if isinstance(priced, PricedUsage) else _rate(session, _record(row, ctx), ctx)
        if charge is not None:
            items.append((row, charge))
    if unbilled:
        session.execute(update(UsageRow).where(UsageRow.id.in_(unbilled)).values(unbilled_reason=LOST_ATTEMPT)
                        .execution_options(synchronize_session=False))
    charged, over, late = _charge(session, items, ctx) if items else (0, set(), 0)
    return RatingReport(len(rows), charged, free, tuple(sorted(over)), len(unbilled), late)


def _audit_late(session: Session, ledger: SqlLedger, items: Sequence[tuple[Any, PricedUsage | Charge]]) -> int:
    """Count (and audit) usage arriving after its job's hold was released: the wallet pays it."""
    late = 0
    for row, _ in items:
        hold = ledger.hold(row[1])
        if hold is not None and hold.state is not HoldState.OPEN and not ledger.knows(usage_key(*row[1:4])):
            late += 1
            record_audit(session, None, "usage.after_release", usage_key(*row[1:4]), job_id=row[1])
    return late


_levels: dict[tuple[str, str], ServiceLevel] = {}  # (database, job) -> service level: fixed at submit


def _service_levels(session: Session, job_ids: set[str]) -> dict[str, ServiceLevel]:
    """Each job's service level, read once per process (the one spec field rating needs)."""
    database = str(session.get_bind().url)
    missing = [j for j in job_ids if (database, j) not in _levels]
    if missing:
        if len(_levels) > 200_000:
            _levels.clear()
        level = JobRow.spec["service_level"].as_string()
        query = select(JobRow.id, level).where(among(JobRow.id, missing, pg=is_postgres(session.get_bind())))
        for job_id, value in session.execute(query):
            _levels[(database, job_id)] = ServiceLevel(value or "standard")
    return {j: _levels[(database, j)] for j in job_ids if (database, j) in _levels}


def _rating_context(session: Session, rows: Sequence[Any]) -> RatingContext:
    levels = _service_levels(session, {r[1] for r in rows})
    return RatingContext(
        books=BooksInForce(load_books(session)),
        providers=dict(session.execute(select(SiteRow.name, SiteRow.tenant_id)).all()),
        tiers={(site, pool): tier for site, pool, tier in session.execute(select(PoolRow.site, PoolRow.name,
                                                                                 PoolRow.tier))},
        levels=levels, fee_bps=contracts(session), settled_until=SqlLedger(session).settled_until(),
        programmes=load_programmes(session))


def _is_free(row: Sequence[Any], ctx: RatingContext) -> bool:
    first = ctx.books.first_effective()
    return first is None or utc(row[8]) < first


def _record(row: Sequence[Any], ctx: RatingContext) -> UsageRecord:
    _, job_id, attempt, seq, consumer, site, pool, cls, start_s, end_s, core_s, device_s, units_nano, *more = row
    return UsageRecord(job_id, attempt, seq, consumer, ctx.providers.get(site, site), site, pool, ResourceClass(cls),
                       ctx.tiers.get((site, pool), "standard"), ctx.levels[job_id], utc(start_s), utc(end_s),
                       quantities(core_s, device_s, units_nano, *more))


def _rate(session: Session, record: UsageRecord, ctx: RatingContext) -> Charge | None:
    """The general path: rate_usage, or None (audited) for usage no price entry covers."""
    contract = ProviderContract(record.provider, ctx.fee_bps.get(record.provider, 0))
    try:
        return rate_usage(record, ctx.books.at(record.start), contract=contract, settled_until=ctx.settled_until)
    except InvalidSpec as exc:
        record_audit(session, None, "usage.unpriced", record.key, reason=exc.message)
        return None


def _charge(session: Session, items: Sequence[tuple[Any, PricedUsage | Charge]],
            ctx: RatingContext) -> tuple[int, set[str], int]:
    """Book the rated items in order, each against the ledger as the charges before it left it."""
    ledger = SqlLedger(session)
    consumers = {row[4] for row, _ in items}
    providers = {ctx.providers.get(row[5], row[5]) for row, _ in items}
    ledger.lock_accounts([PLATFORM_FEES, ROUNDING, *(voucher_fund(p.id) for p in ctx.programmes),
                          *(a for c in consumers for a in (wallet(c), hold_account(c))), *map(earnings, providers)])
    ledger.load_holds({row[1] for row, _ in items})
    ledger.load_keys({usage_key(row[1], row[2], row[3]) for row, _ in items})
    ledger.load_voucher_slots({(p.id, c) for p in ctx.programmes for c in consumers})
    late = _audit_late(session, ledger, items)
    charged, over = 0, set()
    for row, item in items:
        if isinstance(item, PricedUsage):
            planned = None if ledger.knows(item.key) else plan_row(item, hold=ledger.hold(item.job_id), view=ledger,
                                                                   actor=SYSTEM)
            if planned is not None:
                ledger.stage_charge(planned)
                charged += 1
                if planned.over_limit or _next_report_would_pass_the_line(ledger, item.job_id, item.consumer,
                                                                          item.gross_fen):
                    over.add(item.job_id)
                continue
            item = _rate(session, _record(row, ctx), ctx)  # the rule book may refuse it: say why the general way
            if item is None:
                continue
        created, stop = _book_charge(session, ledger, item, ctx.programmes)
        charged += created
        if stop:
            over.add(item.record.job_id)
    ledger.flush()
    return charged, over, late


def _book_charge(session: Session, ledger: SqlLedger, charge: Charge,
                 programmes: Sequence[VoucherProgramme]) -> tuple[bool, bool]:
    """Stage one charge the general way: (created, stop its job)."""
    record = charge.record
    programme = pick_programme(programmes, consumer=record.consumer, resource_class=record.resource_class,
                               at=record.start) if programmes else None
    if programme is not None:
        charge = apply_voucher(charge, VoucherState(programme, ledger.voucher_used(programme.id, record.consumer),
                                                    ledger.balance(voucher_fund(programme.id))))
    result = ledger.stage(plan_charge(charge, hold=ledger.hold(record.job_id), actor=SYSTEM))
    if not result.ok:
        log.error("charge %s refused: %s", record.key, result.code)
        record_audit(session, None, "usage.refused", record.key, code=result.code.value)
        return False, False
    return result.code is ResultCode.CREATED, result.over_limit or _next_report_would_pass_the_line(
        ledger, record.job_id, record.consumer, charge.consumer_fen)


def _next_report_would_pass_the_line(ledger: SqlLedger, job_id: str, consumer: str, last_fen: Fen) -> bool:
    """Stop a job before its consumer passes the credit line: when what is left (open hold, wallet and
    credit) cannot pay another report like the last one.  A job's rate can rise (a dearer time-of-use
    band), so a report may still pass the line; that charge is booked ``over_limit`` and stops the job."""
    headroom = credit_headroom_fen(hold=ledger.hold(job_id), wallet_fen=ledger.balance(wallet(consumer)),
                                   credit_limit_fen=ledger.credit_limit(consumer))
    return last_fen > 0 and headroom < last_fen


def stop_overspent_jobs(session: Session, job_ids: Sequence[str]) -> list[str]:
    """Cancel jobs whose consumer passed the credit line; their agents kill them on the next heartbeat.

    Runs in its own transaction after the charges committed, locking the job
    before its accounts (the order cancel and completion use).  If the process
    dies in between, the job's next charge is over the line again and stops it.
    """
    return [j for j in sorted(job_ids) if _stop_overspent(session, j)]


def _stop_overspent(session: Session, job_id: str) -> bool:
    from suanwang.services.jobs import move

    query = select(JobRow).where(JobRow.id == job_id).with_for_update().execution_options(populate_existing=True)
    job = session.scalar(query)
    if job is None or JobState(job.state).is_terminal:
        return False
    if JobState(job.state).is_leased:
        job.cancel_requested = True
    end_attempt(session, job, AttemptOutcome.CANCELLED)
    move(session, job, JobState.CANCELLED, "credit line exhausted: charges passed the consumer's credit limit")
    record_audit(session, None, "job.cancel", job_id, reason="credit line exhausted")
    return True


def rate_all(db: Any, *, limit: int = 1000, max_batches: int = 1_000_000) -> int:
    """Rate until nothing is pending, one transaction per batch (the control loop's step)."""
    total = 0
    for _ in range(max_batches):
        def step() -> RatingReport:
            with db.transaction() as s:
                return rate_pending_usage(s, limit=limit)
        report = retrying(step)
        if report.over_limit_jobs:
            def stop(ids: tuple[str, ...] = report.over_limit_jobs) -> list[str]:
                with db.transaction() as s:
                    return stop_overspent_jobs(s, ids)
            retrying(stop)
        total += report.rated
        if report.rated < limit:
            break

    def release() -> list[str]:
        with db.transaction() as s:
            return release_rated_holds(s, now=time.time())
    retrying(release)  # after the rating: a terminal job's last usage was charged to its hold
    return total


# ---- settlement --------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Account):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def settle(session: Session, actor: Principal, *, start: datetime, end: datetime,
           payouts: bool = True) -> dict[str, Any]:
    """Close ``[start, end)``: statements per consumer and provider, payouts, and the period made immutable.

    Settling exactly the last settled period again returns it (a retried
    request); any other overlap is a Conflict.
    """
    lock_for_settlement(session)
    existing = session.scalar(select(SettlementRow).where(SettlementRow.start_us == to_us(start),
                                                          SettlementRow.end_us == to_us(end)))
    if existing is not None:
        return settlement_json(existing)
    ledger = SqlLedger(session)
    check_period(ledger.settled_until(), start=start, end=end, now=now_utc())
    settlement = compute_settlement(load_transfers(session, before=end), start=start, end=end,
                                    fee_bps=contracts(session))
    paid = _pay_out(ledger, settlement, actor) if payouts else []  # booked at ``end``: in the next period
    row = SettlementRow(start_us=to_us(start), end_us=to_us(end), created_at=time.time(), created_by=_actor(actor),
                        transfer_count=settlement.transfer_count,
                        statements={**_jsonable(settlement), "payouts": paid,
                                    "unbilled": unbilled_usage(session, start=start, end=end)},
                        csv=settlement_csv(settlement))
    session.add(row)  # written once: the table refuses updates and deletes
    session.flush()
    record_audit(session, actor, "settlement.close", str(row.id), start=start.isoformat(), end=end.isoformat(),
                 transfers=settlement.transfer_count)
    return settlement_json(row)


def _pay_out(ledger: SqlLedger, settlement: Settlement, actor: Principal) -> list[dict[str, Any]]:
    transfers = plan_payouts(settlement, at=settlement.end, actor=_actor(actor))
    results = ledger.apply_many(transfers)
    for transfer, result in zip(transfers, results, strict=True):
        _raise_if_refused(result, transfer)
    return [{"transfer": t.key, "provider": t.audit.provider, **money_json(-t.postings[0].fen)} for t in transfers]


def settlement_json(row: SettlementRow) -> dict[str, Any]:
    statements = dict(row.statements)
    return {"id": row.id, "start": from_us(row.start_us).isoformat(), "end": from_us(row.end_us).isoformat(),
            "transfer_count": row.transfer_count, "consumers": statements.get("consumers", []),
            "providers": statements.get("providers", []), "trial_balance": statements.get("trial_balance", []),
            "payouts": statements.get("payouts", []), "unbilled": statements.get("unbilled", [])}


def unbilled_usage(session: Session, *, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Per provider and reason, the usage ending in ``[start, end)`` that rating charged nobody for: work
    its sites delivered and metered that earns nothing (an attempt the platform declared lost)."""
    t0, t1 = start.timestamp(), end.timestamp()
    rows = session.execute(
        select(UsageRow.site, UsageRow.unbilled_reason, func.count(), func.sum(UsageRow.units_nano))
        .where(UsageRow.unbilled_reason.is_not(None), UsageRow.end >= t0, UsageRow.end < t1)
        .group_by(UsageRow.site, UsageRow.unbilled_reason).order_by(UsageRow.site, UsageRow.unbilled_reason))
    providers = dict(session.execute(select(SiteRow.name, SiteRow.tenant_id)).all())
    return [{"provider": providers.get(site, site), "site": site, "reason": reason, "records": count,
             "units": f"{Decimal(int(nano or 0)).scaleb(-9):.9f}"} for site, reason, count, nano in rows]


def get_settlement(session: Session, actor: Principal, settlement_id: int) -> SettlementRow:
    row = session.get(SettlementRow, settlement_id)
    if row is None:
        raise NotFound(f"settlement {settlement_id} not found")
    return row


def list_settlements(session: Session, actor: Principal) -> list[dict[str, Any]]:
    return [settlement_json(r) for r in session.scalars(select(SettlementRow).order_by(SettlementRow.start_us))]


# ---- audit view and reconciliation -------------------------------------------------------------------------


def ledger_transfers(session: Session, actor: Principal, *, job_id: str | None = None, consumer: str | None = None,
                     limit: int = 1000) -> list[dict[str, Any]]:
    """Each transfer traced to its usage record, job, price book version and actor (newest last)."""
    query = select(TransferRow).order_by(TransferRow.seq)
    if job_id:
        query = query.where(TransferRow.job_id == job_id)
    if consumer:
        query = query.where(TransferRow.consumer == consumer)
    if actor.role is Role.CONSUMER:
        query = query.where(TransferRow.consumer == actor.tenant_id)
    elif actor.role is Role.PROVIDER:
        query = query.where(TransferRow.provider == actor.tenant_id)
    elif not actor.sees_all:
        return []
    rows = list(session.scalars(query.limit(limit)))
    from suanwang.domain.ledger import transfer_from_row

    return [{"seq": r.seq, "over_limit": r.over_limit, **audit_record(transfer_from_row(r.body))} for r in rows]


def reverse_transfer(session: Session, actor: Principal, key: str, reason: str) -> dict[str, Any]:
    """Operator correction: book the exact negation of transfer ``key`` (L4: never an edit).

    The reversal's key is derived from the original's, so a retried request
    answers ``exists``; a transfer is reversed at most once.
    """
    ledger = SqlLedger(session)
    original = ledger.transfer(key)
    if original is None:
        raise NotFound(f"transfer {key} not found")
    at = max(now_utc(), original.booked_at)
    transfer = plan_reversal(f"reversal:{key}", original=original, at=at, actor=_actor(actor), reason=reason)
    result = ledger.apply(transfer)
    _raise_if_refused(result, transfer)
    record_audit(session, actor, "ledger.reverse", key, reason=reason, result=result.code.value)
    return {"result": result.code.value, "over_limit": result.over_limit, **audit_record(transfer)}


def reconcile_view(session: Session, actor: Principal) -> dict[str, Any]:
    return reconcile(session).as_json()


def accounts_view(session: Session, actor: Principal) -> list[dict[str, Any]]:
    return [{"account": str(a), **money_json(b)} for a, b in sorted(cached_balances(session).items())]


# A settlement period lies in [1970, 9999): the ledger has nothing earlier, and every instant in that range
# converts to the integer microseconds the settlements table keeps and back to a datetime.
PERIOD_EARLIEST, PERIOD_LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)


def parse_period(start: object, end: object) -> tuple[datetime, datetime]:
    """The period ``[start, end)``; a value that is no instant in 1970..9999 (NaN, 1e999999, -1e300) is a 422."""
    return _period_instant(start, "start"), _period_instant(end, "end")


def _period_instant(value: object, what: str) -> datetime:
    try:
        instant = parse_time(value, what)
        inside = PERIOD_EARLIEST <= instant < PERIOD_LATEST
    except (ArithmeticError, ValueError, OSError):  # NaN, infinities, years past 9999 or before 1
        inside = False
    if not inside:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:60] + "..."
        raise InvalidSpec(f"{what} must be an instant from 1970-01-01 to 9999-01-01 (UTC), got {shown}")
    return instant

