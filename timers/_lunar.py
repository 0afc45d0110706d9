"""The Vietnamese lunisolar calendar (âm lịch), computed from astronomy.

Nothing here is a lookup table. Months and leap months follow from the moments of new moon and
of the sun's principal terms (trung khí), computed in :mod:`cadenza.timers._calendar_astronomy`
(Meeus's algorithms; checked against the JPL DE421 ephemeris).

The rules are those of the modern Chinese calendar (since 1645), which the Vietnamese calendar
follows with one difference: days are reckoned in the time zone of Vietnam, UTC+7, not UTC+8.
That is why the two calendars disagree in some years (Tết 1985 fell on 21 January in Vietnam
and on 20 February in China; Tết 2007 on 17 and 18 February).

1. A month starts on the local day that contains the moment of new moon.
2. Month 11 is the month that contains the December solstice (sun longitude 270°).
3. When 13 months start between the month 11 of one year and the next, the year is a leap
   year: the first of those months that contains no principal term (a moment when the sun's
   longitude is a multiple of 30°) is a leap month and repeats the number of the month
   before it.

Months 11 and 12 (and a leap 11 or 12) belong to the lunar year that began with the month 1
before them. Conversions are supported for solar dates from 1800-01-01 to 2199-12-31. The tests
check them against the official dates of 2020-2035 and, month by month, against a calendar
computed from the JPL DE421 ephemeris for 1901-2051 (see ``docs/calendars.md``).

Note that before 1968 the calendar printed in (North) Vietnam followed the Chinese one, UTC+8;
pass ``utc_offset=8`` to reproduce dates of that era as they were observed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache

from cadenza.history import InvalidArgumentError
from cadenza.timers._calendar_astronomy import new_moon_jde, sun_apparent_longitude, tt_to_ut

__all__ = [
    "VN_UTC_OFFSET",
    "LunarDate",
    "LunarMonth",
    "leap_month",
    "lunar_month_length",
    "lunar_months",
    "lunar_to_solar",
    "solar_to_lunar",
]

VN_UTC_OFFSET = 7.0
"""Hours east of UTC in which the Vietnamese calendar reckons its days."""

MIN_SOLAR_DATE = date(1800, 1, 1)
MAX_SOLAR_DATE = date(2199, 12, 31)

_JDN_ORDINAL_OFFSET = 1721425  # date.toordinal() + this = Julian day number (noon-based)
_SYNODIC_MONTH = 29.530588861
_K0_JDE = 2451550.09766  # new moon of 2000-01-06, k = 0


# ---------------------------------------------------------------------- local day arithmetic


def _check_offset(utc_offset: float) -> float:
    if not isinstance(utc_offset, int | float) or not -12 <= utc_offset <= 14:
        raise InvalidArgumentError("utc_offset", f"must be hours in [-12, 14], got {utc_offset!r}")
    return float(utc_offset)


def _jdn(d: date) -> int:
    return d.toordinal() + _JDN_ORDINAL_OFFSET


def _date(jdn: int) -> date:
    return date.fromordinal(jdn - _JDN_ORDINAL_OFFSET)


def _new_moon_day(k: int, tz: float) -> int:
    """The local Julian day number of the day that contains new moon ``k``."""
    jd_ut = tt_to_ut(new_moon_jde(k))
    return math.floor(jd_ut + 0.5 + tz / 24.0)


def _term_sector(jdn: int, tz: float) -> int:
    """Index 0..11 of the 30° sector the sun is in at the local midnight that starts ``jdn``."""
    return int(sun_apparent_longitude(jdn - 0.5 - tz / 24.0) // 30.0)


def _lunation_on_or_before(jdn: int, tz: float) -> int:
    """Number ``k`` of the lunation whose month contains local day ``jdn``."""
    k = math.floor((jdn - _K0_JDE) / _SYNODIC_MONTH)
    while _new_moon_day(k + 1, tz) <= jdn:
        k += 1
    while _new_moon_day(k, tz) > jdn:
        k -= 1
    return k


@lru_cache(maxsize=1024)
def _month11(year: int, tz: float) -> int:
    """Lunation number of month 11 of ``year``: the month containing the December solstice."""
    k = _lunation_on_or_before(_jdn(date(year, 12, 31)), tz)
    if _term_sector(_new_moon_day(k, tz), tz) >= 9:
        # The sun had passed 270° when this month began: the solstice is in the month before.
        k -= 1
    return k


@dataclass(frozen=True)
class LunarMonth:
    """One month of the lunar calendar.

    Attributes:
        year: Lunar year the month belongs to (the year of its month 1).
        month: Month number 1-12.
        leap: True for a leap (intercalary, nhuận) month, which repeats the previous number.
        first_day: Solar date of day 1.
        length: Number of days, 29 or 30.
    """

    year: int
    month: int
    leap: bool
    first_day: date
    length: int


@lru_cache(maxsize=1024)
def _sui(year: int, tz: float) -> tuple[LunarMonth, ...]:
    """Months from month 11 of ``year - 1`` up to (not including) month 11 of ``year``."""
    k0 = _month11(year - 1, tz)
    k1 = _month11(year, tz)
    starts = [_new_moon_day(k, tz) for k in range(k0, k1 + 1)]
    count = k1 - k0
    leap_offset = None
    if count == 13:
        sectors = [_term_sector(jdn, tz) for jdn in starts]
        for i in range(1, 13):
            if sectors[i] == sectors[i + 1]:
                leap_offset = i
                break
        # Month 11 holds the solstice, so 13 months cannot all hold a principal term; if the
        # approximations ever disagreed, the last month before month 11 would be the leap one.
        if leap_offset is None:  # pragma: no cover - not reached in the supported range
            leap_offset = 12
    months: list[LunarMonth] = []
    seen_first = False
    for i in range(count):
        index = i if leap_offset is None or i < leap_offset else i - 1
        number = (10 + index) % 12 + 1
        leap = i == leap_offset
        if number == 1 and not leap:
            seen_first = True
        months.append(
            LunarMonth(
                year=year if seen_first else year - 1,
                month=number,
                leap=leap,
                first_day=_date(starts[i]),
                length=starts[i + 1] - starts[i],
            )
        )
    return tuple(months)


# ---------------------------------------------------------------------------- public dates


@dataclass(frozen=True, order=True)
class LunarDate:
    """A date of the lunar calendar.

    Attributes:
        year: Lunar year (numbered as the solar year in which its month 1 starts).
        month: Month 1-12.
        day: Day 1-30.
        leap: True when the month is the leap (nhuận) repetition of ``month``.
    """

    year: int
    month: int
    day: int
    leap: bool = False

    def to_solar(self, *, utc_offset: float = VN_UTC_OFFSET) -> date:
        """The solar (Gregorian) date of this lunar date."""
        return lunar_to_solar(
            self.year, self.month, self.day, leap=self.leap, utc_offset=utc_offset
        )

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}{'L' if self.leap else ''}-{self.day:02d}"


def _check_solar(d: date, field: str) -> None:
    if not isinstance(d, date) or isinstance(d, datetime):
        raise InvalidArgumentError(field, f"must be a date, got {type(d).__name__}")
    if not MIN_SOLAR_DATE <= d <= MAX_SOLAR_DATE:
        raise InvalidArgumentError(
            field,
            f"{d.isoformat()} is outside the supported range {MIN_SOLAR_DATE}..{MAX_SOLAR_DATE}",
        )


def solar_to_lunar(d: date, *, utc_offset: float = VN_UTC_OFFSET) -> LunarDate:
    """Convert a solar (Gregorian) date to the lunar calendar.

    Args:
        d: The solar date (1800-01-01 to 2199-12-31).
        utc_offset: Hours east of UTC in which days are reckoned; 7 for Vietnam (default),
            8 for the Chinese calendar.

    Returns:
        The lunar date, with ``leap`` set in a leap month.

    Raises:
        InvalidArgumentError: ``d`` is not a date or out of range, or the offset is invalid.
    """
    _check_solar(d, "date")
    tz = _check_offset(utc_offset)
    jdn = _jdn(d)
    year = d.year + 1 if jdn >= _new_moon_day(_month11(d.year, tz), tz) else d.year
    for month in reversed(_sui(year, tz)):
        start = _jdn(month.first_day)
        if start <= jdn:
            return LunarDate(month.year, month.month, jdn - start + 1, month.leap)
    raise RuntimeError(f"no lunar month contains {d}")  # pragma: no cover - unreachable


def lunar_months(year: int, *, utc_offset: float = VN_UTC_OFFSET) -> tuple[LunarMonth, ...]:
    """The 12 or 13 months of lunar year ``year``, in order.

    Args:
        year: Lunar year, 1800 to 2198.
        utc_offset: Hours east of UTC (7 for Vietnam).
    """
    if not isinstance(year, int) or isinstance(year, bool) or not 1800 <= year <= 2198:
        raise InvalidArgumentError("year", f"must be a lunar year 1800..2198, got {year!r}")
    tz = _check_offset(utc_offset)
    return tuple(m for y in (year, year + 1) for m in _sui(y, tz) if m.year == year)


def leap_month(year: int, *, utc_offset: float = VN_UTC_OFFSET) -> int | None:
    """The number of the leap month of lunar year ``year``, or None in a common year."""
    for month in lunar_months(year, utc_offset=utc_offset):
        if month.leap:
            return month.month
    return None


def _find_month(year: int, month: int, leap: bool, utc_offset: float) -> LunarMonth:
    if not isinstance(month, int) or isinstance(month, bool) or not 1 <= month <= 12:
        raise InvalidArgumentError("month", f"must be 1..12, got {month!r}")
    for candidate in lunar_months(year, utc_offset=utc_offset):
        if candidate.month == month and candidate.leap == bool(leap):
            return candidate
    raise InvalidArgumentError("leap", f"lunar year {year} has no leap month {month}")


def lunar_month_length(
    year: int, month: int, *, leap: bool = False, utc_offset: float = VN_UTC_OFFSET
) -> int:
    """Number of days (29 or 30) of a lunar month.

    Raises:
        InvalidArgumentError: the month does not exist (e.g. a leap month in a common year).
    """
    return _find_month(year, month, leap, utc_offset).length


def lunar_to_solar(
    year: int,
    month: int,
    day: int,
    *,
    leap: bool = False,
    utc_offset: float = VN_UTC_OFFSET,
) -> date:
    """Convert a lunar date to the solar (Gregorian) calendar.

    Args:
        year: Lunar year (1800 to 2198).
        month: Month 1-12.
        day: Day 1-30; day 30 exists only in a long month.
        leap: True for the leap (nhuận) month of that number.
        utc_offset: Hours east of UTC (7 for Vietnam).

    Raises:
        InvalidArgumentError: naming ``year``, ``month``, ``day`` or ``leap`` when that date
            does not exist.
    """
    found = _find_month(year, month, leap, utc_offset)
    if not isinstance(day, int) or isinstance(day, bool) or not 1 <= day <= found.length:
        raise InvalidArgumentError(
            "day",
            f"lunar {year}-{month:02d}{'L' if leap else ''} has {found.length} days, got {day!r}",
        )
    return found.first_day + timedelta(days=day - 1)
