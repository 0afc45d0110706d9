"""Cron expressions: Quartz-compatible parsing and next fire times, with DST policies.

>>> from zoneinfo import ZoneInfo
>>> from datetime import datetime, timezone
>>> expr = parse_cron("0 30 9 ? * MON-FRI")
>>> expr.next_after(datetime(2026, 1, 2, 3, 0, tzinfo=timezone.utc), ZoneInfo("Asia/Ho_Chi_Minh"))
datetime.datetime(2026, 1, 5, 2, 30, tzinfo=datetime.timezone.utc)

Three syntaxes are accepted (``docs/cron.md`` is the reference):

* Quartz, 6 or 7 fields: ``second minute hour day-of-month month day-of-week [year]``;
* Unix, 5 fields: ``minute hour day-of-month month day-of-week`` (second 0, day of week 0-7
  with 0 and 7 = Sunday, and Vixie cron's "or" when both day fields are restricted);
* the macros ``@yearly @annually @monthly @weekly @daily @midnight @hourly``.

By default next fire times are exactly Quartz's (``CronExpression.getNextValidTimeAfter``),
including on the days the clocks change; a :class:`CronDstPolicy` chooses other rules for
wall times that do not exist or occur twice.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cadenza.history import InvalidArgumentError
from cadenza.timers._cron_next import ZoneTable, policy_next, quartz_next, zone_table
from cadenza.timers._cron_parse import CronFields, parse_expression

__all__ = [
    "AmbiguousTime",
    "CronDstPolicy",
    "CronExpression",
    "NonexistentTime",
    "parse_cron",
]


class NonexistentTime(enum.StrEnum):
    """What a wall time that does not exist (clocks jump forward over it) does.

    * ``quartz`` — as Quartz does (see :class:`CronDstPolicy`);
    * ``skip`` — it does not fire that day;
    * ``shift_forward`` — it fires at the instant it becomes when moved forward by the length
      of the gap: 02:30 fires at 03:30 when 02:00 jumps to 03:00 (once, even if 03:30 is a
      fire time of its own).
    """

    QUARTZ = "quartz"
    SKIP = "skip"
    SHIFT_FORWARD = "shift_forward"


class AmbiguousTime(enum.StrEnum):
    """What a wall time that occurs twice (clocks fall back over it) does.

    * ``quartz`` — as Quartz does (see :class:`CronDstPolicy`);
    * ``first`` — fires at its first occurrence (daylight time) only;
    * ``last`` — fires at its second occurrence (standard time) only;
    * ``both`` — fires at both.
    """

    QUARTZ = "quartz"
    FIRST = "first"
    LAST = "last"
    BOTH = "both"


@dataclass(frozen=True, slots=True)
class CronDstPolicy:
    """Rules for the days the clocks change.

    With both fields ``quartz`` (the default) fire times are exactly Quartz's, quirks
    included: a wall time in a spring-forward gap is read as the time the same distance after
    the gap (02:30 -> 03:30), but Quartz's search often steps over it (a daily
    ``0 30 2 * * ?`` does not fire on that day, an hourly ``0 30 * * * ?`` fires at 03:30
    once); a wall time that occurs twice fires at its second occurrence only, and a search
    starting inside the first occurrence of the repeated hour jumps to the second one.

    Any other combination uses the explicit rules of :class:`NonexistentTime` and
    :class:`AmbiguousTime`; a field left at ``quartz`` then means its closest explicit rule
    (``shift_forward`` and ``last``).

    Attributes:
        nonexistent: See :class:`NonexistentTime`. Default ``quartz``.
        ambiguous: See :class:`AmbiguousTime`. Default ``quartz``.
    """

    nonexistent: NonexistentTime = NonexistentTime.QUARTZ
    ambiguous: AmbiguousTime = AmbiguousTime.QUARTZ

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "nonexistent", _coerce(NonexistentTime, self.nonexistent, "dst.nonexistent")
        )
        object.__setattr__(
            self, "ambiguous", _coerce(AmbiguousTime, self.ambiguous, "dst.ambiguous")
        )

    @property
    def is_quartz(self) -> bool:
        """True when both rules are Quartz's."""
        return self.nonexistent is NonexistentTime.QUARTZ and self.ambiguous is AmbiguousTime.QUARTZ

    @classmethod
    def of(cls, value: Any) -> CronDstPolicy:
        """Coerce ``None``, a :class:`CronDstPolicy`, a mapping, or any object with
        ``nonexistent`` and ``ambiguous`` attributes (such as the schedule spec's
        ``DstPolicy``) into a :class:`CronDstPolicy`."""
        if value is None:
            return QUARTZ_POLICY
        if isinstance(value, CronDstPolicy):
            return value
        if isinstance(value, dict):
            unknown = set(value) - {"nonexistent", "ambiguous"}
            if unknown:
                raise InvalidArgumentError("dst", f"unknown fields {sorted(unknown)}")
            return cls(**value)
        try:
            return cls(nonexistent=value.nonexistent, ambiguous=value.ambiguous)
        except AttributeError:
            raise InvalidArgumentError(
                "dst", f"expected a DST policy, got {type(value).__name__}"
            ) from None


def _coerce(kind: type[enum.StrEnum], value: Any, field: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise InvalidArgumentError(field, f"unknown value {value!r} (one of: {choices})") from None


QUARTZ_POLICY = CronDstPolicy()


def _epoch_seconds(instant: datetime, field: str) -> int:
    if not isinstance(instant, datetime):
        raise InvalidArgumentError(field, f"expected a datetime, got {type(instant).__name__}")
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise InvalidArgumentError(field, "the instant must be timezone-aware")
    # Whole seconds, rounded down (Quartz ignores milliseconds too).
    delta = instant - _EPOCH
    return delta.days * 86400 + delta.seconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _zone(tz: tzinfo | str) -> tzinfo:
    if isinstance(tz, tzinfo):
        return tz
    if isinstance(tz, str):
        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise InvalidArgumentError("tz", f"unknown time zone {tz!r}") from None
    raise InvalidArgumentError("tz", f"expected a time zone, got {type(tz).__name__}")


def _to_datetime(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class CronExpression:
    """A parsed cron expression. Immutable; parse with :func:`parse_cron`.

    Attributes:
        expression: The text as given (stripped).
        kind: ``quartz``, ``unix`` or ``macro``.
        alternatives: The Quartz model (one :class:`CronFields`, or two for a Unix expression
            whose day-of-month and day-of-week combine with "or").
    """

    __slots__ = ("_never", "alternatives", "expression", "kind")

    def __init__(self, expression: str, *, field: str = "cron") -> None:
        parsed = parse_expression(expression, field)
        self.expression = expression.strip()
        self.kind = parsed.kind
        self.alternatives: tuple[CronFields, ...] = parsed.alternatives
        self._never = all(_never_fires(f) for f in self.alternatives)

    def __repr__(self) -> str:
        return f"CronExpression({self.expression!r})"

    def __str__(self) -> str:
        return self.expression

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CronExpression):
            return NotImplemented
        return self.alternatives == other.alternatives

    def __hash__(self) -> int:
        return hash(self.alternatives)

    @property
    def quartz(self) -> tuple[str, ...]:
        """The equivalent Quartz expression(s), values spelled out: one, or two whose fire
        times together are this expression's (a Unix "day-of-month or day-of-week")."""
        return tuple(f.to_quartz() for f in self.alternatives)

    def next_after(
        self, instant: datetime, tz: tzinfo | str, dst: CronDstPolicy | Any = None
    ) -> datetime | None:
        """The first fire time strictly after ``instant``.

        Args:
            instant: An aware datetime, in any zone. Fractions of a second are dropped.
            tz: The zone whose wall clock the expression reads (e.g.
                ``ZoneInfo("Asia/Ho_Chi_Minh")``, or its IANA name).
            dst: A :class:`CronDstPolicy` (or anything :meth:`CronDstPolicy.of` accepts);
                None means Quartz's behaviour.

        Returns:
            An aware UTC datetime, or None when the expression never fires again (before the
            end of 2199).

        Raises:
            InvalidArgumentError: ``instant`` is naive, ``tz`` is not a known zone, or
                ``dst`` is not a policy.
        """
        after = _epoch_seconds(instant, "after")
        policy = CronDstPolicy.of(dst)
        result = self._next(after, _zone(tz), policy)
        return None if result is None else _to_datetime(result)

    def fire_times(
        self,
        after: datetime,
        tz: tzinfo | str,
        *,
        count: int | None = None,
        dst: CronDstPolicy | Any = None,
    ) -> Iterator[datetime]:
        """The fire times after ``after``, in order (aware UTC datetimes).

        Args:
            after: An aware datetime; the first fire time is strictly after it.
            tz: The zone of the expression.
            count: Stop after this many; None for as long as there are (up to 2199).
            dst: DST policy, as for :meth:`next_after`.
        """
        current = _epoch_seconds(after, "after")
        policy = CronDstPolicy.of(dst)
        zone = _zone(tz)
        if count is not None and count < 0:
            raise InvalidArgumentError("count", f"must not be negative, got {count}")
        return self._iterate(current, zone, policy, count)

    def _iterate(
        self, current: int, tz: tzinfo, policy: CronDstPolicy, count: int | None
    ) -> Iterator[datetime]:
        produced = 0
        while count is None or produced < count:
            found = self._next(current, tz, policy)
            if found is None:
                return
            yield _to_datetime(found)
            produced += 1
            current = found

    def next_times(
        self, after: datetime, tz: tzinfo | str, count: int, *, dst: CronDstPolicy | Any = None
    ) -> list[datetime]:
        """The next ``count`` fire times after ``after`` (fewer if the expression ends)."""
        return list(self.fire_times(after, tz, count=count, dst=dst))

    # ---------------------------------------------------------------------------- internals

    def _next(self, after: int, tz: tzinfo, policy: CronDstPolicy) -> int | None:
        if self._never:
            return None
        table = zone_table(tz)
        best: int | None = None
        for fields in self.alternatives:
            if policy.is_quartz:
                found = _quartz_fire(fields, after, table)
            else:
                skip = policy.nonexistent is NonexistentTime.SKIP
                if policy.ambiguous is AmbiguousTime.BOTH:
                    first = policy_next(fields, after, table, skip, False)
                    last = policy_next(fields, after, table, skip, True)
                    found = _min(first, last)
                else:
                    last = policy.ambiguous is not AmbiguousTime.FIRST
                    found = policy_next(fields, after, table, skip, last)
            best = _min(best, found)
        return best


def _min(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _quartz_fire(fields: CronFields, after: int, table: ZoneTable) -> int | None:
    """Quartz's next fire after ``after`` (epoch seconds) in the zone of ``table``.

    Fast path: walk on plain wall-clock time, then check that the zone's offset is the same
    from three days before the start (Quartz's ``W`` rules look back at earlier days) to the
    result; then the wall time and the instant differ by that offset and nothing in between
    could have been moved by a transition. Otherwise, walk again with the zone's transitions.
    """
    start_instant = after + 1
    start = table.to_local(start_instant)
    wall = quartz_next(fields, start, None, start)
    if wall is not None:
        offset = table.steady_offset(start - _LOOK_BACK, wall + _DAY_SECONDS)
        if offset is not None:
            return wall - offset
    elif table.steady_offset(start - _LOOK_BACK, start + _DAY_SECONDS) is not None:
        return None
    return _quartz_exact(fields, start, start_instant, table)


_DAY_SECONDS = 86400
_LOOK_BACK = 3 * _DAY_SECONDS


def _quartz_exact(
    fields: CronFields, start: int, start_instant: int, table: ZoneTable
) -> int | None:
    wall = quartz_next(fields, start, table, start_instant)
    return None if wall is None else table.java_instant(wall)


def _never_fires(f: CronFields) -> bool:
    """True for day-of-month lists no allowed month has (``31 4,6,9,11``, ``30 2``), and for
    ``29 2`` with years that are all common years: Quartz searches to its horizon and gives
    up; this answers at once."""
    if f.dom_any or f.last_day_of_month or f.nearest_weekday:
        return False
    longest = max(_longest_month(m, f.years) for m in f.months)
    return f.days_of_month[0] > longest


def _longest_month(month: int, years: tuple[int, ...]) -> int:
    if month != 2:
        return (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month]
    leap = any(y % 4 == 0 and (y % 100 != 0 or y % 400 == 0) for y in years)
    return 29 if leap else 28


def parse_cron(expression: str, *, field: str = "cron") -> CronExpression:
    """Parse a Quartz, Unix or macro cron expression.

    Args:
        expression: E.g. ``"0 0/15 8-17 ? * MON-FRI"``, ``"*/5 * * * *"`` or ``"@daily"``.
        field: Name used in errors (``cron.day_of_week`` ...); e.g. ``spec.cron``.

    Raises:
        InvalidArgumentError: The expression is not valid; ``field`` names the cron field
            and ``reason`` says what is wrong.
    """
    return CronExpression(expression, field=field)
