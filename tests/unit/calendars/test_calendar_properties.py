"""Property tests of business-day arithmetic (hypothesis), on VN and on random calendars."""

from __future__ import annotations

from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from cadenza.timers._calendar_rules import FixedDate, LunarDay
from cadenza.timers._calendars import BusinessCalendar, Calendar, get_calendar

CONVENTIONS = ("following", "preceding", "modified_following", "modified_preceding")
dates = st.dates(min_value=date(1901, 1, 1), max_value=date(2100, 12, 31))


@st.composite
def calendars(draw: st.DrawFn) -> Calendar:
    """VN, or a random calendar: some weekend days (never all 7), fixed and lunar holidays."""
    if draw(st.booleans()):
        return get_calendar("VN")
    weekend = draw(st.sets(st.integers(0, 6), max_size=6))
    fixed = draw(st.lists(st.tuples(st.integers(1, 12), st.integers(1, 28)), max_size=12))
    lunar = draw(st.lists(st.tuples(st.integers(1, 12), st.integers(1, 29)), max_size=6))
    rules = [FixedDate(month=m, day=d, name=f"F{m}-{d}") for m, d in fixed]
    rules += [LunarDay(month=m, day=d, name=f"L{m}-{d}") for m, d in lunar]
    policy = draw(st.sampled_from(["none", "next_workday", "nearest"]))
    return BusinessCalendar("random", weekend=weekend, rules=rules, substitute=policy)


@settings(max_examples=300, deadline=None)
@given(calendars(), dates, st.sampled_from(CONVENTIONS))
def test_roll_gives_a_business_day_and_keeps_business_days(
    cal: Calendar, d: date, convention: str
) -> None:
    rolled = cal.roll(d, convention)  # type: ignore[arg-type]
    assert cal.is_business_day(rolled)
    if cal.is_business_day(d):
        assert rolled == d
    if convention == "following":
        assert rolled >= d and all(
            not cal.is_business_day(date.fromordinal(o))
            for o in range(d.toordinal(), rolled.toordinal())
        )
    if convention == "preceding":
        assert rolled <= d


@settings(max_examples=300, deadline=None)
@given(calendars(), dates)
def test_modified_following_stays_in_the_month_when_possible(cal: Calendar, d: date) -> None:
    rolled = cal.roll(d, "modified_following")
    later_in_month = [day for day in cal.business_days(d.year, d.month) if day >= d]
    if later_in_month:
        assert rolled == later_in_month[0]
    else:
        # No business day left in the month: the previous one, in the same month if any.
        assert rolled == cal.roll(d, "preceding")
        if cal.business_days(d.year, d.month):
            assert rolled.month == d.month
    mp = cal.roll(d, "modified_preceding")
    if any(day <= d for day in cal.business_days(d.year, d.month)):
        assert mp.month == d.month and mp <= d


@settings(max_examples=200, deadline=None)
@given(calendars(), st.integers(1901, 2100), st.integers(1, 12))
def test_nth_business_day_is_monotonic_in_n(cal: Calendar, year: int, month: int) -> None:
    forward = [cal.nth_business_day(year, month, n) for n in range(1, 32)]
    backward = [cal.nth_business_day(year, month, -n) for n in range(31, 0, -1)]
    present = [d for d in forward if d is not None]
    assert present == sorted(present) and len(set(present)) == len(present)
    assert forward[len(present) :] == [None] * (31 - len(present))
    assert [d for d in backward if d is not None] == present
    assert present == cal.business_days(year, month)
    assert all(cal.is_business_day(d) and d.month == month for d in present)


@settings(max_examples=200, deadline=None)
@given(calendars(), dates, st.integers(-30, 30))
def test_add_business_days_round_trips(cal: Calendar, d: date, n: int) -> None:
    start = cal.roll(d, "following")
    moved = cal.add_business_days(start, n)
    assert cal.is_business_day(moved)
    assert cal.add_business_days(moved, -n) == start if n else moved == start
