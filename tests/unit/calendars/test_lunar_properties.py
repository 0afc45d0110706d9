"""Property tests of the lunar calendar conversions (hypothesis)."""

from __future__ import annotations

from datetime import date, timedelta
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from cadenza.timers._lunar import lunar_months, lunar_to_solar, solar_to_lunar

solar_dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31))


@settings(max_examples=400, deadline=None)
@given(solar_dates)
def test_solar_lunar_solar_round_trip(d: date) -> None:
    lunar = solar_to_lunar(d)
    assert 1 <= lunar.month <= 12 and 1 <= lunar.day <= 30
    assert lunar.to_solar() == d
    assert lunar_to_solar(lunar.year, lunar.month, lunar.day, leap=lunar.leap) == d


@settings(max_examples=200, deadline=None)
@given(solar_dates)
def test_consecutive_days_advance_by_one_lunar_day(d: date) -> None:
    today, tomorrow = solar_to_lunar(d), solar_to_lunar(d + timedelta(days=1))
    if tomorrow.day == 1:
        assert today.day in (29, 30)
        assert (tomorrow.month, tomorrow.leap) != (today.month, today.leap)
    else:
        assert (tomorrow.year, tomorrow.month, tomorrow.leap) == (
            today.year,
            today.month,
            today.leap,
        )
        assert tomorrow.day == today.day + 1


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=1900, max_value=2099))
def test_lunar_years_are_well_formed(year: int) -> None:
    months = lunar_months(year)
    assert len(months) in (12, 13)
    assert sum(m.leap for m in months) == len(months) - 12
    assert [m.month for m in months if not m.leap] == list(range(1, 13))
    assert all(m.length in (29, 30) for m in months)
    for earlier, later in pairwise(months):
        assert earlier.first_day + timedelta(days=earlier.length) == later.first_day
    assert 353 <= sum(m.length for m in months) <= 385
    # Tết falls between 21 January and 20 February.
    assert date(year, 1, 21) <= months[0].first_day <= date(year, 2, 20)
