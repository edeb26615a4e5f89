"""Billing's JSON: request bodies parsed into domain values (every number bounded before use) and domain
values rendered for answers.  Pure: no session, no clock.

A price book's entries are stored as their owner published them, so ``entry_from_json`` reads both a
request (``api/price_books.py``, the edge that parses and renders price books) and a stored body
(``book_from_json``, for ``books.load_books``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from suanwang.domain.ledger import (
    Account,
)
from suanwang.domain.money import Fen, check_currency, format_yuan, parse_fen
from suanwang.domain.pricing import (
    MAX_ENTRIES,
    OPERATOR,
    PoolQuote,
    PriceBook,
    PriceEntry,
    PriceUnit,
    check_version,
)
from suanwang.domain.rating_batch import utc
from suanwang.domain.resources import ResourceClass, ServiceLevel
from suanwang.domain.tou import (
    DEFAULT_MULTIPLIERS,
    TouBand,
    TouTariff,
    check_multiplier,
    tou_tariff_for_province,
    uniform_tariff,
)
from suanwang.domain.voucher import VoucherProgramme
from suanwang.errors import InvalidSpec
from suanwang.store.ledger_tables import (
    SettlementRow,
)
from suanwang.store.sql_ledger import (
    from_us,
)
from suanwang.store.tables import PoolRow

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
    """A book from its stored JSON body (what ``books.set_price_book`` wrote); every number bounded before it
    is used (see domain.pricing): a body stored before today's bounds is refused, not trusted."""
    entries = entries_from_json(data.get("entries"))
    if "currency" in data:
        check_currency(str(data["currency"])[:10])
    return PriceBook(check_version(data.get("version")), parse_time(data.get("effective_from"), "effective_from"),
                     entries, owner=owner)


def entries_from_json(entries: object) -> tuple[PriceEntry, ...]:
    """A price book's ``entries``: a non-empty list of at most ``MAX_ENTRIES`` objects, each bounded."""
    if not isinstance(entries, list) or not entries:
        raise InvalidSpec("a price book needs a non-empty 'entries' list")
    if len(entries) > MAX_ENTRIES:
        raise InvalidSpec(f"a price book has at most {MAX_ENTRIES} entries, got {len(entries)}")
    if not all(isinstance(e, Mapping) for e in entries):
        raise InvalidSpec("every price book entry must be an object")
    return tuple(entry_from_json(e) for e in entries)


def _plain(value: Any) -> Any:
    """JSON-ready form of stored input (Decimals as strings, so nothing becomes a float)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


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


def settlement_json(row: SettlementRow) -> dict[str, Any]:
    statements = dict(row.statements)
    return {"id": row.id, "start": from_us(row.start_us).isoformat(), "end": from_us(row.end_us).isoformat(),
            "transfer_count": row.transfer_count, "consumers": statements.get("consumers", []),
            "providers": statements.get("providers", []), "trial_balance": statements.get("trial_balance", []),
            "payouts": statements.get("payouts", []), "unbilled": statements.get("unbilled", []),
            "market": statements.get("market", [])}


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
