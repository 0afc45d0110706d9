"""Parsing of cron expressions: Quartz (6 or 7 fields), Unix (5 fields) and ``@`` macros.

The result of parsing is one or two :class:`CronFields` — the same model Quartz's
``CronExpression`` builds: one sorted set of allowed values per field plus the flags of the
special characters (``L``, ``W``, ``#``). Value sets use Quartz's numbering: months 1-12,
days of week 1-7 with 1 = Sunday.

A Unix expression whose day-of-month and day-of-week are both restricted fires when *either*
matches (Vixie cron's rule); Quartz cannot say "or", so such an expression becomes two
:class:`CronFields`, one per day field, and its fire times are the union of both.

Everything Quartz accepts with a clear meaning is accepted with the same meaning. What Quartz
accepts but silently misreads (``MON-FRI/2`` loses its step, ``1,15W`` means ``1W``, ...) is
rejected with an explanation; ``docs/cron.md`` lists these differences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cadenza.history import InvalidArgumentError

__all__ = [
    "FIELD_NAMES",
    "MACROS",
    "MAX_YEAR",
    "MIN_YEAR",
    "CronFields",
    "ParsedCron",
    "parse_expression",
]

MIN_YEAR = 1970
"""Smallest year a cron expression may name (Quartz's lower bound)."""

MAX_YEAR = 2199
"""Largest year a cron expression may name, and the search horizon of next fire times.

Quartz documents 1970-2199 but searches up to "the current year + 100"; a fixed horizon keeps
next-fire computation a pure function.
"""

FIELD_NAMES = (
    "second",
    "minute",
    "hour",
    "day_of_month",
    "month",
    "day_of_week",
    "year",
)
"""Quartz field order; errors name a field as ``cron.<name>``."""

MACROS = {
    "@yearly": "0 0 0 1 1 ?",
    "@annually": "0 0 0 1 1 ?",
    "@monthly": "0 0 0 1 * ?",
    "@weekly": "0 0 0 ? * 1",
    "@daily": "0 0 0 * * ?",
    "@midnight": "0 0 0 * * ?",
    "@hourly": "0 0 * * * ?",
}
"""The ``@`` macros and the Quartz expressions they stand for."""

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
        start=1,
    )
}
_DAYS = {
    name: number
    for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), start=1)
}
_UNIX_DAYS = {name: number - 1 for name, number in _DAYS.items()}  # SUN = 0

# (low, high, wrap modulus, largest step) per Quartz field index.
_BOUNDS = (
    (0, 59, 60, 59),
    (0, 59, 60, 59),
    (0, 23, 24, 23),
    (1, 31, 31, 31),
    (1, 12, 12, 12),
    (1, 7, 7, 7),
    (MIN_YEAR, MAX_YEAR, 0, MAX_YEAR - MIN_YEAR),
)
_SECOND, _MINUTE, _HOUR, _DOM, _MONTH, _DOW, _YEAR = range(7)

_NUMBER = re.compile(r"[0-9]+")
_NAME = re.compile(r"[A-Z]+")


@dataclass(frozen=True, slots=True)
class CronFields:
    """One Quartz-style expression as value sets and flags (Quartz's own model).

    Attributes:
        seconds, minutes, hours, days_of_month, months, days_of_week, years: Sorted allowed
            values. ``days_of_month`` is empty when that field is ``?`` or an ``L`` form;
            ``days_of_week`` is empty when that field is ``?``.
        dom_any: True when day-of-month is ``?`` (day-of-week decides the day).
        last_day_of_month: ``L`` in day-of-month.
        last_day_offset: ``n`` of ``L-n``.
        nearest_weekday: ``W`` in day-of-month (``15W``, ``LW``).
        last_day_of_week: ``nL`` in day-of-week (the last such weekday of the month).
        nth_day_of_week: ``k`` of ``n#k``; 0 when absent.
    """

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days_of_month: tuple[int, ...]
    months: tuple[int, ...]
    days_of_week: tuple[int, ...]
    years: tuple[int, ...]
    dom_any: bool
    last_day_of_month: bool = False
    last_day_offset: int = 0
    nearest_weekday: bool = False
    last_day_of_week: bool = False
    nth_day_of_week: int = 0

    def to_quartz(self) -> str:
        """A Quartz expression with exactly these fields (values listed, runs as ranges)."""
        parts = [
            _render(self.seconds, _SECOND),
            _render(self.minutes, _MINUTE),
            _render(self.hours, _HOUR),
        ]
        if self.dom_any:
            parts.append("?")
        elif self.last_day_of_month:
            parts.append(
                "L"
                + (f"-{self.last_day_offset}" if self.last_day_offset else "")
                + ("W" if self.nearest_weekday else "")
            )
        elif self.nearest_weekday:
            parts.append(f"{self.days_of_month[0]}W")
        else:
            parts.append(_render(self.days_of_month, _DOM))
        parts.append(_render(self.months, _MONTH))
        if not self.dom_any:
            parts.append("?")
        elif self.last_day_of_week:
            parts.append(f"{self.days_of_week[0]}L")
        elif self.nth_day_of_week:
            parts.append(f"{self.days_of_week[0]}#{self.nth_day_of_week}")
        else:
            parts.append(_render(self.days_of_week, _DOW))
        if len(self.years) != MAX_YEAR - MIN_YEAR + 1:
            parts.append(_render(self.years, _YEAR))
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class ParsedCron:
    """The result of :func:`parse_expression`.

    Attributes:
        kind: ``quartz``, ``unix`` or ``macro``.
        alternatives: One :class:`CronFields`, or two for a Unix expression whose day fields
            combine with "or" (fire times are the union).
    """

    kind: str
    alternatives: tuple[CronFields, ...]


def _render(values: tuple[int, ...], index: int) -> str:
    low, high = _BOUNDS[index][0], _BOUNDS[index][1]
    if values == tuple(range(low, high + 1)):
        return "*"
    runs: list[str] = []
    start = prev = values[0]
    for value in (*values[1:], None):
        if value is not None and value == prev + 1:
            prev = value
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if value is not None:
            start = prev = value
    return ",".join(runs)


def _fail(prefix: str, index: int | None, reason: str) -> InvalidArgumentError:
    field = prefix if index is None else f"{prefix}.{FIELD_NAMES[index]}"
    return InvalidArgumentError(field, reason)


class _FieldParser:
    """Parses one field's text into values and flags; raises with the field named."""

    def __init__(self, prefix: str, index: int, text: str, unix: bool = False) -> None:
        self.prefix = prefix
        self.index = index
        self.original = text
        self.text = text.upper()
        self.unix = unix
        low, high, modulus, max_step = _BOUNDS[index]
        if unix and index == _DOW:
            low, high, modulus, max_step = 0, 7, 7, 7
        self.low, self.high, self.modulus, self.max_step = low, high, modulus, max_step

    def fail(self, reason: str) -> InvalidArgumentError:
        where = f"in {self.original!r}"
        if self.unix:
            where += ", read as 5-field Unix cron: minute hour day-of-month month day-of-week"
        return _fail(self.prefix, self.index, f"{reason} ({where})")

    def value(self, token: str) -> int:
        """A number or, in the month and day-of-week fields, a three-letter name."""
        if _NUMBER.fullmatch(token):
            number = int(token)
            if not self.low <= number <= self.high:
                raise self.fail(f"value {number} is out of range {self.low}-{self.high}")
            return number
        if _NAME.fullmatch(token):
            if self.index == _MONTH:
                names, what, span = _MONTHS, "month name", "JAN-DEC"
            elif self.index == _DOW:
                names, what, span = (_UNIX_DAYS if self.unix else _DAYS), "day name", "SUN-SAT"
            else:
                raise self.fail(f"names are not allowed here: {token!r}")
            if token not in names:
                raise self.fail(f"unknown {what} {token!r} (expected {span})")
            return names[token]
        if token == "":
            raise self.fail("a value is missing")
        raise self.fail(f"unexpected {token!r}")

    def step(self, token: str) -> int:
        if not _NUMBER.fullmatch(token):
            raise self.fail(f"bad step {token!r}: a step must be a whole number")
        step = int(token)
        if not 1 <= step <= self.max_step:
            raise self.fail(f"bad step {step}: a step must be between 1 and {self.max_step}")
        return step

    def expand(self, start: int, stop: int, step: int) -> list[int]:
        """Quartz's expansion: a range whose end is below its start wraps around."""
        if stop >= start:
            return list(range(start, stop + 1, step))
        if self.index == _YEAR:
            raise self.fail(f"range {start}-{stop} ends before it starts")
        out = []
        for value in range(start, stop + self.modulus + 1, step):
            value %= self.modulus
            if value == 0 and self.low == 1:
                value = self.modulus
            out.append(value)
        return out

    def item(self, item: str) -> list[int]:
        """One list item: ``*``, ``*/s``, ``/s``, ``a``, ``a/s``, ``a-b``, ``a-b/s``."""
        base, slash, step_text = item.partition("/")
        if slash and _NAME.search(base):
            raise self.fail(
                f"a step after a name ({item!r}) is not supported: Quartz silently drops it"
            )
        step = self.step(step_text) if slash else 1
        if base == "*" or (base == "" and slash):
            return self.expand(self.low, self.high, step)
        first, dash, last = base.partition("-")
        start = self.value(first)
        if dash:
            return self.expand(start, self.value(last), step)
        if slash:
            return self.expand(start, self.high, step)
        return [start]

    def values(self) -> tuple[int, ...]:
        """A plain field: a comma list of items."""
        text = self.text
        if "?" in text:
            if self.unix:
                raise self.fail("'?' is not Unix cron syntax; use '*'")
            if self.index in (_DOM, _DOW):
                raise self.fail("'?' must be the whole field")
            raise self.fail("'?' is only allowed in day-of-month and day-of-week")
        bare = _strip_names(text)
        if "W" in bare and self.index != _DOM:
            raise self.fail("'W' is only allowed in day-of-month (e.g. '15W', 'LW')")
        if "L" in bare or "W" in bare or "#" in bare:
            raise self.fail(self._special_reason())
        result: set[int] = set()
        for item in text.split(","):
            if item == "":
                raise self.fail("empty item in a list")
            result.update(self.item(item))
        return tuple(sorted(result))

    def _special_reason(self) -> str:
        if self.index == _DOM:
            if self.unix:
                return "'L' and 'W' are Quartz syntax; use a 6-field Quartz expression"
            return (
                "'L', 'L-n', 'LW', 'L-nW' and 'nW' must be the whole day-of-month field "
                "(no lists or ranges)"
            )
        if self.index == _DOW:
            if self.unix:
                return "'L' and '#' are Quartz syntax; use a 6-field Quartz expression"
            return "'L' (Saturday), 'nL' and 'n#k' must be the whole day-of-week field"
        return "'L', 'W' and '#' are only allowed in the day-of-month and day-of-week fields"


def _strip_names(text: str) -> str:
    """The text without the month and day names (so 'JUL' is not read as an 'L')."""
    for name in (*_MONTHS, *_DAYS):
        text = text.replace(name, "")
    return text


_DOM_LAST = re.compile(r"L(?:-([0-9]+))?(W?)")
_DOM_WEEKDAY = re.compile(r"([0-9]+)W")
_DOW_LAST = re.compile(r"([0-9]+|[A-Z]{3})L")
_DOW_NTH = re.compile(r"([0-9]+|[A-Z]{3})#(.*)")


def _parse_quartz(text: str, prefix: str) -> CronFields:
    parts = text.split()
    if len(parts) not in (6, 7):
        raise _fail(
            prefix,
            None,
            f"expected 6 or 7 fields (Quartz: second minute hour day-of-month month "
            f"day-of-week [year]) or 5 (Unix), got {len(parts)} in {text!r}",
        )
    raw = parts
    parts = [p.upper() for p in parts]
    seconds = _FieldParser(prefix, _SECOND, raw[0]).values()
    minutes = _FieldParser(prefix, _MINUTE, raw[1]).values()
    hours = _FieldParser(prefix, _HOUR, raw[2]).values()
    months = _FieldParser(prefix, _MONTH, raw[4]).values()
    if len(parts) == 7 and parts[6] != "*":
        years = _FieldParser(prefix, _YEAR, raw[6]).values()
    else:
        years = tuple(range(MIN_YEAR, MAX_YEAR + 1))

    dom_text, dow_text = parts[3], parts[5]
    if (dom_text == "?") == (dow_text == "?"):
        raise _fail(
            prefix,
            _DOW,
            "Quartz needs '?' in exactly one of day-of-month and day-of-week "
            f"(got {raw[3]!r} and {raw[5]!r}); e.g. '0 0 12 * * ?' or '0 0 12 ? * MON'",
        )
    flags: dict[str, int | bool] = {}
    if dom_text == "?":
        days_of_month: tuple[int, ...] = ()
        days_of_week = _parse_dow(prefix, raw[5], flags)
    else:
        days_of_week = ()
        days_of_month = _parse_dom(prefix, raw[3], flags)
    return CronFields(
        seconds=seconds,
        minutes=minutes,
        hours=hours,
        days_of_month=days_of_month,
        months=months,
        days_of_week=days_of_week,
        years=years,
        dom_any=dom_text == "?",
        **flags,  # type: ignore[arg-type]
    )


def _parse_dom(prefix: str, raw: str, flags: dict[str, int | bool]) -> tuple[int, ...]:
    parser = _FieldParser(prefix, _DOM, raw)
    text = parser.text
    match = _DOM_LAST.fullmatch(text)
    if match:
        offset = int(match.group(1)) if match.group(1) is not None else 0
        if offset > 30:
            raise parser.fail(f"offset {offset} from the last day is too large (at most 30)")
        flags["last_day_of_month"] = True
        flags["last_day_offset"] = offset
        flags["nearest_weekday"] = bool(match.group(2))
        return ()
    match = _DOM_WEEKDAY.fullmatch(text)
    if match:
        day = int(match.group(1))
        if not 1 <= day <= 31:
            raise parser.fail(f"value {day} is out of range 1-31")
        flags["nearest_weekday"] = True
        return (day,)
    if text.startswith("L-"):
        raise parser.fail("'L-n' needs a whole number n between 0 and 30")
    return parser.values()


def _parse_dow(prefix: str, raw: str, flags: dict[str, int | bool]) -> tuple[int, ...]:
    parser = _FieldParser(prefix, _DOW, raw)
    text = parser.text
    if ("," in text or "-" in text) and ("#" in text or "L" in _strip_names(text)):
        raise parser.fail(parser._special_reason())
    if text == "L":
        return (7,)
    match = _DOW_LAST.fullmatch(text)
    if match:
        flags["last_day_of_week"] = True
        return (parser.value(match.group(1)),)
    match = _DOW_NTH.fullmatch(text)
    if match:
        day = parser.value(match.group(1))
        nth = match.group(2)
        if not (_NUMBER.fullmatch(nth) and 1 <= int(nth) <= 5):
            raise parser.fail(f"'#' must be followed by a number between 1 and 5, not {nth!r}")
        flags["nth_day_of_week"] = int(nth)
        return (day,)
    return parser.values()


def _parse_unix(text: str, prefix: str) -> tuple[CronFields, ...]:
    parts = text.split()
    # Unix field i is Quartz field i + 1 (no seconds), so errors name the same fields.
    minutes = _FieldParser(prefix, _MINUTE, parts[0], unix=True).values()
    hours = _FieldParser(prefix, _HOUR, parts[1], unix=True).values()
    dom = _FieldParser(prefix, _DOM, parts[2], unix=True).values()
    months = _FieldParser(prefix, _MONTH, parts[3], unix=True).values()
    dow_unix = _FieldParser(prefix, _DOW, parts[4], unix=True).values()
    dow = tuple(sorted({value % 7 + 1 for value in dow_unix}))  # 0 and 7 = Sunday = 1
    years = tuple(range(MIN_YEAR, MAX_YEAR + 1))
    dom_star, dow_star = parts[2].startswith("*"), parts[4].startswith("*")
    dom_full, dow_full = dom == tuple(range(1, 32)), dow == tuple(range(1, 8))

    every_day = tuple(range(1, 32))

    def fields(by_dom: bool, days: tuple[int, ...] = dom) -> CronFields:
        return CronFields(
            seconds=(0,),
            minutes=minutes,
            hours=hours,
            days_of_month=days if by_dom else (),
            months=months,
            days_of_week=() if by_dom else dow,
            years=years,
            dom_any=not by_dom,
        )

    if dom_star or dow_star:
        # Vixie cron: a day field starting with '*' makes the two combine with "and".
        if dom_full:
            return (fields(by_dom=True, days=every_day) if dow_full else fields(by_dom=False),)
        if dow_full:
            return (fields(by_dom=True),)
        raise _fail(
            prefix,
            _DOW,
            f"day-of-month {parts[2]!r} and day-of-week {parts[4]!r} would combine with "
            "'and' in Unix cron (one starts with '*'), which Quartz cannot express; "
            "use a 6-field Quartz expression",
        )
    if dom_full or dow_full:  # "or" with a field that allows every day: every day
        return (fields(by_dom=True, days=every_day),)
    return (fields(by_dom=True), fields(by_dom=False))


def parse_expression(text: str, field: str = "cron") -> ParsedCron:
    """Parse a Quartz (6 or 7 fields), Unix (5 fields) or ``@`` macro expression.

    Args:
        text: The expression. Names and letters are case-insensitive; fields are separated
            by spaces or tabs.
        field: The name errors use as prefix, e.g. ``spec.cron`` gives
            ``spec.cron.day_of_week``.

    Raises:
        InvalidArgumentError: With ``field`` naming the cron field (``cron.minute``, ...) and
            a reason such as "value 61 is out of range 0-59".
    """
    if not isinstance(text, str):
        raise InvalidArgumentError(field, f"a cron expression must be a string, not {text!r}")
    stripped = text.strip()
    if not stripped:
        raise InvalidArgumentError(field, "the cron expression is empty")
    if stripped.startswith("@"):
        macro = MACROS.get(stripped.lower())
        if macro is None:
            raise InvalidArgumentError(
                field,
                f"unknown macro {stripped!r} (known: {', '.join(MACROS)})",
            )
        return ParsedCron(kind="macro", alternatives=(_parse_quartz(macro, field),))
    if len(stripped.split()) == 5:
        return ParsedCron(kind="unix", alternatives=_parse_unix(stripped, field))
    return ParsedCron(kind="quartz", alternatives=(_parse_quartz(stripped, field),))
