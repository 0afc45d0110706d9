"""Next fire times of a parsed cron expression — Quartz's algorithm, and DST policies.

Quartz computes the next fire time with ``java.util.GregorianCalendar`` in the trigger's zone:
it walks the calendar fields (second, minute, hour, day, month, year) forward, *setting* fields
and reading them back. A read makes the lenient calendar resolve the fields into an instant and
then recompute the fields from that instant. Two facts of that resolution shape Quartz's
behaviour on the days clocks change (and the committed reference data confirms both):

* a local time inside a spring-forward gap resolves with the offset from *before* the gap, so
  02:30 becomes 03:30 when 02:00 jumps to 03:00 (the fields read back as 03:30);
* a local time that occurs twice resolves to the *later* instant (standard time).

:func:`quartz_next` reproduces that walk step by step on plain integers ("local seconds": the
local wall time counted in seconds since 1970-01-01T00:00 as if it were UTC), with the zone's
offsets taken from :class:`ZoneTable` (built once per zone and year from ``zoneinfo``), so the
results equal Quartz's including its quirks: on a spring-forward day a daily ``0 30 2 * * ?``
does not fire at all, and from inside the first occurrence of a repeated hour Quartz jumps to
the second one.

The same walk in a zone without transitions is a plain "next matching wall time" search; the
DST policies (:func:`policy_next`) are built on it.

Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

import datetime as _dt
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from dataclasses import dataclass

from cadenza.timers._cron_parse import MAX_YEAR, CronFields

__all__ = [
    "ZoneTable",
    "naive_next",
    "policy_next",
    "quartz_next",
    "zone_table",
]

_DAY = 86400
_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()
_SAT, _SUN = 7, 1  # java.util.Calendar.DAY_OF_WEEK values
_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _month_length(month: int, year: int) -> int:
    if month == 2 and _is_leap(year):
        return 29
    return _MONTH_DAYS[month]


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a lenient date (month may be 0 or 13+, day may overflow)."""
    if month > 12 or month < 1:
        year += (month - 1) // 12
        month = (month - 1) % 12 + 1
    return _dt.date(year, month, 1).toordinal() - _EPOCH_ORDINAL + day - 1


# --------------------------------------------------------------------------- zone tables


@dataclass(frozen=True, slots=True)
class _Window:
    """The offsets of one zone over one year (plus a margin), as a step function of UTC.

    ``offsets[i]`` holds from ``bounds[i - 1]`` (inclusive) to ``bounds[i]`` (exclusive).
    """

    lo: int
    hi: int
    bounds: tuple[int, ...]
    offsets: tuple[int, ...]

    def offset_at(self, instant: int) -> int:
        """UTC offset (seconds) in force at a UTC instant (epoch seconds)."""
        if not self.bounds:
            return self.offsets[0]
        return self.offsets[bisect_right(self.bounds, instant)]

    def java_offset(self, local: int) -> int:
        """The offset ``GregorianCalendar`` uses for a wall time (``ZoneInfo.getOffsetsByWall``).

        The offset after the latest transition whose wall-clock time *after* it is not later
        than ``local``: a wall time in a gap gets the offset before the gap, a wall time that
        occurs twice gets the offset after the transition (the later instant).
        """
        offsets = self.offsets
        offset = offsets[0]
        for i, bound in enumerate(self.bounds):
            if bound + offsets[i + 1] <= local:
                offset = offsets[i + 1]
        return offset

    def transition_near(self, local: int) -> tuple[int, int, int] | None:
        """``(instant, offset_before, offset_after)`` of a transition whose gap or overlap
        contains the wall time ``local``, or None when ``local`` occurs exactly once."""
        offsets = self.offsets
        for i, bound in enumerate(self.bounds):
            before, after = offsets[i], offsets[i + 1]
            if bound + min(before, after) <= local < bound + max(before, after):
                return bound, before, after
        return None


class ZoneTable:
    """UTC offsets of one time zone, computed from ``zoneinfo`` once per year and cached.

    Transitions are found by sampling the zone's offset once a day and bisecting every change
    to the second, so a pair of transitions less than a day apart that cancel each other out
    would be missed (no such pair exists in the tz database since 1970).
    """

    MARGIN = 3 * _DAY

    def __init__(self, tz: _dt.tzinfo) -> None:
        self.tz = tz
        self._windows: dict[int, _Window] = {}
        self._last: _Window | None = None

    def _offset(self, instant: int) -> int:
        value = _dt.datetime.fromtimestamp(instant, self.tz).utcoffset()
        return int(value.total_seconds()) if value is not None else 0

    def window_for_year(self, year: int) -> _Window:
        """The offsets from (about) the start of ``year`` to the start of the next one."""
        window = self._windows.get(year)
        if window is None:
            window = self._build(year)
            self._windows[year] = window
        return window

    def window(self, local: int) -> _Window:
        """The window of the year of wall time (or instant) ``local``."""
        last = self._last
        if last is not None and last.lo + self.MARGIN <= local < last.hi - self.MARGIN:
            return last
        year = _dt.date.fromordinal(local // _DAY + _EPOCH_ORDINAL).year
        window = self.window_for_year(year)
        self._last = window
        return window

    def steady_offset(self, lo: int, hi: int) -> int | None:
        """The offset if it is the same for every wall time (and instant) between ``lo`` and
        ``hi`` (local seconds, a day of margin on each side); None if a transition is near."""
        window = self.window(lo)
        offset = window.offset_at(lo)
        year = _year_of(lo)
        last = _year_of(hi)
        while True:
            for bound in window.bounds:
                if lo - _DAY <= bound <= hi + _DAY:
                    return None
            if year >= last:
                return offset
            year += 1
            window = self.window_for_year(year)
            if window.offsets[0] != offset:
                return None

    def _build(self, year: int) -> _Window:
        lo = _days_from_civil(year, 1, 1) * _DAY - self.MARGIN
        hi = _days_from_civil(year + 1, 1, 1) * _DAY + self.MARGIN
        bounds: list[int] = []
        offsets = [self._offset(lo)]
        previous_t, previous = lo, offsets[0]
        t = lo
        while t < hi:
            t = min(t + _DAY, hi)
            current = self._offset(t)
            # Find every change in (previous_t, t]: bisect to the first, then continue from it.
            while current != previous:
                low, high = previous_t, t
                while high - low > 1:
                    middle = (low + high) // 2
                    if self._offset(middle) == previous:
                        low = middle
                    else:
                        high = middle
                previous = self._offset(high)
                bounds.append(high)
                offsets.append(previous)
                previous_t = high
            previous_t = t
        return _Window(lo=lo, hi=hi, bounds=tuple(bounds), offsets=tuple(offsets))

    # Conversions used by the walk --------------------------------------------------------

    def to_local(self, instant: int) -> int:
        """Wall time (local seconds) of a UTC instant."""
        window = self.window(instant)
        return instant + window.offset_at(instant)

    def java_instant(self, local: int) -> int:
        """The instant ``GregorianCalendar`` gives a wall time (see ``java_offset``)."""
        return local - self.window(local).java_offset(local)

    def java_normalize(self, local: int) -> int:
        """Wall time read back after setting ``local``: unchanged, except in a gap, where it
        moves forward by the length of the gap."""
        window = self.window(local)
        offsets = window.offsets
        for i, bound in enumerate(window.bounds):
            before, after = offsets[i], offsets[i + 1]
            if after > before and bound + before <= local < bound + after:
                return local + after - before
        return local


_TABLES: OrderedDict[_dt.tzinfo, ZoneTable] = OrderedDict()
_TABLES_MAX = 256


def zone_table(tz: _dt.tzinfo) -> ZoneTable:
    """The cached :class:`ZoneTable` of a zone (the most recently used 256 zones are kept)."""
    table = _TABLES.get(tz)
    if table is None:
        table = ZoneTable(tz)
        _TABLES[tz] = table
        if len(_TABLES) > _TABLES_MAX:
            _TABLES.popitem(last=False)
    return table


# --------------------------------------------------------------------------- Quartz's walk

_MONTH_STARTS: dict[tuple[int, int], int] = {}


def _month_start(year: int, month: int) -> int:
    """Days since 1970-01-01 of the first of a (valid) month; cached."""
    key = (year, month)
    days = _MONTH_STARTS.get(key)
    if days is None:
        days = _dt.date(year, month, 1).toordinal() - _EPOCH_ORDINAL
        if len(_MONTH_STARTS) < 100_000:
            _MONTH_STARTS[key] = days
    return days


def _fields(local: int) -> tuple[int, int, int, int, int, int]:
    days, rest = divmod(local, _DAY)
    date = _dt.date.fromordinal(days + _EPOCH_ORDINAL)
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    return date.year, date.month, date.day, hour, minute, second


def _java_dow(local: int) -> int:
    """Day of week of a wall time, 1 = Sunday ... 7 = Saturday."""
    return (local // _DAY + 4) % 7 + 1  # 1970-01-01 was a Thursday (5)


def _compose(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int:
    """Lenient local seconds: overflowing months, days, hours... carry like Java's."""
    days = _month_start(year, month) if 1 <= month <= 12 else _days_from_civil(year, month, 1)
    return (days + day - 1) * _DAY + hour * 3600 + minute * 60 + second


def _settle(
    y: int, mo: int, d: int, h: int, mi: int, s: int, table: ZoneTable | None
) -> tuple[int, int, int, int, int, int, int]:
    """Resolve calendar fields the way a lenient ``GregorianCalendar`` does when read.

    Returns the normalized fields and their local seconds.
    """
    if (
        0 <= s < 60
        and 0 <= mi < 60
        and 0 <= h < 24
        and 1 <= mo <= 12
        and 1 <= d <= (_MONTH_DAYS[mo] if d <= 28 or mo != 2 else 29 if _is_leap(y) else 28)
    ):
        local = (_month_start(y, mo) + d - 1) * _DAY + h * 3600 + mi * 60 + s
        if table is None:
            return y, mo, d, h, mi, s, local
        moved = table.java_normalize(local)
        if moved == local:
            return y, mo, d, h, mi, s, local
        local = moved
    else:
        local = _compose(y, mo, d, h, mi, s)
        if table is not None:
            local = table.java_normalize(local)
    y, mo, d, h, mi, s = _fields(local)
    return y, mo, d, h, mi, s, local


def _weekday_near(year: int, month: int, day: int, table: ZoneTable | None) -> int:
    """Quartz's "nearest weekday" shift of ``day`` (Quartz computes it on a second calendar
    set to that day at midnight, read back leniently)."""
    probe = _compose(year, month, day, 0, 0, 0)
    if table is not None:
        probe = table.java_normalize(probe)
    dow = _java_dow(probe)
    if dow == _SAT:
        return day + 2 if day == 1 else day - 1
    if dow == _SUN:
        return day - 2 if day == _month_length(month, year) else day + 1
    return day


def quartz_next(f: CronFields, start: int, table: ZoneTable | None, after: int) -> int | None:
    """The walk of Quartz's ``CronExpression.getTimeAfter``, on local seconds.

    Each step mirrors one of Quartz's: it picks the next allowed value of one field, and
    either keeps it (and goes on to the next field) or sets it, resets the smaller fields, and
    starts over. Setting fields and reading them back goes through :func:`_settle`, which
    resolves a wall time in a gap the way ``GregorianCalendar`` does.

    Args:
        f: The expression.
        start: Wall time (local seconds) of the first candidate: the instant one second after
            the one asked about (Quartz adds a second and drops the milliseconds).
        table: The zone, or None for plain wall-clock arithmetic (no transitions).
        after: What the ``W`` rules compare a candidate day with: the instant of ``start``
            (with ``table``) or ``start`` itself (without).

    Returns:
        Wall time (local seconds, normalized) of the next fire, or None when there is none up
        to the end of :data:`MAX_YEAR`.
    """
    seconds, minutes, hours = f.seconds, f.minutes, f.hours
    months, years = f.months, f.years
    doms, dows = f.days_of_month, f.days_of_week
    n_sec, n_min, n_hour, n_month = len(seconds), len(minutes), len(hours), len(months)
    by_dom = not f.dom_any
    dom_last, dom_weekday = f.last_day_of_month, f.nearest_weekday

    y, mo, d, h, mi, s = _fields(start)
    local = start
    dirty = False

    while True:
        if dirty:
            y, mo, d, h, mi, s, local = _settle(y, mo, d, h, mi, s, table)
            dirty = False
        if y > MAX_YEAR:
            return None

        # second: the next allowed second, carrying into the minute
        i = bisect_left(seconds, s)
        if i < n_sec:
            if seconds[i] != s:
                s = seconds[i]
                y, mo, d, h, mi, s, local = _settle(y, mo, d, h, mi, s, table)
        else:
            s = seconds[0]
            mi += 1
            y, mo, d, h, mi, s, local = _settle(y, mo, d, h, mi, s, table)

        # minute: if it changes, reset the second, set the hour, start over
        i = bisect_left(minutes, mi)
        if i == n_min or minutes[i] != mi:
            hour = h
            if i < n_min:
                mi = minutes[i]
            else:
                mi = minutes[0]
                hour += 1
            s = 0
            # Quartz's setCalendarHour: if the hour reads back different (a gap), set hour + 1
            h = hour
            y, mo, d, h, mi, s, local = _settle(y, mo, d, h, mi, s, table)
            if h != hour and hour != 24:
                h = hour + 1
                dirty = True
            continue

        # hour: if it changes, reset minute and second (and maybe move to the next day)
        i = bisect_left(hours, h)
        if i == n_hour or hours[i] != h:
            if i < n_hour:
                hour = hours[i]
            else:
                hour = hours[0]
                d += 1
            s = mi = 0
            h = hour
            y, mo, d, h, mi, s, local = _settle(y, mo, d, h, mi, s, table)
            if h != hour and hour != 24:
                h = hour + 1
                dirty = True
            continue

        # day
        day, mon, tmon = d, mo, mo
        t = -1
        if by_dom:
            if dom_last:
                t = day
                day = _month_length(mon, y) - f.last_day_offset
                if not dom_weekday:
                    if t > day:
                        mon += 1
                        if mon > 12:
                            mon, tmon = 1, 3333
                            y += 1  # Calendar.add(YEAR, 1) on a December date
                        day = 1
                else:
                    day = _weekday_near(y, mon, day, table)
                    if _before(y, mon, day, h, mi, s, table, after):
                        day, mon = 1, mon + 1
            elif dom_weekday:
                t = day
                day = _weekday_near(y, mon, doms[0], table)
                if _before(y, mon, day, h, mi, s, table, after):
                    day, mon = doms[0], mon + 1
            else:
                i = bisect_left(doms, day)
                if i < len(doms):
                    t = day
                    day = doms[i]
                    if day > _month_length(mon, y):
                        day, mon = doms[0], mon + 1
                else:
                    day, mon = doms[0], mon + 1
            if day != t or mon != tmon:
                s, mi, h, d, mo = 0, 0, 0, day, mon
                dirty = True
                continue
        else:
            current = _java_dow(local)
            wanted = dows[0]
            if f.last_day_of_week:
                add = (wanted - current) % 7
                last = _month_length(mon, y)
                if day + add > last:
                    s, mi, h, d, mo = 0, 0, 0, 1, mon + 1
                    dirty = True
                    continue
                while day + add + 7 <= last:
                    add += 7
                if add > 0:
                    s, mi, h, d, mo = 0, 0, 0, day + add, mon
                    dirty = True
                    continue
            elif f.nth_day_of_week:
                add = (wanted - current) % 7
                shifted = add > 0
                day += add
                week = day // 7 + (1 if day % 7 else 0)
                add = (f.nth_day_of_week - week) * 7
                day += add
                if add < 0 or day > _month_length(mon, y):
                    s, mi, h, d, mo = 0, 0, 0, 1, mon + 1
                    dirty = True
                    continue
                if add > 0 or shifted:
                    s, mi, h, d, mo = 0, 0, 0, day, mon
                    dirty = True
                    continue
            else:
                i = bisect_left(dows, current)
                if i < len(dows):
                    wanted = dows[i]
                add = (wanted - current) % 7
                if day + add > _month_length(mon, y):
                    s, mi, h, d, mo = 0, 0, 0, 1, mon + 1
                    dirty = True
                    continue
                if add > 0:
                    s, mi, h, d, mo = 0, 0, 0, day + add, mon
                    dirty = True
                    continue

        # month
        i = bisect_left(months, mo)
        if i == n_month or months[i] != mo:
            if i < n_month:
                mo = months[i]
            else:
                mo = months[0]
                y += 1
            s, mi, h, d = 0, 0, 0, 1
            dirty = True
            continue

        # year
        i = bisect_left(years, y)
        if i == len(years):
            return None
        if years[i] != y:
            s, mi, h, d, mo, y = 0, 0, 0, 1, 1, years[i]
            dirty = True
            continue
        return local


def _before(
    y: int, mo: int, d: int, h: int, mi: int, s: int, table: ZoneTable | None, after: int
) -> bool:
    """Quartz's ``nTime.before(afterTime)`` of the ``W`` rules."""
    probe = _compose(y, mo, d, h, mi, s)
    if table is not None:
        return table.java_instant(probe) < after
    return probe < after


def naive_next(f: CronFields, local: int) -> int | None:
    """The first wall time strictly after ``local`` that matches (no zone involved)."""
    return quartz_next(f, local + 1, None, local + 1)


# --------------------------------------------------------------------------- DST policies


def policy_next(
    f: CronFields,
    instant: int,
    table: ZoneTable,
    nonexistent_skip: bool,
    ambiguous_last: bool,
) -> int | None:
    """The first fire strictly after ``instant`` under an explicit DST policy.

    The fires are the instants of the matching wall times:

    * a wall time that occurs once fires at its instant;
    * one that occurs twice fires at its first occurrence (``ambiguous_last`` False) or at its
      second (True) — "both" is the union of the two, computed by the caller;
    * one that does not exist is skipped (``nonexistent_skip``) or fires at the instant it
      becomes when shifted forward by the length of the gap (02:30 -> 03:30);
    * wall times that map to one instant fire once.

    Wall times that exist give fires that grow with the wall time; so do shifted wall times
    among themselves. The answer is the earlier of the first fire of each stream.
    """
    real = _real_next(f, instant, table, ambiguous_last)
    if nonexistent_skip:
        return real
    shifted = _shifted_next(f, instant, table, real)
    if shifted is None:
        return real
    return shifted if real is None or shifted < real else real


def _real_next(f: CronFields, instant: int, table: ZoneTable, last: bool) -> int | None:
    """First fire after ``instant`` of a matching wall time that exists."""
    local = table.to_local(instant)
    search = local
    near = table.window(local).transition_near(local)
    if near is not None and last:
        bound, before, after = near
        if before > after and instant < bound:
            # ``instant`` is in the first occurrence of a repeated period: the second
            # occurrences of all its wall times, from its start, are still ahead.
            search = bound + after - 1
    while True:
        wall = naive_next(f, search)
        if wall is None:
            return None
        window = table.window(wall)
        near = window.transition_near(wall)
        if near is None:
            fire = wall - window.java_offset(wall)
            if fire > instant:
                return fire
            search = wall
            continue
        bound, before, after = near
        if after > before:  # in a gap: not a real wall time; continue after the gap
            search = bound + after - 1
            continue
        fire = wall - (after if last else before)
        if fire > instant:
            return fire
        # a first occurrence at or before ``instant``: continue after the repeated period
        search = wall if last else bound + before - 1


def _shifted_next(f: CronFields, instant: int, table: ZoneTable, limit: int | None) -> int | None:
    """First fire after ``instant`` (and before ``limit``) of a wall time inside a gap,
    shifted forward by the length of the gap."""
    last_year = f.years[-1] if limit is None else _year_of(limit + 2 * _DAY)
    year = _year_of(instant - 2 * _DAY)
    while year <= last_year:
        window = table.window_for_year(year)
        core_lo, core_hi = window.lo + ZoneTable.MARGIN, window.hi - ZoneTable.MARGIN
        for i, bound in enumerate(window.bounds):
            before, after = window.offsets[i], window.offsets[i + 1]
            if after <= before or not core_lo <= bound < core_hi:
                continue
            if bound + (after - before) <= instant + 1:  # every shifted fire is <= instant
                continue
            if limit is not None and bound >= limit:
                return None
            # shifted fire of wall w is w - before; it must be > instant
            start = max(bound + before, instant + before + 1)
            wall = naive_next(f, start - 1)
            if wall is not None and wall < bound + after:
                return wall - before
        year += 1
    return None


def _year_of(seconds: int) -> int:
    return _dt.date.fromordinal(seconds // _DAY + _EPOCH_ORDINAL).year
