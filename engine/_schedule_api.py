"""Schedules at the engine's service surface: what a fire starts, the stored state, and the
structs that describe, list and answer operations.

The same structs travel as JSON over HTTP (``/api/v1/schedules``), so the SDK client behaves
the same in process and against a server.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

import msgspec

from cadenza.history import EMPTY_ARGS, RetryPolicySpec

__all__ = [
    "OVERLAP_POLICIES",
    "SCHEDULE_TRANSFER_ACTIONS",
    "BackfillCursor",
    "BackfillResult",
    "FireTimeView",
    "PendingFire",
    "ScheduleAction",
    "ScheduleDescription",
    "ScheduleRun",
    "ScheduleRunView",
    "ScheduleState",
    "ScheduleSummary",
    "TriggerResult",
    "schedule_of_run",
    "scheduled_workflow_id",
]

OVERLAP_POLICIES = (
    "skip",
    "buffer_one",
    "buffer_all",
    "cancel_other",
    "terminate_other",
    "allow_all",
)
"""The overlap policies (``overlap`` of a spec, or an override of trigger and backfill)."""

SCHEDULE_TRANSFER_ACTIONS = ("notify_schedule",)
"""Transfer task actions of schedules (carried out by ``ScheduleOps.run_schedule_transfer``)."""

_RUN_ID_SUFFIX = re.compile(r"/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{3})?Z$")


def scheduled_workflow_id(schedule_id: str, nominal_text: str) -> str:
    """The derived workflow id of a fire: ``{schedule_id}/{nominal time, UTC ISO-8601, Z}``."""
    return f"{schedule_id}/{nominal_text}"


def schedule_of_run(workflow_id: str) -> str | None:
    """The schedule id in a derived workflow id (``nightly/2026-03-28T01:30:00Z`` gives
    ``nightly``), or None for an id that is not of that form."""
    match = _RUN_ID_SUFFIX.search(workflow_id)
    if match is None or match.start() == 0:
        return None
    return workflow_id[: match.start()]


class ScheduleAction(msgspec.Struct, frozen=True, kw_only=True):
    """What each fire of a schedule starts.

    Attributes:
        workflow_type: The workflow type.
        task_queue: Its task queue.
        input: JSON array of the workflow's arguments (the same for every fire; the workflow
            reads its nominal time from ``workflow.info().trigger``). Default ``[]``.
        execution_timeout: Seconds the whole chain of runs may take (None: unlimited).
        run_timeout: Seconds one run may take (None: unlimited).
        task_timeout: Seconds a worker may hold a workflow task (None: the engine's default).
        retry_policy: Retries of the whole workflow (None: none).
        memo: Free JSON attributes recorded with every run.
    """

    workflow_type: str
    task_queue: str
    input: msgspec.Raw = EMPTY_ARGS
    execution_timeout: float | None = None
    run_timeout: float | None = None
    task_timeout: float | None = None
    retry_policy: RetryPolicySpec | None = None
    memo: dict[str, Any] = {}


# --------------------------------------------------------------------------- stored state


class ScheduleRun(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A run the schedule started (times are epoch ms).

    Attributes:
        stop_requested: ``cancel`` or ``terminate`` once an overlap policy asked it to stop.
        pending: Its start was handed to the owner of its shard, which has not reported yet
            (``run_id`` is empty until then).
    """

    workflow_id: str
    run_id: str
    nominal_ms: int
    actual_ms: int
    source: str = "spec"
    status: str = "running"
    close_ms: int | None = None
    stop_requested: str = ""
    pending: bool = False


class PendingFire(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A fire waiting for the running run to close (buffered by the overlap policy)."""

    nominal_ms: int
    source: str = "spec"
    overlap: str = ""


class BackfillCursor(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Backfill work left: the spec's fires in ``(after_ms, end_ms]``."""

    after_ms: int
    end_ms: int
    overlap: str = ""


class ScheduleState(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a schedule remembers between fires (stored as JSON with the schedule).

    Attributes:
        next_nominal_ms: The next fire of the spec not yet processed (None: no more fires, or
            a fixed delay waiting for its run to close).
        run_count: Runs the spec started (``max_runs`` counts these).
        running: Runs started by the schedule that have not been seen to close.
        buffer: Fires waiting for the running run to close.
        backfills: Backfill work left.
        recent: The last runs, newest first (at most 10), with their outcome.
        last_close_ms: When the last run closed (fixed delay counts from it).
        missed_count: Fires dropped by the catch-up policy, in all.
        skipped_count: Fires dropped by the overlap policy, in all.
        manual_high_ms: The latest nominal time a trigger or backfill started (a spec fire
            at or before it looks its derived workflow id up first).
    """

    next_nominal_ms: int | None = None
    run_count: int = 0
    running: list[ScheduleRun] = []
    buffer: list[PendingFire] = []
    backfills: list[BackfillCursor] = []
    recent: list[ScheduleRun] = []
    last_close_ms: int | None = None
    missed_count: int = 0
    skipped_count: int = 0
    manual_high_ms: int = 0


# --------------------------------------------------------------------------- views


class FireTimeView(msgspec.Struct, frozen=True, kw_only=True):
    """A coming fire: its nominal time and when it will start (nominal plus jitter)."""

    nominal_time: datetime
    actual_time: datetime


class ScheduleRunView(msgspec.Struct, frozen=True, kw_only=True):
    """A run of a schedule as describe shows it.

    Attributes:
        status: ``running`` or how it closed (``completed``, ``failed``, ``canceled``,
            ``terminated``, ``timed_out``, ``continued_as_new``).
        source: ``spec``, ``trigger`` or ``backfill``.
    """

    workflow_id: str
    run_id: str
    nominal_time: datetime
    actual_time: datetime
    source: str
    status: str
    close_time: datetime | None = None


class ScheduleDescription(msgspec.Struct, frozen=True, kw_only=True):
    """What describe returns.

    Attributes:
        spec: The spec as JSON (durations in ISO-8601).
        next_fire_times: The next 10 fires (fewer when the schedule ends; empty for a fixed
            delay whose run is still running).
        running: Runs that have not closed yet.
        recent_runs: The last runs with their outcome, newest first.
        buffered: Fires waiting for a running run to close.
        backfill_pending: Whether backfill work is left.
        history_length: Events in the schedule's audit log.
    """

    namespace: str
    schedule_id: str
    spec: dict[str, Any]
    action: ScheduleAction
    paused: bool
    note: str
    created_time: datetime
    updated_time: datetime
    version: int
    run_count: int
    missed_count: int
    skipped_count: int
    next_fire_times: list[FireTimeView]
    running: list[ScheduleRunView]
    recent_runs: list[ScheduleRunView]
    buffered: int
    backfill_pending: bool
    history_length: int


class ScheduleSummary(msgspec.Struct, frozen=True, kw_only=True):
    """A schedule as a listing shows it."""

    namespace: str
    schedule_id: str
    kind: str
    workflow_type: str
    paused: bool
    note: str
    next_fire_time: datetime | None
    run_count: int
    running: int
    last_run: ScheduleRunView | None = None


class TriggerResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a trigger-now did.

    Attributes:
        outcome: ``started``, ``buffered`` (a run is running: it starts after it),
            ``skipped`` (the overlap policy dropped it) or ``already_started``.
        workflow_id: The derived workflow id of the fire.
        run_id: The run started (or found), when there is one.
    """

    outcome: Literal["started", "buffered", "skipped", "already_started"]
    nominal_time: datetime
    workflow_id: str
    run_id: str = ""


class BackfillResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a backfill request queued: ``fire_count`` fires of the range."""

    fire_count: int
