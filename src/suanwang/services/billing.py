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
from dataclasses import dataclass, fields, is_dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import delete, select
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
from suanwang.domain.placement import rule_out
from suanwang.domain.pricing import (
    BooksInForce,
    PoolQuote,
    PriceBook,
    PriceEntry,
    PriceUnit,
    QuoteRequest,
    check_new_price_book,
    price_book_in_force,
    quote,
)
from suanwang.domain.rating import (
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
from suanwang.domain.tou import DEFAULT_MULTIPLIERS, TouBand, TouTariff, tou_tariff_for_province, uniform_tariff
from suanwang.domain.voucher import VoucherProgramme, pick_programme
from suanwang.errors import Conflict, InsufficientFunds, InvalidSpec, NotFound
from suanwang.services.audit import record_audit
from suanwang.services.auth import Principal, Role, require
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


def parse_time(value: object, what: str) -> datetime:
    """Unix seconds or an ISO 8601 string with a zone."""
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return utc(float(value))
    if isinstance(value, str):
        try:
            return utc(float(Decimal(value)))  # Unix seconds stored as an exact decimal string
        except ArithmeticError:
            pass
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidSpec(f"{what} is not an ISO 8601 time: {value!r}") from None
        if parsed.tzinfo is None:
            raise InvalidSpec(f"{what} must carry a time zone (e.g. +08:00): {value!r}")
        return parsed
    raise InvalidSpec(f"{what} must be Unix seconds or an ISO 8601 time, got {value!r}")


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
    require(actor, Role.OPERATOR)
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
    require(actor, Role.OPERATOR)
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


def tariff_from_json(data: object) -> TouTariff | None:
    """``{"province": "Gansu"}`` (packaged windows or the documented stand-in), or explicit
    ``{"bands": {"peak": [[10, 15]], ...}, "multipliers": {"peak": "1.25"}}``."""
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise InvalidSpec("tou must be an object with 'province' or 'bands'")
    multipliers = dict(DEFAULT_MULTIPLIERS)
    for band, value in (data.get("multipliers") or {}).items():
        if isinstance(value, float):
            raise InvalidSpec(f"tou multiplier for {band} must be a string or integer, not a float")
        multipliers[_enum(TouBand, band, "time-of-use band")] = Decimal(str(value))
    if "province" in data:
        return tou_tariff_for_province(str(data["province"]), multipliers)
    bands = data.get("bands")
    if not isinstance(bands, Mapping) or not bands:
        raise InvalidSpec("tou needs 'province' or a non-empty 'bands' object")
    windows = {}
    for band, wins in bands.items():
        try:
            windows[_enum(TouBand, band, "time-of-use band")] = tuple((int(a), int(b)) for a, b in wins)
        except (TypeError, ValueError):
            raise InvalidSpec(f"tou band {band}: windows must be [[start_hour, end_hour], ...]") from None
    return uniform_tariff(str(data.get("name", "custom")), windows, multipliers, source="price book")


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


def book_from_json(data: Mapping[str, Any]) -> PriceBook:
    entries = data.get("entries")
    if not isinstance(entries, list) or not entries:
        raise InvalidSpec("a price book needs a non-empty 'entries' list")
    if "currency" in data:
        check_currency(str(data["currency"]))
    return PriceBook(int(data["version"]), parse_time(data["effective_from"], "effective_from"),
                     tuple(entry_from_json(e) for e in entries))


def _plain(value: Any) -> Any:
    """JSON-ready form of stored input (Decimals as strings, so nothing becomes a float)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


_book_cache: dict[tuple[str, int], PriceBook] = {}


def load_books(session: Session) -> list[PriceBook]:
    """Every price book (parsed once per process: a version is immutable)."""
    books = []
    database = str(session.get_bind().url)  # versions are per database: tests run many in one process
    for version, body in session.execute(select(PriceBookRow.version, PriceBookRow.body)):
        book = _book_cache.get((database, version))
        if book is None:
            book = _book_cache[(database, version)] = book_from_json(body)
        books.append(book)
    return books


def set_price_book(session: Session, actor: Principal, data: Mapping[str, Any]) -> dict[str, Any]:
    """Publish a new price book version (operator), or a provider's prices for its own sites.

    A provider's book replaces only entries scoped to its sites; every entry
    it sends must name one of them.  Versions and start times only move forward.
    """
    require(actor, Role.OPERATOR, Role.PROVIDER)
    books = load_books(session)
    now = now_utc()
    body = dict(_plain(data))
    body.setdefault("version", max((b.version for b in books), default=0) + 1)
    body.setdefault("effective_from", now.isoformat())
    if actor.role is Role.PROVIDER:
        body["entries"] = _merge_provider_entries(session, actor, books, body.get("entries"), now)
    book = book_from_json(body)
    check_new_price_book(books, book, now=now - timedelta(seconds=1))
    _any_book_cache.clear()
    session.add(PriceBookRow(version=book.version, effective_us=to_us(book.effective_from), created_at=time.time(),
                             created_by=_actor(actor), body=body))
    session.flush()
    record_audit(session, actor, "price_book.set", str(book.version), entries=len(book.entries))
    return price_book_json(body, book)


def _merge_provider_entries(session: Session, actor: Principal, books: Sequence[PriceBook], entries: object,
                            now: datetime) -> list[Any]:
    own = set(session.scalars(select(SiteRow.name).where(SiteRow.tenant_id == actor.tenant_id)))
    if not isinstance(entries, list) or not entries:
        raise InvalidSpec("a price book needs a non-empty 'entries' list")
    for e in entries:
        if not isinstance(e, Mapping) or e.get("site") not in own:
            raise InvalidSpec(f"a provider may only price its own sites ({sorted(own)}); entry {e!r}")
    latest = max(books, key=lambda b: (b.effective_from, b.version), default=None)
    if latest is None:
        return list(entries)
    body = session.scalar(select(PriceBookRow.body).where(PriceBookRow.version == latest.version)) or {}
    kept = [e for e in body.get("entries", []) if e.get("site") not in own]
    return kept + list(entries)


def price_book_json(body: Mapping[str, Any], book: PriceBook) -> dict[str, Any]:
    stand_ins = sorted({e.tou.name for e in book.entries if e.tou is not None and e.tou.is_stand_in})
    return {"version": book.version, "effective_from": book.effective_from.isoformat(),
            "entries": body.get("entries", []), "stand_in_tou": stand_ins}


def list_price_books(session: Session) -> list[dict[str, Any]]:
    books = {b.version: b for b in load_books(session)}
    rows = session.execute(select(PriceBookRow.version, PriceBookRow.body).order_by(PriceBookRow.version))
    return [price_book_json(body, books[version]) for version, body in rows]


# ---- provider contracts ------------------------------------------------------------------------------------


def set_contract(session: Session, actor: Principal, provider: str, fee_bps: int) -> dict[str, Any]:
    require(actor, Role.OPERATOR)
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
    return VoucherProgramme(
        id=str(data["id"]), share_pct=data["share_pct"],
        cap_per_consumer_fen=parse_fen(data["cap_per_consumer_fen"], what="voucher cap"),
        valid_from=parse_time(data["valid_from"], "valid_from"),
        valid_until=parse_time(data["valid_until"], "valid_until"),
        resource_classes=frozenset(_enum(ResourceClass, c, "resource_class") for c in classes) if classes
        else frozenset(ResourceClass),
        consumers=frozenset(str(c) for c in consumers) if consumers is not None else None)


def load_programmes(session: Session) -> list[VoucherProgramme]:
    return [programme_from_json(body) for body in session.scalars(select(VoucherProgrammeRow.body))]


def create_programme(session: Session, actor: Principal, data: Mapping[str, Any], *,
                     key: str | None = None) -> dict[str, Any]:
    """Operator creates a voucher programme and (optionally, ``fund_fen``) funds it."""
    require(actor, Role.OPERATOR)
    body = dict(_plain(data))
    fund = body.pop("fund_fen", None)
    programme = programme_from_json(body)
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
    require(actor, Role.OPERATOR)
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


def list_programmes(session: Session) -> list[dict[str, Any]]:
    return [programme_json(session, p) for p in sorted(load_programmes(session), key=lambda p: p.id)]


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
    return quantities


def quote_spec(session: Session, consumer: str, spec: JobSpec, pools: Sequence[Pool], *,
               at: datetime) -> list[PoolQuote] | None:
    """Per eligible pool, what ``spec`` would cost; None when no price book is in force (free)."""
    books = load_books(session)
    try:
        price_book_in_force(books, at)
    except InvalidSpec:
        return None
    programmes = load_programmes(session)
    used, fund = _voucher_state(session, consumer)
    quotes: list[PoolQuote] = []
    for pool in pools:
        if rule_out(spec, pool) is not None:
            continue
        request = QuoteRequest(consumer, spec.resource_class, spec.service_level, at,
                               timedelta(seconds=spec.duration_s), {pool.name: _job_quantities(spec, pool)})
        quotes.extend(quote(request, [pool], books, programmes=programmes, voucher_used_fen=used,
                            voucher_fund_fen=fund))
    return sorted(quotes, key=lambda q: (q.total_fen, q.site, q.pool))


def _voucher_state(session: Session, consumer: str) -> tuple[dict[str, Fen], dict[str, Fen]]:
    from suanwang.store.ledger_tables import VoucherUsageRow

    used = dict(session.execute(select(VoucherUsageRow.programme, VoucherUsageRow.used_fen)
                                .where(VoucherUsageRow.consumer == consumer)).all())
    fund = {a.owner: b for a, b in cached_balances(session, AccountKind.VOUCHER).items()}
    return used, fund


def quote_json(quotes: list[PoolQuote] | None) -> dict[str, Any]:
    if quotes is None:
        return {"priced": False, "note": "no price book is in force: jobs run free of charge", "pools": []}
    pools = []
    for q in quotes:
        bands = [{"band": s.band.value, "multiplier": format(s.multiplier, "f"), "seconds": str(s.seconds),
                  "units": str(s.units)} for s in q.price.shares]
        pools.append({"site": q.site, "pool": q.pool, "book_version": q.price.book_version,
                      "unit": q.price.entry.unit.value, "unit_price_fen": format(q.unit_price_fen, "f"),
                      "units": format(q.price.units, "f"), "tou": bands, "gross": money_json(q.gross_fen),
                      "voucher_programme": q.voucher_programme, "voucher": money_json(q.voucher_fen),
                      "total": money_json(q.total_fen)})
    hold = max((q.total_fen for q in quotes), default=0)
    return {"priced": True, "pools": pools, "hold": money_json(hold),
            "cheapest": pools[0] if pools else None}


def quote_for(session: Session, actor: Principal, spec: JobSpec) -> dict[str, Any]:
    from suanwang.services.sites import all_pools

    require(actor, Role.CONSUMER, Role.OPERATOR)
    return quote_json(quote_spec(session, actor.tenant_id, spec, all_pools(session), at=now_utc()))


def hold_for_submit(session: Session, actor: Principal, jobs: Sequence[tuple[str, JobSpec]], pools: Sequence[Pool],
                    *, now: float) -> None:
    """At submit: place a hold per job for its dearest eligible quote.  Called by ``jobs.submit_jobs``.

    Raises InsufficientFunds (402) when the wallet plus credit line cannot cover
    a hold; the caller's transaction then writes nothing.  Free when no book is in force.
    """
    if not jobs or not _any_book(session):
        return
    at = utc(now)
    consumer = actor.tenant_id
    cache: dict[str, Fen | None] = {}
    planned = []
    for job_id, spec in jobs:
        signature = repr(spec.__class__.__name__) + repr({f.name: getattr(spec, f.name) for f in fields(spec)
                                                          if f.name not in ("command", "env", "name", "workdir")})
        if signature not in cache:
            quotes = quote_spec(session, consumer, spec, pools, at=at)
            if quotes is not None and not quotes:
                raise InvalidSpec(f"no pool that could run this job has a price in the price book in force "
                                  f"(class {spec.resource_class}, level {spec.service_level}); ask the operator")
            cache[signature] = max((q.total_fen for q in quotes), default=0) if quotes is not None else None
        fen = cache[signature]
        if fen:
            planned.append(plan_hold(f"hold:{job_id}", hold_id=job_id, consumer=consumer, fen=fen, at=at,
                                     actor=_actor(actor), job_id=job_id))
    if not planned:
        return
    ledger = SqlLedger(session)
    for transfer, result in zip(planned, ledger.apply_many(planned, atomic=True), strict=True):
        if result.code.value == "exceeds_credit":
            raise _insufficient(session, consumer, planned)
        _raise_if_refused(result, transfer)


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


def release_job_hold(session: Session, job: JobRow, *, now: float | None = None) -> None:
    """At a terminal state: give back what remains of the job's hold (no-op for free jobs).  Called by ``jobs.move``."""
    state = session.scalar(select(HoldRow.state).where(HoldRow.id == job.id))
    if state != HoldState.OPEN.value:
        return
    ledger = SqlLedger(session)
    ledger.lock_accounts([hold_account(job.tenant_id), wallet(job.tenant_id)])  # accounts before the hold row
    hold = ledger.hold(job.id)
    if hold is None or hold.state is not HoldState.OPEN:
        return
    at = utc(now if now is not None else time.time())
    settled = ledger.settled_until()
    if settled is not None and at < settled:
        at = settled
    transfer = plan_release(f"release:{job.id}", hold=hold, at=at, actor=SYSTEM, void=False, job_id=job.id,
                            reason=f"job {job.state}")
    result = ledger.apply(transfer)
    _raise_if_refused(result, transfer)


# ---- rating ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RatingReport:
    rated: int  # usage rows marked rated in this step
    charged: int  # charges created now (EXISTS not counted)
    free: int  # rows with no book in force or no price: no charge
    over_limit_jobs: tuple[str, ...]  # jobs at or past the credit line: stop them (stop_overspent_jobs)


_USAGE_COLUMNS = ("id", "job_id", "attempt", "seq", "tenant_id", "site", "pool", "resource_class", "start", "end",
                  "core_s", "device_s", "units_nano")  # rows are unpacked in this order (by name costs more)


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
    items: list[tuple[Any, PricedUsage | Charge]] = []
    free = 0
    for row in rows:  # first what needs no ledger state: price, split, request digest
        priced = price_row(row, ctx) if fast else None
        if priced == FREE or (priced is None and _is_free(row, ctx)):
            free += 1  # no book in force when this usage started: free
            continue
        charge = priced if isinstance(priced, PricedUsage) else _rate(session, _record(row, ctx), ctx)
        if charge is not None:
            items.append((row, charge))
    charged, over = _charge(session, items, ctx) if items else (0, set())
    return RatingReport(len(rows), charged, free, tuple(sorted(over)))


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
    _, job_id, attempt, seq, consumer, site, pool, cls, start_s, end_s, core_s, device_s, units_nano = row
    return UsageRecord(job_id, attempt, seq, consumer, ctx.providers.get(site, site), site, pool, ResourceClass(cls),
                       ctx.tiers.get((site, pool), "standard"), ctx.levels[job_id], utc(start_s), utc(end_s),
                       quantities(core_s, device_s, units_nano))


def _rate(session: Session, record: UsageRecord, ctx: RatingContext) -> Charge | None:
    """The general path: rate_usage, or None (audited) for usage no price entry covers."""
    contract = ProviderContract(record.provider, ctx.fee_bps.get(record.provider, 0))
    try:
        return rate_usage(record, ctx.books.at(record.start), contract=contract, settled_until=ctx.settled_until)
    except InvalidSpec as exc:
        record_audit(session, None, "usage.unpriced", record.key, reason=exc.message)
        return None


def _charge(session: Session, items: Sequence[tuple[Any, PricedUsage | Charge]],
            ctx: RatingContext) -> tuple[int, set[str]]:
    """Book the rated items in order, each against the ledger as the charges before it left it."""
    ledger = SqlLedger(session)
    consumers = {row[4] for row, _ in items}
    providers = {ctx.providers.get(row[5], row[5]) for row, _ in items}
    ledger.lock_accounts([PLATFORM_FEES, ROUNDING, *(voucher_fund(p.id) for p in ctx.programmes),
                          *(a for c in consumers for a in (wallet(c), hold_account(c))), *map(earnings, providers)])
    ledger.load_holds({row[1] for row, _ in items})
    ledger.load_keys({usage_key(row[1], row[2], row[3]) for row, _ in items})
    ledger.load_voucher_slots({(p.id, c) for p in ctx.programmes for c in consumers})
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
    return charged, over


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
    if job.state == JobState.RUNNING.value:
        job.cancel_requested = True
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
    require(actor, Role.OPERATOR)
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
                        statements={**_jsonable(settlement), "payouts": paid}, csv=settlement_csv(settlement))
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
            "payouts": statements.get("payouts", [])}


def get_settlement(session: Session, actor: Principal, settlement_id: int) -> SettlementRow:
    require(actor, Role.OPERATOR, Role.AUDITOR)
    row = session.get(SettlementRow, settlement_id)
    if row is None:
        raise NotFound(f"settlement {settlement_id} not found")
    return row


def list_settlements(session: Session, actor: Principal) -> list[dict[str, Any]]:
    require(actor, Role.OPERATOR, Role.AUDITOR)
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
    require(actor, Role.OPERATOR)
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
    require(actor, Role.OPERATOR, Role.AUDITOR)
    return reconcile(session).as_json()


def accounts_view(session: Session, actor: Principal) -> list[dict[str, Any]]:
    require(actor, Role.OPERATOR, Role.AUDITOR)
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

