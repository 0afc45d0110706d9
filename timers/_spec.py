"""Schedule specifications: what a schedule fires on, and its policies.

A schedule spec is data: it says *when* (a cron expression, a fixed rate, a fixed delay after the
previous run, or one instant), in which time zone, between which bounds, with which calendar
rules, and what to do with missed fires and overlapping runs. Computing fire times is the job of
the schedule engine; this module only defines, decodes and validates the spec.

The four kinds are one tagged union (the ``kind`` field is the tag)::

    {"kind": "cron", "cron": "0 0 2 * * ?"}
    {"kind": "fixed_rate", "every": "15m", "start": "2025-01-01T00:00:00+07:00"}
    {"kind": "fixed_delay", "every": "30s"}
    {"kind": "one_time", "at": "2025-02-01T09:00:00+07:00"}

Every kind shares the fields of :class:`ScheduleSpec`. Durations are accepted in the human form
(``30s``, ``5m``, ``1h30m``, ``2d``), in ISO-8601 (``PT5M``) or as integer seconds by
:func:`coerce_builtins` / :func:`decode_schedule_spec`; in Python they are ``timedelta``.
Naive date-times (``2025-02-01T09:00``) are wall-clock times in the schedule's time zone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, tzinfo
from typing import Annotated, Any, ClassVar, Literal, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from msgspec import Meta

from cadenza.history import InvalidArgumentError

__all__ = [
    "DEFAULT_TIMEZONE",
    "AnyScheduleSpec",
    "CatchUpPolicy",
    "CronSchedule",
    "DstPolicy",
    "FixedDelaySchedule",
    "FixedRateSchedule",
    "OneTimeSchedule",
    "ScheduleSpec",
    "SpecFieldError",
    "coerce_builtins",
    "decode_schedule_spec",
    "format_duration",
    "format_path",
    "parse_duration",
    "translate_validation_error",
    "type_info_at",
]

DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"
"""The zone a schedule uses when it names none."""

_DURATION_DOC = (
    "A duration: '30s', '5m', '1h30m', '2d', '1w', '250ms', ISO-8601 'PT5M', or integer seconds."
)
Duration: TypeAlias = Annotated[
    timedelta, Meta(extra_json_schema={"x-cadenza-duration": True, "description": _DURATION_DOC})
]
"""A ``timedelta`` field that files may spell ``30s``, ``1h30m``, ``PT5M`` or ``90``."""

DateTime: TypeAlias = Annotated[
    datetime,
    Meta(
        description=(
            "An ISO-8601 date-time such as 2025-01-31T09:00:00+07:00, or a date. Without an "
            "offset it is wall-clock time in the schedule's time zone."
        )
    ),
]
"""A ``datetime`` field; naive values are wall-clock time in the schedule's zone."""

_SCHEDULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# --------------------------------------------------------------------------- paths and errors


class SpecFieldError(InvalidArgumentError):
    """A field of a spec or job file cannot be accepted.

    Attributes:
        path: The field as a tuple of keys and list indexes (``("schedules", 0, "every")``);
            ``field`` is the same path formatted by :func:`format_path`.
    """

    def __init__(self, path: tuple[str | int, ...], reason: str) -> None:
        super().__init__(format_path(path) or "<root>", reason)
        self.path = path


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def format_path(path: tuple[str | int, ...] | list[str | int]) -> str:
    """Format a field path as ``jobs[0].steps[2].retry``.

    Keys that are not identifiers are quoted: ``config.headers["Content-Type"]`` stays
    ``config.headers.Content-Type`` only when the key is a plain name.
    """
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENT.match(part):
            out.append(f".{part}" if out else part)
        else:
            out.append("[" + msgspec.json.encode(part).decode() + "]")
    return "".join(out)


# --------------------------------------------------------------------------- durations

_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_HUMAN = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_HUMAN_FULL = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$")
_ISO = re.compile(
    r"^P(?:(?P<w>\d+(?:[.,]\d+)?)W)?(?:(?P<d>\d+(?:[.,]\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:[.,]\d+)?)H)?(?:(?P<m>\d+(?:[.,]\d+)?)M)?(?:(?P<s>\d+(?:[.,]\d+)?)S)?)?$"
)


def parse_duration(value: Any, *, field: str = "duration") -> timedelta:
    """Parse a duration as written in a file or an API body.

    Accepts a ``timedelta``; integer (or float) seconds; the human form made of
    ``<number><unit>`` groups with units ``ms s m h d w`` (``30s``, ``1h30m``, ``1.5h``); and
    ISO-8601 durations without years or months (``PT5M``, ``P1DT2H``). Zero is accepted here;
    fields that need a positive interval check that themselves.

    Raises:
        InvalidArgumentError: The value is not a duration or is negative.
    """
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, bool):
        raise InvalidArgumentError(field, f"expected a duration, got {_show(value)}")
    elif isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidArgumentError(field, f"expected a duration, got {_show(value)}")
        result = timedelta(seconds=value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise InvalidArgumentError(field, "expected a duration, got an empty string")
        result = _parse_duration_text(text, field)
    else:
        raise InvalidArgumentError(field, f"expected a duration, got {_show(value)}")
    if result < timedelta(0):
        raise InvalidArgumentError(field, f"must not be negative, got {_show(value)}")
    return result


def _parse_duration_text(text: str, field: str) -> timedelta:
    if re.fullmatch(r"-?\d+(?:\.\d+)?", text):
        return timedelta(seconds=float(text))
    lowered = text.lower()
    if _HUMAN_FULL.match(lowered):
        seen: set[str] = set()
        seconds = 0.0
        for number, unit in _HUMAN.findall(lowered):
            if unit in seen:
                raise InvalidArgumentError(field, f"unit {unit!r} given twice in {text!r}")
            seen.add(unit)
            seconds += float(number) * _UNIT_SECONDS[unit]
        return timedelta(seconds=seconds)
    upper = text.upper()
    if upper.startswith("P"):
        match = _ISO.match(upper)
        if match and upper not in ("P", "PT") and not upper.endswith("T"):
            parts = {
                k: float(v.replace(",", ".")) if v else 0.0 for k, v in match.groupdict().items()
            }
            return timedelta(
                weeks=parts["w"],
                days=parts["d"],
                hours=parts["h"],
                minutes=parts["m"],
                seconds=parts["s"],
            )
        if re.match(r"^P(?:\d+Y)?(?:\d+M)?", upper) and (
            "Y" in upper.split("T")[0] or "M" in upper.split("T")[0]
        ):
            raise InvalidArgumentError(
                field, f"{text!r}: years and months have no fixed length; use days or weeks"
            )
    if text.startswith("-"):
        raise InvalidArgumentError(field, f"must not be negative, got {_show(text)}")
    raise InvalidArgumentError(
        field,
        f"expected a duration such as '30s', '5m', '1h30m', '2d', 'PT5M' or seconds, "
        f"got {_show(text)}",
    )


def format_duration(value: timedelta) -> str:
    """Format a duration in the human form (``1h30m``, ``2d``, ``250ms``; ``0s`` for zero)."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    sign = "-" if total_ms < 0 else ""
    total_ms = abs(total_ms)
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, total_ms = divmod(total_ms, size)
        if count:
            out.append(f"{count}{unit}")
    if total_ms:
        out.append(f"{total_ms}ms")
    return sign + "".join(out)


def _show(value: Any) -> str:
    if isinstance(value, str):
        text = msgspec.json.encode(value).decode()
    elif isinstance(value, bool) or value is None:
        text = {True: "true", False: "false", None: "null"}[value]
    elif isinstance(value, dict):
        text = "a mapping"
    elif isinstance(value, list | tuple):
        text = "a list"
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- coercion

StructHook = Callable[[Any, tuple[str | int, ...]], Any]


def coerce_builtins(
    data: Any,
    type_: Any,
    *,
    path: tuple[str | int, ...] = (),
    hooks: Mapping[type, StructHook] | None = None,
) -> Any:
    """Rewrite the lenient spellings of a file into what ``msgspec.convert`` accepts.

    Walks ``data`` alongside the type: every ``timedelta`` position gets
    :func:`parse_duration`, every ``datetime`` position accepts ISO strings (with a space or
    ``T``, with or without seconds, ``Z``) and plain dates (midnight). ``hooks`` maps a Struct
    class to a function that rewrites the raw value found where that struct is expected (used
    by job files for variables written as plain values). Everything else is left for
    ``msgspec.convert`` to check.

    Raises:
        SpecFieldError: A duration or date-time cannot be parsed (with the field path).
    """
    info = msgspec.inspect.type_info(type_)
    return _coerce(data, info, path, hooks or {})


def _coerce(
    data: Any, info: Any, path: tuple[str | int, ...], hooks: Mapping[type, StructHook]
) -> Any:
    mi = msgspec.inspect
    if isinstance(info, mi.Metadata):
        return _coerce(data, info.type, path, hooks)
    if isinstance(info, mi.TimeDeltaType):
        if isinstance(data, str | int | float) and not isinstance(data, bool):
            try:
                return parse_duration(data, field=format_path(path))
            except InvalidArgumentError as exc:
                raise SpecFieldError(path, exc.reason) from None
        return data
    if isinstance(info, mi.DateTimeType):
        return _coerce_datetime(data, path)
    if isinstance(info, mi.StructType):
        hook = hooks.get(info.cls)
        if hook is not None:
            data = hook(data, path)
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for field in info.fields:
            if field.encode_name in out:
                key = field.encode_name
                out[key] = _coerce(out[key], field.type, (*path, key), hooks)
        return out
    if isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        if isinstance(data, list):
            return [_coerce(item, info.item_type, (*path, i), hooks) for i, item in enumerate(data)]
        return data
    if isinstance(info, mi.DictType):
        if isinstance(data, dict):
            return {k: _coerce(v, info.value_type, (*path, k), hooks) for k, v in data.items()}
        return data
    if isinstance(info, mi.UnionType):
        return _coerce_union(data, info, path, hooks)
    return data


def _coerce_union(
    data: Any, info: Any, path: tuple[str | int, ...], hooks: Mapping[type, StructHook]
) -> Any:
    mi = msgspec.inspect
    members = [t.type if isinstance(t, mi.Metadata) else t for t in info.types]
    if data is None:
        return data
    if isinstance(data, dict):
        structs = [t for t in members if isinstance(t, mi.StructType)]
        tagged = [t for t in structs if t.tag_field is not None]
        if tagged:
            tag_field = tagged[0].tag_field
            chosen = [t for t in tagged if t.tag == data.get(tag_field)]
            if len(chosen) == 1:
                return _coerce(data, chosen[0], path, hooks)
            return data
        if len(structs) == 1:
            return _coerce(data, structs[0], path, hooks)
        dicts = [t for t in members if isinstance(t, mi.DictType)]
        if len(dicts) == 1:
            return _coerce(data, dicts[0], path, hooks)
        return data
    if isinstance(data, list):
        lists = [t for t in members if isinstance(t, mi.ListType)]
        return _coerce(data, lists[0], path, hooks) if len(lists) == 1 else data
    for member in members:
        if isinstance(member, mi.TimeDeltaType) and (
            isinstance(data, int | float) and not isinstance(data, bool)
        ):
            return _coerce(data, member, path, hooks)
        # A string where a literal string is also allowed stays a string.
        if (
            isinstance(member, mi.TimeDeltaType | mi.DateTimeType)
            and isinstance(data, str)
            and not any(isinstance(m, mi.StrType | mi.LiteralType) for m in members)
        ):
            return _coerce(data, member, path, hooks)
        if isinstance(member, mi.DateTimeType) and isinstance(data, date):
            return _coerce(data, member, path, hooks)
    return data


def _coerce_datetime(data: Any, path: tuple[str | int, ...]) -> Any:
    if isinstance(data, datetime):
        return data
    if isinstance(data, date):
        return datetime(data.year, data.month, data.day)
    if isinstance(data, str):
        text = data.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            raise SpecFieldError(
                path,
                "expected an ISO-8601 date-time such as 2025-01-31T09:00:00+07:00, "
                f"got {_show(data)}",
            ) from None
    return data


# --------------------------------------------------------------------------- msgspec errors

_MSGSPEC_PATH = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[\.\.\.\]")
_TYPE_WORDS = {
    "int": "an integer",
    "str": "a string",
    "float": "a number",
    "bool": "a boolean (true or false)",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
    "duration": "a duration",
    "datetime": "a date-time",
    "date": "a date",
}


def _parse_msgspec_path(text: str) -> tuple[str | int, ...]:
    out: list[str | int] = []
    for match in _MSGSPEC_PATH.finditer(text):
        if match.group(1) is not None:
            out.append(match.group(1))
        elif match.group(2) is not None:
            out.append(int(match.group(2)))
        else:
            break  # a dict key msgspec does not name: point at the mapping
    return tuple(out)


def _value_at(data: Any, path: tuple[str | int, ...]) -> tuple[bool, Any]:
    for part in path:
        in_list = (
            isinstance(part, int) and isinstance(data, list) and -len(data) <= part < len(data)
        )
        in_dict = isinstance(part, str) and isinstance(data, dict) and part in data
        if not (in_list or in_dict):
            return False, None
        data = data[part]
    return True, data


def type_info_at(type_: Any, path: tuple[str | int, ...], data: Any) -> Any:
    """The ``msgspec.inspect`` info of the position ``path`` of ``data`` decoded as ``type_``.

    Tagged unions are resolved with the tag found in ``data``. Returns ``None`` when the path
    leaves the typed part (e.g. inside a ``dict[str, Any]``).
    """
    mi = msgspec.inspect
    info: Any = mi.type_info(type_)
    for depth in range(len(path) + 1):
        info = _unwrap(info, data, path[:depth])
        if depth == len(path) or info is None:
            return info
        part = path[depth]
        if isinstance(info, mi.StructType) and isinstance(part, str):
            info = next((f.type for f in info.fields if f.encode_name == part), None)
        elif isinstance(info, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
            info = info.item_type
        elif isinstance(info, mi.DictType):
            info = info.value_type
        else:
            return None
    return info


def _unwrap(info: Any, data: Any, path: tuple[str | int, ...]) -> Any:
    mi = msgspec.inspect
    while isinstance(info, mi.Metadata):
        info = info.type
    if not isinstance(info, mi.UnionType):
        return info
    found, value = _value_at(data, path)
    members = [t.type if isinstance(t, mi.Metadata) else t for t in info.types]
    if found and isinstance(value, dict):
        structs = [t for t in members if isinstance(t, mi.StructType)]
        tagged = [t for t in structs if t.tag_field]
        if tagged:
            return next((t for t in tagged if t.tag == value.get(tagged[0].tag_field)), None)
        if len(structs) == 1:
            return structs[0]
    if found and isinstance(value, list):
        lists = [t for t in members if isinstance(t, mi.ListType)]
        if len(lists) == 1:
            return lists[0]
    non_null = [t for t in members if not isinstance(t, mi.NoneType)]
    return non_null[0] if len(non_null) == 1 else info


def _allowed_values(info: Any) -> list[str]:
    mi = msgspec.inspect
    while isinstance(info, mi.Metadata):
        info = info.type
    if isinstance(info, mi.LiteralType):
        return [str(v) for v in info.values]
    if isinstance(info, mi.UnionType):
        out: list[str] = []
        for member in info.types:
            out.extend(_allowed_values(member))
        return out
    return []


def translate_validation_error(
    exc: msgspec.ValidationError, data: Any, type_: Any, *, prefix: tuple[str | int, ...] = ()
) -> SpecFieldError:
    """Turn msgspec's message into a :class:`SpecFieldError` with a full path and plain words.

    ``Expected `int`, got `str` - at `$.retry.maximum_attempts``` becomes the field
    ``retry.maximum_attempts`` with the reason ``expected an integer, got "three"`` (the value
    is read from ``data``). Unknown and missing fields are named in the path, with a
    "did you mean" hint for near misses.
    """
    import difflib

    text = str(exc)
    message, sep, where = text.rpartition(" - at `$")
    if not sep:
        message, where = text, ""
    path = _parse_msgspec_path(where.rstrip("`"))
    found, value = _value_at(data, path)
    reason = message
    mi = msgspec.inspect
    if m := re.match(r"Object contains unknown field `(.*)`$", message):
        name = m.group(1)
        info = type_info_at(type_, path, data)
        hint = ""
        if isinstance(info, mi.StructType):
            known = [f.encode_name for f in info.fields]
            close = difflib.get_close_matches(name, known, n=1)
            hint = (
                f"; did you mean {close[0]!r}?" if close else f"; known fields: {', '.join(known)}"
            )
        path, reason = (*path, name), "unknown field" + hint
    elif m := re.match(r"Object missing required field `(.*)`$", message):
        tags = _tag_values(type_, path, m.group(1))
        reason = "missing required field" + (f" (one of {', '.join(tags)})" if tags else "")
        path = (*path, m.group(1))
    elif m := re.match(r"Expected `([^`]*)`, got `([^`]*)`$", message):
        expected = " or ".join(_TYPE_WORDS.get(t.strip(), t.strip()) for t in m.group(1).split("|"))
        got = _show(value) if found else _TYPE_WORDS.get(m.group(2), m.group(2))
        reason = f"expected {expected}, got {got}"
    elif m := re.match(r"Expected `([^`]*)` (.*)$", message):
        kind = _TYPE_WORDS.get(m.group(1), m.group(1))
        if m.group(2) == "of length >= 1" and found and not value:
            reason = "must not be empty"
        else:
            reason = f"expected {kind} {m.group(2)}" + (f", got {_show(value)}" if found else "")
    elif m := re.match(r"Invalid (?:enum )?value (.*)$", message):
        allowed = _allowed_values(type_info_at(type_, path, data))
        if not allowed and path and path[-1] != "":
            parent = type_info_at(type_, path[:-1], data)
            if isinstance(parent, mi.UnionType):
                allowed = [str(t.tag) for t in parent.types if isinstance(t, mi.StructType)]
        if not allowed:
            allowed = _tag_values(type_, path[:-1], path[-1] if path else None)
        got = _show(value) if found else m.group(1)
        reason = (
            f"expected one of {', '.join(allowed)}, got {got}"
            if allowed
            else f"invalid value {got}"
        )
    elif message:
        reason = message[0].lower() + message[1:]
    return SpecFieldError((*prefix, *path), reason)


def _tag_values(type_: Any, parent: tuple[str | int, ...], key: str | int | None) -> list[str]:
    """The tags of the tagged union expected at ``parent`` when ``key`` is its tag field."""
    mi = msgspec.inspect
    info: Any = mi.type_info(type_)
    for part in parent:
        while isinstance(info, mi.Metadata):
            info = info.type
        if isinstance(info, mi.UnionType):
            return []
        if isinstance(info, mi.StructType) and isinstance(part, str):
            info = next((f.type for f in info.fields if f.encode_name == part), None)
        elif isinstance(info, mi.ListType | mi.VarTupleType):
            info = info.item_type
        elif isinstance(info, mi.DictType):
            info = info.value_type
        else:
            return []
    while isinstance(info, mi.Metadata):
        info = info.type
    if isinstance(info, mi.UnionType):
        tags = [t for t in info.types if isinstance(t, mi.StructType) and t.tag_field == key]
        return [str(t.tag) for t in tags]
    return []


# --------------------------------------------------------------------------- policies


class _Spec(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Base of the spec structs."""


class DstPolicy(_Spec, kw_only=True):
    """What a schedule does on the days the clocks change.

    ``quartz`` (the default of both fields) behaves exactly as Quartz's ``CronExpression``:
    a local time that does not exist (spring forward) fires at the first instant after the
    gap, and a local time that occurs twice (fall back) fires once, at its first occurrence.

    Attributes:
        nonexistent: For a local time skipped by the clock: ``quartz``; ``skip`` (no fire that
            day); ``shift_forward`` (fire at the same offset after the gap, e.g. 02:30 becomes
            03:30 when 02:00 jumps to 03:00).
        ambiguous: For a local time that occurs twice: ``quartz``; ``first`` (the earlier
            instant); ``last`` (the later one); ``both`` (fire at both instants).
    """

    nonexistent: Literal["quartz", "skip", "shift_forward"] = "quartz"
    ambiguous: Literal["quartz", "first", "last", "both"] = "quartz"


class CatchUpPolicy(_Spec, kw_only=True):
    """What a schedule does with fires it missed (the engine was down, or the schedule paused).

    A fire that is late by at most ``window`` is not a misfire: it runs normally. A fire that
    is later than that is *missed*, and ``mode`` decides:

    * ``all`` — run every missed fire, oldest first (each keeps its own nominal time);
    * ``latest`` — run only the most recent missed fire, once, now; drop the others;
    * ``none`` — run none; wait for the next fire.

    Quartz's misfire instructions map as follows (Quartz's ``misfireThreshold``, 60 s by
    default, is ``window``):

    ========================================================  ===============================
    Quartz                                                    Cadenza
    ========================================================  ===============================
    ``MISFIRE_INSTRUCTION_SMART_POLICY`` (cron) /
    ``MISFIRE_INSTRUCTION_FIRE_ONCE_NOW`` ("fire now")        ``mode: latest`` (the default)
    ``MISFIRE_INSTRUCTION_IGNORE_MISFIRE_POLICY``             ``mode: all``, ``window: null``
    ``MISFIRE_INSTRUCTION_DO_NOTHING``                        ``mode: none``
    ``RESCHEDULE_NEXT_WITH_REMAINING_COUNT`` (simple trigger) ``mode: none``
    ``RESCHEDULE_NOW_WITH_EXISTING_COUNT`` (simple trigger)   ``mode: latest``
    ========================================================  ===============================

    Attributes:
        window: How late a fire may be and still run as if on time; ``None`` means any
            lateness counts as on time (then ``all`` runs every missed fire). Default 60 s.
        mode: ``all``, ``latest`` (default) or ``none``, see above.
    """

    window: Duration | None = timedelta(seconds=60)
    mode: Literal["all", "latest", "none"] = "latest"


OverlapPolicy: TypeAlias = Literal[
    "skip", "buffer_one", "buffer_all", "cancel_other", "terminate_other", "allow_all"
]
"""What a fire does while the previous run of the schedule still runs:

* ``skip`` (default) — drop this fire;
* ``buffer_one`` — start it when the running one ends; at most one waits (later fires replace
  none: extra fires are dropped);
* ``buffer_all`` — start every buffered fire in order, one after another;
* ``cancel_other`` — request cancellation of the running one, then start;
* ``terminate_other`` — terminate the running one at once, then start;
* ``allow_all`` — start regardless; runs overlap.
"""

CalendarMode: TypeAlias = Literal[
    "exclude", "roll_following", "roll_preceding", "modified_following"
]


# --------------------------------------------------------------------------- specs


class ScheduleSpec(_Spec, tag_field="kind", kw_only=True):
    """Fields shared by every kind of schedule. Use one of the four subclasses.

    Attributes:
        id: Optional stable name of the schedule inside its job file (letters, digits,
            ``_ . -``); job files use it to derive the schedule id, so reordering the list
            keeps identities. Default: empty (the position is used).
        timezone: IANA zone of the schedule's wall-clock times. Default ``Asia/Ho_Chi_Minh``.
        start: No fire before this instant. Naive values are wall-clock in ``timezone``.
            Fixed-rate schedules are aligned to it.
        end: No fire after this instant; must be after ``start``.
        jitter: Each fire is delayed by a random amount in ``[0, jitter)``, derived from the
            schedule id and nominal time so that every engine computes the same. Default 0.
        max_runs: Stop after this many fires (``None``: no limit).
        calendar: Name of a business calendar (holidays and make-up working days).
        calendar_mode: What a fire that lands on a non-business day of ``calendar`` does:
            ``exclude`` (dropped; the default when a calendar is named), ``roll_following``
            (moved to the next business day, same time), ``roll_preceding`` (the previous
            one), ``modified_following`` (the next one unless that is in the next month,
            then the previous one). Needs ``calendar``.
        nth_business_day: Fire on the Nth business day of each month (1 = first, 2 = second,
            ...; -1 = last, -2 = second to last; ``last`` is -1), at the times of day of the
            cron expression (whose day-of-month and day-of-week fields must be ``*`` or
            ``?``). A month with fewer business days has no fire. Cron schedules only; needs
            ``calendar``.
        dst: Behaviour on daylight-saving changes, see :class:`DstPolicy`. Default: Quartz's.
        catch_up: Missed-fire policy, see :class:`CatchUpPolicy`.
        overlap: Overlap policy, see :data:`OverlapPolicy`. Default ``skip``.
        paused: A paused schedule does not fire. Default false.
        note: Free text, e.g. why the schedule is paused.
    """

    kinds: ClassVar[tuple[str, ...]] = ("cron", "fixed_rate", "fixed_delay", "one_time")

    id: str = ""
    timezone: str = DEFAULT_TIMEZONE
    start: DateTime | None = None
    end: DateTime | None = None
    jitter: Duration = timedelta(0)
    max_runs: Annotated[int, Meta(gt=0)] | None = None
    calendar: str | None = None
    calendar_mode: CalendarMode | None = None
    nth_business_day: Annotated[int, Meta(ge=-23, le=23)] | Literal["last"] | None = None
    dst: DstPolicy = DstPolicy()
    catch_up: CatchUpPolicy = CatchUpPolicy()
    overlap: OverlapPolicy = "skip"
    paused: bool = False
    note: str = ""

    @property
    def kind(self) -> str:
        """The kind tag: ``cron``, ``fixed_rate``, ``fixed_delay`` or ``one_time``."""
        return str(type(self).__struct_config__.tag)

    @property
    def tzinfo(self) -> tzinfo:
        """The schedule's zone (raises ``InvalidArgumentError`` when it is unknown)."""
        return _zone(self.timezone, "timezone")

    @property
    def business_day_index(self) -> int | None:
        """``nth_business_day`` as a number: ``last`` is -1."""
        return -1 if self.nth_business_day == "last" else self.nth_business_day

    @property
    def effective_calendar_mode(self) -> CalendarMode | None:
        """``calendar_mode``, defaulting to ``exclude`` when a calendar is named."""
        if self.calendar is None:
            return None
        return self.calendar_mode or "exclude"

    def localize(self, value: datetime) -> datetime:
        """Return ``value`` as an aware date-time; a naive one is wall-clock in ``timezone``."""
        if value.tzinfo is None:
            return value.replace(tzinfo=self.tzinfo)
        return value

    def errors(self) -> list[InvalidArgumentError]:
        """Every problem of this spec, each naming the field and the reason (empty: valid).

        Checks the zone, ``start`` < ``end``, positive intervals, ``jitter`` ≥ 0, calendar
        options, and the cron syntax (with ``cadenza.timers._cron`` when it is installed).
        """
        problems: list[InvalidArgumentError] = []

        def bad(field: str, reason: str) -> None:
            problems.append(InvalidArgumentError(field, reason))

        if self.id and not _SCHEDULE_ID.match(self.id):
            bad("id", f"{self.id!r} is not a valid schedule id (letters, digits, '_', '.', '-')")
        zone_ok = True
        try:
            _zone(self.timezone, "timezone")
        except InvalidArgumentError as exc:
            zone_ok = False
            problems.append(exc)
        if (
            zone_ok
            and self.start is not None
            and self.end is not None
            and self.localize(self.end) <= self.localize(self.start)
        ):
            bad("end", f"must be after start ({self.start.isoformat()})")
        if self.jitter < timedelta(0):
            bad("jitter", "must not be negative")
        if self.catch_up.window is not None and self.catch_up.window < timedelta(0):
            bad("catch_up.window", "must not be negative")
        if self.calendar is not None and not self.calendar.strip():
            bad("calendar", "must not be empty")
        if self.calendar_mode is not None and self.calendar is None:
            bad("calendar_mode", "needs a calendar")
        if self.nth_business_day is not None:
            if self.nth_business_day == 0:
                bad("nth_business_day", "must not be 0 (1 is the first, -1 the last)")
            if self.calendar is None:
                bad("nth_business_day", "needs a calendar")
            if self.kind != "cron":
                bad("nth_business_day", "is only allowed on cron schedules")
        problems.extend(self._kind_errors(zone_ok))
        return problems

    def validate(self) -> None:
        """Raise the first problem found by :meth:`errors`.

        Raises:
            InvalidArgumentError: Naming the field and the reason.
        """
        problems = self.errors()
        if problems:
            raise problems[0]

    def _kind_errors(self, zone_ok: bool) -> list[InvalidArgumentError]:
        return []


class CronSchedule(ScheduleSpec, tag="cron", kw_only=True):
    """Fires at the times of a Quartz cron expression (seconds field first; 5-field Unix cron
    and ``@daily``-style macros are accepted too).

    Attributes:
        cron: The expression, e.g. ``0 0 2 * * ?`` (02:00 every day).
    """

    cron: str

    def _kind_errors(self, zone_ok: bool) -> list[InvalidArgumentError]:
        expr = self.cron.strip()
        if not expr:
            return [InvalidArgumentError("cron", "must not be empty")]
        problems: list[InvalidArgumentError] = []
        error = cron_syntax_error(expr)
        if error is not None:
            problems.append(InvalidArgumentError("cron", error))
        elif self.nth_business_day is not None:
            fields = expr.split()
            if expr.lower() in ("@daily", "@midnight", "@hourly"):
                fields = ["0", "0", "0", "*", "*", "?"]
            day_fields = (
                (fields[3], fields[5])
                if len(fields) in (6, 7)
                else (fields[2], fields[4])
                if len(fields) == 5
                else ("x",)
            )
            if any(f not in ("*", "?") for f in day_fields):
                problems.append(
                    InvalidArgumentError(
                        "cron",
                        "with nth_business_day, the day-of-month and day-of-week fields "
                        "must be '*' or '?'",
                    )
                )
        return problems


class FixedRateSchedule(ScheduleSpec, tag="fixed_rate", kw_only=True):
    """Fires every ``every``, aligned to ``start`` (without ``start``: to 1970-01-01 00:00 in
    the schedule's zone, so ``every: 1d`` fires at local midnight).

    Attributes:
        every: The interval; must be positive.
    """

    every: Duration

    def _kind_errors(self, zone_ok: bool) -> list[InvalidArgumentError]:
        if self.every <= timedelta(0):
            return [InvalidArgumentError("every", "must be a positive interval")]
        return []


class FixedDelaySchedule(ScheduleSpec, tag="fixed_delay", kw_only=True):
    """Fires ``every`` after the previous run *finished* (the first fire at ``start``, or at
    once when the schedule is created).

    Attributes:
        every: The delay; must be positive.
    """

    every: Duration

    def _kind_errors(self, zone_ok: bool) -> list[InvalidArgumentError]:
        if self.every <= timedelta(0):
            return [InvalidArgumentError("every", "must be a positive interval")]
        return []


class OneTimeSchedule(ScheduleSpec, tag="one_time", kw_only=True):
    """Fires once, at ``at``.

    Attributes:
        at: The instant; naive values are wall-clock in ``timezone``.
    """

    at: DateTime

    def _kind_errors(self, zone_ok: bool) -> list[InvalidArgumentError]:
        if not zone_ok:
            return []
        problems = []
        at = self.localize(self.at)
        if self.start is not None and at < self.localize(self.start):
            problems.append(InvalidArgumentError("at", "is before start"))
        if self.end is not None and at > self.localize(self.end):
            problems.append(InvalidArgumentError("at", "is after end"))
        return problems


AnyScheduleSpec: TypeAlias = CronSchedule | FixedRateSchedule | FixedDelaySchedule | OneTimeSchedule
"""The tagged union of the four kinds (use it as a field type)."""


def cron_syntax_error(expr: str) -> str | None:
    """Return why ``expr`` is not a valid cron expression, or ``None`` when it is valid.

    Uses the cron parser of ``cadenza.timers._cron`` (``parse_cron``, or
    ``CronExpression.parse``); when that module is not installed the syntax is not checked.
    """
    try:
        from cadenza.timers import _cron
    except ImportError:
        return None
    parse = getattr(_cron, "parse_cron", None) or getattr(_cron.CronExpression, "parse", None)
    if parse is None:
        return None
    try:
        parse(expr)
    except InvalidArgumentError as exc:
        where = exc.field.removeprefix("cron").lstrip(".")
        return f"{where}: {exc.reason}" if where else exc.reason
    return None


def _zone(name: str, field: str) -> ZoneInfo:
    if not name or not name.strip():
        raise InvalidArgumentError(field, "must name a time zone, e.g. Asia/Ho_Chi_Minh")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidArgumentError(field, f"unknown time zone {name!r}") from None


def decode_schedule_spec(data: Any) -> ScheduleSpec:
    """Build and validate a spec from builtins (a decoded JSON/YAML mapping).

    Raises:
        InvalidArgumentError: The data is not a valid spec (field path and reason).
    """
    coerced = coerce_builtins(data, AnyScheduleSpec)
    try:
        spec: ScheduleSpec = msgspec.convert(coerced, AnyScheduleSpec)
    except msgspec.ValidationError as exc:
        raise translate_validation_error(exc, coerced, AnyScheduleSpec) from None
    problems = spec.errors()
    if problems:
        raise problems[0]
    return spec
