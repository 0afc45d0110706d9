"""Business calendars: holidays, make-up working days, weekends, and business-day arithmetic.

A :class:`BusinessCalendar` answers "is this date a business day?" for schedules that exclude
holidays, roll a fire to a business day, or fire on the Nth business day of a month. A date is a
business day when it is not a holiday, and either not a weekend day or a make-up working day (a
Saturday or Sunday that a decree turns into a working day, as Vietnam does around Tết and the
30/4 holidays).

Holidays come from rules (:mod:`cadenza.timers._calendar_rules`), from explicit dates, and from
per-year overrides (:class:`YearOverride`) that replace what a rule computes in a year for which
an official decision exists. A substitute-day policy adds a day off when a holiday falls on a
weekend day or on another holiday:

* ``"none"`` - no substitute days;
* ``"next_workday"`` - the next day that is neither a weekend day nor a holiday (Vietnam's
  Labour Code 2019, art. 111(3): "nghỉ bù vào ngày làm việc kế tiếp");
* ``"nearest"`` - the nearest such day, the later one on a tie (Saturday → Friday,
  Sunday → Monday).

A :class:`CompositeCalendar` is the union of several calendars: a date is a holiday when it is
one in any member. Calendars are found by name in a registry (:func:`get_calendar`,
:func:`register_calendar`) that holds the built-ins ``VN`` (alias ``vietnam``) and
``weekends-only``.
"""

from __future__ import annotations

import calendar as _stdlib_calendar
import contextlib
import contextvars
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal, TypeAlias, get_args

import msgspec

from cadenza.history import InvalidArgumentError
from cadenza.timers._calendar_rules import WEEKDAY_NAMES, HolidayRule, parse_weekday

__all__ = [
    "BusinessCalendar",
    "Calendar",
    "CalendarEntry",
    "CompositeCalendar",
    "RollConvention",
    "SubstitutePolicy",
    "UnknownCalendarError",
    "YearOverride",
    "builtin_calendar_names",
    "calendar_generation",
    "calendar_names",
    "calendar_overlay",
    "calendar_overlay_active",
    "get_calendar",
    "register_calendar",
    "unregister_calendar",
]

RollConvention: TypeAlias = Literal[
    "following", "preceding", "modified_following", "modified_preceding"
]
SubstitutePolicy: TypeAlias = Literal["none", "next_workday", "nearest"]

MIN_YEAR = 1801
MAX_YEAR = 2198
_MAX_SCAN_DAYS = 400
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


class UnknownCalendarError(InvalidArgumentError):
    """No calendar is registered under the given name."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(
            "calendar", f"unknown calendar {name!r}; known calendars: {', '.join(known)}"
        )
        self.name = name


class CalendarEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One listed day of a calendar.

    Attributes:
        date: The date.
        kind: ``holiday`` (a day off) or ``makeup_workday`` (a weekend day that is worked).
        name: What it is.
        source: ``computed`` (from a rule), ``data`` (an explicit date of the calendar) or
            ``decree`` (per-year official data that overrides the rules).
    """

    date: date
    kind: Literal["holiday", "makeup_workday"]
    name: str
    source: Literal["computed", "data", "decree"] = "computed"


@dataclass(frozen=True, kw_only=True)
class YearOverride:
    """Official data for one year that replaces what some rules compute.

    Vietnam, for example, fixes the five Tết days of each year by decision of the Prime
    Minister; when those differ from the default rule, an override lists the decreed days.

    Attributes:
        year: The solar year.
        replaces: Keys of the rules whose dates (and their substitute days) this override
            replaces in ``year``; may be empty when the override only adds days.
        holidays: Days off, as ``(date, name)``, in ``year``; no substitute days are added for
            them (a decree states every day off, substitutes included).
        makeup_workdays: Weekend days that are working days, as ``(date, name)``.
        source: Where the data comes from (shown in docs and reviews).
    """

    year: int
    replaces: frozenset[str] = frozenset()
    holidays: tuple[tuple[date, str], ...] = ()
    makeup_workdays: tuple[tuple[date, str], ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        for label, items in (
            ("holidays", self.holidays),
            ("makeup_workdays", self.makeup_workdays),
        ):
            for i, (d, _name) in enumerate(items):
                if not isinstance(d, date) or d.year != self.year:
                    raise InvalidArgumentError(
                        f"{label}[{i}]", f"{d!r} is not a date in {self.year}"
                    )


@dataclass
class _YearTable:
    holidays: dict[date, list[CalendarEntry]] = field(default_factory=dict)
    makeup: dict[date, CalendarEntry] = field(default_factory=dict)


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidArgumentError(
            "name",
            f"a calendar name is 1-64 letters, digits or '_.+-', starting with a letter or "
            f"digit; got {name!r}",
        )
    return name


def _check_year(year: object) -> int:
    if isinstance(year, bool) or not isinstance(year, int) or not MIN_YEAR <= year <= MAX_YEAR:
        raise InvalidArgumentError("year", f"must be a year {MIN_YEAR}..{MAX_YEAR}, got {year!r}")
    return year


def _check_date(d: object, field_name: str = "date") -> date:
    if not isinstance(d, date):
        raise InvalidArgumentError(field_name, f"must be a date, got {type(d).__name__}")
    if hasattr(d, "date") and callable(d.date):  # a datetime: use its calendar date
        d = d.date()
    _check_year(d.year)
    return d


class Calendar(ABC):
    """What every calendar answers; business-day arithmetic is built on top of it."""

    name: str
    weekend: frozenset[int]

    @abstractmethod
    def _table(self, year: int) -> _YearTable:
        """Holidays and make-up working days of one solar year."""

    # ---------------------------------------------------------------------- queries

    def holidays(self, year: int) -> list[CalendarEntry]:
        """Holidays of ``year``, in date order (weekend holidays and substitute days included)."""
        table = self._table(_check_year(year))
        return [e for d in sorted(table.holidays) for e in table.holidays[d]]

    def makeup_workdays(self, year: int) -> list[CalendarEntry]:
        """Make-up working days (weekend days that are worked) of ``year``, in date order."""
        table = self._table(_check_year(year))
        return [table.makeup[d] for d in sorted(table.makeup)]

    def entries(self, year: int) -> list[CalendarEntry]:
        """Holidays and make-up working days of ``year``, in date order."""
        merged = self.holidays(year) + self.makeup_workdays(year)
        return sorted(merged, key=lambda e: (e.date, e.kind != "holiday"))

    def is_holiday(self, d: date) -> bool:
        """True when ``d`` is a holiday (including a substitute day off)."""
        d = _check_date(d)
        return d in self._table(d.year).holidays

    def is_makeup_workday(self, d: date) -> bool:
        """True when ``d`` is a weekend day that is worked by decision."""
        d = _check_date(d)
        return d in self._table(d.year).makeup

    def is_business_day(self, d: date) -> bool:
        """True when ``d`` is neither a holiday nor a weekend day, or is a make-up working day."""
        d = _check_date(d)
        table = self._table(d.year)
        if d in table.holidays:
            return False
        return d in table.makeup or d.weekday() not in self.weekend

    # ---------------------------------------------------------------- arithmetic

    def _scan(self, d: date, step: int) -> date:
        """First business day from ``d`` (inclusive) in direction ``step``."""
        for _ in range(_MAX_SCAN_DAYS):
            if self.is_business_day(d):
                return d
            d = d + timedelta(days=step)
        raise InvalidArgumentError(
            "calendar", f"calendar {self.name!r} has no business day within {_MAX_SCAN_DAYS} days"
        )

    def next_business_day(self, d: date) -> date:
        """The first business day strictly after ``d``."""
        return self._scan(_check_date(d) + timedelta(days=1), 1)

    def previous_business_day(self, d: date) -> date:
        """The last business day strictly before ``d``."""
        return self._scan(_check_date(d) - timedelta(days=1), -1)

    def roll(self, d: date, convention: RollConvention = "following") -> date:
        """Move ``d`` to a business day; a business day is returned unchanged.

        Args:
            d: The date.
            convention: ``following`` (the next business day), ``preceding`` (the previous
                one), ``modified_following`` (the next one unless it is in another month, then
                the previous one), ``modified_preceding`` (the previous one unless it is in
                another month, then the next one). Default ``following``.

        Raises:
            InvalidArgumentError: an unknown convention (field ``convention``).
        """
        d = _check_date(d)
        if convention not in get_args(RollConvention):
            raise InvalidArgumentError(
                "convention",
                f"unknown roll convention {convention!r}; use one of "
                f"{', '.join(get_args(RollConvention))}",
            )
        if convention == "following":
            return self._scan(d, 1)
        if convention == "preceding":
            return self._scan(d, -1)
        if convention == "modified_following":
            rolled = self._scan(d, 1)
            return rolled if rolled.month == d.month else self._scan(d, -1)
        rolled = self._scan(d, -1)
        return rolled if rolled.month == d.month else self._scan(d, 1)

    def business_days(self, year: int, month: int) -> list[date]:
        """Every business day of a month, in order."""
        _check_year(year)
        if isinstance(month, bool) or not isinstance(month, int) or not 1 <= month <= 12:
            raise InvalidArgumentError("month", f"must be 1..12, got {month!r}")
        days = _stdlib_calendar.monthrange(year, month)[1]
        return [
            date(year, month, day)
            for day in range(1, days + 1)
            if self.is_business_day(date(year, month, day))
        ]

    def nth_business_day(self, year: int, month: int, n: int) -> date | None:
        """The nth business day of a month: 1 is the first, -1 the last, -2 the one before.

        Returns:
            The date, or None when the month has fewer than ``abs(n)`` business days.

        Raises:
            InvalidArgumentError: ``n`` is 0 or beyond ±31, or the month or year is invalid.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n == 0 or abs(n) > 31:
            raise InvalidArgumentError("n", f"must be 1..31 or -1..-31, got {n!r}")
        days = self.business_days(year, month)
        index = n - 1 if n > 0 else n
        return days[index] if -len(days) <= index < len(days) else None

    def add_business_days(self, d: date, n: int) -> date:
        """The date ``n`` business days after ``d`` (before it when ``n`` is negative).

        ``d`` need not be a business day; ``n = 0`` gives ``roll(d, "following")``.
        """
        d = _check_date(d)
        if isinstance(n, bool) or not isinstance(n, int) or abs(n) > 10_000:
            raise InvalidArgumentError("n", f"must be an integer within ±10000, got {n!r}")
        if n == 0:
            return self.roll(d, "following")
        step = self.next_business_day if n > 0 else self.previous_business_day
        for _ in range(abs(n)):
            d = step(d)
        return d

    def __repr__(self) -> str:
        weekend = ",".join(WEEKDAY_NAMES[w] for w in sorted(self.weekend))
        return f"<{type(self).__name__} {self.name!r} weekend={weekend}>"


def _parse_weekend(weekend: Iterable[int | str]) -> frozenset[int]:
    if isinstance(weekend, str | bytes) or not isinstance(weekend, Iterable):
        raise InvalidArgumentError("weekend", f"must be a list of weekdays, got {weekend!r}")
    days = frozenset(parse_weekday(w, f"weekend[{i}]") for i, w in enumerate(weekend))
    if len(days) == 7:
        raise InvalidArgumentError(
            "weekend", "all 7 weekdays are weekend days: every date would be excluded"
        )
    return days


class BusinessCalendar(Calendar):
    """A named calendar of holidays, make-up working days and weekend days.

    Args:
        name: Registry name (letters, digits, ``_.+-``; looked up case-insensitively).
        weekend: Weekend days, as names (``"sat"``) or numbers (Monday = 0). Default Saturday
            and Sunday. All seven are rejected: every date would be excluded.
        rules: Holiday rules computed for every year (see ``_calendar_rules``).
        holidays: Explicit holidays as ``(date, name)``; the substitute policy does not apply.
        makeup_workdays: Explicit make-up working days as ``(date, name)``; each must be a
            weekend day of this calendar and not a holiday.
        overrides: Per-year official data that replaces rules (see :class:`YearOverride`).
        substitute: Substitute-day policy: ``none`` (default), ``next_workday`` or ``nearest``.
        substitute_label: Format of a substitute day's name; ``{name}`` is the holiday's name.
        description: Free text shown by the CLI and docs.

    Raises:
        InvalidArgumentError: naming the offending field.
    """

    def __init__(
        self,
        name: str,
        *,
        weekend: Iterable[int | str] = ("sat", "sun"),
        rules: Sequence[HolidayRule] = (),
        holidays: Sequence[tuple[date, str]] = (),
        makeup_workdays: Sequence[tuple[date, str]] = (),
        overrides: Sequence[YearOverride] = (),
        substitute: SubstitutePolicy = "none",
        substitute_label: str = "{name} (substitute day off)",
        description: str = "",
    ) -> None:
        self.name = _check_name(name)
        self.weekend = _parse_weekend(weekend)
        if substitute not in get_args(SubstitutePolicy):
            raise InvalidArgumentError(
                "substitute",
                f"unknown policy {substitute!r}; use one of "
                f"{', '.join(get_args(SubstitutePolicy))}",
            )
        if "{name}" not in substitute_label:
            raise InvalidArgumentError("substitute_label", "must contain '{name}'")
        for i, rule in enumerate(rules):
            if not isinstance(rule, HolidayRule):
                raise InvalidArgumentError(f"rules[{i}]", f"not a HolidayRule: {rule!r}")
        self.rules = tuple(rules)
        self.substitute = substitute
        self.substitute_label = substitute_label
        self.description = description
        self._holidays = tuple(self._checked_days(holidays, "holidays"))
        self._makeup = tuple(self._checked_days(makeup_workdays, "makeup_workdays"))
        for i, (d, _name) in enumerate(self._makeup):
            if d.weekday() not in self.weekend:
                raise InvalidArgumentError(
                    f"makeup_workdays[{i}]",
                    f"{d} is a {WEEKDAY_NAMES[d.weekday()]}, not a weekend day of this calendar",
                )
        self._overrides = tuple(overrides)
        for i, override in enumerate(self._overrides):
            if not isinstance(override, YearOverride):
                raise InvalidArgumentError(f"overrides[{i}]", f"not a YearOverride: {override!r}")
            for j, (d, _name) in enumerate(override.makeup_workdays):
                if d.weekday() not in self.weekend:
                    raise InvalidArgumentError(
                        f"overrides[{i}].makeup_workdays[{j}]",
                        f"{d} is a {WEEKDAY_NAMES[d.weekday()]}, not a weekend day",
                    )
        self._cache: dict[int, _YearTable] = {}
        self._lock = threading.Lock()
        # Validate now what can conflict: a make-up day that is also a holiday.
        for year in sorted({d.year for d, _ in self._makeup} | {o.year for o in self._overrides}):
            self._table(year)

    @staticmethod
    def _checked_days(items: Sequence[tuple[date, str]], label: str) -> list[tuple[date, str]]:
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, tuple | list) or len(item) != 2:
                raise InvalidArgumentError(f"{label}[{i}]", "must be a (date, name) pair")
            d, name = item
            d = _check_date(d, f"{label}[{i}].date")
            if not isinstance(name, str) or not name.strip():
                raise InvalidArgumentError(f"{label}[{i}].name", "must be a non-empty string")
            out.append((d, name))
        return out

    @classmethod
    def from_dict(cls, data: object) -> Calendar:
        """Build a calendar from plain data, e.g. the ``calendars`` section of a job file.

        See ``docs/calendars.md`` for the format. With ``include``, the result is a
        :class:`CompositeCalendar` of the named registered calendars and this one.

        Raises:
            InvalidArgumentError: naming the offending field, e.g. ``holidays[2].lunar``.
        """
        from cadenza.timers._calendar_spec import calendar_from_dict

        return calendar_from_dict(data)

    # ----------------------------------------------------------------- computation

    def _base(
        self, year: int
    ) -> tuple[list[tuple[CalendarEntry, bool]], dict[date, CalendarEntry]]:
        """Holidays (with their substitute flag) and make-up days of one year, no substitutes."""
        overrides = [o for o in self._overrides if o.year == year]
        replaced = frozenset().union(*(o.replaces for o in overrides))
        entries: list[tuple[CalendarEntry, bool]] = []
        for rule in self.rules:
            if rule.applies_to(year) and (rule.key is None or rule.key not in replaced):
                for d in rule.dates(year, self.weekend):
                    entries.append(
                        (CalendarEntry(date=d, kind="holiday", name=rule.name), rule.substitute)
                    )
        for d, name in self._holidays:
            if d.year == year:
                entries.append(
                    (CalendarEntry(date=d, kind="holiday", name=name, source="data"), False)
                )
        makeup: dict[date, CalendarEntry] = {}
        for d, name in self._makeup:
            if d.year == year:
                makeup[d] = CalendarEntry(date=d, kind="makeup_workday", name=name, source="data")
        for override in overrides:
            for d, name in override.holidays:
                entries.append(
                    (CalendarEntry(date=d, kind="holiday", name=name, source="decree"), False)
                )
            for d, name in override.makeup_workdays:
                makeup[d] = CalendarEntry(date=d, kind="makeup_workday", name=name, source="decree")
        entries.sort(key=lambda item: item[0].date)
        return entries, makeup

    def _table(self, year: int) -> _YearTable:
        cached = self._cache.get(year)
        if cached is not None:
            return cached
        with self._lock:
            cached = self._cache.get(year)
            if cached is None:
                cached = self._compute(year)
                self._cache[year] = cached
        return cached

    def _compute(self, year: int) -> _YearTable:
        # Substitute days can cross a year boundary (31 December on a Saturday gives a Monday
        # in January), so compute the neighbouring years too and keep this year's days.
        entries: list[tuple[CalendarEntry, bool]] = []
        makeup: dict[date, CalendarEntry] = {}
        for y in (year - 1, year, year + 1):
            e, m = self._base(y)
            entries += e
            makeup.update(m)
        occupied = {entry.date for entry, _ in entries}
        all_entries = [entry for entry, _ in entries]
        if self.substitute != "none":
            seen: set[date] = set()
            for entry, substitutable in entries:
                collides = entry.date in seen
                seen.add(entry.date)
                if not substitutable:
                    continue
                if entry.date.weekday() in self.weekend or collides:
                    day = self._substitute_day(entry.date, occupied)
                    occupied.add(day)
                    all_entries.append(
                        CalendarEntry(
                            date=day,
                            kind="holiday",
                            name=self.substitute_label.format(name=entry.name),
                            source=entry.source,
                        )
                    )
        table = _YearTable()
        for entry in sorted(all_entries, key=lambda e: e.date):
            if entry.date.year == year:
                table.holidays.setdefault(entry.date, []).append(entry)
        for d, entry in makeup.items():
            if d.year == year:
                if d in table.holidays:
                    raise InvalidArgumentError(
                        "makeup_workdays",
                        f"{d} is both a make-up working day ({entry.name}) and a holiday "
                        f"({table.holidays[d][0].name})",
                    )
                table.makeup[d] = entry
        return table

    def _substitute_day(self, d: date, occupied: set[date]) -> date:
        def free(day: date) -> bool:
            return day.weekday() not in self.weekend and day not in occupied

        for distance in range(1, _MAX_SCAN_DAYS):
            later = d + timedelta(days=distance)
            if free(later):
                return later
            if self.substitute == "nearest":
                earlier = d - timedelta(days=distance)
                if free(earlier):
                    return earlier
        raise InvalidArgumentError("substitute", f"no free day to substitute for {d}")


class CompositeCalendar(Calendar):
    """The union of several calendars.

    A date is a holiday when it is one in any member; weekend days are those of any member; a
    make-up working day of any member is worked unless another member has a holiday on it.

    Args:
        name: Registry name.
        calendars: The members (at least one).
        description: Free text.
    """

    def __init__(self, name: str, calendars: Sequence[Calendar], *, description: str = "") -> None:
        self.name = _check_name(name)
        if not calendars:
            raise InvalidArgumentError("calendars", "a composite calendar needs a member")
        for i, member in enumerate(calendars):
            if not isinstance(member, Calendar):
                raise InvalidArgumentError(f"calendars[{i}]", f"not a calendar: {member!r}")
        self.members = tuple(calendars)
        weekend = frozenset().union(*(c.weekend for c in self.members))
        if len(weekend) == 7:
            raise InvalidArgumentError(
                "weekend",
                "the members' weekend days cover all 7 weekdays: every date would be excluded",
            )
        self.weekend = weekend
        self.description = description

    def _table(self, year: int) -> _YearTable:
        table = _YearTable()
        for member in self.members:
            member_table = member._table(year)
            for d, entries in member_table.holidays.items():
                listed = table.holidays.setdefault(d, [])
                listed.extend(e for e in entries if e not in listed)
            for d, entry in member_table.makeup.items():
                table.makeup.setdefault(d, entry)
        for d in [d for d in table.makeup if d in table.holidays]:
            del table.makeup[d]
        table.holidays = dict(sorted(table.holidays.items()))
        return table


# -------------------------------------------------------------------------- registry

_REGISTRY: dict[str, Calendar] = {}
_ALIASES: dict[str, str] = {}
_REGISTRY_LOCK = threading.Lock()
_BUILTINS_LOADED = False
_BUILTIN_KEYS: frozenset[str] = frozenset()
_GENERATION = 0
_OVERLAY: contextvars.ContextVar[Mapping[str, Calendar] | None] = contextvars.ContextVar(
    "cadenza_calendar_overlay", default=None
)


def _load_builtins() -> None:
    global _BUILTINS_LOADED, _BUILTIN_KEYS
    if _BUILTINS_LOADED:
        return
    from cadenza.timers._calendar_vn_data import build_vn_calendar

    with _REGISTRY_LOCK:
        if _BUILTINS_LOADED:
            return
        keys: set[str] = set()
        for cal, aliases in (
            (BusinessCalendar("weekends-only", description="Saturday and Sunday, no holidays"), ()),
            (build_vn_calendar(), ("vietnam",)),
        ):
            _REGISTRY[cal.name.lower()] = cal
            keys.add(cal.name.lower())
            for alias in aliases:
                _ALIASES[alias.lower()] = cal.name.lower()
                keys.add(alias.lower())
        _BUILTIN_KEYS = frozenset(keys)
        _BUILTINS_LOADED = True


def register_calendar(
    calendar: Calendar, *, aliases: Sequence[str] = (), replace: bool = False
) -> None:
    """Make ``calendar`` available under its name (and ``aliases``) to :func:`get_calendar`.

    Args:
        calendar: The calendar.
        aliases: Other names for it.
        replace: Allow replacing a calendar registered under the same name. Default False.

    Raises:
        InvalidArgumentError: the name is taken (field ``name``) or invalid.
    """
    global _GENERATION
    if not isinstance(calendar, Calendar):
        raise InvalidArgumentError("calendar", f"not a calendar: {calendar!r}")
    _load_builtins()
    names = [calendar.name, *(_check_name(a) for a in aliases)]
    with _REGISTRY_LOCK:
        for n in names:
            key = n.lower()
            if not replace and (key in _REGISTRY or key in _ALIASES):
                raise InvalidArgumentError("name", f"a calendar named {n!r} is already registered")
        key = calendar.name.lower()
        _ALIASES.pop(key, None)
        _REGISTRY[key] = calendar
        for alias in aliases:
            _REGISTRY.pop(alias.lower(), None)
            _ALIASES[alias.lower()] = key
        _GENERATION += 1


def unregister_calendar(name: str) -> bool:
    """Remove a calendar registered under ``name`` (and the aliases that point to it).

    Returns:
        False when no calendar had that name.

    Raises:
        InvalidArgumentError: ``name`` is a built-in calendar or alias (field ``name``).
    """
    global _GENERATION
    _load_builtins()
    key = name.lower() if isinstance(name, str) else ""
    if key in _BUILTIN_KEYS:
        raise InvalidArgumentError("name", f"{name!r} is a built-in calendar")
    with _REGISTRY_LOCK:
        if _REGISTRY.pop(key, None) is None:
            return False
        for alias in [a for a, target in _ALIASES.items() if target == key]:
            del _ALIASES[alias]
        _GENERATION += 1
    return True


def builtin_calendar_names() -> frozenset[str]:
    """Lower-cased names and aliases of the built-in calendars (``vn``, ``vietnam``,
    ``weekends-only``): files and stores may not redefine them."""
    _load_builtins()
    return _BUILTIN_KEYS


def calendar_generation() -> int:
    """A number that changes whenever a calendar is registered, replaced or removed: caches
    of things compiled against calendars (schedule evaluators) compare it to drop stale
    entries."""
    return _GENERATION


@contextlib.contextmanager
def calendar_overlay(calendars: Mapping[str, Calendar]) -> Iterator[None]:
    """Within the block, and only in the current task (a context variable),
    :func:`get_calendar` finds ``calendars`` (by lower-cased name) before the registry.

    Used to validate schedules against calendars that are about to be stored (``plan``)
    without making them visible to anything else.
    """
    merged = {**(_OVERLAY.get() or {}), **{k.lower(): v for k, v in calendars.items()}}
    token = _OVERLAY.set(merged)
    try:
        yield
    finally:
        _OVERLAY.reset(token)


def calendar_overlay_active(name: str | None = None) -> bool:
    """Whether :func:`calendar_overlay` is in effect in the current context (for ``name``,
    case-insensitive, when given)."""
    overlay = _OVERLAY.get()
    if not overlay:
        return False
    return name is None or (isinstance(name, str) and name.lower() in overlay)


def get_calendar(name: str) -> Calendar:
    """The calendar registered under ``name`` (case-insensitive; aliases work).

    Raises:
        UnknownCalendarError: no such calendar; the message lists the known ones.
    """
    _load_builtins()
    key = name.lower() if isinstance(name, str) else ""
    overlay = _OVERLAY.get()
    if overlay and key in overlay:
        return overlay[key]
    key = _ALIASES.get(key, key)
    found = _REGISTRY.get(key)
    if found is None:
        raise UnknownCalendarError(str(name), calendar_names())
    return found


def calendar_names() -> list[str]:
    """Names of the registered calendars (without aliases), sorted."""
    _load_builtins()
    return sorted(c.name for c in _REGISTRY.values())
