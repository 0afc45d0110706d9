"""The built-in VN calendar against the official public-sector schedules."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from cadenza.timers._calendar_vn_data import VN_DECREES
from cadenza.timers._calendars import get_calendar


def _days_off(start: date, end: date) -> list[date]:
    """Every date from start to end whose VN status is 'not a business day'."""
    vn = get_calendar("VN")
    out, d = [], start
    while d <= end:
        if not vn.is_business_day(d):
            out.append(d)
        d += timedelta(days=1)
    return out


def _span(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


# The official public-sector breaks (every day off, weekends included) of recent years.
OFFICIAL_BREAKS = [
    # Tết
    (date(2023, 1, 20), date(2023, 1, 26)),
    (date(2024, 2, 8), date(2024, 2, 14)),
    (date(2025, 1, 25), date(2025, 2, 2)),
    (date(2026, 2, 14), date(2026, 2, 22)),
    # 30/4 - 1/5 (with Giỗ Tổ in 2023; swapped days in 2024 and 2025)
    (date(2023, 4, 29), date(2023, 5, 3)),
    (date(2024, 4, 27), date(2024, 5, 1)),
    (date(2025, 4, 30), date(2025, 5, 4)),
    (date(2026, 4, 30), date(2026, 5, 3)),
    # National Day 2/9 and its second day
    (date(2021, 9, 2), date(2021, 9, 5)),
    (date(2022, 9, 1), date(2022, 9, 4)),
    (date(2023, 9, 1), date(2023, 9, 4)),
    (date(2024, 8, 31), date(2024, 9, 3)),
    (date(2025, 8, 30), date(2025, 9, 2)),
]


@pytest.mark.parametrize(("start", "end"), OFFICIAL_BREAKS)
def test_official_breaks(start: date, end: date) -> None:
    # The break is exactly the run of non-business days, with business days on both sides.
    assert _days_off(start - timedelta(days=1), end + timedelta(days=1)) == _span(start, end)


@pytest.mark.parametrize(
    ("day", "business"),
    [
        (date(2024, 5, 4), True),  # Saturday worked for Monday 29 April 2024
        (date(2025, 4, 26), True),  # Saturday worked for Friday 2 May 2025
        (date(2024, 4, 18), False),  # Giỗ Tổ 2024
        (date(2025, 4, 7), False),  # Giỗ Tổ 2025
        (date(2022, 4, 11), False),  # Monday after Giỗ Tổ on Sunday 10 April 2022
        (date(2026, 4, 27), False),  # Monday after Giỗ Tổ on Sunday 26 April 2026
        (date(2023, 1, 2), False),  # New Year on a Sunday
        (date(2022, 1, 3), False),  # New Year on a Saturday: Monday off
        (date(2022, 1, 4), True),
    ],
)
def test_individual_days(day: date, business: bool) -> None:
    assert get_calendar("VN").is_business_day(day) is business


def test_listing_marks_decree_and_computed_entries() -> None:
    vn = get_calendar("VN")
    entries = vn.entries(2025)
    tet = [e for e in entries if e.name.startswith("Tết Nguyên Đán")]
    assert {e.source for e in tet} == {"decree"}
    assert {e.source for e in entries if "Quốc khánh" in e.name} == {"computed"}
    makeup = vn.makeup_workdays(2025)
    assert [(e.date, e.kind, e.source) for e in makeup] == [
        (date(2025, 4, 26), "makeup_workday", "decree")
    ]
    # Years without decree data are computed: Tết is the last day of the lunar year + 1/1-1/4.
    tet_2027 = [e.date for e in vn.holidays(2027) if e.name.startswith("Tết Nguyên Đán")]
    assert tet_2027 == _span(date(2027, 2, 5), date(2027, 2, 9)) + [
        date(2027, 2, 10),
        date(2027, 2, 11),
    ]  # 6-7 Feb 2027 are a weekend: two substitute days follow


def test_decree_data_is_well_formed() -> None:
    vn = get_calendar("VN")
    for entry in VN_DECREES:
        assert entry["status"] == "decree" and entry["source"]
        for day, _name in entry["holidays"]:
            assert vn.is_holiday(date.fromisoformat(day))
        for day, _name in entry["makeup_workdays"]:
            d = date.fromisoformat(day)
            assert d.weekday() == 5 and vn.is_business_day(d)


@pytest.mark.parametrize(
    ("year", "second_day"),
    [
        (2021, date(2021, 9, 3)),  # 2/9 Thursday -> Friday
        (2022, date(2022, 9, 1)),  # Friday -> Thursday
        (2023, date(2023, 9, 1)),  # Saturday -> Friday (and Monday 4/9 substitutes 2/9)
        (2024, date(2024, 9, 3)),  # Monday -> Tuesday
        (2025, date(2025, 9, 1)),  # Tuesday -> Monday
        (2029, date(2029, 9, 3)),  # Sunday -> Monday (and Tuesday 4/9 substitutes 2/9)
    ],
)
def test_national_day_second_day(year: int, second_day: date) -> None:
    vn = get_calendar("VN")
    national = [e.date for e in vn.holidays(year) if e.date.month in (8, 9)]
    assert second_day in national and date(year, 9, 2) in national
    assert len([d for d in national if d.weekday() < 5]) == 2


def test_before_2021_national_day_is_one_day() -> None:
    assert [e.date for e in get_calendar("VN").holidays(2019) if e.date.month == 9] == [
        date(2019, 9, 2)
    ]


def test_last_business_days_around_tet() -> None:
    vn = get_calendar("VN")
    assert vn.nth_business_day(2025, 1, -1) == date(2025, 1, 24)
    assert vn.next_business_day(date(2025, 1, 24)) == date(2025, 2, 3)
    assert vn.roll(date(2024, 2, 12), "modified_following") == date(2024, 2, 15)
    assert vn.roll(date(2025, 1, 29), "modified_following") == date(2025, 1, 24)
