"""Plain records that cross the store boundary (rows in, rows out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cadenza.history._events import HistoryEvent
from cadenza.history._state import ExecutionState


@dataclass(slots=True)
class ExecutionRecord:
    """One row of ``executions`` with its decoded state."""

    shard_id: int
    run_id: str
    namespace: str
    workflow_id: str
    workflow_type: str
    task_queue: str
    status: str
    start_time_ms: int
    close_time_ms: int | None
    next_event_id: int
    last_hash: str
    state: ExecutionState
    sticky_worker: str | None = None
    worker_position: int = 0
    """Engine memory only: the last event the sticky worker has (its last task's
    ``seen_up_to``), so the next task can carry just the new events."""


@dataclass(slots=True)
class TaskRecord:
    """One row of ``tasks``: a workflow task, an activity task or a transfer task.

    The identity of an activity task attempt is ``(run_id, ref_event_id, attempt)``, where
    ``ref_event_id`` is the ``activity_task_scheduled`` event.
    """

    shard_id: int
    task_id: str
    kind: str
    task_queue: str
    namespace: str
    workflow_id: str
    run_id: str
    ref_event_id: int
    attempt: int
    payload: dict[str, Any]
    created_ms: int
    visible_at_ms: int | None = None
    lease_owner: str | None = None
    lease_until_ms: int | None = None
    started_at_ms: int | None = None
    seen_up_to: int | None = None
    sticky_worker: str | None = None
    sticky_until_ms: int | None = None
    heartbeat_at_ms: int | None = None
    heartbeat_details: Any = None
    cancel_requested: bool = False


@dataclass(slots=True)
class TimerRecord:
    """One row of ``timers``: something that must happen at ``fire_at_ms``."""

    shard_id: int
    timer_key: str
    fire_at_ms: int
    namespace: str
    workflow_id: str
    run_id: str
    kind: str
    ref_event_id: int
    attempt: int


@dataclass(slots=True)
class TaskChange:
    """An update of an existing task row, written with an execution's events."""

    task_id: str
    values: dict[str, Any]


@dataclass(slots=True)
class NewExecution:
    """An execution row to insert (start, continue-as-new, child start)."""

    workflow_type: str
    task_queue: str
    start_time_ms: int
    only_if_id_unused: bool = False
    """Insert only if no execution of this workflow id exists at all (a start that skipped
    looking the id up: it loses like a compare-and-swap if there is one, and the caller reads
    and applies its policies)."""


@dataclass(slots=True)
class ExecutionWrite:
    """One atomic write of one execution: events, state, and the outbox that follows.

    The write succeeds only if the execution's ``next_event_id`` still equals
    ``expected_next_event_id`` (0 when ``create`` is set: the row must not exist) and the
    writer's ``range_id`` still matches the shard's. ``also`` holds writes of other executions
    of the same shard that must commit together (a continue-as-new's new run).
    """

    shard_id: int
    range_id: int
    namespace: str
    workflow_id: str
    run_id: str
    expected_next_event_id: int
    events: list[HistoryEvent]
    event_data: list[bytes]
    state: ExecutionState
    last_hash: str
    create: NewExecution | None = None
    sticky_worker: str | None = None
    set_sticky: bool = False
    purge_outbox: bool = False
    notify: list[str] = field(default_factory=list)
    writer: str = ""
    tasks_insert: list[TaskRecord] = field(default_factory=list)
    tasks_delete: list[str] = field(default_factory=list)
    tasks_update: list[TaskChange] = field(default_factory=list)
    timers_insert: list[TimerRecord] = field(default_factory=list)
    timers_delete: list[str] = field(default_factory=list)
    also: list[ExecutionWrite] = field(default_factory=list)


@dataclass(slots=True)
class ExecutionSummary:
    """What a listing shows of an execution."""

    namespace: str
    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    status: str
    start_time_ms: int
    close_time_ms: int | None
    history_length: int
