"""Business calendars from plain data (job files): parsing and validation.

The format (YAML shown; JSON is the same data)::

    name: acme-bank
    weekend: [sat, sun]            # default
    substitute: next_workday       # none (default) | next_workday | nearest
    include: [VN]                  # optional: union with registered calendars
    holidays:
      - {date: 2025-12-24, name: Christmas Eve}
      - {date: 2025-12-29, until: 2025-12-31, name: Year-end closing}
      - {fixed: "12-25", name: Christmas}
      - {lunar: "01-15", name: Rằm tháng Giêng}
      - {lunar: "12-last", name: Last day of the lunar year}
      - {lunar_range: {from: "12-last", to: "01-04"}, name: Tết}
      - {nth_weekday: {month: 11, weekday: thu, n: 4}, name: Thanksgiving}
      - {bridge: "09-02", name: National Day (second day)}
    makeup_workdays:
      - {date: 2025-04-26, name: Làm bù cho thứ Sáu 2/5}

Every rule entry (``fixed``, ``lunar``, ``lunar_range``, ``nth_weekday``, ``bridge``) also takes
``substitute`` (bool, default true), ``first_year`` and ``last_year``. Errors name the field by
its path, e.g. ``holidays[3].lunar``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from cadenza.history import InvalidArgumentError
from cadenza.timers._calendar_rules import (
    BridgeDay,
    FixedDate,
    HolidayRule,
    LunarDay,
    LunarSpan,
    NthWeekday,
    expand_range,
    parse_weekday,
)
from cadenza.timers._calendars import (
    BusinessCalendar,
    Calendar,
    CompositeCalendar,
    get_calendar,
)

__all__ = ["calendar_from_dict"]

_TOP_KEYS = {
    "name",
    "weekend",
    "substitute",
    "include",
    "holidays",
    "makeup_workdays",
    "description",
}
_RULE_KINDS = ("date", "fixed", "lunar", "lunar_range", "nth_weekday", "bridge")
_COMMON_KEYS = {"name", "substitute", "first_year", "last_year"}
_MONTH_DAY = re.compile(r"^\s*(\d{1,2})-(\d{1,2}|last)\s*$")


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(where, f"must be a mapping, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise InvalidArgumentError(where, f"keys must be strings, got {key!r}")
    return value


def _unknown(value: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(value) - allowed)
    if extra:
        prefix = f"{where}." if where else ""
        raise InvalidArgumentError(
            f"{prefix}{extra[0]}", f"unknown field; allowed: {', '.join(sorted(allowed))}"
        )


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(where, "must be a non-empty string")
    return value.strip()


def _date(value: object, where: str) -> date:
    if isinstance(value, date):
        return value.date() if hasattr(value, "hour") else value  # type: ignore[union-attr]
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise InvalidArgumentError(where, f"must be a date YYYY-MM-DD, got {value!r}")


def _month_day(value: object, where: str, *, allow_last: bool) -> tuple[int, int]:
    match = _MONTH_DAY.match(value) if isinstance(value, str) else None
    if match is None or (match.group(2) == "last" and not allow_last):
        expected = "MM-DD or MM-last" if allow_last else "MM-DD"
        raise InvalidArgumentError(where, f"must be {expected}, got {value!r}")
    month = int(match.group(1))
    day = -1 if match.group(2) == "last" else int(match.group(2))
    if not 1 <= month <= 12:
        raise InvalidArgumentError(where, f"month must be 1..12, got {month}")
    if day != -1 and not 1 <= day <= 31:
        raise InvalidArgumentError(where, f"day must be 1..31, got {day}")
    return month, day


def _year(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1800 <= value <= 2200:
        raise InvalidArgumentError(where, f"must be a year 1800..2200, got {value!r}")
    return value


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgumentError(where, f"must be true or false, got {value!r}")
    return value


def _relabel(exc: InvalidArgumentError, where: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{where}.{exc.field}" if exc.field else where, exc.reason)


def _rule(item: Mapping[str, Any], kind: str, where: str) -> HolidayRule:
    name = _text(item.get("name"), f"{where}.name")
    common: dict[str, Any] = {
        "name": name,
        "first_year": _year(item.get("first_year"), f"{where}.first_year"),
        "last_year": _year(item.get("last_year"), f"{where}.last_year"),
    }
    if "substitute" in item:
        common["substitute"] = _bool(item["substitute"], f"{where}.substitute")
    spot = f"{where}.{kind}"
    value = item[kind]
    try:
        if kind == "fixed":
            _unknown(item, _COMMON_KEYS | {"fixed"}, where)
            month, day = _month_day(value, spot, allow_last=False)
            return FixedDate(month=month, day=day, **common)
        if kind == "bridge":
            _unknown(item, _COMMON_KEYS | {"bridge"}, where)
            month, day = _month_day(value, spot, allow_last=False)
            return BridgeDay(month=month, day=day, **common)
        if kind == "lunar":
            _unknown(item, _COMMON_KEYS | {"lunar", "leap"}, where)
            month, day = _month_day(value, spot, allow_last=True)
            leap = _bool(item.get("leap", False), f"{where}.leap")
            return LunarDay(month=month, day=day, leap=leap, **common)
        if kind == "lunar_range":
            _unknown(item, _COMMON_KEYS | {"lunar_range"}, where)
            span = _mapping(value, spot)
            _unknown(span, {"from", "to"}, spot)
            for key in ("from", "to"):
                if key not in span:
                    raise InvalidArgumentError(f"{spot}.{key}", "is required")
            sm, sd = _month_day(span["from"], f"{spot}.from", allow_last=True)
            em, ed = _month_day(span["to"], f"{spot}.to", allow_last=True)
            return LunarSpan(start_month=sm, start_day=sd, end_month=em, end_day=ed, **common)
        # nth_weekday
        _unknown(item, _COMMON_KEYS | {"nth_weekday"}, where)
        spec = _mapping(value, spot)
        _unknown(spec, {"month", "weekday", "n"}, spot)
        for key in ("month", "weekday", "n"):
            if key not in spec:
                raise InvalidArgumentError(f"{spot}.{key}", "is required")
        weekday = parse_weekday(spec["weekday"], f"{spot}.weekday")
        return NthWeekday(month=spec["month"], weekday=weekday, n=spec["n"], **common)
    except InvalidArgumentError as exc:
        if exc.field.startswith(where):
            raise
        if exc.field in _COMMON_KEYS:
            raise _relabel(exc, where) from None
        raise _relabel(exc, spot) from None


def calendar_from_dict(data: object) -> Calendar:
    """Build a calendar from plain data (see the module docstring for the format).

    Returns:
        A :class:`BusinessCalendar`, or a :class:`CompositeCalendar` when ``include`` names
        other calendars.

    Raises:
        InvalidArgumentError: naming the offending field by its path.
    """
    spec = _mapping(data, "calendar")
    _unknown(spec, _TOP_KEYS, "")
    if "name" not in spec:
        raise InvalidArgumentError("name", "is required")
    name = _text(spec["name"], "name")
    weekend = spec.get("weekend", ["sat", "sun"])
    if not isinstance(weekend, list | tuple):
        raise InvalidArgumentError("weekend", f"must be a list of weekday names, got {weekend!r}")
    rules: list[HolidayRule] = []
    holidays: list[tuple[date, str]] = []
    raw_holidays = spec.get("holidays", [])
    if not isinstance(raw_holidays, list | tuple):
        raise InvalidArgumentError("holidays", "must be a list")
    for i, raw in enumerate(raw_holidays):
        where = f"holidays[{i}]"
        item = _mapping(raw, where)
        kinds = [k for k in _RULE_KINDS if k in item]
        if len(kinds) != 1:
            raise InvalidArgumentError(
                where,
                f"needs exactly one of {', '.join(_RULE_KINDS)}; got "
                f"{', '.join(kinds) if kinds else 'none'}",
            )
        if kinds[0] == "date":
            _unknown(item, {"date", "until", "name"}, where)
            first = _date(item["date"], f"{where}.date")
            last = _date(item["until"], f"{where}.until") if "until" in item else first
            label = _text(item.get("name"), f"{where}.name")
            holidays.extend((d, label) for d in expand_range(first, last, f"{where}.until"))
        else:
            rules.append(_rule(item, kinds[0], where))
    makeup: list[tuple[date, str]] = []
    raw_makeup = spec.get("makeup_workdays", [])
    if not isinstance(raw_makeup, list | tuple):
        raise InvalidArgumentError("makeup_workdays", "must be a list")
    for i, raw in enumerate(raw_makeup):
        where = f"makeup_workdays[{i}]"
        item = _mapping(raw, where)
        _unknown(item, {"date", "name"}, where)
        if "date" not in item:
            raise InvalidArgumentError(f"{where}.date", "is required")
        makeup.append(
            (_date(item["date"], f"{where}.date"), _text(item.get("name"), f"{where}.name"))
        )
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise InvalidArgumentError("description", "must be a string")
    own = BusinessCalendar(
        name,
        weekend=weekend,
        rules=rules,
        holidays=holidays,
        makeup_workdays=makeup,
        substitute=spec.get("substitute", "none"),
        description=description,
    )
    include = spec.get("include", [])
    if not isinstance(include, list | tuple):
        raise InvalidArgumentError("include", "must be a list of calendar names")
    if not include:
        return own
    members: list[Calendar] = []
    for i, other in enumerate(include):
        if not isinstance(other, str):
            raise InvalidArgumentError(f"include[{i}]", f"must be a calendar name, got {other!r}")
        try:
            members.append(get_calendar(other))
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"include[{i}]", exc.reason) from None
    return CompositeCalendar(name, [*members, own], description=description)
