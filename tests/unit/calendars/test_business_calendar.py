"""BusinessCalendar: rules, substitute days, make-up days, roll conventions, the registry."""

from __future__ import annotations

import uuid
from datetime import date, datetime

import pytest

from cadenza.history import InvalidArgumentError
from cadenza.timers._calendar_rules import (
    BridgeDay,
    ExplicitDates,
    FixedDate,
    LunarDay,
    LunarSpan,
    NthWeekday,
)
from cadenza.timers._calendars import (
    BusinessCalendar,
    CompositeCalendar,
    UnknownCalendarError,
    YearOverride,
    calendar_names,
    get_calendar,
    register_calendar,
)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_weekends_only_calendar() -> None:
    cal = get_calendar("weekends-only")
    assert cal.holidays(2025) == []
    assert cal.is_business_day(date(2025, 1, 1))  # a Wednesday: no holidays at all
    assert not cal.is_business_day(date(2025, 1, 4))  # Saturday
    assert not cal.is_holiday(date(2025, 1, 4))
    assert cal.nth_business_day(2025, 5, 1) == date(2025, 5, 1)
    assert cal.nth_business_day(2025, 5, -1) == date(2025, 5, 30)  # 31 May is a Saturday
    assert len(cal.business_days(2025, 2)) == 20


def test_roll_conventions() -> None:
    cal = BusinessCalendar(
        "roll-test", rules=[FixedDate(month=5, day=1, name="Labour Day")], substitute="none"
    )
    friday, saturday = date(2026, 5, 29), date(2026, 5, 30)
    # Saturday 30 May 2026: the next business day is Monday 1 June (another month).
    assert cal.roll(saturday, "following") == date(2026, 6, 1)
    assert cal.roll(saturday, "preceding") == friday
    assert cal.roll(saturday, "modified_following") == friday
    # Friday 1 May 2026 is a holiday; Saturday 2 and Sunday 3 are weekend.
    assert cal.roll(date(2026, 5, 1), "modified_preceding") == date(2026, 5, 4)
    assert cal.roll(date(2026, 5, 1), "preceding") == date(2026, 4, 30)
    assert cal.roll(date(2026, 5, 2), "modified_following") == date(2026, 5, 4)
    # A business day does not move.
    for convention in ("following", "preceding", "modified_following", "modified_preceding"):
        assert cal.roll(friday, convention) == friday
    with pytest.raises(InvalidArgumentError) as err:
        cal.roll(friday, "nearest")  # type: ignore[arg-type]
    assert err.value.field == "convention"


def test_next_previous_add_business_days_and_datetimes() -> None:
    cal = BusinessCalendar("arith", rules=[FixedDate(month=1, day=1, name="New Year")])
    assert cal.next_business_day(date(2025, 12, 31)) == date(2026, 1, 2)
    assert cal.previous_business_day(date(2026, 1, 5)) == date(2026, 1, 2)
    assert cal.add_business_days(date(2025, 12, 30), 3) == date(2026, 1, 5)
    assert cal.add_business_days(date(2026, 1, 5), -2) == date(2025, 12, 31)
    assert cal.add_business_days(date(2026, 1, 3), 0) == date(2026, 1, 5)
    assert cal.is_holiday(datetime(2026, 1, 1, 9, 30))


def test_nth_business_day_bounds() -> None:
    cal = get_calendar("weekends-only")
    assert cal.nth_business_day(2025, 2, 20) == date(2025, 2, 28)
    assert cal.nth_business_day(2025, 2, 21) is None
    assert cal.nth_business_day(2025, 2, -20) == date(2025, 2, 3)
    for bad in (0, 32, -32):
        with pytest.raises(InvalidArgumentError) as err:
            cal.nth_business_day(2025, 2, bad)
        assert err.value.field == "n"
    with pytest.raises(InvalidArgumentError) as err:
        cal.nth_business_day(2025, 13, 1)
    assert err.value.field == "month"
    with pytest.raises(InvalidArgumentError) as err:
        cal.holidays(1700)
    assert err.value.field == "year"


def test_substitute_policies() -> None:
    rules = [FixedDate(month=7, day=4, name="Fourth"), FixedDate(month=7, day=5, name="Fifth")]
    # 4 July 2026 is a Saturday, 5 July a Sunday.
    none = BusinessCalendar("sub-none", rules=rules)
    assert [e.date for e in none.holidays(2026)] == [date(2026, 7, 4), date(2026, 7, 5)]
    nxt = BusinessCalendar("sub-next", rules=rules, substitute="next_workday")
    assert [(e.date, e.name) for e in nxt.holidays(2026)][2:] == [
        (date(2026, 7, 6), "Fourth (substitute day off)"),
        (date(2026, 7, 7), "Fifth (substitute day off)"),
    ]
    nearest = BusinessCalendar("sub-nearest", rules=rules, substitute="nearest")
    assert {e.date for e in nearest.holidays(2026)} == {
        date(2026, 7, 3),
        date(2026, 7, 4),
        date(2026, 7, 5),
        date(2026, 7, 6),
    }
    # A rule can opt out.
    opt_out = BusinessCalendar(
        "sub-opt-out",
        rules=[FixedDate(month=7, day=4, name="Fourth", substitute=False)],
        substitute="next_workday",
    )
    assert [e.date for e in opt_out.holidays(2026)] == [date(2026, 7, 4)]


def test_substitute_for_colliding_holidays_and_across_the_year_end() -> None:
    cal = BusinessCalendar(
        "collide",
        rules=[
            FixedDate(month=12, day=31, name="Year end"),
            FixedDate(month=3, day=2, name="A"),
            FixedDate(month=3, day=2, name="B"),
        ],
        substitute="next_workday",
    )
    # 31 December 2022 was a Saturday: its substitute is Monday 2 January 2023.
    assert date(2023, 1, 2) in {e.date for e in cal.holidays(2023)}
    assert cal.is_holiday(date(2023, 1, 2)) and not cal.is_holiday(date(2022, 12, 30))
    # Two holidays on Monday 2 March 2026: the second gets Tuesday.
    assert cal.is_holiday(date(2026, 3, 3))


def test_makeup_workdays() -> None:
    cal = BusinessCalendar(
        "makeup",
        holidays=[(date(2025, 5, 2), "Bridge")],
        makeup_workdays=[(date(2025, 4, 26), "Make-up for 2 May")],
    )
    assert cal.is_business_day(date(2025, 4, 26))
    assert cal.is_makeup_workday(date(2025, 4, 26))
    assert not cal.is_business_day(date(2025, 5, 2))
    assert [e.kind for e in cal.entries(2025)] == ["makeup_workday", "holiday"]
    assert cal.makeup_workdays(2025)[0].source == "data"
    # Rolling back from Sunday 27 April stops on the worked Saturday.
    assert cal.roll(date(2025, 4, 27), "preceding") == date(2025, 4, 26)

    with pytest.raises(InvalidArgumentError) as err:
        BusinessCalendar("bad", makeup_workdays=[(date(2025, 4, 28), "a Monday")])
    assert err.value.field == "makeup_workdays[0]"
    with pytest.raises(InvalidArgumentError) as err:
        BusinessCalendar(
            "bad",
            holidays=[(date(2025, 4, 26), "Holiday")],
            makeup_workdays=[(date(2025, 4, 26), "Worked")],
        )
    assert err.value.field == "makeup_workdays"


def test_a_calendar_cannot_exclude_every_date() -> None:
    every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    with pytest.raises(InvalidArgumentError) as err:
        BusinessCalendar("closed", weekend=every_day)
    assert err.value.field == "weekend"
    a = BusinessCalendar("a", weekend=["mon", "tue", "wed", "thu"])
    b = BusinessCalendar("b", weekend=["fri", "sat", "sun"])
    with pytest.raises(InvalidArgumentError) as err:
        CompositeCalendar("ab", [a, b])
    assert err.value.field == "weekend"
    with pytest.raises(InvalidArgumentError) as err:
        BusinessCalendar("x", weekend=["sat", "caturday"])
    assert err.value.field == "weekend[1]"


def test_friday_saturday_weekend() -> None:
    cal = BusinessCalendar("fri-sat", weekend=["friday", "saturday"])
    assert cal.is_business_day(date(2025, 6, 1))  # Sunday
    assert not cal.is_business_day(date(2025, 6, 6))  # Friday
    assert cal.roll(date(2025, 6, 6)) == date(2025, 6, 8)


def test_rule_kinds() -> None:
    cal = BusinessCalendar(
        "rules",
        rules=[
            LunarDay(month=1, day=15, name="Rằm tháng Giêng"),
            LunarDay(month=12, day=-1, name="Last day of the lunar year"),
            LunarSpan(start_month=12, start_day=-1, end_month=1, end_day=4, name="Tết"),
            NthWeekday(month=11, weekday=3, n=4, name="Thanksgiving"),
            NthWeekday(month=5, weekday=0, n=-1, name="Memorial Day"),
            BridgeDay(month=9, day=2, name="Bridge"),
            ExplicitDates(days=(date(2025, 12, 24),), name="Christmas Eve"),
            FixedDate(month=2, day=29, name="Leap day"),
        ],
    )
    names = {e.date: e.name for e in cal.holidays(2025)}
    assert names[date(2025, 2, 12)] == "Rằm tháng Giêng"  # lunar 1/15 of Ất Tỵ
    assert names[date(2025, 11, 27)] == "Thanksgiving"
    assert names[date(2025, 5, 26)] == "Memorial Day"
    assert names[date(2025, 12, 24)] == "Christmas Eve"
    assert names[date(2025, 9, 1)] == "Bridge"
    tet = [e.date for e in cal.holidays(2025) if e.name == "Tết"]
    assert tet == [date(2025, 1, 28 + i) for i in range(4)] + [date(2025, 2, 1)]
    assert [e.date for e in cal.holidays(2025) if e.name.startswith("Last day")] == [
        date(2025, 1, 28)
    ]
    assert not any(e.name == "Leap day" for e in cal.holidays(2025))
    assert [e.date for e in cal.holidays(2024) if e.name == "Leap day"] == [date(2024, 2, 29)]


def test_rule_validation_names_the_field() -> None:
    with pytest.raises(InvalidArgumentError) as err:
        FixedDate(month=2, day=30, name="x")
    assert err.value.field == "day"
    with pytest.raises(InvalidArgumentError) as err:
        LunarDay(month=1, day=31, name="x")
    assert err.value.field == "day"
    with pytest.raises(InvalidArgumentError) as err:
        NthWeekday(month=1, weekday=0, n=0, name="x")
    assert err.value.field == "n"
    with pytest.raises(InvalidArgumentError) as err:
        FixedDate(month=1, day=1, name=" ")
    assert err.value.field == "name"
    with pytest.raises(InvalidArgumentError) as err:
        FixedDate(month=1, day=1, name="x", first_year=2030, last_year=2020)
    assert err.value.field == "last_year"


def test_rule_year_limits_and_overrides() -> None:
    cal = BusinessCalendar(
        "overrides",
        rules=[
            FixedDate(month=6, day=1, name="Founders", key="founders", first_year=2024),
            FixedDate(month=6, day=15, name="Old", last_year=2024),
        ],
        overrides=[
            YearOverride(
                year=2026,
                replaces=frozenset({"founders"}),
                holidays=((date(2026, 6, 2), "Founders (moved)"),),
                makeup_workdays=((date(2026, 6, 6), "Worked Saturday"),),
                source="board decision",
            )
        ],
    )
    assert [e.date for e in cal.holidays(2023)] == [date(2023, 6, 15)]
    assert [e.date for e in cal.holidays(2025)] == [date(2025, 6, 1)]
    assert [(e.date, e.source) for e in cal.holidays(2026)] == [(date(2026, 6, 2), "decree")]
    assert cal.is_business_day(date(2026, 6, 1)) and cal.is_business_day(date(2026, 6, 6))
    with pytest.raises(InvalidArgumentError) as err:
        YearOverride(year=2026, holidays=((date(2025, 1, 1), "wrong year"),))
    assert err.value.field == "holidays[0]"


def test_composite_calendar_is_a_union() -> None:
    vn = get_calendar("VN")
    bank = BusinessCalendar("bank-days", holidays=[(date(2025, 12, 31), "Year-end closing")])
    both = CompositeCalendar("vn-bank", [vn, bank])
    assert both.is_holiday(date(2025, 12, 31)) and both.is_holiday(date(2025, 9, 2))
    assert not vn.is_holiday(date(2025, 12, 31))
    # VN's make-up Saturday stays a working day in the union.
    assert both.is_business_day(date(2025, 4, 26))
    assert {e.date for e in both.holidays(2025)} == {e.date for e in vn.holidays(2025)} | {
        date(2025, 12, 31)
    }
    assert both.roll(date(2025, 12, 31), "modified_following") == date(2025, 12, 30)


def test_registry() -> None:
    assert get_calendar("VN") is get_calendar("vietnam") is get_calendar("vn")
    assert {"VN", "weekends-only"} <= set(calendar_names())
    with pytest.raises(UnknownCalendarError) as err:
        get_calendar("atlantis")
    assert err.value.field == "calendar"
    assert "atlantis" in str(err.value) and "VN" in str(err.value)
    name = _unique("acme")
    cal = BusinessCalendar(name, holidays=[(date(2025, 3, 3), "Founders")])
    register_calendar(cal, aliases=[f"{name}-alias"])
    assert get_calendar(name.upper()) is cal and get_calendar(f"{name}-alias") is cal
    with pytest.raises(InvalidArgumentError) as dup:
        register_calendar(BusinessCalendar(name))
    assert dup.value.field == "name"
    replacement = BusinessCalendar(name)
    register_calendar(replacement, replace=True)
    assert get_calendar(name) is replacement
    with pytest.raises(InvalidArgumentError) as err:
        BusinessCalendar("bad name!")
    assert err.value.field == "name"
