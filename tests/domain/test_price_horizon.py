"""Prices over the queueing horizon (domain.price_horizon): the breaks it prices at hold the dearest and the
cheapest window of any start within 24 h, so a hold accepted at submit is placeable by the price rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.job import JobSpec
from suanwang.domain.placement import QueuedJob, priced_out
from suanwang.domain.price_horizon import (
    QUEUE_HORIZON,
    changes_of,
    first_within,
    quote_range,
    window_starts,
)
from suanwang.domain.pricing import PriceBook, PriceUnit, QuoteRequest, quote
from suanwang.domain.resources import ResourceClass, ServiceLevel
from suanwang.domain.tou import ALL_MONTHS, TouBand, TouPeriod, TouSchedule, TouSeason, TouTariff
from tests.domain.money_builders import a_book, a_pool, an_entry, gansu_tou

POOL = a_pool()
KEY = (POOL.site, POOL.name)
BANDS = list(TouBand)


@st.composite
def tariffs(draw: st.DrawFn) -> TouTariff:
    """Any tariff: each hour of the day in any band, any multiplier per band, two seasons split anywhere."""
    def schedule() -> TouSchedule:
        hours = draw(st.lists(st.sampled_from(BANDS), min_size=24, max_size=24))
        mult = {b: draw(st.decimals(0, 5, places=2)) for b in set(hours)}
        return TouSchedule(tuple(TouPeriod(b, tuple((h, h + 1) for h in range(24) if hours[h] is b), mult[b])
                                 for b in set(hours)))
    summer = draw(st.frozensets(st.integers(1, 12), max_size=11))
    seasons = (TouSeason(ALL_MONTHS - summer, schedule()), *((TouSeason(summer, schedule()),) if summer else ()))
    return TouTariff("any", seasons)


def request(at: datetime, duration: timedelta, units: Decimal) -> QuoteRequest:
    return QuoteRequest("acme", ResourceClass.GENERAL, ServiceLevel.STANDARD, at, duration,
                        {POOL.name: {PriceUnit.SCU: units}})


def gross(book: PriceBook, req: QuoteRequest, at: datetime) -> int:
    [q] = quote(replace(req, start=at), [POOL], [book])
    return q.gross_fen


SUBMIT = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC))
DURATION = st.integers(1, 3 * 1440).map(lambda m: timedelta(minutes=m))  # whole minutes: see the minute grid below
OFFSETS = st.lists(st.integers(0, int(QUEUE_HORIZON.total_seconds() * 1000)), min_size=1, max_size=12)


def minute_grid(submit: datetime) -> list[datetime]:
    """Every whole minute within the horizon: with whole-minute durations every start where a window's price
    breaks (the start or the end crossing an hour) is one of them, so the grid holds the true extremes."""
    first = submit.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return [submit, *(first + timedelta(minutes=i) for i in range(24 * 60) if first + timedelta(minutes=i)
                      <= submit + QUEUE_HORIZON)]


@settings(max_examples=40, deadline=None)
@given(tariffs(), st.decimals(1, 100_000, places=4), st.decimals("0.001", 1000, places=3), SUBMIT, DURATION, OFFSETS,
       st.integers(0, 100))
def test_a_hold_accepted_at_submit_is_placeable_by_the_price_rule_within_a_day(
        tariff: TouTariff, price: Decimal, units: Decimal, submit: datetime, duration: timedelta,
        offsets_ms: list[int], pick: int) -> None:
    book = a_book(an_entry(str(price), tou=tariff), effective_from=submit - timedelta(days=1))
    req = request(submit, duration, units)
    starts = window_starts(submit, duration, changes=changes_of([book]))
    span = quote_range(req, [POOL], [book], starts)[KEY]
    # the extremes at the breaks bound the price at every start within the horizon, and are attained (a break may
    # fall between two whole minutes, so a minute grid can miss the exact extreme but never go beyond it)
    prices = [gross(book, req, at) for at in minute_grid(submit)]
    assert span.cheapest.gross_fen <= min(prices) and max(prices) <= span.dearest.gross_fen
    assert gross(book, req, span.cheapest_at) == span.cheapest.gross_fen
    for ms in offsets_ms:
        assert span.cheapest.gross_fen <= gross(book, req, submit + timedelta(milliseconds=ms)) \
            <= span.dearest.gross_fen, ms
    assert submit <= span.cheapest_at <= submit + QUEUE_HORIZON
    # no limit given: the hold's limit is the dearest window, within which the job is placeable now
    assert gross(book, req, submit) <= span.dearest.gross_fen
    # a limit accepted at submit (at least the cheapest window): placeable by the price rule within 24 h
    low, high = span.cheapest.gross_fen, span.dearest.gross_fen
    limit = low + (high - low) * pick // 100
    at = first_within(req, POOL, [book], starts, limit)
    assert at is not None and submit <= at <= submit + QUEUE_HORIZON
    job = QueuedJob("j", JobSpec(command=("true",), max_price_fen=limit), "acme", submit.timestamp(),
                    prices_fen={KEY: gross(book, req, at)})
    assert priced_out(job) == {}
    if limit > low:  # not placeable a second earlier (it is the first such start)
        assert at == submit or gross(book, req, at - timedelta(seconds=1)) > limit
    # a limit below the cheapest window is refused at submit: no start within the day is within it
    assert first_within(req, POOL, [book], starts, low - 1) is None


def test_a_book_that_takes_effect_within_the_horizon_is_priced_from_then() -> None:
    submit = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 China time
    old = a_book(an_entry("100"), effective_from=submit - timedelta(days=1))
    new = replace(a_book(an_entry("300"), version=2, effective_from=submit + timedelta(hours=5)))
    req = request(submit, timedelta(hours=1), Decimal(1))
    starts = window_starts(submit, timedelta(hours=1), changes=changes_of([old, new]), tou=False)
    assert starts == [submit, submit + timedelta(hours=5) - timedelta(microseconds=1), submit + timedelta(hours=5),
                      submit + QUEUE_HORIZON]
    span = quote_range(req, [POOL], [old, new], starts)[KEY]
    assert (span.cheapest.gross_fen, span.dearest.gross_fen) == (100, 300)
    assert span.dearest_at == submit + timedelta(hours=5)


def test_gansu_a_one_hour_window_from_0635_is_dearest_at_peak_and_cheapest_in_the_valley() -> None:
    submit = datetime(2026, 12, 7, 22, 35, tzinfo=UTC)  # 06:35 China time
    book = a_book(an_entry("1000", tou=gansu_tou()), effective_from=submit - timedelta(days=1))
    req = request(submit, timedelta(hours=1), Decimal(64))
    span = quote_range(req, [POOL], [book], window_starts(submit, timedelta(hours=1)))[KEY]
    assert (span.cheapest.gross_fen, span.dearest.gross_fen) == (48_000, 80_000)
    assert span.dearest_at == datetime(2026, 12, 8, 2, 0, tzinfo=UTC)  # 10:00 China time: peak 10-15
    assert first_within(req, POOL, [book], window_starts(submit, timedelta(hours=1)), 64_000) == submit
