"""The Vietnamese lunisolar calendar against official dates and the JPL DE421 ephemeris."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from cadenza.history import InvalidArgumentError
from cadenza.timers._calendar_astronomy import (
    new_moon_jde,
    new_moon_utc,
    sun_apparent_longitude,
    tt_to_ut,
)
from cadenza.timers._lunar import (
    LunarDate,
    leap_month,
    lunar_month_length,
    lunar_months,
    lunar_to_solar,
    solar_to_lunar,
)

# Official dates of Tết Nguyên Đán (lunar 1/1) and Giỗ Tổ Hùng Vương (lunar 10/3) in Vietnam.
# 2020-2026 are the dates that were (or are) actually observed; the later ones are the dates
# printed in Vietnamese calendars and in the public-holiday tables of the `holidays` project,
# and were re-derived independently from the JPL DE421 ephemeris (make_de421_reference.py).
# Note 2030: Vietnam celebrates Tết on 2 February; China on 3 February (new moon at 23:07
# UTC+7, 00:07 UTC+8).
OFFICIAL = {
    2020: (date(2020, 1, 25), date(2020, 4, 2)),
    2021: (date(2021, 2, 12), date(2021, 4, 21)),
    2022: (date(2022, 2, 1), date(2022, 4, 10)),
    2023: (date(2023, 1, 22), date(2023, 4, 29)),
    2024: (date(2024, 2, 10), date(2024, 4, 18)),
    2025: (date(2025, 1, 29), date(2025, 4, 7)),
    2026: (date(2026, 2, 17), date(2026, 4, 26)),
    2027: (date(2027, 2, 6), date(2027, 4, 16)),
    2028: (date(2028, 1, 26), date(2028, 4, 4)),
    2029: (date(2029, 2, 13), date(2029, 4, 23)),
    2030: (date(2030, 2, 2), date(2030, 4, 12)),
    2031: (date(2031, 1, 23), date(2031, 4, 1)),
    2032: (date(2032, 2, 11), date(2032, 4, 19)),
    2033: (date(2033, 1, 31), date(2033, 4, 9)),
    2034: (date(2034, 2, 19), date(2034, 4, 28)),
    2035: (date(2035, 2, 8), date(2035, 4, 17)),
}

REFERENCE = json.loads((Path(__file__).with_name("de421_reference.json")).read_text())


@pytest.mark.parametrize("year", sorted(OFFICIAL))
def test_tet_and_hung_kings_day_match_the_official_dates(year: int) -> None:
    tet, gio_to = OFFICIAL[year]
    assert lunar_to_solar(year, 1, 1) == tet
    assert lunar_to_solar(year, 3, 10) == gio_to
    assert solar_to_lunar(tet) == LunarDate(year, 1, 1)
    assert solar_to_lunar(gio_to) == LunarDate(year, 3, 10)
    # The day before Tết is the last day of the previous lunar year.
    eve = solar_to_lunar(tet - timedelta(days=1))
    assert (eve.year, eve.month, eve.leap) == (year - 1, 12, False)
    assert eve.day in (29, 30)


@pytest.mark.parametrize(
    ("year", "leap"),
    [(2020, 4), (2021, None), (2023, 2), (2024, None), (2025, 6), (2028, 5), (2033, 11)],
)
def test_leap_months(year: int, leap: int | None) -> None:
    assert leap_month(year) == leap
    months = lunar_months(year)
    assert len(months) == (13 if leap else 12)
    if leap:
        # The leap month follows the ordinary month of the same number.
        index = next(i for i, m in enumerate(months) if m.leap)
        assert months[index - 1].month == leap and not months[index - 1].leap


def test_leap_month_dates_2023_and_2025() -> None:
    # 2023: tháng 2 nhuận began on 22 March 2023; 2025: tháng 6 nhuận began on 25 July 2025.
    assert lunar_to_solar(2023, 2, 1, leap=True) == date(2023, 3, 22)
    assert lunar_to_solar(2023, 2, 1) == date(2023, 2, 20)
    assert lunar_to_solar(2025, 6, 1, leap=True) == date(2025, 7, 25)
    assert solar_to_lunar(date(2025, 8, 1)) == LunarDate(2025, 6, 8, leap=True)
    assert str(LunarDate(2025, 6, 8, leap=True)) == "2025-06L-08"


@pytest.mark.parametrize(
    ("year", "vietnam", "china"),
    [
        (1985, date(1985, 1, 21), date(1985, 2, 20)),
        (2007, date(2007, 2, 17), date(2007, 2, 18)),
        (2030, date(2030, 2, 2), date(2030, 2, 3)),
    ],
)
def test_days_are_reckoned_in_utc_plus_7_not_china_time(
    year: int, vietnam: date, china: date
) -> None:
    assert lunar_to_solar(year, 1, 1) == vietnam
    assert lunar_to_solar(year, 1, 1, utc_offset=8) == china


def test_1985_difference_comes_from_the_solstice_day() -> None:
    # The December 1984 solstice fell on 21 December in UTC+7 but on 22 December in UTC+8, the
    # day a new moon began a month: so China needed a leap month 10 in 1984 and Vietnam did not;
    # Vietnam's leap month came later, as tháng 2 nhuận of 1985.
    assert leap_month(1984, utc_offset=8) == 10
    assert leap_month(1984) is None
    assert leap_month(1985) == 2
    assert leap_month(1985, utc_offset=8) is None


def test_month_lengths_and_invalid_lunar_dates() -> None:
    assert lunar_month_length(2023, 12) == 30  # 9 February 2024 was 30 tháng Chạp
    assert lunar_to_solar(2023, 12, 30) == date(2024, 2, 9)
    assert lunar_month_length(2024, 12) == 29
    with pytest.raises(InvalidArgumentError) as err:
        lunar_to_solar(2024, 12, 30)
    assert err.value.field == "day"
    with pytest.raises(InvalidArgumentError) as err:
        lunar_to_solar(2024, 4, 1, leap=True)
    assert err.value.field == "leap"
    with pytest.raises(InvalidArgumentError) as err:
        lunar_to_solar(2024, 13, 1)
    assert err.value.field == "month"
    with pytest.raises(InvalidArgumentError) as err:
        solar_to_lunar(date(1700, 1, 1))
    assert err.value.field == "date"
    with pytest.raises(InvalidArgumentError) as err:
        solar_to_lunar(date(2024, 1, 1), utc_offset=20)
    assert err.value.field == "utc_offset"


def test_meeus_new_moon_example() -> None:
    # Meeus, Astronomical Algorithms, example 49.a: the new moon of February 1977.
    assert new_moon_jde(-283) == pytest.approx(2443192.65118, abs=1e-5)
    instant = new_moon_utc(-283)
    assert (instant.year, instant.month, instant.day, instant.hour) == (1977, 2, 18, 3)


def test_new_moons_and_principal_terms_within_a_minute_of_de421() -> None:
    for jd in REFERENCE["new_moons_ut1"]:
        k = round((jd - 2451550.09766) / 29.530588861)
        assert abs(tt_to_ut(new_moon_jde(k)) - jd) * 86400 < 60, jd
    for jd, sector in REFERENCE["terms_ut1"]:
        # At the reference instant the sun enters sector `sector`: just before, it is short of
        # the boundary and just after, past it (60 s is about 0.0007 degrees of solar motion).
        before = sun_apparent_longitude(jd - 60 / 86400)
        after = sun_apparent_longitude(jd + 60 / 86400)
        assert int(after // 30) == sector, jd
        assert int(before // 30) == (sector - 1) % 12, jd


@pytest.mark.parametrize("tz", [7, 8])
def test_every_month_1901_2051_matches_de421(tz: int) -> None:
    rows = REFERENCE[f"months_utc{tz}"]
    first = date.fromisoformat(rows[0][0])
    photo_finishes = []
    for first_day, month, leap, margin_seconds in rows:
        d = date.fromisoformat(first_day)
        got = solar_to_lunar(d, utc_offset=tz)
        if margin_seconds < 60 and (got.day, got.month, got.leap) != (1, month, leap):
            # A new moon within a minute of local midnight: beyond any series' accuracy.
            photo_finishes.append(first_day)
            continue
        assert (got.day, got.month, got.leap) == (1, month, leap), first_day
        # The day before is the last day of the previous month.
        assert solar_to_lunar(d - timedelta(days=1), utc_offset=tz).day in (29, 30) or (
            d - timedelta(days=1) < first
        )
    assert len(rows) > 1800
    # Only 1967-07-08 (new moon 4 s after midnight UTC+7) is a photo finish in this range.
    assert photo_finishes in ([], ["1967-07-08"])
