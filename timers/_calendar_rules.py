"""Holiday rules: how a business calendar computes the holidays of a year.

A rule yields the dates of one holiday in one solar year. Rules are fixed solar dates
(:class:`FixedDate`), fixed lunar dates (:class:`LunarDay`), spans of the lunar calendar such as
Tết (:class:`LunarSpan`), the nth weekday of a month (:class:`NthWeekday`), an extra day next to a
holiday that bridges it to the weekend (:class:`BridgeDay`), and explicit dates
(:class:`ExplicitDates`). Every rule has a name, may be limited to a range of years, may opt out
of the calendar's substitute-day policy, and may carry a ``key`` that per-year data (a decree)
can use to replace what the rule computes for one year.
"""

from __future__ import annotations

import calendar as _stdlib_calendar
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

from cadenza.history import InvalidArgumentError
from cadenza.timers._lunar import lunar_months

__all__ = [
    "WEEKDAY_NAMES",
    "BridgeDay",
    "ExplicitDates",
    "FixedDate",
    "HolidayRule",
    "LunarDay",
    "LunarSpan",
    "NthWeekday",
    "parse_weekday",
]

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Short weekday names, indexed like :meth:`datetime.date.weekday` (Monday = 0)."""

_FULL_WEEKDAY_NAMES = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)

# Lunar rules look at lunar years next to the solar one; these are the ones _lunar supports.
_LUNAR_MIN_YEAR = 1800
_LUNAR_MAX_YEAR = 2198


def parse_weekday(value: object, field_name: str) -> int:
    """Turn ``"sat"``, ``"Saturday"`` or ``5`` (Monday = 0) into a weekday number 0-6.

    Raises:
        InvalidArgumentError: naming ``field_name`` when the value is not a weekday.
    """
    if isinstance(value, bool):
        raise InvalidArgumentError(field_name, f"expected a weekday name, got {value!r}")
    if isinstance(value, int):
        if 0 <= value <= 6:
            return value
        raise InvalidArgumentError(field_name, f"weekday numbers are 0 (Monday) to 6, got {value}")
    if isinstance(value, str):
        text = value.strip().lower()
        if text in WEEKDAY_NAMES:
            return WEEKDAY_NAMES.index(text)
        if text in _FULL_WEEKDAY_NAMES:
            return _FULL_WEEKDAY_NAMES.index(text)
    raise InvalidArgumentError(field_name, f"expected a weekday name (mon..sun), got {value!r}")


def _check_int(value: object, field_name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgumentError(field_name, f"must be an integer {low}..{high}, got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class HolidayRule(ABC):
    """One holiday, computed for any year.

    Attributes:
        name: What the holiday is called (shown by ``cadenza calendar show``).
        substitute: Whether the calendar's substitute-day policy applies when the holiday falls
            on a weekend day or on another holiday. Default True.
        first_year: First solar year the rule applies to; None (default) means always.
        last_year: Last solar year the rule applies to; None (default) means always.
        key: Identifies the rule for per-year overrides (e.g. ``"tet"``); None by default.
    """

    name: str
    substitute: bool = True
    first_year: int | None = None
    last_year: int | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidArgumentError("name", "a holiday needs a non-empty name")
        if (
            self.first_year is not None
            and self.last_year is not None
            and self.first_year > self.last_year
        ):
            raise InvalidArgumentError(
                "last_year", f"{self.last_year} is before first_year {self.first_year}"
            )

    def applies_to(self, year: int) -> bool:
        """True when ``year`` is within the rule's years."""
        return (self.first_year is None or year >= self.first_year) and (
            self.last_year is None or year <= self.last_year
        )

    @abstractmethod
    def dates(self, year: int, weekend: frozenset[int]) -> list[date]:
        """The dates of this holiday that fall in solar year ``year``.

        Args:
            year: The solar year.
            weekend: The calendar's weekend days (Monday = 0), for rules that depend on them.
        """


@dataclass(frozen=True, kw_only=True)
class FixedDate(HolidayRule):
    """The same solar date every year, e.g. 30 April. A 29 February occurs in leap years only.

    Attributes:
        month: Month 1-12.
        day: Day of the month.
    """

    month: int
    day: int

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self.month, "month", 1, 12)
        _check_int(self.day, "day", 1, _stdlib_calendar.monthrange(2000, self.month)[1])

    def dates(self, year: int, weekend: frozenset[int]) -> list[date]:
        if self.day > _stdlib_calendar.monthrange(year, self.month)[1]:
            return []
        return [date(year, self.month, self.day)]


def _lunar_day(year: int, month: int, day: int, leap: bool) -> date | None:
    """Solar date of a lunar day; ``day == -1`` is the month's last day; None if it is absent."""
    if not _LUNAR_MIN_YEAR <= year <= _LUNAR_MAX_YEAR:
        return None
    for m in lunar_months(year):
        if m.month == month and m.leap == leap:
            if day == -1:
                return m.first_day + timedelta(days=m.length - 1)
            if day > m.length:
                return None
            return m.first_day + timedelta(days=day - 1)
    return None


def _check_lunar_day(month: int, day: int, prefix: str) -> None:
    _check_int(month, f"{prefix}month", 1, 12)
    if isinstance(day, bool) or not isinstance(day, int) or not (day == -1 or 1 <= day <= 30):
        raise InvalidArgumentError(
            f"{prefix}day", f"must be 1..30, or -1 for the last day of the month, got {day!r}"
        )


@dataclass(frozen=True, kw_only=True)
class LunarDay(HolidayRule):
    """The same lunar date every lunar year, e.g. Giỗ Tổ Hùng Vương on lunar 10/3.

    Attributes:
        month: Lunar month 1-12.
        day: Lunar day 1-30, or -1 for the last day (29 or 30) of the month. A day 30 in a
            29-day month does not occur that year.
        leap: True to name the leap month of that number (then the holiday occurs only in
            years that have it). Default False.
    """

    month: int
    day: int
    leap: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_lunar_day(self.month, self.day, "")

    def dates(self, year: int, weekend: frozenset[int]) -> list[date]:
        # Lunar months 11 and 12 of lunar year Y-1 fall in January and February of solar Y.
        found = (_lunar_day(y, self.month, self.day, self.leap) for y in (year - 1, year))
        return [d for d in found if d is not None and d.year == year]


@dataclass(frozen=True, kw_only=True)
class LunarSpan(HolidayRule):
    """Consecutive days from one lunar date to another, e.g. Tết from the last day of the year
    (lunar 12/-1) through lunar 1/4.

    When the start comes later in the lunar year than the end, the span starts in the previous
    lunar year (as Tết does).

    Attributes:
        start_month: Lunar month of the first day.
        start_day: Lunar day of the first day; -1 for the last day of that month.
        end_month: Lunar month of the last day.
        end_day: Lunar day of the last day; -1 for the last day of that month.
    """

    start_month: int
    start_day: int
    end_month: int
    end_day: int

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_lunar_day(self.start_month, self.start_day, "start_")
        _check_lunar_day(self.end_month, self.end_day, "end_")

    def _wraps(self) -> bool:
        start = (self.start_month, 31 if self.start_day == -1 else self.start_day)
        end = (self.end_month, 31 if self.end_day == -1 else self.end_day)
        return start > end

    def dates(self, year: int, weekend: frozenset[int]) -> list[date]:
        out: list[date] = []
        for lunar_year in (year - 1, year, year + 1):
            start_year = lunar_year - 1 if self._wraps() else lunar_year
            first = _lunar_day(start_year, self.start_month, self.start_day, False)
            last = _lunar_day(lunar_year, self.end_month, self.end_day, False)
            if first is None or last is None:
                continue
            day = first
            while day <= last:
                if day.year == year:
                    out.append(day)
                day += timedelta(days=1)
        return sorted(set(out))


@dataclass(frozen=True, kw_only=True)
class NthWeekday(HolidayRule):
    """The nth given weekday of a month, e.g. the 4th Thursday of November; ``n = -1`` is the
    last one.

    Attributes:
        month: Month 1-12.
        weekday: 0 (Monday) to 6 (Sunday).
        n: 1-5 from the start of the month, or -1 to -5 from its end. A 5th weekday that the
            month does not have does not occur that year.
    """

    month: int
    weekday: int
    n: int

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self.month, "month", 1, 12)
        _check_int(self.weekday, "weekday", 0, 6)
        if isinstance(self.n, bool) or not isinstance(self.n, int) or not 1 <= abs(self.n) <= 5:
            raise InvalidArgumentError("n", f"must be 1..5 or -1..-5, got {self.n!r}")

    def dates(self, year: int, weekend: frozenset[int]) -> list[date]:
        days = _stdlib_calendar.monthrange(year, self.month)[1]
        matching = [
            date(year, self.month, d)
            for d in range(1, days + 1)
            if date(year, self.month, d).weekday() == self.weekday
        ]
        index = self.n - 1 if self.n > 0 else self.n
        if -len(matching) <= index < len(matching):
            return [matching[index]]
        return []


@dataclass(frozen=True, kw_only=True)
class BridgeDay(HolidayRule):
    """One extra day next to a fixed-date holiday, on the side that joins it to a weekend.

    This is how Vietnam places the second National Day holiday (Labour Code 2019, art. 112:
    2 September "and one day before or after"): the day after when the day before is a weekend
    day; the day before when the day after is a weekend day; the day after when that day is
    itself next to a weekend (a Thursday holiday gives Friday); otherwise the day before.

    Attributes:
        month: Month of the holiday it bridges.
        day: Day of the holiday it bridges.
    """

    month: int
    day: int
    substitute: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(self.month, "month", 1, 12)
        _check_int(self.day, "day", 1, _stdlib_calendar.monthrange(2000, self.month)[1])

    def dates(self, year: int, weekend: frozenset[int]) -> list[date]:
        if self.day > _stdlib_calendar.monthrange(year, self.month)[1]:
            return []
        anchor = date(year, self.month, self.day)
        before, after = anchor - timedelta(days=1), anchor + timedelta(days=1)
        if before.weekday() in weekend:
            chosen = after
        elif after.weekday() in weekend:
            chosen = before
        elif (after + timedelta(days=1)).weekday() in weekend:
            chosen = after
        else:
            chosen = before
        return [chosen] if chosen.year == year else []


@dataclass(frozen=True, kw_only=True)
class ExplicitDates(HolidayRule):
    """Holidays given as dates (data, not a rule), e.g. one company's closing days.

    Attributes:
        days: The dates.
    """

    days: tuple[date, ...] = field(default=())

    def __post_init__(self) -> None:
        super().__post_init__()
        for i, d in enumerate(self.days):
            if not isinstance(d, date):
                raise InvalidArgumentError(f"days[{i}]", f"must be a date, got {d!r}")

    def dates(self, year: int, weekend: frozenset[int]) -> list[date]:
        return sorted(d for d in self.days if d.year == year)


def expand_range(start: date, end: date, field_name: str) -> Iterable[date]:
    """Every date from ``start`` through ``end``; at most 366 days.

    Raises:
        InvalidArgumentError: naming ``field_name`` when the range is reversed or too long.
    """
    if end < start:
        raise InvalidArgumentError(field_name, f"{end} is before {start}")
    if (end - start).days > 366:
        raise InvalidArgumentError(field_name, "a holiday range may span at most 367 days")
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)
