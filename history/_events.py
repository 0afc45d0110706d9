"""The event catalogue: one msgspec Struct per event kind, and the event envelope.

Every execution's history is a sequence of :class:`HistoryEvent` numbered 1, 2, 3 … with no
gaps. ``attributes`` is a tagged union; the tag (``type`` in JSON) is the event kind. Payloads
(workflow and activity inputs, results, signal arguments, heartbeat details) are kept as
:class:`msgspec.Raw` JSON so that the engine can check their size and store them without
decoding and re-encoding them.

Event kinds fall in three groups, which the workflow replayer relies on:

* *input* events give the workflow something new to react to (started, activity resolved,
  timer fired, signal, cancel request, child resolved) — :data:`INPUT_EVENT_TYPES`;
* *command* events record what a workflow task decided (schedule activity, start timer,
  record marker, complete …) — :data:`COMMAND_EVENT_TYPES`; they follow a
  ``workflow_task_completed`` event in the same batch, in command order;
* bookkeeping events (workflow task scheduled/started/failed, activity attempt started,
  attempts that will be retried, terminated) which the replayer passes over.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from cadenza.history._errors import Failure

NULL = msgspec.Raw(b"null")
EMPTY_ARGS = msgspec.Raw(b"[]")


class RetryPolicySpec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Retry policy as stored in events (seconds as floats; 0 means unlimited)."""

    initial_interval: float = 1.0
    backoff_coefficient: float = 2.0
    maximum_interval: float = 0.0
    maximum_attempts: int = 0
    non_retryable_error_types: list[str] = []
    jitter: float = 0.1


class ParentRef(msgspec.Struct, frozen=True, kw_only=True):
    """The parent of a child workflow, and which event of the parent initiated it."""

    namespace: str
    workflow_id: str
    run_id: str
    initiated_event_id: int


class TriggerInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What started an execution: a client, a schedule fire, a webhook, a parent."""

    source: str = "client"
    schedule_id: str | None = None
    nominal_time: datetime | None = None
    actual_time: datetime | None = None
    payload: msgspec.Raw = NULL


class _Attrs(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True):
    pass


# ----------------------------------------------------------------------------- workflow


class WorkflowExecutionStarted(_Attrs, tag="workflow_execution_started"):
    workflow_type: str
    task_queue: str
    input: msgspec.Raw = EMPTY_ARGS
    random_seed: int = 0
    attempt: int = 1
    first_run_id: str = ""
    continued_from_run_id: str | None = None
    parent: ParentRef | None = None
    execution_timeout: float | None = None
    run_timeout: float | None = None
    task_timeout: float = 10.0
    retry_policy: RetryPolicySpec | None = None
    trigger: TriggerInfo | None = None
    memo: dict[str, Any] = {}
    identity: str = ""
    request_id: str = ""


class WorkflowExecutionCompleted(_Attrs, tag="workflow_execution_completed"):
    result: msgspec.Raw = NULL
    workflow_task_completed_event_id: int = 0


class WorkflowExecutionFailed(_Attrs, tag="workflow_execution_failed"):
    failure: Failure
    workflow_task_completed_event_id: int = 0


class WorkflowExecutionTimedOut(_Attrs, tag="workflow_execution_timed_out"):
    timeout_type: str = "workflow_execution"


class WorkflowExecutionCanceled(_Attrs, tag="workflow_execution_canceled"):
    details: msgspec.Raw = NULL
    workflow_task_completed_event_id: int = 0


class WorkflowExecutionTerminated(_Attrs, tag="workflow_execution_terminated"):
    reason: str = ""
    identity: str = ""


class WorkflowExecutionContinuedAsNew(_Attrs, tag="workflow_execution_continued_as_new"):
    new_run_id: str
    workflow_type: str
    task_queue: str
    input: msgspec.Raw = EMPTY_ARGS
    workflow_task_completed_event_id: int = 0


class WorkflowExecutionCancelRequested(_Attrs, tag="workflow_execution_cancel_requested"):
    reason: str = ""
    identity: str = ""
    request_id: str = ""


class WorkflowExecutionSignaled(_Attrs, tag="workflow_execution_signaled"):
    signal_name: str
    input: msgspec.Raw = EMPTY_ARGS
    identity: str = ""
    request_id: str = ""


# ------------------------------------------------------------------------ workflow task


class WorkflowTaskScheduled(_Attrs, tag="workflow_task_scheduled"):
    task_queue: str
    attempt: int = 1


class WorkflowTaskStarted(_Attrs, tag="workflow_task_started"):
    """Written together with the task's completion or failure.

    ``seen_up_to`` is the last event id the worker was given: events after it (appended while
    the task ran) were not seen by this task and are delivered to the next one.
    """

    scheduled_event_id: int
    seen_up_to: int
    started_time: datetime
    attempt: int = 1
    identity: str = ""


class WorkflowTaskCompleted(_Attrs, tag="workflow_task_completed"):
    scheduled_event_id: int
    started_event_id: int
    identity: str = ""


class WorkflowTaskFailed(_Attrs, tag="workflow_task_failed"):
    scheduled_event_id: int
    started_event_id: int
    cause: str
    failure: Failure
    attempt: int = 1
    identity: str = ""


class WorkflowTaskTimedOut(_Attrs, tag="workflow_task_timed_out"):
    scheduled_event_id: int
    attempt: int = 1


# ----------------------------------------------------------------------------- activity


class ActivityTaskScheduled(_Attrs, tag="activity_task_scheduled"):
    activity_id: str
    activity_type: str
    task_queue: str
    input: msgspec.Raw = EMPTY_ARGS
    schedule_to_close_timeout: float | None = None
    start_to_close_timeout: float | None = None
    heartbeat_timeout: float | None = None
    retry_policy: RetryPolicySpec | None = None
    workflow_task_completed_event_id: int = 0


class ActivityTaskStarted(_Attrs, tag="activity_task_started"):
    """One attempt started; written together with that attempt's outcome."""

    scheduled_event_id: int
    attempt: int
    started_time: datetime
    identity: str = ""


class ActivityTaskCompleted(_Attrs, tag="activity_task_completed"):
    scheduled_event_id: int
    started_event_id: int
    attempt: int
    result: msgspec.Raw = NULL
    identity: str = ""


class ActivityTaskFailed(_Attrs, tag="activity_task_failed"):
    """An attempt failed. ``retry_state == "in_progress"`` means another attempt follows at
    ``next_attempt_time``; any other value means the activity failed for good."""

    scheduled_event_id: int
    started_event_id: int
    attempt: int
    failure: Failure
    retry_state: str
    next_attempt_time: datetime | None = None
    identity: str = ""


class ActivityTaskTimedOut(_Attrs, tag="activity_task_timed_out"):
    scheduled_event_id: int
    attempt: int
    timeout_type: str
    failure: Failure
    retry_state: str
    next_attempt_time: datetime | None = None
    started_event_id: int = 0


class ActivityTaskCancelRequested(_Attrs, tag="activity_task_cancel_requested"):
    scheduled_event_id: int
    workflow_task_completed_event_id: int = 0


class ActivityTaskCanceled(_Attrs, tag="activity_task_canceled"):
    scheduled_event_id: int
    attempt: int = 0
    details: msgspec.Raw = NULL
    identity: str = ""


# -------------------------------------------------------------------------------- timer


class TimerStarted(_Attrs, tag="timer_started"):
    timer_id: str
    fire_time: datetime
    duration: float
    workflow_task_completed_event_id: int = 0


class TimerFired(_Attrs, tag="timer_fired"):
    timer_id: str
    started_event_id: int


class TimerCanceled(_Attrs, tag="timer_canceled"):
    timer_id: str
    started_event_id: int
    workflow_task_completed_event_id: int = 0


class LocalActivityMarker(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The outcome of a local activity, recorded by a ``local_activity`` marker.

    A local activity runs inside the worker that runs the workflow task; only its final
    outcome (after local retries) is written, with the task's completion. On replay the
    recorded ``result`` (or ``failure``) is returned and the function is not run again.

    Attributes:
        seq: The workflow's own sequence number of local activities (1, 2, 3 …): what replay
            matches, with ``activity_type``.
        activity_id: The id given by the workflow (the sequence number by default).
        activity_type: The registered activity name.
        attempt: Attempts made, the successful or last failed one included.
        result: The JSON result (when it completed).
        failure: Why it failed for good (when it failed).
        retry_state: Empty when it completed; else why it was not retried again
            (``non_retryable_failure``, ``maximum_attempts_reached``, ``timeout``).
        started_time: When the worker started the first attempt (the worker's clock).
        completed_time: When the last attempt ended (the worker's clock).
    """

    seq: int
    activity_id: str
    activity_type: str
    attempt: int
    result: msgspec.Raw = NULL
    failure: Failure | None = None
    retry_state: str = ""
    started_time: datetime | None = None
    completed_time: datetime | None = None


class MarkerRecorded(_Attrs, tag="marker_recorded"):
    """A marker: ``patch`` (``details = {"patch_id": …}``), ``side_effect``, or
    ``local_activity`` (``local_activity`` holds the outcome)."""

    marker_name: str
    details: dict[str, Any] = {}
    local_activity: LocalActivityMarker | None = None
    workflow_task_completed_event_id: int = 0


# -------------------------------------------------------------------------------- child


class StartChildWorkflowExecutionInitiated(_Attrs, tag="start_child_workflow_execution_initiated"):
    workflow_id: str
    workflow_type: str
    task_queue: str
    input: msgspec.Raw = EMPTY_ARGS
    execution_timeout: float | None = None
    run_timeout: float | None = None
    parent_close_policy: str = "terminate"
    workflow_task_completed_event_id: int = 0


class StartChildWorkflowExecutionFailed(_Attrs, tag="start_child_workflow_execution_failed"):
    initiated_event_id: int
    workflow_id: str
    cause: str


class ChildWorkflowExecutionStarted(_Attrs, tag="child_workflow_execution_started"):
    initiated_event_id: int
    workflow_id: str
    run_id: str


class ChildWorkflowExecutionCompleted(_Attrs, tag="child_workflow_execution_completed"):
    initiated_event_id: int
    result: msgspec.Raw = NULL


class ChildWorkflowExecutionFailed(_Attrs, tag="child_workflow_execution_failed"):
    initiated_event_id: int
    failure: Failure


class ChildWorkflowExecutionCanceled(_Attrs, tag="child_workflow_execution_canceled"):
    initiated_event_id: int


class ChildWorkflowExecutionTimedOut(_Attrs, tag="child_workflow_execution_timed_out"):
    initiated_event_id: int


class ChildWorkflowExecutionTerminated(_Attrs, tag="child_workflow_execution_terminated"):
    initiated_event_id: int


class RequestCancelExternalWorkflowExecutionInitiated(
    _Attrs, tag="request_cancel_external_workflow_execution_initiated"
):
    workflow_id: str
    run_id: str = ""
    child_initiated_event_id: int = 0
    workflow_task_completed_event_id: int = 0


EventAttributes = (
    WorkflowExecutionStarted
    | WorkflowExecutionCompleted
    | WorkflowExecutionFailed
    | WorkflowExecutionTimedOut
    | WorkflowExecutionCanceled
    | WorkflowExecutionTerminated
    | WorkflowExecutionContinuedAsNew
    | WorkflowExecutionCancelRequested
    | WorkflowExecutionSignaled
    | WorkflowTaskScheduled
    | WorkflowTaskStarted
    | WorkflowTaskCompleted
    | WorkflowTaskFailed
    | WorkflowTaskTimedOut
    | ActivityTaskScheduled
    | ActivityTaskStarted
    | ActivityTaskCompleted
    | ActivityTaskFailed
    | ActivityTaskTimedOut
    | ActivityTaskCancelRequested
    | ActivityTaskCanceled
    | TimerStarted
    | TimerFired
    | TimerCanceled
    | MarkerRecorded
    | StartChildWorkflowExecutionInitiated
    | StartChildWorkflowExecutionFailed
    | ChildWorkflowExecutionStarted
    | ChildWorkflowExecutionCompleted
    | ChildWorkflowExecutionFailed
    | ChildWorkflowExecutionCanceled
    | ChildWorkflowExecutionTimedOut
    | ChildWorkflowExecutionTerminated
    | RequestCancelExternalWorkflowExecutionInitiated
)


class HistoryEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One event of a history.

    Attributes:
        event_id: Position in the history, from 1, without gaps.
        event_time: When the event was appended (UTC).
        attributes: The kind-specific attributes; ``attributes.type`` names the kind.
        hash: Hex SHA-256 of the previous event's hash and this event's canonical bytes.
    """

    event_id: int
    event_time: datetime
    attributes: EventAttributes
    hash: str = ""

    @property
    def event_type(self) -> str:
        """The kind of the event, e.g. ``activity_task_completed``."""
        return event_type_of(self.attributes)


def event_type_of(attributes: EventAttributes) -> str:
    """The tag of an attributes struct."""
    return attributes.__struct_config__.tag  # type: ignore[return-value]


ALL_EVENT_TYPES: tuple[type[_Attrs], ...] = EventAttributes.__args__  # type: ignore[attr-defined]

INPUT_EVENT_TYPES: frozenset[str] = frozenset(
    {
        "workflow_execution_started",
        "workflow_execution_signaled",
        "workflow_execution_cancel_requested",
        "activity_task_completed",
        "activity_task_failed",
        "activity_task_timed_out",
        "activity_task_canceled",
        "timer_fired",
        "start_child_workflow_execution_failed",
        "child_workflow_execution_started",
        "child_workflow_execution_completed",
        "child_workflow_execution_failed",
        "child_workflow_execution_canceled",
        "child_workflow_execution_timed_out",
        "child_workflow_execution_terminated",
    }
)
"""Kinds that give the workflow new input (a retried activity attempt is not input: see
:func:`is_input_event`)."""

COMMAND_EVENT_TYPES: frozenset[str] = frozenset(
    {
        "activity_task_scheduled",
        "activity_task_cancel_requested",
        "timer_started",
        "timer_canceled",
        "marker_recorded",
        "start_child_workflow_execution_initiated",
        "request_cancel_external_workflow_execution_initiated",
        "workflow_execution_completed",
        "workflow_execution_failed",
        "workflow_execution_canceled",
        "workflow_execution_continued_as_new",
    }
)
"""Kinds that record a command of a workflow task."""

CLOSE_EVENT_TYPES: dict[str, str] = {
    "workflow_execution_completed": "completed",
    "workflow_execution_failed": "failed",
    "workflow_execution_timed_out": "timed_out",
    "workflow_execution_canceled": "canceled",
    "workflow_execution_terminated": "terminated",
    "workflow_execution_continued_as_new": "continued_as_new",
}
"""Kinds that close an execution, with the status they leave it in."""


def is_input_event(attributes: EventAttributes) -> bool:
    """Whether the event gives the workflow new input (an attempt that will be retried does
    not: the workflow only sees an activity's final outcome)."""
    tag = event_type_of(attributes)
    if tag not in INPUT_EVENT_TYPES:
        return False
    if isinstance(attributes, ActivityTaskFailed | ActivityTaskTimedOut):
        return attributes.retry_state != "in_progress"
    return True


_ENCODER = msgspec.json.Encoder(order="sorted")
_EVENT_DECODER = msgspec.json.Decoder(HistoryEvent)
_ATTRS_DECODER = msgspec.json.Decoder(EventAttributes)


def encode_event(event: HistoryEvent) -> bytes:
    """Canonical JSON of an event without its hash: the bytes the hash chain covers."""
    return encode_event_fields(event.event_id, event.event_time, event.attributes)


def encode_event_fields(event_id: int, event_time: datetime, attributes: EventAttributes) -> bytes:
    """:func:`encode_event` of the event these fields make (before it has its hash)."""
    return _ENCODER.encode(
        {"event_id": event_id, "event_time": event_time, "attributes": attributes}
    )


def decode_event(data: bytes | str, hash_hex: str) -> HistoryEvent:
    """Rebuild an event from its canonical JSON and stored hash."""
    event = _EVENT_DECODER.decode(data)
    return msgspec.structs.replace(event, hash=hash_hex)


def decode_attributes(data: bytes | str) -> EventAttributes:
    """Decode a tagged attributes struct from JSON."""
    return _ATTRS_DECODER.decode(data)


def event_to_json(event: HistoryEvent) -> dict[str, Any]:
    """A JSON-ready dict of the event (for exports and the API), hash included."""
    out: dict[str, Any] = msgspec.json.decode(encode_event(event))
    out["event_type"] = event.event_type
    out["hash"] = event.hash
    return out
