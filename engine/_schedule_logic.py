"""Deciding what a schedule does: one atomic change of one schedule, without I/O.

A :class:`ScheduleChange` starts from the schedule as read (spec, action, state, the head of
its audit chain) and applies one operation — create, update, pause, unpause, delete, trigger,
backfill, a due fire, a run that closed — like :class:`~cadenza.engine._mutation.Mutation` does
for executions: every decision appends an audit event, runs to start are collected as
:class:`PlannedStart` (their workflow ids are derived from the nominal time), work on other
executions (cancel or terminate a running run) becomes transfer tasks, and
:meth:`ScheduleChange.to_write` hands the lot to the store, which commits it only if the
schedule's ``version`` did not move (compare-and-swap).

Two inputs come from the database and are passed in, so that the decision stays pure:
``existing`` (derived workflow ids that already have a run: a fire of one is recorded as
``already_started`` instead of starting it twice) and ``run_status`` (the current status of the
runs the schedule believes running, so that a close whose notification was delayed is seen).

The policies:

* **catch-up** (``spec.catch_up``): a fire whose due time (nominal plus jitter) is at most
  ``window`` ago runs normally. Older ones are *missed*: ``all`` runs them, oldest first;
  ``latest`` runs the most recent one (only when no fire is on time) and drops the others;
  ``none`` drops them. Dropped fires are recorded as one ``fired`` event (``skipped:
  missed``, the first and last nominal times, the count).
* **overlap** (``spec.overlap``, or the override of a trigger or backfill), when a run of the
  schedule is still running: ``skip`` drops the fire; ``buffer_one`` keeps one waiting (further
  fires are dropped); ``buffer_all`` keeps them all (up to 1000), started one after another as
  runs close; ``cancel_other`` and ``terminate_other`` ask the running runs to stop and keep
  the fire waiting until they have closed; ``allow_all`` starts it at once.

A change processes at most :data:`MAX_FIRES_PER_CHANGE` fires; when more are due (a long
outage with ``catch_up.mode: all``, a backfill) the fire timer is set to *now* and the next
change continues, so no transaction grows with the backlog.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from cadenza.engine._schedule_api import (
    OVERLAP_POLICIES,
    BackfillCursor,
    PendingFire,
    ScheduleAction,
    ScheduleRun,
    ScheduleState,
    scheduled_workflow_id,
)
from cadenza.history import InvalidArgumentError, TimerRecord
from cadenza.history._schedule_records import (
    FieldChange,
    ScheduleAlreadyExistsError,
    ScheduleBackfillRequested,
    ScheduleCreated,
    ScheduleDeleted,
    ScheduleEventAttributes,
    ScheduleFired,
    ScheduleHead,
    ScheduleNotFoundError,
    ScheduleOverlapAction,
    SchedulePaused,
    ScheduleRecord,
    ScheduleRunClosed,
    ScheduleTriggered,
    ScheduleUnpaused,
    ScheduleUpdated,
    ScheduleWrite,
    schedule_genesis_hash,
)
from cadenza.timers._calendars import calendar_generation, calendar_overlay_active
from cadenza.timers._schedule_eval import MAX_BACKFILL_FIRES, ScheduleEvaluator, format_nominal
from cadenza.timers._spec import AnyScheduleSpec, ScheduleSpec

SYSTEM_IDENTITY = "cadenza"
"""Who the audit log names for fires and closes."""

TIMER_KIND = "schedule_fire"
"""Kind of a schedule's fire timer row in the ``timers`` table."""

START_KIND = "schedule_start"
"""A message timer in a workflow's shard: its owner starts the scheduled run."""

REPORT_KIND = "schedule_report"
"""A message timer in a schedule's shard: a run it started began (``attempt`` = outcome) or
closed."""

STOP_KIND = "schedule_stop"
"""A message timer in a run's shard: its owner cancels (``attempt`` 1) or terminates (2) it."""

START_OUTCOMES = ("started", "already_started", "start_failed")
"""``attempt`` of a start report is the index of its outcome here."""

MAX_FIRES_PER_CHANGE = 100
MAX_RECENT_RUNS = 10
MAX_BUFFERED = 1000
MAX_TRACKED_RUNS = 200
_MISSED_COUNT_CAP = MAX_BACKFILL_FIRES

_SPEC_DECODER = msgspec.json.Decoder(AnyScheduleSpec)
_ACTION_DECODER = msgspec.json.Decoder(ScheduleAction)
_STATE_DECODER = msgspec.json.Decoder(ScheduleState)
_ENCODER = msgspec.json.Encoder()


def timer_key(namespace: str, schedule_id: str) -> str:
    """The key of a schedule's fire timer row (namespaced: two namespaces may use the same
    schedule id and land on the same shard)."""
    return f"sched:{namespace}:{schedule_id}"


def encode_spec(spec: ScheduleSpec) -> str:
    """The stored JSON of a spec (msgspec's canonical form: ISO-8601 durations)."""
    return _ENCODER.encode(spec).decode()


def spec_json(spec: ScheduleSpec) -> dict[str, Any]:
    """A spec as JSON data (what describe shows and the audit log records)."""
    result: dict[str, Any] = msgspec.json.decode(_ENCODER.encode(spec))
    return result


def action_json(action: ScheduleAction) -> dict[str, Any]:
    """An action as JSON data (the input stays a JSON array)."""
    result: dict[str, Any] = msgspec.json.decode(_ENCODER.encode(action))
    return result


def _utc(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def _diff(prefix: str, old: Any, new: Any, out: list[FieldChange]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            _diff(f"{prefix}.{key}", old.get(key), new.get(key), out)
    elif old != new:
        out.append(FieldChange(field=prefix, old=old, new=new))


class EvaluatorCache:
    """Compiled specs by ``(schedule id, spec JSON)``, bounded (least recently used goes), so
    memory does not grow with the number of schedules, idle or not.

    An evaluator holds the calendar object its spec names, so when any calendar is registered,
    replaced or removed (:func:`~cadenza.timers._calendars.calendar_generation` moves) the
    entries that use a calendar are dropped and compiled again on next use. A spec whose
    calendar is overlaid (``plan`` checking against calendars not stored yet) is compiled
    without being cached.
    """

    def __init__(self, size: int = 2048) -> None:
        self._size = size
        self._items: dict[tuple[str, str], ScheduleEvaluator] = {}
        self._generation = calendar_generation()

    def get(self, schedule_id: str, spec_text: str, spec: ScheduleSpec) -> ScheduleEvaluator:
        """The evaluator of a stored (already validated) spec."""
        if spec.calendar is not None and calendar_overlay_active(spec.calendar):
            return ScheduleEvaluator(spec, schedule_id=schedule_id, trusted=True)
        generation = calendar_generation()
        if generation != self._generation:
            self._generation = generation
            self._items = {k: v for k, v in self._items.items() if v.calendar is None}
        key = (schedule_id, spec_text)
        found = self._items.pop(key, None)
        if found is None:
            found = ScheduleEvaluator(spec, schedule_id=schedule_id, trusted=True)
            if len(self._items) >= self._size:
                self._items.pop(next(iter(self._items)))
        self._items[key] = found
        return found


_SHARED_CACHE = EvaluatorCache()


@dataclass(slots=True)
class PlannedStart:
    """A run a change starts (created in the same transaction as the change)."""

    workflow_id: str
    run_id: str
    nominal_ms: int
    actual_ms: int
    source: str
    release_ms: int = 0
    """When its first workflow task becomes visible: the fire's due time for a fire written
    ahead (``lead_ms``), else the time of the change."""


@dataclass(slots=True)
class PlannedMessage:
    """Work for the owner of another shard, delivered as a timer row due now: start a run
    (``schedule_start``; ``attempt`` 0 a spec fire, held until its due time when written
    ahead, 1 a trigger or backfill) or stop one (``schedule_stop``, ``attempt`` 1 cancel,
    2 terminate for an overlap policy, 3 terminate a run written ahead whose time has not come
    when the schedule was paused, changed or deleted)."""

    kind: str
    shard_id: int
    workflow_id: str
    run_id: str
    attempt: int


class ScheduleChange:
    """One atomic change of one schedule.

    Args:
        shard_id, namespace, schedule_id: Which schedule.
        record: The row as read (None: it never existed).
        now_ms: The time of the change (stamped on its events).
        existing: ``workflow_id -> (run_id, status)`` of derived ids known to have a run.
        run_status: ``run_id -> (status, close_ms)`` of runs the state believes running.
        cache: Compiled specs.
        shard_of: The shard of a workflow id (default: every run is in shard 0).
        owned: Whether this process owns a shard (default: all of them). A run whose shard is
            owned elsewhere is started by that shard's owner (a message), which reports back.
        lead_ms: Fire ahead: a spec fire due within this many ms is written now, its run held
            (first workflow task invisible) until the due time, so that the write's latency
            does not make the run late. Only when waiting could not change the decision: no
            run of the schedule is running (or the overlap policy is ``allow_all``), nothing
            is buffered, and the schedule is not a fixed delay. 0 (default): no fire ahead.
    """

    def __init__(
        self,
        *,
        shard_id: int,
        namespace: str,
        schedule_id: str,
        record: ScheduleRecord | None,
        now_ms: int,
        existing: Mapping[str, tuple[str, str]] | None = None,
        run_status: Mapping[str, tuple[str, int | None]] | None = None,
        cache: EvaluatorCache | None = None,
        shard_of: Callable[[str], int] | None = None,
        owned: Callable[[int], bool] | None = None,
        lead_ms: int = 0,
    ) -> None:
        self.shard_id = shard_id
        self.shard_of = shard_of or (lambda _wid: 0)
        self.owned = owned or (lambda _shard: True)
        self.namespace = namespace
        self.schedule_id = schedule_id
        self.record = record
        self.now = now_ms
        self.now_dt = _utc(now_ms)
        self.lead_ms = max(0, lead_ms)
        self.existing = existing or {}
        self.run_status = run_status or {}
        self.cache = cache or _SHARED_CACHE
        self.active = record is not None and record.status == "active"
        if record is not None:
            self.head = ScheduleHead(namespace, schedule_id, record.next_event_id, record.last_hash)
            self.version = record.version
        else:
            self.head = ScheduleHead(
                namespace, schedule_id, 1, schedule_genesis_hash(namespace, schedule_id)
            )
            self.version = 0
        self.spec_text = record.spec if record is not None else ""
        self.action_text = record.action if record is not None else ""
        self.created_ms = record.created_ms if record is not None else now_ms
        self.paused = record.paused if record is not None else False
        self.note = record.note if record is not None else ""
        self.spec: ScheduleSpec | None = None
        self.action: ScheduleAction | None = None
        self.state = ScheduleState()
        self.evaluator: ScheduleEvaluator | None = None
        if record is not None and self.active:
            self.spec = _SPEC_DECODER.decode(record.spec)
            self.action = _ACTION_DECODER.decode(record.action)
            self.state = _STATE_DECODER.decode(record.state)
            self.evaluator = self.cache.get(schedule_id, record.spec, self.spec)
        self.starts: list[PlannedStart] = []
        self.messages: list[PlannedMessage] = []
        self.wanted: set[str] = set()
        self.changed = False
        self.continue_now = False
        self.budget = MAX_FIRES_PER_CHANGE
        self._started_ids: dict[str, str] = {}
        self._retry_ms: int | None = None

    # ------------------------------------------------------------------ helpers

    @property
    def exists(self) -> bool:
        """True while the schedule exists (not deleted)."""
        return self.active

    def _event(self, attributes: ScheduleEventAttributes, identity: str) -> None:
        self.head.append(attributes, self.now_dt, identity or SYSTEM_IDENTITY)
        self.changed = True

    def _require(self) -> tuple[ScheduleSpec, ScheduleEvaluator]:
        if not self.active or self.spec is None or self.evaluator is None:
            raise ScheduleNotFoundError(self.schedule_id)
        return self.spec, self.evaluator

    def due_ms(self, nominal: int) -> int:
        """When a nominal fire starts: nominal plus its jitter."""
        evaluator = self.evaluator
        return nominal if evaluator is None else nominal + evaluator.jitter_ms(nominal)

    def _runs_left(self) -> int | None:
        spec = self.spec
        if spec is None or spec.max_runs is None:
            return None
        return max(0, spec.max_runs - self.state.run_count)

    @property
    def next_due_ms(self) -> int | None:
        """When the schedule next has something due (None: nothing): what lists show as its
        next fire."""
        if not self.active:
            return None
        if self._retry_ms is not None:
            return self._retry_ms
        if self.continue_now or self.state.backfills:
            return self.now
        if self.paused:
            return None
        nominal = self.state.next_nominal_ms
        return None if nominal is None else self.due_ms(nominal)

    @property
    def timer_ms(self) -> int | None:
        """When the schedule's fire timer should fire after this change (None: no timer):
        the next due time, or ``lead_ms`` before it when the next fire may be written ahead."""
        due = self.next_due_ms
        if due is None or self._retry_ms is not None or self.continue_now or self.state.backfills:
            return due
        return due - self.lead_ms if self._fires_ahead() else due

    def _fires_ahead(self) -> bool:
        """Whether the spec's next fire may be written ``lead_ms`` ahead of its due time:
        only when waiting until then could not change what the fire does."""
        spec, evaluator = self.spec, self.evaluator
        if self.lead_ms <= 0 or self.paused or spec is None or evaluator is None:
            return False
        if evaluator.kind == "fixed_delay" or self.state.buffer:
            return False
        return spec.overlap == "allow_all" or not self.state.running

    def _is_due(self, nominal: int) -> bool:
        """Whether a spec fire is processed by this change: due now, or due within the lead
        and allowed to fire ahead."""
        due = self.due_ms(nominal)
        if due <= self.now:
            return True
        return due <= self.now + self.lead_ms and self._fires_ahead()

    def defer_if_stalled(self) -> None:
        """A due timer whose firing changed nothing would fire again at once, forever: move
        it a second later (and log it: it means a bug, not bad input)."""
        due = self.timer_ms
        if not self.changed and due is not None and due <= self.now:
            logging.getLogger("cadenza.engine.schedules").error(
                "schedule %r: due fire made no progress; retrying in 1 s", self.schedule_id
            )
            self._retry_ms = self.now + 1000
        self.changed = True

    # ------------------------------------------------------------------ operations

    def create(self, spec: ScheduleSpec, action: ScheduleAction, identity: str) -> None:
        """Create the schedule (or re-create a deleted one: its audit chain continues).

        Raises:
            ScheduleAlreadyExistsError: It exists.
            InvalidArgumentError: The spec is invalid or never fires.
        """
        if self.active:
            raise ScheduleAlreadyExistsError(self.schedule_id)
        evaluator = ScheduleEvaluator(spec, schedule_id=self.schedule_id)
        evaluator.check_fires(self.now)
        self.spec, self.action, self.evaluator = spec, action, evaluator
        self.spec_text, self.action_text = encode_spec(spec), _ENCODER.encode(action).decode()
        self.state = ScheduleState(next_nominal_ms=evaluator.first_fire(self.now))
        self.paused, self.note = spec.paused, spec.note
        self.created_ms = self.now
        self.active = True
        self._event(ScheduleCreated(spec=spec_json(spec), action=action_json(action)), identity)

    def update(
        self, spec: ScheduleSpec | None, action: ScheduleAction | None, identity: str
    ) -> list[FieldChange]:
        """Replace the spec and/or the action; returns the changed fields (empty: no change).

        A new spec restarts the fire times from now (nothing is caught up for it); its
        ``paused`` and ``note`` replace the schedule's.
        """
        old_spec, _ = self._require()
        changes: list[FieldChange] = []
        if spec is not None:
            _diff("spec", spec_json(old_spec), spec_json(spec), changes)
        if action is not None and self.action is not None:
            _diff("action", action_json(self.action), action_json(action), changes)
        if not changes:
            return []
        if spec is not None and spec_json(spec) != spec_json(old_spec):
            evaluator = ScheduleEvaluator(spec, schedule_id=self.schedule_id)
            evaluator.check_fires(self.now)
            self.spec, self.evaluator = spec, evaluator
            self.spec_text = encode_spec(spec)
            self.paused, self.note = spec.paused, spec.note
            waiting = evaluator.kind == "fixed_delay" and bool(self.state.running)
            first = None if waiting else evaluator.first_fire(self.now)
            left = self._runs_left()
            self.state.next_nominal_ms = None if left == 0 else first
            self._recall_unreleased()
        if action is not None:
            self.action = action
            self.action_text = _ENCODER.encode(action).decode()
        self._event(ScheduleUpdated(changes=changes), identity)
        if not self.paused:
            self._drain_buffer()
        return changes

    def refresh_next_fire(self, reason: str, identity: str) -> bool:
        """Recompute a pending next fire after the schedule's calendar changed.

        The next fire is computed when the previous one fires, so a calendar change (a holiday
        added or removed) would otherwise take effect one fire late. A fire that is already
        due, a fixed delay (its next fire follows the last run's end) and a schedule without
        a next fire are left alone. The change is recorded in the audit log as an update of
        ``next_fire_time`` with ``reason`` as the note.

        Returns:
            Whether the next fire moved.
        """
        if not self.active or self.evaluator is None or self.evaluator.kind == "fixed_delay":
            return False
        current = self.state.next_nominal_ms
        if current is None or current <= self.now:
            return False
        fresh = self.evaluator.first_fire(self.now)
        # No fire left under the new calendar: keep the one computed before rather than
        # silently ending the schedule (``plan`` rejects such calendars for job schedules).
        if self._runs_left() == 0 or fresh is None or fresh == current:
            return False
        self.state.next_nominal_ms = fresh
        self._event(
            ScheduleUpdated(
                changes=[
                    FieldChange(
                        field="next_fire_time",
                        old=format_nominal(current),
                        new=format_nominal(fresh),
                    ),
                    FieldChange(field="reason", old=None, new=reason),
                ]
            ),
            identity,
        )
        return True

    def _set_pause(self, paused: bool, note: str) -> None:
        self.paused, self.note = paused, note
        if self.spec is not None:
            self.spec = msgspec.structs.replace(self.spec, paused=paused, note=note)
            self.spec_text = encode_spec(self.spec)

    def pause(self, note: str, identity: str) -> bool:
        """Pause (no fire until unpaused); False when it was paused with this note already."""
        self._require()
        if self.paused and self.note == note:
            return False
        self._set_pause(True, note)
        self._event(SchedulePaused(note=note), identity)
        self._recall_unreleased()
        return True

    def unpause(self, note: str, identity: str) -> bool:
        """Unpause; fires missed meanwhile follow the catch-up policy. False when not paused."""
        self._require()
        if not self.paused:
            return False
        self._set_pause(False, note)
        self._event(ScheduleUnpaused(note=note), identity)
        self._drain_buffer()
        return True

    def delete(self, identity: str, reason: str = "") -> None:
        """Delete the schedule; its runs keep running, its audit log stays."""
        self._require()
        self._event(ScheduleDeleted(reason=reason), identity)
        self._recall_unreleased()
        self.active = False
        self.state.buffer = []
        self.state.backfills = []

    def trigger(self, identity: str, overlap: str = "") -> tuple[str, str, str]:
        """Fire now, outside the spec (nominal time: now). Works while paused too.

        Returns:
            ``(outcome, workflow_id, run_id)`` as in :class:`TriggerResult`.
        """
        self._require()
        _check_overlap(overlap)
        self._event(ScheduleTriggered(nominal_time=self.now_dt, overlap=overlap), identity)
        self._reconcile()
        return self._offer(PendingFire(nominal_ms=self.now, source="trigger", overlap=overlap))

    def backfill(self, start_ms: int, end_ms: int, identity: str, overlap: str = "") -> int:
        """Queue the spec's fires in ``[start_ms, end_ms]``; returns how many. Works while
        paused too (like :meth:`trigger`).

        Raises:
            InvalidArgumentError: A reversed range, one that ends in the future, holds no fire
                or more than 10,000 (field ``start`` or ``end``), a fixed-delay schedule
                (field ``kind``), a bad overlap policy.
        """
        _, evaluator = self._require()
        _check_overlap(overlap)
        if evaluator.kind == "fixed_delay":
            raise InvalidArgumentError(
                "kind", "a fixed-delay schedule has no fire times to backfill"
            )
        if end_ms < start_ms:
            raise InvalidArgumentError("end", "must not be before start (the range is reversed)")
        if end_ms > self.now:
            raise InvalidArgumentError(
                "end", f"must not be in the future (now is {format_nominal(self.now)})"
            )
        fires, more = evaluator.fires_between(start_ms - 1, end_ms, MAX_BACKFILL_FIRES)
        if more:
            raise InvalidArgumentError(
                "end", f"the range holds more than {MAX_BACKFILL_FIRES} fire times; split it"
            )
        if not fires:
            raise InvalidArgumentError("start", "the range holds no fire time of the schedule")
        self._event(
            ScheduleBackfillRequested(
                start_time=_utc(start_ms),
                end_time=_utc(end_ms),
                fire_count=len(fires),
                overlap=overlap,
            ),
            identity,
        )
        self.state.backfills.append(
            BackfillCursor(after_ms=start_ms - 1, end_ms=end_ms, overlap=overlap)
        )
        self._reconcile()
        self._fire_backfills()
        return len(fires)

    def run_closed(self, workflow_id: str, run_id: str, status: str, close_ms: int | None) -> bool:
        """A run of the schedule closed: record it, start what waited for it. False when the
        run was not known as running (already seen, or not this schedule's)."""
        if not self.active:
            return False
        run = next((r for r in self.state.running if r.workflow_id == workflow_id), None)
        if run is None:
            # Untracked (allow_all): still record the outcome of one of the last runs.
            last = next((r for r in self.state.recent if r.workflow_id == workflow_id), None)
            if last is None or last.status != "running":
                return False
            self.state.recent.remove(last)
            run = last
        else:
            self.state.running.remove(run)
        run.status = status
        run.close_ms = close_ms if close_ms is not None else self.now
        run.run_id = run.run_id or run_id
        self._remember(run)
        self.state.last_close_ms = run.close_ms
        self._event(
            ScheduleRunClosed(
                workflow_id=workflow_id,
                run_id=run_id,
                status=status,
                nominal_time=_utc(run.nominal_ms),
            ),
            SYSTEM_IDENTITY,
        )
        self._after_close()
        return True

    def start_reported(
        self, workflow_id: str, run_id: str, outcome: str, actual_ms: int, detail: str = ""
    ) -> bool:
        """The owner of a run's shard started it (or could not): record the fire. False for a
        report already recorded."""
        if not self.active:
            return False
        state = self.state
        run = next(
            (r for r in [*state.running, *state.recent] if r.workflow_id == workflow_id),
            None,
        )
        if run is None or not run.pending:
            return False
        run.pending = False
        fired = ScheduleFired(
            nominal_time=_utc(run.nominal_ms),
            actual_time=_utc(actual_ms),
            source=run.source,
            workflow_id=workflow_id,
            run_id=run_id,
            skipped="" if outcome == "started" else outcome,
            detail=detail,
        )
        self._event(fired, SYSTEM_IDENTITY)
        if outcome == "started":
            run.run_id, run.actual_ms = run_id, actual_ms
            return True
        if run in state.running:
            state.running.remove(run)
            if run.source == "spec":
                state.run_count = max(0, state.run_count - 1)
            self._after_close()
        return True

    def fire_due(self) -> None:
        """Process what is due now: the spec's fires (with the catch-up and overlap
        policies; not while paused) and backfill work (paused or not)."""
        if not self.active or self.evaluator is None:
            return
        self._reconcile()
        if not self.paused:
            self._fire_spec()
        self._fire_backfills()

    # ------------------------------------------------------------------ firing

    def _reconcile(self) -> None:
        for run in list(self.state.running):
            if run.pending or not run.run_id:
                continue
            found = self.run_status.get(run.run_id)
            if found is not None and found[0] not in ("running", "continued_as_new"):
                self.run_closed(run.workflow_id, run.run_id, found[0], found[1])

    def _fire_spec(self) -> None:
        spec, evaluator = self._require()
        state = self.state
        nominal = state.next_nominal_ms
        if nominal is None or not self._is_due(nominal):
            return
        catch_up = spec.catch_up
        window = None if catch_up.window is None else int(catch_up.window.total_seconds() * 1000)
        if evaluator.kind == "fixed_delay":
            late = window is not None and self.now - self.due_ms(nominal) > window
            if late and catch_up.mode == "none":
                self._missed(nominal, nominal, 1)
            elif self._runs_left() != 0:
                self._offer(PendingFire(nominal_ms=nominal))
            state.next_nominal_ms = None
            if not state.running and self._runs_left() != 0:
                state.next_nominal_ms = evaluator.delay_due(self.now + evaluator.every_ms)
            return
        if window is None or catch_up.mode == "all":
            self._fire_in_order(nominal)
            return
        self._fire_catching_up(nominal, window, catch_up.mode)

    def _fire_in_order(self, nominal: int | None) -> None:
        evaluator = self.evaluator
        while nominal is not None and evaluator is not None and self._is_due(nominal):
            if self._runs_left() == 0 or self.budget <= 0:
                break
            self.budget -= 1
            self._offer(PendingFire(nominal_ms=nominal))
            nominal = evaluator.next_after(nominal)
        self._set_next(nominal)

    def _fire_catching_up(self, nominal: int, window: int, mode: str) -> None:
        _, evaluator = self._require()
        first_missed: int | None = None
        last_missed: int | None = None
        missed = 0
        counted = True
        bulk_cut = self.now - window - evaluator.jitter_span
        if nominal <= bulk_cut:
            fires, more = evaluator.fires_between(nominal - 1, bulk_cut, _MISSED_COUNT_CAP)
            first_missed = nominal
            if more:
                last_missed = evaluator.last_at_or_before(nominal - 1, bulk_cut)
                counted = False
            else:
                last_missed = fires[-1]
                missed = len(fires)
            next_nominal = evaluator.next_after(last_missed) if last_missed is not None else None
        else:
            next_nominal = nominal
        on_time: list[int] = []
        while (
            next_nominal is not None and len(on_time) < self.budget and self._is_due(next_nominal)
        ):
            if self.now - self.due_ms(next_nominal) > window:
                first_missed = next_nominal if first_missed is None else first_missed
                last_missed = next_nominal
                missed += 1
            else:
                on_time.append(next_nominal)
            next_nominal = evaluator.next_after(next_nominal)
        if (
            mode == "latest"
            and not on_time
            and last_missed is not None
            and first_missed is not None
        ):
            if first_missed != last_missed:
                self._missed(
                    first_missed,
                    last_missed,
                    missed - 1 if counted else 0,
                    detail="the latest missed fire ran",
                )
            if self._runs_left() != 0:
                self._offer(PendingFire(nominal_ms=last_missed))
                self.budget -= 1
        else:
            if first_missed is not None and last_missed is not None:
                self._missed(first_missed, last_missed, missed if counted else 0)
            for fire in on_time:
                if self._runs_left() == 0:
                    break
                if not self._is_due(fire):
                    # Ahead of its time and no longer allowed to fire ahead (a run started
                    # just now): it is decided at its due time.
                    next_nominal = fire
                    break
                self.budget -= 1
                self._offer(PendingFire(nominal_ms=fire))
        self._set_next(next_nominal)

    def _set_next(self, nominal: int | None) -> None:
        if self._runs_left() == 0:
            nominal = None
        self.state.next_nominal_ms = nominal
        self.changed = True
        if nominal is not None and self.due_ms(nominal) <= self.now:
            self.continue_now = True

    def _missed(self, first: int, last: int, count: int, detail: str = "") -> None:
        self.state.missed_count += count
        self._event(
            ScheduleFired(
                nominal_time=_utc(first),
                actual_time=self.now_dt,
                skipped="missed",
                skipped_count=count,
                last_nominal_time=_utc(last),
                detail=detail,
            ),
            SYSTEM_IDENTITY,
        )

    def _fire_backfills(self) -> None:
        evaluator = self.evaluator
        while self.state.backfills and evaluator is not None:
            if self.budget <= 0:
                self.continue_now = True
                return
            cursor = self.state.backfills[0]
            fires, more = evaluator.fires_between(cursor.after_ms, cursor.end_ms, self.budget)
            for fire in fires:
                self.budget -= 1
                self._offer(PendingFire(nominal_ms=fire, source="backfill", overlap=cursor.overlap))
            self.changed = True
            if more and fires:
                cursor.after_ms = fires[-1]
                self.continue_now = True
                return
            self.state.backfills.pop(0)

    def _offer(self, fire: PendingFire) -> tuple[str, str, str]:
        spec, _ = self._require()
        policy = fire.overlap or spec.overlap
        wid = scheduled_workflow_id(self.schedule_id, format_nominal(fire.nominal_ms))
        state = self.state
        if not state.running or policy == "allow_all":
            return self._start(fire)
        if policy == "skip":
            self._skip(fire, "overlap")
            return "skipped", wid, ""
        if policy in ("buffer_one", "buffer_all"):
            limit = 1 if policy == "buffer_one" else MAX_BUFFERED
            if len(state.buffer) >= limit:
                self._skip(fire, "buffer_full")
                return "skipped", wid, ""
            state.buffer.append(fire)
            self._overlap_event(policy, "buffered", fire)
            return "buffered", wid, ""
        stop = "cancel" if policy == "cancel_other" else "terminate"
        for run in state.running:
            if run.stop_requested:
                continue
            run.stop_requested = stop
            self.messages.append(
                PlannedMessage(
                    STOP_KIND,
                    self.shard_of(run.workflow_id),
                    run.workflow_id,
                    run.run_id,
                    1 if stop == "cancel" else 2,
                )
            )
            self._overlap_event(policy, f"{stop}_requested", fire, run)
        for waiting in state.buffer:
            self._skip(waiting, "buffer_full", detail=f"replaced by a later fire ({policy})")
        state.buffer = [fire]
        self._overlap_event(policy, "buffered", fire)
        return "buffered", wid, ""

    def _overlap_event(
        self, policy: str, action: str, fire: PendingFire, run: ScheduleRun | None = None
    ) -> None:
        self._event(
            ScheduleOverlapAction(
                policy=policy,
                action=action,
                nominal_time=_utc(fire.nominal_ms),
                workflow_id=run.workflow_id if run else "",
                run_id=run.run_id if run else "",
            ),
            SYSTEM_IDENTITY,
        )

    def _skip(self, fire: PendingFire, reason: str, detail: str = "") -> None:
        self.state.skipped_count += 1
        self._event(
            ScheduleFired(
                nominal_time=_utc(fire.nominal_ms),
                actual_time=self.now_dt,
                source=fire.source,
                workflow_id=scheduled_workflow_id(
                    self.schedule_id, format_nominal(fire.nominal_ms)
                ),
                skipped=reason,
                detail=detail,
            ),
            SYSTEM_IDENTITY,
        )

    def _start(self, fire: PendingFire) -> tuple[str, str, str]:
        wid = scheduled_workflow_id(self.schedule_id, format_nominal(fire.nominal_ms))
        state = self.state
        if fire.source != "spec" or fire.nominal_ms <= state.manual_high_ms:
            # A trigger or a backfill may name a time the spec fires too (or fired): look the
            # derived id up. The spec's own fires never repeat (compare-and-swap).
            self.wanted.add(wid)
        known = self.existing.get(wid)
        earlier = self._started_ids.get(wid)
        if known is not None or earlier is not None:
            run_id = known[0] if known is not None else (earlier or "")
            self._event(
                ScheduleFired(
                    nominal_time=_utc(fire.nominal_ms),
                    actual_time=self.now_dt,
                    source=fire.source,
                    workflow_id=wid,
                    run_id=run_id,
                    skipped="already_started",
                ),
                SYSTEM_IDENTITY,
            )
            return "already_started", wid, run_id
        if fire.source != "spec":
            state.manual_high_ms = max(state.manual_high_ms, fire.nominal_ms)
        shard = self.shard_of(wid)
        remote = not self.owned(shard)
        run_id = "" if remote else str(uuid.uuid4())
        self._started_ids[wid] = run_id
        # A spec fire written ahead is released at its due time; anything else at once.
        release = self.now
        if fire.source == "spec":
            release = max(self.now, self.due_ms(fire.nominal_ms))
        if remote:
            attempt = 0 if fire.source == "spec" else 1
            self.messages.append(PlannedMessage(START_KIND, shard, wid, "", attempt))
        else:
            self.starts.append(
                PlannedStart(wid, run_id, fire.nominal_ms, self.now, fire.source, release)
            )
        run = ScheduleRun(
            workflow_id=wid,
            run_id=run_id,
            nominal_ms=fire.nominal_ms,
            actual_ms=release,
            source=fire.source,
            pending=remote,
        )
        if self._tracks_running():
            state.running.append(run)
        else:
            self._remember(run)
        if len(state.running) > MAX_TRACKED_RUNS:
            oldest = state.running.pop(0)
            oldest.status = "untracked"
            self._remember(oldest)
        if fire.source == "spec":
            state.run_count += 1
        if remote:
            # The owner of the run's shard starts it and reports back: the fired event is
            # recorded then, with the run id and the actual start time.
            self.changed = True
        else:
            self._event(
                ScheduleFired(
                    nominal_time=_utc(fire.nominal_ms),
                    actual_time=_utc(release),
                    source=fire.source,
                    workflow_id=wid,
                    run_id=run_id,
                ),
                SYSTEM_IDENTITY,
            )
        return "started", wid, run_id

    def plans_fire(self, nominal_ms: int) -> bool:
        """Whether the schedule, as it is now, fires at ``nominal_ms``: active, not paused, and
        a fire time of its current spec. A run written ahead whose start another shard's owner
        carries out is dropped there when this no longer holds before its time."""
        if not self.active or self.paused or self.evaluator is None:
            return False
        return self.evaluator.next_after(nominal_ms - 1) == nominal_ms

    def _recall_unreleased(self) -> None:
        """Terminate the runs written ahead whose due time has not come (their first task
        is still held): a pause, a new spec or a delete must not be followed by a fire of
        the old plan. A run whose start another shard's owner has not reported yet is not
        known here and is not recalled."""
        for run in [*self.state.running, *self.state.recent]:
            if (
                run.source != "spec"
                or run.status != "running"
                or run.pending
                or not run.run_id
                or run.stop_requested
                or run.actual_ms <= self.now
            ):
                continue
            run.stop_requested = "terminate"
            self.messages.append(
                PlannedMessage(
                    STOP_KIND, self.shard_of(run.workflow_id), run.workflow_id, run.run_id, 3
                )
            )
            self.changed = True

    def _tracks_running(self) -> bool:
        """Whether runs in progress are tracked. With ``allow_all`` no decision depends on
        them (except a fixed delay's), so the state keeps only the last runs: it does not grow
        with many long runs."""
        spec = self.spec
        if spec is None or spec.overlap != "allow_all":
            return True
        return self.evaluator is not None and self.evaluator.kind == "fixed_delay"

    def _remember(self, run: ScheduleRun) -> None:
        recent = [r for r in self.state.recent if r.workflow_id != run.workflow_id]
        self.state.recent = [run, *recent][:MAX_RECENT_RUNS]

    def _drain_buffer(self) -> None:
        state = self.state
        while state.buffer and not state.running and not self.paused:
            fire = state.buffer.pop(0)
            if fire.source == "spec" and self._runs_left() == 0:
                self._skip(fire, "max_runs")
                continue
            self._start(fire)
            self.changed = True

    def _after_close(self) -> None:
        if self.paused:
            return
        self._drain_buffer()
        evaluator = self.evaluator
        state = self.state
        if (
            evaluator is not None
            and evaluator.kind == "fixed_delay"
            and not state.running
            and state.next_nominal_ms is None
            and self._runs_left() != 0
        ):
            base = (state.last_close_ms or self.now) + evaluator.every_ms
            state.next_nominal_ms = evaluator.delay_due(base)

    # ------------------------------------------------------------------ write

    def to_write(self) -> ScheduleWrite:
        """The store request for this change (its ``version`` is the one read plus one)."""
        timer_ms = self.timer_ms
        state = self.state
        record = ScheduleRecord(
            shard_id=self.shard_id,
            namespace=self.namespace,
            schedule_id=self.schedule_id,
            status="active" if self.active else "deleted",
            kind=self.spec.kind if self.spec is not None else "",
            spec=self.spec_text,
            action=self.action_text,
            state=_ENCODER.encode(state).decode(),
            paused=self.paused,
            note=self.note,
            next_fire_ms=self.next_due_ms,
            run_count=state.run_count,
            created_ms=self.created_ms,
            updated_ms=self.now,
            version=self.version + 1,
            next_event_id=self.head.next_event_id,
            last_hash=self.head.last_hash,
        )
        timer = None
        if timer_ms is not None:
            timer = TimerRecord(
                shard_id=self.shard_id,
                timer_key=timer_key(self.namespace, self.schedule_id),
                fire_at_ms=timer_ms,
                namespace=self.namespace,
                workflow_id=self.schedule_id,
                run_id="",
                kind=TIMER_KIND,
                ref_event_id=self.head.next_event_id - 1,
                attempt=0,
            )
        messages = [
            TimerRecord(
                shard_id=m.shard_id,
                timer_key=f"{m.kind}:{self.namespace}:{m.workflow_id}:{m.run_id}",
                fire_at_ms=self.now,
                namespace=self.namespace,
                workflow_id=m.workflow_id,
                run_id=m.run_id,
                kind=m.kind,
                ref_event_id=0,
                attempt=m.attempt,
            )
            for m in self.messages
        ]
        return ScheduleWrite(
            record=record,
            expected_version=self.version,
            create=self.record is None,
            events=list(self.head.events),
            event_data=list(self.head.event_data),
            timer_key=timer_key(self.namespace, self.schedule_id),
            timer=timer,
            messages=messages,
        )


def _check_overlap(overlap: str) -> None:
    if overlap and overlap not in OVERLAP_POLICIES:
        raise InvalidArgumentError("overlap", f"must be one of {', '.join(OVERLAP_POLICIES)}")
