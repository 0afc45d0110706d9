"""Schedule math: the nominal fire times of a schedule spec, as a pure function.

:class:`ScheduleEvaluator` prepares a :class:`~cadenza.timers._spec.ScheduleSpec` once (parsed
cron, zone, calendar) and answers "what is the next nominal fire strictly after this instant?"
for every kind:

* ``cron`` — the cron expression's fire times in the schedule's zone, with the spec's ``dst``
  policy (Quartz's behaviour by default, see ``docs/cron.md``);
* ``fixed_rate`` — ``start + k * every`` (``k >= 0``); without ``start`` the grid is anchored at
  1970-01-01 00:00 *standard time* of the zone, so ``every: 15m`` fires on :00, :15, :30, :45
  and ``every: 1d`` at local midnight (standard time: in a zone with daylight-saving time a
  fixed rate is elapsed time and a daily rate fires at 01:00 in summer; use cron for wall-clock
  times);
* ``one_time`` — ``at``;
* ``fixed_delay`` — depends on when the previous run closed, so it is computed from a base
  instant with :meth:`ScheduleEvaluator.delay_due`; :meth:`ScheduleEvaluator.preview` assumes
  runs that take no time.

On top of the kind come the bounds (no fire before ``start`` or after ``end``) and the
business calendar: ``exclude`` drops a fire on a non-business day; the roll modes move it to a
business day at the same wall-clock time (several fires that land on the same instant fire
once); ``nth_business_day`` fires on the Nth business day of each month at the cron's times of
day. ``max_runs`` is a property of the schedule's state (how many runs it started), so it is
applied by the callers that know the count (:meth:`ScheduleEvaluator.upcoming` takes the number
of runs left).

Jitter is deterministic: :meth:`ScheduleEvaluator.jitter_ms` hashes the schedule id and the
nominal time into ``[0, jitter)``, so every engine computes the same actual fire time. The
nominal time (and the workflow id derived from it) never includes the jitter.

All instants are integer milliseconds since the epoch; bad input raises
:class:`~cadenza.history.InvalidArgumentError` naming the field.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from cadenza.history import InvalidArgumentError
from cadenza.timers._calendars import Calendar, get_calendar
from cadenza.timers._cron import CronDstPolicy, CronExpression, parse_cron
from cadenza.timers._spec import ScheduleSpec

__all__ = [
    "MAX_BACKFILL_FIRES",
    "FireTime",
    "ScheduleEvaluator",
    "format_nominal",
    "preview_fire_times",
]

MAX_BACKFILL_FIRES = 10_000
"""Most fire times one backfill (or one preview) may cover."""

_DAY_MS = 86_400_000
_MAX_EXCLUDED_DAYS = 800
"""Consecutive candidate days a calendar may exclude before the schedule counts as never
firing (more than two years of candidates, which no real holiday calendar does)."""
_MAX_ROLL_DAYS = 4_000
_MAX_MONTHS = 12 * 200
_ROLL_MODES = {
    "roll_following": "following",
    "roll_preceding": "preceding",
    "modified_following": "modified_following",
}


@dataclass(frozen=True, slots=True)
class FireTime:
    """One fire of a schedule.

    Attributes:
        nominal: The time the schedule stands for (it names the started workflow).
        actual: When it starts: ``nominal`` plus the schedule's deterministic jitter.
    """

    nominal: datetime
    actual: datetime


@functools.lru_cache(maxsize=4096)
def _parse_cron(expression: str) -> CronExpression:
    """Parsed expressions are immutable: schedules with the same expression share one."""
    return parse_cron(expression, field="cron")


def _ms(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def format_nominal(ms: int) -> str:
    """A nominal time as UTC ISO-8601 with ``Z``: ``2026-03-28T01:30:00Z`` (milliseconds only
    when there are some: ``2026-03-28T01:30:00.250Z``)."""
    value = _utc(ms)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if ms % 1000:
        text += f".{ms % 1000:03d}"
    return text + "Z"


class ScheduleEvaluator:
    """A schedule spec prepared for computing fire times.

    Args:
        spec: The spec (validated here again: a spec built in Python is not checked by
            ``decode_schedule_spec``).
        schedule_id: Seeds the jitter. Default empty.
        trusted: Skip re-validating the spec (it was validated when stored). Default False.

    Raises:
        InvalidArgumentError: The spec is invalid (cron, zone, bounds, interval, calendar).
    """

    def __init__(self, spec: ScheduleSpec, *, schedule_id: str = "", trusted: bool = False) -> None:
        if not trusted:
            spec.validate()
        self.spec = spec
        self.schedule_id = schedule_id
        self.kind = spec.kind
        self.zone: tzinfo = spec.tzinfo
        self.start_ms = _ms(spec.localize(spec.start)) if spec.start is not None else None
        self.end_ms = _ms(spec.localize(spec.end)) if spec.end is not None else None
        self.jitter_span = int(spec.jitter.total_seconds() * 1000)
        self.max_runs = spec.max_runs
        self.dst = CronDstPolicy.of(spec.dst)
        self.cron: CronExpression | None = None
        self.every_ms = 0
        self.at_ms: int | None = None
        if self.kind == "cron":
            self.cron = _parse_cron(spec.cron)  # type: ignore[attr-defined]
        elif self.kind in ("fixed_rate", "fixed_delay"):
            self.every_ms = int(spec.every.total_seconds() * 1000)  # type: ignore[attr-defined]
            if self.every_ms <= 0:
                raise InvalidArgumentError("every", "must be at least 1 ms")
        else:
            self.at_ms = _ms(spec.localize(spec.at))  # type: ignore[attr-defined]
        self.calendar: Calendar | None = None
        self.mode = spec.effective_calendar_mode
        if spec.calendar is not None:
            self.calendar = get_calendar(spec.calendar)
        self.nth = spec.business_day_index
        if self.kind == "fixed_delay" and self.mode in ("roll_preceding", "modified_following"):
            raise InvalidArgumentError(
                "calendar_mode",
                "a fixed delay can only wait for a business day: use exclude or roll_following",
            )

    # ------------------------------------------------------------------ local time

    def _local(self, ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, self.zone)

    def _day_start(self, day: date) -> int:
        return _ms(datetime.combine(day, time(0), tzinfo=self.zone))

    def _place(self, day: date, wall: time) -> int:
        return _ms(datetime.combine(day, wall, tzinfo=self.zone))

    def _business(self, day: date) -> bool:
        if self.calendar is None:
            return True
        try:
            return self.calendar.is_business_day(day)
        except InvalidArgumentError:
            return False  # beyond the calendar's years: no business day there

    # ------------------------------------------------------------------ raw candidates

    def _candidate_after(self, after: int) -> int | None:
        """The kind's next time strictly after ``after``, before calendar and end."""
        if self.cron is not None:
            found = self.cron.next_after(_utc(after), self.zone, self.dst)
            return None if found is None else _ms(found)
        if self.at_ms is not None:
            return self.at_ms if self.at_ms > after else None
        if self.kind == "fixed_rate":
            anchor = self.start_ms if self.start_ms is not None else self._rate_anchor(after)
            if after < anchor:
                return anchor
            return anchor + ((after - anchor) // self.every_ms + 1) * self.every_ms
        return after + 1  # fixed delay: any instant is a candidate (see delay_due)

    def _rate_anchor(self, near: int) -> int:
        local = self._local(near)
        offset = local.utcoffset() or timedelta(0)
        dst = local.dst() or timedelta(0)
        return -int((offset - dst).total_seconds() * 1000)

    # ------------------------------------------------------------------ next fire

    def next_after(self, after: int) -> int | None:
        """The first nominal fire strictly after ``after`` (epoch ms), or None if none.

        Applies ``start``, ``end`` and the calendar; not ``max_runs``. For ``fixed_delay``
        this is the first instant after ``after`` allowed by the bounds and the calendar.
        """
        if self.start_ms is not None and after < self.start_ms - 1:
            after = self.start_ms - 1
        if self.nth is not None:
            found = self._nth_next(after)
        elif self.calendar is None:
            found = self._candidate_after(after)
        elif self.mode == "exclude":
            found = self._excluded_next(after)
        else:
            found = self._rolled_next(after)
        if found is None or (self.end_ms is not None and found > self.end_ms):
            return None
        return found

    def _excluded_next(self, after: int) -> int | None:
        skipped = 0
        while skipped <= _MAX_EXCLUDED_DAYS:
            found = self._candidate_after(after)
            if found is None:
                return None
            day = self._local(found).date()
            if self._business(day):
                return found
            skipped += 1
            after = max(found, self._day_start(day + timedelta(days=1)) - 1)
        return None

    def _roll(self, day: date) -> date | None:
        if self.calendar is None or self.mode not in _ROLL_MODES:
            return day
        try:
            return self.calendar.roll(day, _ROLL_MODES[self.mode])  # type: ignore[arg-type]
        except InvalidArgumentError:
            return None

    def _rolled_next(self, after: int) -> int | None:
        """Fires are candidates moved to the business day their date rolls to, at the same
        wall time. Target days never decrease with the candidate's day, so the candidates
        are walked day by day from the last business day before ``after``; the first target
        day with a fire after ``after`` holds the answer (the earliest of its fires)."""
        if self.calendar is None:
            return self._candidate_after(after)
        after_day = self._local(after).date()
        try:
            first = self.calendar.previous_business_day(after_day) + timedelta(days=1)
        except InvalidArgumentError:
            first = after_day
        cursor = self._day_start(first) - 1
        best: int | None = None
        best_day: date | None = None
        for _ in range(_MAX_ROLL_DAYS):
            found = self._candidate_after(cursor)
            if found is None:
                break
            day = self._local(found).date()
            target = self._roll(day)
            if target is None:
                break
            if best_day is not None and target != best_day:
                break
            cursor = max(found, self._day_start(day + timedelta(days=1)) - 1)
            if target < after_day:
                continue
            placed = self._first_placed_after(found, day, target, after)
            if placed is not None and (best is None or placed < best):
                best, best_day = placed, target
        return best

    def _first_placed_after(self, found: int, day: date, target: date, after: int) -> int | None:
        """The earliest candidate of ``day`` (from ``found`` on) that lands after ``after``
        once moved to ``target``."""
        candidate: int | None = found
        if target == self._local(after).date():
            seek = self._place(day, self._local(after).time())
            if seek > found:
                candidate = self._candidate_after(seek - 1)
        for _ in range(4):  # more than one step only around a DST change
            if candidate is None or self._local(candidate).date() != day:
                return None
            placed = self._place(target, self._local(candidate).time())
            if placed > after:
                return placed
            candidate = self._candidate_after(candidate)
        return None

    def _nth_next(self, after: int) -> int | None:
        if self.calendar is None or self.nth is None:
            return self._candidate_after(after)
        local = self._local(after)
        year, month = local.year, local.month
        for _ in range(_MAX_MONTHS):
            try:
                day = self.calendar.nth_business_day(year, month, self.nth)
            except InvalidArgumentError:
                return None
            if day is not None and day >= local.date():
                lo = max(after, self._day_start(day) - 1)
                found = self._candidate_after(lo)
                if found is not None and self._local(found).date() == day:
                    return found
            month += 1
            if month > 12:
                year, month = year + 1, 1
        return None

    # ------------------------------------------------------------------ fixed delay

    def delay_due(self, base: int) -> int | None:
        """When a fixed-delay fire is due if nothing else is in the way: ``base`` itself if
        the bounds and the calendar allow it, else the first allowed instant after it (a
        non-business day waits for the next business day, same wall time)."""
        if self.start_ms is not None and base < self.start_ms:
            base = self.start_ms
        if self.calendar is not None:
            local = self._local(base)
            day = local.date()
            for _ in range(_MAX_EXCLUDED_DAYS):
                if self._business(day):
                    break
                day += timedelta(days=1)
            else:
                return None
            if day != local.date():
                base = self._place(day, local.time())
        if self.end_ms is not None and base > self.end_ms:
            return None
        return base

    # ------------------------------------------------------------------ sequences

    def first_fire(self, now: int) -> int | None:
        """The first nominal fire of a schedule created (or changed) at ``now``: a fire at
        ``now`` itself counts; for a fixed delay, ``start`` or at once."""
        if self.kind == "fixed_delay":
            return self.delay_due(now)
        return self.next_after(now - 1)

    def upcoming(self, first: int | None, count: int, runs_left: int | None = None) -> list[int]:
        """``first`` and the fires after it, at most ``count`` (and ``runs_left``) in all;
        a fixed delay assumes runs of no length."""
        out: list[int] = []
        limit = count if runs_left is None else min(count, max(0, runs_left))
        current = first
        while current is not None and len(out) < limit:
            out.append(current)
            if self.kind == "fixed_delay":
                current = self.delay_due(current + self.every_ms)
            else:
                current = self.next_after(current)
        return out

    def fires_between(self, lo: int, hi: int, limit: int) -> tuple[list[int], bool]:
        """Fires in ``(lo, hi]``, at most ``limit``; the flag says whether more exist."""
        out: list[int] = []
        current = self.next_after(lo)
        while current is not None and current <= hi:
            if len(out) >= limit:
                return out, True
            out.append(current)
            current = self.next_after(current)
        return out, False

    def last_at_or_before(self, lo: int, hi: int) -> int | None:
        """The last fire in ``(lo, hi]`` or None, found by bisection.

        ``next_after(p) <= hi`` holds exactly for the probes ``p`` before that fire, so the
        smallest probe where it fails is the fire itself; a probe that succeeds lets the search
        jump to the fire it found.
        """
        first = self.next_after(lo)
        if first is None or first > hi:
            return None
        left, right = first - 1, hi  # next_after(left) <= hi; next_after(right) > hi
        while right - left > 1:
            mid = (left + right) // 2
            found = self.next_after(mid)
            if found is not None and found <= hi:
                left = max(mid, found - 1)
            else:
                right = mid
        return right

    # ------------------------------------------------------------------ jitter and checks

    def jitter_ms(self, nominal: int) -> int:
        """Deterministic delay of the fire at ``nominal``: in ``[0, jitter)`` milliseconds,
        from ``sha256(schedule id, nominal)``."""
        if self.jitter_span <= 0:
            return 0
        digest = hashlib.sha256(f"{self.schedule_id}\x00{nominal}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.jitter_span

    def check_fires(self, now: int, *, require_fire: bool = True) -> None:
        """Reject a schedule that would never fire after ``now``.

        A calendar that excludes every fire the schedule would otherwise have is always an
        error (field ``calendar``, or ``nth_business_day``). With ``require_fire``, so is a
        schedule without any fire left (field ``at``, ``end`` or ``cron``).

        Raises:
            InvalidArgumentError: Naming the field and the reason.
        """
        if self.first_fire(now) is not None:
            return
        if self.calendar is not None:
            bare = ScheduleEvaluator(_without_calendar(self.spec), schedule_id=self.schedule_id)
            if bare.first_fire(now) is not None:
                field = "nth_business_day" if self.nth is not None else "calendar"
                raise InvalidArgumentError(
                    field,
                    f"calendar {self.calendar.name!r} excludes every fire time of the schedule",
                )
        if not require_fire:
            return
        when = format_nominal(now)
        if self.end_ms is not None and self.end_ms < now:
            raise InvalidArgumentError("end", f"is in the past ({when}): the schedule never fires")
        if self.kind == "one_time":
            raise InvalidArgumentError("at", f"is in the past ({when}): the schedule never fires")
        raise InvalidArgumentError(self.kind_field, f"has no fire time after {when}")

    @property
    def kind_field(self) -> str:
        """The field that defines the kind's times: ``cron``, ``every`` or ``at``."""
        return {"cron": "cron", "one_time": "at"}.get(self.kind, "every")

    def preview(self, after: int, count: int) -> list[FireTime]:
        """The next ``count`` fires after ``after`` with their actual times (``max_runs``
        applies; a fixed delay starts at ``start`` or ``after`` and assumes runs of no
        length)."""
        first = self.delay_due(after) if self.kind == "fixed_delay" else self.next_after(after)
        return [
            FireTime(nominal=_utc(n), actual=_utc(n + self.jitter_ms(n)))
            for n in self.upcoming(first, count, self.max_runs)
        ]


def _without_calendar(spec: ScheduleSpec) -> ScheduleSpec:
    import msgspec

    return msgspec.structs.replace(spec, calendar=None, calendar_mode=None, nth_business_day=None)


def preview_fire_times(
    spec: ScheduleSpec,
    *,
    after: datetime | None = None,
    count: int = 10,
    schedule_id: str = "",
) -> list[FireTime]:
    """The next fire times of a spec, without creating a schedule.

    Args:
        spec: The schedule spec.
        after: Start after this instant (aware); default now.
        count: How many (1..10000). Default 10.
        schedule_id: Seeds the jitter (the fires of the created schedule jitter by the same
            amounts only with the same id).

    Raises:
        InvalidArgumentError: A bad spec, ``after`` or ``count``.
    """
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 10_000:
        raise InvalidArgumentError("count", f"must be between 1 and 10000, got {count!r}")
    if after is None:
        after = datetime.now(UTC)
    if after.tzinfo is None or after.utcoffset() is None:
        raise InvalidArgumentError("after", "must be timezone-aware")
    evaluator = ScheduleEvaluator(spec, schedule_id=schedule_id)
    evaluator.check_fires(_ms(after), require_fire=False)
    return evaluator.preview(_ms(after), count)
