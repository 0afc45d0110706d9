"""Filters of the job expression language: ``{{ value | name(args) }}``.

Every filter is a pure function of the context's time zone, the piped value and its
arguments, so a replayed workflow renders the same text. Date helpers compute on the wall clock
of the schedule's zone: ``{{ schedule.nominal_time | yesterday }}`` is the day before the
nominal fire time *there*, whatever the machine's zone or the hour a retry runs.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import msgspec

from cadenza.engine._job_values import (
    EvalError,
    MissingError,
    TemplateContext,
    is_number,
    stringify,
    type_name,
    zone_named,
)

__all__ = ["FILTERS", "FilterFn", "localize"]


FilterFn = Callable[..., Any]
FILTERS: dict[str, FilterFn] = {}


def _filter(name: str) -> Callable[[FilterFn], FilterFn]:
    def register(fn: FilterFn) -> FilterFn:
        FILTERS[name] = fn
        return fn

    return register


@_filter("default")
def _f_default(ctx: TemplateContext, value: Any, fallback: Any = None) -> Any:
    """``x | default(y)``: ``y`` when ``x`` is null or missing (handled in _apply_filter)."""
    return fallback if value is None else value  # pragma: no cover - see _apply_filter


def localize(value: datetime, ctx: TemplateContext) -> datetime:
    zone = ctx.zone
    return value.replace(tzinfo=zone) if value.tzinfo is None else value.astimezone(zone)


def _as_datetime(ctx: TemplateContext, value: Any, name: str) -> datetime:
    """An aware date-time: aware values keep their zone (``schedule.nominal_time`` is already
    in the schedule's zone, ``utc``/``in_zone`` chose another); naive values, dates, text and
    Unix seconds are read in the schedule's zone."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=ctx.zone)
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=ctx.zone)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            return localize(datetime.fromisoformat(text), ctx)
        except ValueError:
            pass
    if is_number(value):
        return datetime.fromtimestamp(value, tz=UTC).astimezone(ctx.zone)
    raise EvalError(f"filter {name!r} needs a date or date-time, got {type_name(value)}")


def _as_date(ctx: TemplateContext, value: Any, name: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    return _as_datetime(ctx, value, name).date()


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return day.replace(year=year, month=month + 1, day=min(day.day, last))


@_filter("date_add")
def _f_date_add(
    ctx: TemplateContext,
    value: Any,
    *,
    years: int = 0,
    months: int = 0,
    weeks: float = 0,
    days: float = 0,
    hours: float = 0,
    minutes: float = 0,
    seconds: float = 0,
) -> date | datetime:
    """Add calendar units, on the wall clock of the schedule's zone.

    ``months``/``years`` keep the day of month, clamped to the month's end (Jan 31 + 1 month is
    Feb 28/29). A date stays a date when only whole days, weeks, months or years are added.
    """
    for label, amount in (("years", years), ("months", months)):
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise EvalError(f"date_add: {label} must be an integer")
    delta = timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
    if (
        isinstance(value, date)
        and not isinstance(value, datetime)
        and delta % timedelta(days=1) == timedelta(0)
    ):
        return _add_months(value, years * 12 + months) + delta
    moment = _as_datetime(ctx, value, "date_add")
    shifted_day = _add_months(moment.date(), years * 12 + months)
    wall = datetime.combine(shifted_day, moment.timetz().replace(tzinfo=None)) + delta
    return wall.replace(tzinfo=ctx.zone)


@_filter("format")
def _f_format(ctx: TemplateContext, value: Any, pattern: str = "%Y-%m-%d") -> str:
    """``strftime`` in the schedule's zone (``%Y-%m-%d`` by default)."""
    if not isinstance(pattern, str):
        raise EvalError("format: the pattern must be a string")
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.strftime(pattern)
    return _as_datetime(ctx, value, "format").strftime(pattern)


@_filter("date")
def _f_date(ctx: TemplateContext, value: Any) -> date:
    """The calendar date in the schedule's zone."""
    return _as_date(ctx, value, "date")


@_filter("today")
def _f_today(ctx: TemplateContext, value: Any) -> date:
    """The date of the value (e.g. of the nominal time) in the schedule's zone."""
    return _as_date(ctx, value, "today")


@_filter("yesterday")
def _f_yesterday(ctx: TemplateContext, value: Any) -> date:
    """The day before the value's date, in the schedule's zone (the batch's logical date)."""
    return _as_date(ctx, value, "yesterday") - timedelta(days=1)


@_filter("tomorrow")
def _f_tomorrow(ctx: TemplateContext, value: Any) -> date:
    """The day after the value's date, in the schedule's zone."""
    return _as_date(ctx, value, "tomorrow") + timedelta(days=1)


@_filter("start_of_day")
def _f_start_of_day(ctx: TemplateContext, value: Any) -> datetime:
    """Midnight at the start of the value's day, in the schedule's zone."""
    return datetime.combine(_as_date(ctx, value, "start_of_day"), time(0), tzinfo=ctx.zone)


@_filter("start_of_week")
def _f_start_of_week(ctx: TemplateContext, value: Any) -> date:
    """The Monday of the value's week."""
    day = _as_date(ctx, value, "start_of_week")
    return day - timedelta(days=day.weekday())


@_filter("start_of_month")
def _f_start_of_month(ctx: TemplateContext, value: Any) -> date:
    """The first day of the value's month."""
    return _as_date(ctx, value, "start_of_month").replace(day=1)


@_filter("end_of_month")
def _f_end_of_month(ctx: TemplateContext, value: Any) -> date:
    """The last day of the value's month."""
    day = _as_date(ctx, value, "end_of_month")
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


@_filter("start_of_year")
def _f_start_of_year(ctx: TemplateContext, value: Any) -> date:
    """January 1st of the value's year."""
    return _as_date(ctx, value, "start_of_year").replace(month=1, day=1)


@_filter("end_of_year")
def _f_end_of_year(ctx: TemplateContext, value: Any) -> date:
    """December 31st of the value's year."""
    return _as_date(ctx, value, "end_of_year").replace(month=12, day=31)


@_filter("iso")
def _f_iso(ctx: TemplateContext, value: Any) -> str:
    """ISO-8601 text of a date or date-time (date-times in the schedule's zone)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    return _as_datetime(ctx, value, "iso").isoformat()


@_filter("utc")
def _f_utc(ctx: TemplateContext, value: Any) -> datetime:
    """The date-time in UTC."""
    return _as_datetime(ctx, value, "utc").astimezone(UTC)


@_filter("in_zone")
def _f_inzone_named(ctx: TemplateContext, value: Any, zone: str) -> datetime:
    """The date-time in another zone: ``| inzone_named("UTC")``."""
    return _as_datetime(ctx, value, "in_zone").astimezone(zone_named(str(zone)))


@_filter("timestamp")
def _f_timestamp(ctx: TemplateContext, value: Any) -> int:
    """Unix seconds of the date-time."""
    return int(_as_datetime(ctx, value, "timestamp").timestamp())


@_filter("json")
def _f_json(ctx: TemplateContext, value: Any) -> str:
    """The value encoded as JSON."""
    return msgspec.json.encode(value).decode()


@_filter("string")
def _f_string(ctx: TemplateContext, value: Any) -> str:
    """The value as text (as it would be embedded in a string)."""
    return stringify(value)


@_filter("int")
def _f_int(ctx: TemplateContext, value: Any) -> int:
    """The value as an integer (from a number or numeric text)."""
    if isinstance(value, bool) or value is None:
        raise EvalError(f"int: cannot convert {type_name(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise EvalError("int: cannot convert a non-finite number")
    return int(value.strip()) if isinstance(value, str) else int(value)


@_filter("float")
def _f_float(ctx: TemplateContext, value: Any) -> float:
    """The value as a number."""
    if isinstance(value, bool) or value is None:
        raise EvalError(f"float: cannot convert {type_name(value)}")
    return float(value)


@_filter("round")
def _f_round(ctx: TemplateContext, value: Any, digits: int = 0) -> float | int:
    """Round a number to ``digits`` decimals (an integer when ``digits`` is 0)."""
    if not is_number(value) or not isinstance(digits, int):
        raise EvalError("round: needs a number and an integer number of digits")
    return round(value) if digits == 0 else round(value, digits)


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise EvalError(f"filter {name!r} needs a string, got {type_name(value)}")
    return value


@_filter("upper")
def _f_upper(ctx: TemplateContext, value: Any) -> str:
    """Upper-case text."""
    return _text(value, "upper").upper()


@_filter("lower")
def _f_lower(ctx: TemplateContext, value: Any) -> str:
    """Lower-case text."""
    return _text(value, "lower").lower()


@_filter("trim")
def _f_trim(ctx: TemplateContext, value: Any) -> str:
    """Text without leading and trailing white space."""
    return _text(value, "trim").strip()


@_filter("replace")
def _f_replace(ctx: TemplateContext, value: Any, old: str, new: str) -> str:
    """Text with every ``old`` replaced by ``new``."""
    return _text(value, "replace").replace(_text(old, "replace"), _text(new, "replace"))


@_filter("split")
def _f_split(ctx: TemplateContext, value: Any, separator: str = ",") -> list[str]:
    """Text split on ``separator`` (``,`` by default)."""
    sep = _text(separator, "split")
    if not sep:
        raise EvalError("split: the separator must not be empty")
    return _text(value, "split").split(sep)


@_filter("join")
def _f_join(ctx: TemplateContext, value: Any, separator: str = ",") -> str:
    """A list joined into text with ``separator`` (``,`` by default)."""
    if not isinstance(value, list | tuple):
        raise EvalError(f"join: needs a list, got {type_name(value)}")
    return _text(separator, "join").join(stringify(item) for item in value)


@_filter("length")
def _f_length(ctx: TemplateContext, value: Any) -> int:
    """Number of items of a list or mapping, or characters of text."""
    if not isinstance(value, list | tuple | str | Mapping):
        raise EvalError(f"length: needs a list, a mapping or a string, got {type_name(value)}")
    return len(value)


@_filter("first")
def _f_first(ctx: TemplateContext, value: Any) -> Any:
    """The first item of a list."""
    if not isinstance(value, list | tuple) or not value:
        raise MissingError(f"first: needs a non-empty list, got {type_name(value)}")
    return value[0]


@_filter("last")
def _f_last(ctx: TemplateContext, value: Any) -> Any:
    """The last item of a list."""
    if not isinstance(value, list | tuple) or not value:
        raise MissingError(f"last: needs a non-empty list, got {type_name(value)}")
    return value[-1]


@_filter("keys")
def _f_keys(ctx: TemplateContext, value: Any) -> list[Any]:
    """The keys of a mapping."""
    if not isinstance(value, Mapping):
        raise EvalError(f"keys: needs a mapping, got {type_name(value)}")
    return list(value)


@_filter("chunk")
def _f_chunk(ctx: TemplateContext, value: Any, size: int) -> list[list[Any]]:
    """A list cut into lists of ``size`` items (for ``for_each`` over batches)."""
    if not isinstance(value, list | tuple):
        raise EvalError(f"chunk: needs a list, got {type_name(value)}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise EvalError("chunk: size must be a positive integer")
    return [list(value[i : i + size]) for i in range(0, len(value), size)]
