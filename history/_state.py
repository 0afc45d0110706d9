"""Mutable state of an execution: a pure function of its history.

The engine keeps this state in the execution row so that a write does not replay the history,
but it is only ever changed by :func:`apply_event`, and :func:`rebuild_state` recomputes it from
the events alone; a test checks that the two agree. What is transient (which worker holds a task
right now, its lease, the last heartbeat) lives in the task row, not here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec

from cadenza.history._events import (
    CLOSE_EVENT_TYPES,
    INPUT_EVENT_TYPES,
    ActivityTaskCanceled,
    ActivityTaskCancelRequested,
    ActivityTaskCompleted,
    ActivityTaskFailed,
    ActivityTaskScheduled,
    ActivityTaskStarted,
    ActivityTaskTimedOut,
    ChildWorkflowExecutionCanceled,
    ChildWorkflowExecutionCompleted,
    ChildWorkflowExecutionFailed,
    ChildWorkflowExecutionStarted,
    ChildWorkflowExecutionTerminated,
    ChildWorkflowExecutionTimedOut,
    HistoryEvent,
    ParentRef,
    RequestCancelExternalWorkflowExecutionInitiated,
    RetryPolicySpec,
    StartChildWorkflowExecutionFailed,
    StartChildWorkflowExecutionInitiated,
    TimerCanceled,
    TimerFired,
    TimerStarted,
    WorkflowExecutionCancelRequested,
    WorkflowExecutionSignaled,
    WorkflowExecutionStarted,
    WorkflowTaskCompleted,
    WorkflowTaskFailed,
    WorkflowTaskScheduled,
    WorkflowTaskStarted,
    WorkflowTaskTimedOut,
    event_type_of,
    is_input_event,
)

MAX_REMEMBERED_REQUEST_IDS = 200


class PendingActivity(msgspec.Struct, kw_only=True):
    """An activity that is scheduled and not yet resolved."""

    scheduled_event_id: int
    activity_id: str
    activity_type: str
    task_queue: str
    scheduled_time: datetime
    attempt: int = 1
    schedule_to_close_timeout: float | None = None
    start_to_close_timeout: float | None = None
    heartbeat_timeout: float | None = None
    retry_policy: RetryPolicySpec | None = None
    cancel_requested: bool = False


class PendingTimer(msgspec.Struct, kw_only=True):
    """A user timer that is started and has neither fired nor been canceled."""

    timer_id: str
    started_event_id: int
    fire_time: datetime


class PendingChild(msgspec.Struct, kw_only=True):
    """A child workflow that is initiated and not yet resolved."""

    initiated_event_id: int
    workflow_id: str
    workflow_type: str
    task_queue: str
    parent_close_policy: str
    run_id: str = ""


class ExecutionState(msgspec.Struct, kw_only=True):
    """Everything the engine needs to decide the next write of an execution.

    Attributes:
        status: ``running`` or the close status (``completed``, ``failed``, ``canceled``,
            ``terminated``, ``timed_out``, ``continued_as_new``).
        next_event_id: Id the next appended event will get.
        wt_scheduled_event_id: The pending workflow task (scheduled, maybe running), or 0.
        wt_attempt: Attempt of the pending workflow task.
        last_input_event_id: Id of the newest input event; a workflow task that saw less than
            this must be followed by another.
        close_event_id: The event that closed the execution (0 while running).
    """

    namespace: str
    workflow_id: str
    run_id: str
    workflow_type: str = ""
    task_queue: str = ""
    status: str = "running"
    start_time: datetime | None = None
    close_time: datetime | None = None
    next_event_id: int = 1
    first_run_id: str = ""
    attempt: int = 1
    parent: ParentRef | None = None
    execution_timeout: float | None = None
    run_timeout: float | None = None
    task_timeout: float = 10.0
    retry_policy: RetryPolicySpec | None = None
    wt_scheduled_event_id: int = 0
    wt_attempt: int = 0
    last_input_event_id: int = 0
    last_completed_wt_started_event_id: int = 0
    cancel_requested: bool = False
    activities: dict[int, PendingActivity] = {}
    timers: dict[str, PendingTimer] = {}
    children: dict[int, PendingChild] = {}
    request_ids: list[str] = []
    signal_count: int = 0
    close_event_id: int = 0

    @property
    def running(self) -> bool:
        """True until a close event is applied."""
        return self.status == "running"

    def has_unseen_input(self, seen_up_to: int) -> bool:
        """Whether an input event arrived after ``seen_up_to``."""
        return self.last_input_event_id > seen_up_to


def new_state(namespace: str, workflow_id: str, run_id: str) -> ExecutionState:
    """The empty state before event 1."""
    return ExecutionState(namespace=namespace, workflow_id=workflow_id, run_id=run_id)


def _remember(state: ExecutionState, request_id: str) -> None:
    if request_id:
        state.request_ids.append(request_id)
        if len(state.request_ids) > MAX_REMEMBERED_REQUEST_IDS:
            del state.request_ids[: len(state.request_ids) - MAX_REMEMBERED_REQUEST_IDS]


def apply_event(state: ExecutionState, event: HistoryEvent) -> None:
    """Apply one event to ``state`` in place. Events must come in order."""
    if event.event_id != state.next_event_id:
        raise ValueError(
            f"event {event.event_id} applied out of order (expected {state.next_event_id})"
        )
    state.next_event_id = event.event_id + 1
    attrs = event.attributes
    tag = event_type_of(attrs)
    if tag in INPUT_EVENT_TYPES and is_input_event(attrs):
        state.last_input_event_id = event.event_id
    closed_as = CLOSE_EVENT_TYPES.get(tag)
    if closed_as is not None:
        state.status = closed_as
        state.close_time = event.event_time
        state.close_event_id = event.event_id
        state.wt_scheduled_event_id = 0
        state.activities.clear()
        state.timers.clear()
        return
    match attrs:
        case WorkflowExecutionStarted():
            state.workflow_type = attrs.workflow_type
            state.task_queue = attrs.task_queue
            state.start_time = event.event_time
            state.first_run_id = attrs.first_run_id or state.run_id
            state.attempt = attrs.attempt
            state.parent = attrs.parent
            state.execution_timeout = attrs.execution_timeout
            state.run_timeout = attrs.run_timeout
            state.task_timeout = attrs.task_timeout
            state.retry_policy = attrs.retry_policy
            _remember(state, attrs.request_id)
        case WorkflowExecutionSignaled():
            state.signal_count += 1
            _remember(state, attrs.request_id)
        case WorkflowExecutionCancelRequested():
            state.cancel_requested = True
            _remember(state, attrs.request_id)
        case WorkflowTaskScheduled():
            state.wt_scheduled_event_id = event.event_id
            state.wt_attempt = attrs.attempt
        case WorkflowTaskStarted():
            pass
        case WorkflowTaskCompleted():
            state.wt_scheduled_event_id = 0
            state.wt_attempt = 0
            state.last_completed_wt_started_event_id = attrs.started_event_id
        case WorkflowTaskFailed() | WorkflowTaskTimedOut():
            # The task is retried: it stays pending with the next attempt number, and the
            # engine makes it visible again after a back-off.
            state.wt_attempt = attrs.attempt + 1
        case ActivityTaskScheduled():
            state.activities[event.event_id] = PendingActivity(
                scheduled_event_id=event.event_id,
                activity_id=attrs.activity_id,
                activity_type=attrs.activity_type,
                task_queue=attrs.task_queue,
                scheduled_time=event.event_time,
                schedule_to_close_timeout=attrs.schedule_to_close_timeout,
                start_to_close_timeout=attrs.start_to_close_timeout,
                heartbeat_timeout=attrs.heartbeat_timeout,
                retry_policy=attrs.retry_policy,
            )
        case ActivityTaskStarted():
            pass
        case ActivityTaskCompleted() | ActivityTaskCanceled():
            state.activities.pop(attrs.scheduled_event_id, None)
        case ActivityTaskFailed() | ActivityTaskTimedOut():
            if attrs.retry_state == "in_progress":
                pending = state.activities.get(attrs.scheduled_event_id)
                if pending is not None:
                    pending.attempt = attrs.attempt + 1
            else:
                state.activities.pop(attrs.scheduled_event_id, None)
        case ActivityTaskCancelRequested():
            pending = state.activities.get(attrs.scheduled_event_id)
            if pending is not None:
                pending.cancel_requested = True
        case TimerStarted():
            state.timers[attrs.timer_id] = PendingTimer(
                timer_id=attrs.timer_id, started_event_id=event.event_id, fire_time=attrs.fire_time
            )
        case TimerFired() | TimerCanceled():
            state.timers.pop(attrs.timer_id, None)
        case StartChildWorkflowExecutionInitiated():
            state.children[event.event_id] = PendingChild(
                initiated_event_id=event.event_id,
                workflow_id=attrs.workflow_id,
                workflow_type=attrs.workflow_type,
                task_queue=attrs.task_queue,
                parent_close_policy=attrs.parent_close_policy,
            )
        case ChildWorkflowExecutionStarted():
            child = state.children.get(attrs.initiated_event_id)
            if child is not None:
                child.run_id = attrs.run_id
        case (
            StartChildWorkflowExecutionFailed()
            | ChildWorkflowExecutionCompleted()
            | ChildWorkflowExecutionFailed()
            | ChildWorkflowExecutionCanceled()
            | ChildWorkflowExecutionTimedOut()
            | ChildWorkflowExecutionTerminated()
        ):
            state.children.pop(attrs.initiated_event_id, None)
        case RequestCancelExternalWorkflowExecutionInitiated():
            pass
        case _:
            pass


def rebuild_state(
    namespace: str, workflow_id: str, run_id: str, events: Iterable[HistoryEvent]
) -> ExecutionState:
    """Compute an execution's state from its history alone."""
    state = new_state(namespace, workflow_id, run_id)
    for event in events:
        apply_event(state, event)
    return state


_STATE_ENCODER = msgspec.json.Encoder()
_STATE_DECODER = msgspec.json.Decoder(ExecutionState)


def encode_state(state: ExecutionState) -> bytes:
    """Serialize a state for the execution row."""
    return _STATE_ENCODER.encode(state)


def decode_state(data: bytes | str) -> ExecutionState:
    """Deserialize a state from the execution row."""
    return _STATE_DECODER.decode(data)
