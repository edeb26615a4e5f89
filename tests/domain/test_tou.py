from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.tou import (
    ALL_MONTHS,
    CHINA_TZ,
    MAX_MULTIPLIER,
    STAND_IN_PROVINCES,
    TouBand,
    TouPeriod,
    TouSchedule,
    TouSeason,
    TouTariff,
    check_multiplier,
    split_by_tou,
    tou_tariff_for_province,
    uniform_tariff,
)
from suanwang.errors import InvalidSpec

ONE = Decimal(1)


def test_overlapping_periods_are_rejected_naming_the_hours() -> None:
    with pytest.raises(InvalidSpec, match=r"overlap at hours 09, 10 \(flat, peak\)"):
        TouSchedule(
            (
                TouPeriod(TouBand.PEAK, ((9, 12),), ONE),
                TouPeriod(TouBand.FLAT, ((7, 11),), ONE),
                TouPeriod(TouBand.VALLEY, ((12, 7),), ONE),
            )
        )


def test_gapped_periods_are_rejected_naming_the_hours() -> None:
    with pytest.raises(InvalidSpec, match="leave hours 05, 06 uncovered"):
        TouSchedule((TouPeriod(TouBand.PEAK, ((7, 19),), ONE), TouPeriod(TouBand.VALLEY, ((19, 5),), ONE)))


def test_a_season_gap_is_rejected() -> None:
    schedule = TouSchedule((TouPeriod(TouBand.FLAT, ((0, 24),), ONE),))
    with pytest.raises(InvalidSpec, match=r"missing \[12\]"):
        TouTariff("x", (TouSeason(ALL_MONTHS - {12}, schedule),))


def test_beijing_has_tip_hours_in_july_only() -> None:
    beijing = tou_tariff_for_province("北京")
    assert not beijing.is_stand_in
    assert beijing.period_at(datetime(2026, 7, 15, 11, 30, tzinfo=CHINA_TZ)).band is TouBand.TIP
    assert beijing.period_at(datetime(2026, 1, 15, 11, 30, tzinfo=CHINA_TZ)).band is TouBand.PEAK
    assert beijing.period_at(datetime(2026, 1, 15, 2, 0, tzinfo=CHINA_TZ)).band is TouBand.VALLEY


def test_hours_are_china_local_time_whatever_zone_comes_in() -> None:
    beijing = tou_tariff_for_province("Beijing")
    utc_3am = datetime(2026, 1, 15, 3, 0, tzinfo=UTC)  # 11:00 in Beijing
    assert beijing.period_at(utc_3am).band is TouBand.PEAK
    with pytest.raises(InvalidSpec, match="timezone-aware"):
        beijing.period_at(datetime(2026, 1, 15, 3, 0))


def test_shanghai_summer_differs_from_the_rest_of_the_year() -> None:
    shanghai = tou_tariff_for_province("Shanghai")
    two_pm = {m: shanghai.period_at(datetime(2026, m, 1, 14, tzinfo=CHINA_TZ)).band for m in (8, 11)}
    assert two_pm == {8: TouBand.PEAK, 11: TouBand.FLAT}


@pytest.mark.parametrize("province", [*STAND_IN_PROVINCES, "宁夏", "内蒙古"])
def test_provinces_without_data_get_a_declared_stand_in(province: str) -> None:
    tariff = tou_tariff_for_province(province)
    assert tariff.is_stand_in
    assert "Beijing all-year windows" in tariff.source


@pytest.mark.parametrize("province", ["Beijing", "Shanghai", "Hunan", "Hainan"])
def test_provinces_with_data_are_not_stand_ins(province: str) -> None:
    assert tou_tariff_for_province(province).source.startswith("data")


def test_usage_across_a_band_boundary_is_split_at_the_hour() -> None:
    gansu = tou_tariff_for_province("Gansu")  # stand-in windows: flat 07-10, peak 10-15
    start = datetime(2026, 3, 2, 9, 30, tzinfo=CHINA_TZ)
    segments = split_by_tou(gansu, start, start + timedelta(hours=2))
    assert [(s.band, s.seconds) for s in segments] == [(TouBand.FLAT, 1800), (TouBand.PEAK, 5400)]


def test_no_tariff_means_one_flat_segment() -> None:
    start = datetime(2026, 3, 2, 9, tzinfo=CHINA_TZ)
    [segment] = split_by_tou(None, start, start + timedelta(days=3))
    assert segment.band is TouBand.FLAT and segment.multiplier == 1


@settings(deadline=None)
@given(st.integers(0, 60 * 24 * 400), st.integers(0, 60 * 24 * 3), st.sampled_from(["Beijing", "Shanghai", "Gansu"]))
def test_segments_tile_the_interval_exactly(start_min: int, length_min: int, province: str) -> None:
    tariff = tou_tariff_for_province(province)
    start = datetime(2026, 1, 1, tzinfo=CHINA_TZ) + timedelta(minutes=start_min, seconds=7)
    end = start + timedelta(minutes=length_min)
    segments = split_by_tou(tariff, start, end)
    assert segments[0].start == start and segments[-1].end == end
    assert all(a.end == b.start for a, b in itertools.pairwise(segments))
    assert all((a.band, a.multiplier) != (b.band, b.multiplier) for a, b in itertools.pairwise(segments))
    assert sum(s.seconds for s in segments) == length_min * 60
    assert all(tariff.period_at(s.start).band is s.band for s in segments if s.end > s.start)


def test_uniform_tariff_uses_default_multipliers() -> None:
    tariff = uniform_tariff("t", {TouBand.PEAK: ((8, 20),), TouBand.VALLEY: ((20, 8),)})
    assert tariff.period_at(datetime(2026, 1, 1, 9, tzinfo=CHINA_TZ)).multiplier == Decimal("1.25")


# ---- multipliers are bounded as they are parsed ----------------------------------------------------------


@pytest.mark.parametrize("multiplier", ["1e999999", "1e-999999", "NaN", "Infinity", "100.0001", "-0.5", "0.00001",
                                        "abc"])
def test_absurd_multipliers_are_refused_without_building_them(multiplier: str) -> None:
    with pytest.raises(InvalidSpec, match="peak multiplier"):
        check_multiplier(multiplier, what="peak multiplier")


def test_a_period_refuses_a_multiplier_past_the_bound() -> None:
    with pytest.raises(InvalidSpec, match=r"time-of-use peak multiplier must lie within \[0, 100\]"):
        TouPeriod(TouBand.PEAK, ((0, 24),), Decimal("1e999999"))


@given(st.decimals(min_value=0, max_value=MAX_MULTIPLIER, places=4, allow_nan=False, allow_infinity=False))
def test_every_multiplier_within_bounds_is_accepted(multiplier: Decimal) -> None:
    assert TouPeriod(TouBand.PEAK, ((0, 24),), multiplier).multiplier == multiplier
