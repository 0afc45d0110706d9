"""BusinessCalendar.from_dict: calendars defined in job files."""

from __future__ import annotations

from datetime import date

import pytest
import yaml

from cadenza.history import InvalidArgumentError
from cadenza.timers._calendars import BusinessCalendar, CompositeCalendar, get_calendar

JOB_FILE_CALENDAR = """
name: acme-bank
weekend: [sat, sun]
substitute: next_workday
holidays:
  - {date: 2025-12-24, name: Christmas Eve}
  - {date: 2025-12-29, until: 2025-12-31, name: Year-end closing}
  - {fixed: "12-25", name: Christmas}
  - {lunar: "01-15", name: Rằm tháng Giêng}
  - {lunar: "12-last", name: Tất niên, substitute: false}
  - {lunar_range: {from: "12-last", to: "01-04"}, name: Tết, first_year: 2025}
  - {nth_weekday: {month: 11, weekday: thu, n: 4}, name: Thanksgiving}
  - {bridge: "09-02", name: National Day (second day)}
makeup_workdays:
  - {date: "2025-04-26", name: Làm bù}
"""


def test_from_yaml_data() -> None:
    cal = BusinessCalendar.from_dict(yaml.safe_load(JOB_FILE_CALENDAR))
    assert isinstance(cal, BusinessCalendar) and cal.name == "acme-bank"
    by_date = {}
    for entry in cal.holidays(2025):
        by_date.setdefault(entry.date, []).append(entry.name)
    assert by_date[date(2025, 12, 24)] == ["Christmas Eve"]
    assert [d for d, names in by_date.items() if "Year-end closing" in names] == [
        date(2025, 12, 29),
        date(2025, 12, 30),
        date(2025, 12, 31),
    ]
    assert by_date[date(2025, 2, 12)] == ["Rằm tháng Giêng"]
    assert by_date[date(2025, 11, 27)] == ["Thanksgiving"]
    assert by_date[date(2025, 9, 1)] == ["National Day (second day)"]
    # Tất niên and the first day of the Tết range collide on 28 January 2025: Tết's day gets a
    # substitute (the rule that opted out does not), after the Tết days and the weekend.
    assert set(by_date[date(2025, 1, 28)]) == {"Tết", "Tất niên"}
    assert by_date[date(2025, 2, 3)] == ["Tết (substitute day off)"]  # for the collision
    assert by_date[date(2025, 2, 4)] == ["Tết (substitute day off)"]  # for Saturday 1 Feb
    assert "Tết" not in {e.name for e in cal.holidays(2024)}  # first_year: 2025
    assert cal.is_business_day(date(2025, 4, 26))


def test_include_makes_a_composite() -> None:
    cal = BusinessCalendar.from_dict(
        {"name": "vn-plus", "include": ["vietnam"], "holidays": [{"fixed": "12-31", "name": "X"}]}
    )
    assert isinstance(cal, CompositeCalendar)
    assert cal.is_holiday(date(2025, 12, 31)) and cal.is_holiday(date(2025, 9, 2))
    assert not get_calendar("VN").is_holiday(date(2025, 12, 31))


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "name"),
        ({"name": "x", "colour": "red"}, "colour"),
        ({"name": "x", "weekend": "sat"}, "weekend"),
        ({"name": "x", "weekend": ["sat", "sun", "mon", "tue", "wed", "thu", "fri"]}, "weekend"),
        ({"name": "x", "weekend": ["sat", "noday"]}, "weekend[1]"),
        ({"name": "x", "substitute": "always"}, "substitute"),
        ({"name": "x", "holidays": [{"name": "a"}]}, "holidays[0]"),
        (
            {"name": "x", "holidays": [{"date": "2025-01-01", "fixed": "01-01", "name": "a"}]},
            "holidays[0]",
        ),
        ({"name": "x", "holidays": [{"date": "2025-13-01", "name": "a"}]}, "holidays[0].date"),
        ({"name": "x", "holidays": [{"date": "2025-01-01"}]}, "holidays[0].name"),
        (
            {"name": "x", "holidays": [{"date": "2025-01-05", "until": "2025-01-01", "name": "a"}]},
            "holidays[0].until",
        ),
        ({"name": "x", "holidays": [{"fixed": "02-30", "name": "a"}]}, "holidays[0].fixed.day"),
        ({"name": "x", "holidays": [{"fixed": "1/1", "name": "a"}]}, "holidays[0].fixed"),
        ({"name": "x", "holidays": [{"lunar": "13-01", "name": "a"}]}, "holidays[0].lunar"),
        (
            {"name": "x", "holidays": [{"lunar": "01-01", "leap": "yes", "name": "a"}]},
            "holidays[0].leap",
        ),
        (
            {"name": "x", "holidays": [{"lunar_range": {"from": "12-last"}, "name": "a"}]},
            "holidays[0].lunar_range.to",
        ),
        (
            {
                "name": "x",
                "holidays": [{"nth_weekday": {"month": 11, "weekday": "thu", "n": 6}, "name": "a"}],
            },
            "holidays[0].nth_weekday.n",
        ),
        (
            {
                "name": "x",
                "holidays": [{"nth_weekday": {"month": 11, "weekday": "jeu", "n": 1}, "name": "a"}],
            },
            "holidays[0].nth_weekday.weekday",
        ),
        (
            {
                "name": "x",
                "holidays": [
                    {"fixed": "01-01", "name": "a", "first_year": 2030, "last_year": 2020}
                ],
            },
            "holidays[0].last_year",
        ),
        (
            {"name": "x", "holidays": [{"fixed": "01-01", "name": "a", "every": 2}]},
            "holidays[0].every",
        ),
        (
            {"name": "x", "makeup_workdays": [{"date": "2025-04-28", "name": "Monday"}]},
            "makeup_workdays[0]",
        ),
        ({"name": "x", "makeup_workdays": [{"name": "no date"}]}, "makeup_workdays[0].date"),
        ({"name": "x", "include": ["atlantis"]}, "include[0]"),
        ({"name": "bad name"}, "name"),
    ],
)
def test_validation_errors_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        BusinessCalendar.from_dict(data)
    assert err.value.field == field, err.value


def test_not_a_mapping() -> None:
    with pytest.raises(InvalidArgumentError) as err:
        BusinessCalendar.from_dict(["VN"])
    assert err.value.field == "calendar"
