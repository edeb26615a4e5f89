"""Time-of-use (分时) periods: which hours of the day are tip, peak, flat or valley.

Why: compute prices follow the industrial electricity tariff pattern of the
site's province, so a price book entry can carry a :class:`TouTariff` whose
bands multiply the unit price.  Usage that spans a band boundary is split
exactly (:func:`split_by_tou`).

Invariants owned here
- A schedule covers each hour 0..23 exactly once; an overlap or a gap raises
  InvalidSpec naming the hours.  A tariff's seasons cover months 1..12 once.
- Hours are local China Standard Time (UTC+8, no daylight saving since 1991);
  times passed in must be timezone-aware.
- Splits are exact (``Fraction``); segment durations sum to the interval.
- A band multiplier lies in ``[0, MAX_MULTIPLIER]`` (0: free hours) with at most 4 decimal places
  (:func:`check_multiplier`), so no price book can turn a price into an integer
  too large to compute with (``1e999999`` is refused as it is parsed).

Data: hour windows come from ``suanwang/data/cn_tou_tariffs`` (see its README).
Only Beijing, Shanghai, Hunan and Hainan have hour windows there.  Every other
province, notably the western compute hubs Gansu, Ningxia, Inner Mongolia and
Guizhou (and Anhui, Guangdong, Zhejiang), is a STAND-IN: it gets Beijing's
all-year windows (peak 10-15, 18-21; flat 07-10, 15-18, 21-23; valley 23-07)
until real windows are loaded.  This is known to be wrong in detail: provinces
with much solar power (e.g. Gansu) have moved valley hours to midday.
The band multipliers below are product defaults for compute prices, not
electricity ratios (electricity is only part of the cost of compute).
"""

from __future__ import annotations

import csv
import enum
import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from functools import cache
from importlib import resources

from suanwang.domain.money import parse_bounded
from suanwang.errors import InvalidSpec

MAX_MULTIPLIER = Decimal(100)  # a band at most 100x the unit price: beyond it a price is a typo or an attack
MULTIPLIER_PLACES = 4
CHINA_TZ = timezone(timedelta(hours=8), "CST")
ALL_MONTHS = frozenset(range(1, 13))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = _EPOCH.toordinal()
_US = timedelta(microseconds=1)
_HOUR_US = 3_600_000_000
_CST_US = 8 * _HOUR_US  # China Standard Time is UTC+8 all year, so local hours are fixed offsets of UTC


@enum.unique
class TouBand(enum.StrEnum):
    """A time-of-use band, from dearest to cheapest."""

    TIP = "tip"  # 尖峰: the dearest hours, some provinces only
    PEAK = "peak"  # 峰
    FLAT = "flat"  # 平
    VALLEY = "valley"  # 谷
    DEEP_VALLEY = "deep_valley"  # 深谷: some provinces only


# Product defaults for compute price multipliers (stand-ins; set per price book).
DEFAULT_MULTIPLIERS: dict[TouBand, Decimal] = {
    TouBand.TIP: Decimal("1.35"),
    TouBand.PEAK: Decimal("1.25"),
    TouBand.FLAT: Decimal("1"),
    TouBand.VALLEY: Decimal("0.75"),
    TouBand.DEEP_VALLEY: Decimal("0.6"),
}

Window = tuple[int, int]  # (start hour, end hour), end exclusive; start > end wraps midnight


def _window_hours(window: Window) -> list[int]:
    start, end = window
    if not (0 <= start <= 23 and 0 <= end <= 24) or start == end:
        raise InvalidSpec(f"time-of-use window {start:02d}-{end:02d} is not a valid hour range")
    if start < end:
        return list(range(start, end))
    return list(range(start, 24)) + list(range(end))


@dataclass(frozen=True, slots=True)
class TouPeriod:
    """One band's hour windows and its price multiplier."""

    band: TouBand
    windows: tuple[Window, ...]
    multiplier: Decimal

    def __post_init__(self) -> None:
        if not isinstance(self.multiplier, Decimal):
            raise InvalidSpec(f"time-of-use {self.band} multiplier must be a Decimal")
        check_multiplier(self.multiplier, what=f"time-of-use {self.band} multiplier")
        for window in self.windows:
            _window_hours(window)

    def hours(self) -> list[int]:
        return [h for w in self.windows for h in _window_hours(w)]


def check_multiplier(value: object, *, what: str = "time-of-use multiplier") -> Decimal:
    """A band multiplier: an exact number in ``[0, MAX_MULTIPLIER]`` (0: free hours), at most 4 decimal places."""
    return parse_bounded(value, what=what, low=0, high=MAX_MULTIPLIER, places=MULTIPLIER_PLACES)


def _hour_list(hours: list[int]) -> str:
    return ", ".join(f"{h:02d}" for h in sorted(hours))


@dataclass(frozen=True, slots=True)
class TouSchedule:
    """A day's periods; each hour belongs to exactly one period."""

    periods: tuple[TouPeriod, ...]
    _by_hour: tuple[TouPeriod, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        owner: dict[int, TouBand] = {}
        overlaps: dict[int, set[TouBand]] = {}
        for period in self.periods:
            for hour in period.hours():
                if hour in owner:
                    overlaps.setdefault(hour, {owner[hour]}).add(period.band)
                owner.setdefault(hour, period.band)
        if overlaps:
            bands = sorted({b for s in overlaps.values() for b in s})
            raise InvalidSpec(
                f"time-of-use periods overlap at hours {_hour_list(list(overlaps))} ({', '.join(bands)})",
                hours=sorted(overlaps),
            )
        gaps = [h for h in range(24) if h not in owner]
        if gaps:
            raise InvalidSpec(f"time-of-use periods leave hours {_hour_list(gaps)} uncovered", hours=gaps)
        table = {h: p for p in self.periods for h in p.hours()}
        object.__setattr__(self, "_by_hour", tuple(table[h] for h in range(24)))

    def period_at(self, hour: int) -> TouPeriod:
        return self._by_hour[hour]


@dataclass(frozen=True, slots=True)
class TouSeason:
    months: frozenset[int]
    schedule: TouSchedule


@dataclass(frozen=True, slots=True)
class TouTariff:
    """A province's time-of-use pattern: seasons covering the 12 months once.

    ``source`` says where the windows come from, and says "stand-in" when they
    were borrowed from another province because data was missing.
    """

    name: str
    seasons: tuple[TouSeason, ...]
    source: str = ""
    _by_month: tuple[tuple[TouPeriod, ...], ...] = field(init=False, repr=False, compare=False)  # [month][hour]

    def __post_init__(self) -> None:
        seen: list[int] = [m for s in self.seasons for m in s.months]
        doubled = sorted({m for m in seen if seen.count(m) > 1})
        missing = sorted(ALL_MONTHS - set(seen))
        if doubled or missing or not set(seen) <= ALL_MONTHS:
            raise InvalidSpec(
                f"tariff {self.name}: seasons must cover months 1..12 once (doubled {doubled}, missing {missing})"
            )
        by_month = {m: s.schedule._by_hour for s in self.seasons for m in s.months}
        object.__setattr__(self, "_by_month", ((), *(by_month[m] for m in range(1, 13))))

    @property
    def is_stand_in(self) -> bool:
        return self.source.startswith("stand-in")

    def period_at(self, at: datetime) -> TouPeriod:
        local = _local(at)
        return self._by_month[local.month][local.hour]


def _aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidSpec(f"time {at.isoformat()} must be timezone-aware")


def _local(at: datetime) -> datetime:
    _aware(at)
    return at.astimezone(CHINA_TZ)


@dataclass(frozen=True, slots=True)
class TouSegment:
    """A piece of an interval that lies in one band."""

    band: TouBand
    multiplier: Decimal
    start: datetime
    end: datetime

    @property
    def seconds(self) -> Fraction:
        delta = self.end - self.start
        return Fraction(delta // timedelta(microseconds=1), 1_000_000)


def split_by_tou(tariff: TouTariff | None, start: datetime, end: datetime) -> list[TouSegment]:
    """Cut ``[start, end)`` at local hour boundaries where the band changes.

    With no tariff the whole interval is one FLAT segment at multiplier 1.
    Consecutive hours of the same band and multiplier are merged.
    """
    _local(start), _local(end)
    if end < start:
        raise InvalidSpec(f"interval ends before it starts: {start.isoformat()} .. {end.isoformat()}")
    if tariff is None or end == start:
        return [TouSegment(TouBand.FLAT, Decimal(1), start, end)]
    segments: list[TouSegment] = []
    cursor = start
    while cursor < end:
        local = _local(cursor)
        next_hour = local.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        stop = min(end, next_hour.astimezone(start.tzinfo))
        period = tariff.period_at(cursor)
        last = segments[-1] if segments else None
        if last and last.band is period.band and last.multiplier == period.multiplier:
            segments[-1] = TouSegment(last.band, last.multiplier, last.start, stop)
        else:
            segments.append(TouSegment(period.band, period.multiplier, cursor, stop))
        cursor = stop
    return segments


def band_microseconds(tariff: TouTariff | None, start: datetime, end: datetime) -> list[tuple[TouBand, Decimal, int]]:
    """:func:`split_by_tou` in integer microseconds, summed per (band, multiplier) in order of first appearance.

    What pricing needs, without a datetime or Fraction per hour: rating prices
    thousands of records a second.  Same validation and the same cut points
    (local hours are UTC+8 with no daylight saving, so they are fixed offsets).
    """
    _aware(start)
    _aware(end)
    if end < start:
        raise InvalidSpec(f"interval ends before it starts: {start.isoformat()} .. {end.isoformat()}")
    start_us, end_us = (start - _EPOCH) // _US, (end - _EPOCH) // _US
    if tariff is None or end_us == start_us:
        return [(TouBand.FLAT, Decimal(1), end_us - start_us)]
    totals: dict[tuple[TouBand, Decimal], int] = {}
    by_hour: tuple[TouPeriod, ...] = ()
    cursor, hour, day = start_us, (start_us + _CST_US) // _HOUR_US, -1
    while cursor < end_us:
        if hour // 24 != day:
            day = hour // 24
            by_hour = tariff._by_month[date.fromordinal(_EPOCH_ORDINAL + day).month]
        period = by_hour[hour % 24]
        hour += 1
        stop = min(end_us, hour * _HOUR_US - _CST_US)
        key = (period.band, period.multiplier)
        totals[key] = totals.get(key, 0) + stop - cursor
        cursor = stop
    return [(band, multiplier, us) for (band, multiplier), us in totals.items()]


def uniform_tariff(
    name: str,
    bands: dict[TouBand, tuple[Window, ...]],
    multipliers: dict[TouBand, Decimal] | None = None,
    source: str = "",
) -> TouTariff:
    """A tariff with one all-year schedule built from band -> windows."""
    mult = multipliers or DEFAULT_MULTIPLIERS
    schedule = TouSchedule(tuple(TouPeriod(b, w, mult[b]) for b, w in bands.items()))
    return TouTariff(name, (TouSeason(ALL_MONTHS, schedule),), source)


# ---- packaged data -------------------------------------------------------------------------------------

_BAND_BY_CSV = {"tip": TouBand.TIP, "peak": TouBand.PEAK, "flat": TouBand.FLAT, "valley": TouBand.VALLEY}
_SEASON_MONTHS = {
    "all year": ALL_MONTHS,
    "Jul-Aug only": frozenset({7, 8}),
    "summer Jul-Sep": frozenset({7, 8, 9}),
    "non-summer": ALL_MONTHS - {7, 8, 9},
}
# Provinces with no windows in the data, and what stands in for them.
STAND_IN_SOURCE = "Beijing"
STAND_IN_PROVINCES = ("Gansu", "Ningxia", "Inner Mongolia", "Guizhou", "Anhui", "Guangdong", "Zhejiang")
_ALIASES = {
    "北京": "Beijing",
    "上海": "Shanghai",
    "湖南": "Hunan",
    "海南": "Hainan",
    "甘肃": "Gansu",
    "宁夏": "Ningxia",
    "内蒙古": "Inner Mongolia",
    "mengxi": "Inner Mongolia",
    "蒙西": "Inner Mongolia",
    "贵州": "Guizhou",
    "安徽": "Anhui",
    "广东": "Guangdong",
    "浙江": "Zhejiang",
}


def _parse_windows(text: str) -> tuple[Window, ...]:
    windows = []
    for part in text.split(";"):
        start, end = part.strip().split("-")
        windows.append((int(start), int(end)))
    return tuple(windows)


@cache
def _csv_windows() -> dict[str, dict[str, dict[TouBand, tuple[Window, ...]]]]:
    """province -> season -> band -> windows, from the packaged CSV (rows with hours only)."""
    text = resources.files("suanwang").joinpath("data/cn_tou_tariffs/cn_tou_tariffs.csv").read_text("utf-8")
    table: dict[str, dict[str, dict[TouBand, tuple[Window, ...]]]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        if not row["hours"]:
            continue  # ratios without hours (Zhejiang): not usable as windows
        province = row["province"].split()[0]
        band = _BAND_BY_CSV[row["period"].split()[0]]
        table.setdefault(province, {}).setdefault(row["season"], {})[band] = _parse_windows(row["hours"])
    return table


def _without(windows: tuple[Window, ...], removed: set[int]) -> tuple[Window, ...]:
    hours = [h for w in windows for h in _window_hours(w) if h not in removed]
    return tuple((h, h + 1) for h in hours)


def _tariff_from_data(province: str, multipliers: dict[TouBand, Decimal], source: str) -> TouTariff:
    seasons = _csv_windows()[province]
    base_name = "all year" if "all year" in seasons else None
    built: list[TouSeason] = []
    if base_name and "Jul-Aug only" in seasons:  # Beijing: tip hours override the base bands in Jul-Aug
        tip = seasons["Jul-Aug only"][TouBand.TIP]
        tip_hours = {h for w in tip for h in _window_hours(w)}
        bands = {b: _without(w, tip_hours) for b, w in seasons[base_name].items()} | {TouBand.TIP: tip}
        built.append(TouSeason(frozenset({7, 8}), _schedule(bands, multipliers)))
        built.append(TouSeason(ALL_MONTHS - {7, 8}, _schedule(seasons[base_name], multipliers)))
    else:
        for season_name, bands in seasons.items():
            built.append(TouSeason(_SEASON_MONTHS[season_name], _schedule(bands, multipliers)))
    return TouTariff(province, tuple(built), source)


def _schedule(bands: dict[TouBand, tuple[Window, ...]], multipliers: dict[TouBand, Decimal]) -> TouSchedule:
    return TouSchedule(tuple(TouPeriod(b, w, multipliers[b]) for b, w in bands.items() if w))


def province_key(province: str) -> str:
    """Normalise "北京", "Beijing 北京" or "beijing" to the English key used here."""
    text = province.strip()
    if text in _ALIASES:
        return _ALIASES[text]
    first = text.split()[0] if text else ""
    for key in (*_csv_windows(), *STAND_IN_PROVINCES):
        if key.lower() == text.lower() or key.lower() == first.lower():
            return key
    return _ALIASES.get(first.lower(), _ALIASES.get(first, text))


def tou_tariff_for_province(province: str, multipliers: dict[TouBand, Decimal] | None = None) -> TouTariff:
    """The time-of-use tariff of a site's province.

    Provinces in the data get their own windows.  Any other province gets the
    stand-in (Beijing's all-year windows) and ``source`` starts with "stand-in".
    """
    mult = {**DEFAULT_MULTIPLIERS, **(multipliers or {})}
    key = province_key(province)
    if key in _csv_windows():
        return _tariff_from_data(key, mult, "data: suanwang/data/cn_tou_tariffs")
    stand_in = _tariff_from_data(STAND_IN_SOURCE, mult, "")
    base = next(s for s in stand_in.seasons if 1 in s.months).schedule  # all-year windows, no tip
    source = f"stand-in: {STAND_IN_SOURCE} all-year windows (no time-of-use data for {province or 'unknown'})"
    return TouTariff(key or "unknown", (TouSeason(ALL_MONTHS, base),), source)
