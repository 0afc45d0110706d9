"""Commands: what a workflow task decides, sent by the worker with its completion.

Each command becomes one or more events (and the tasks and timers that follow from them) in the
same write as the task's completion. Their order is the order of the command events in the
history, which replay checks.
"""

from __future__ import annotations

from typing import Any

import msgspec

from cadenza.history import EMPTY_ARGS, NULL, Failure, LocalActivityMarker, RetryPolicySpec


class _Command(msgspec.Struct, frozen=True, kw_only=True, tag_field="command", omit_defaults=True):
    pass


class ScheduleActivity(_Command, tag="schedule_activity"):
    """Schedule an activity (``seq`` is the workflow's own sequence number)."""

    seq: int
    activity_id: str
    activity_type: str
    task_queue: str
    input: msgspec.Raw = EMPTY_ARGS
    schedule_to_close_timeout: float | None = None
    start_to_close_timeout: float | None = None
    heartbeat_timeout: float | None = None
    retry_policy: RetryPolicySpec | None = None


class RequestCancelActivity(_Command, tag="request_cancel_activity"):
    """Ask a scheduled activity to stop."""

    scheduled_event_id: int


class StartTimer(_Command, tag="start_timer"):
    """Start a durable timer of ``duration`` seconds."""

    timer_id: str
    duration: float


class CancelTimer(_Command, tag="cancel_timer"):
    """Cancel a started timer."""

    timer_id: str


class RecordMarker(_Command, tag="record_marker"):
    """Record a marker: a patch (``details = {"patch_id": …}``), a side effect, or the
    outcome of a local activity (``marker_name = "local_activity"`` with ``local_activity``
    set; the worker ran it while the task was open)."""

    marker_name: str
    details: dict[str, Any] = {}
    local_activity: LocalActivityMarker | None = None


class StartChildWorkflow(_Command, tag="start_child_workflow"):
    """Start a child workflow."""

    seq: int
    workflow_id: str
    workflow_type: str
    task_queue: str
    input: msgspec.Raw = EMPTY_ARGS
    execution_timeout: float | None = None
    run_timeout: float | None = None
    parent_close_policy: str = "terminate"


class RequestCancelExternal(_Command, tag="request_cancel_external"):
    """Request cancellation of another execution (used for child workflows)."""

    workflow_id: str
    run_id: str = ""
    child_initiated_event_id: int = 0


class CompleteWorkflow(_Command, tag="complete_workflow"):
    """Close the execution as completed."""

    result: msgspec.Raw = NULL


class FailWorkflow(_Command, tag="fail_workflow"):
    """Close the execution as failed."""

    failure: Failure


class CancelWorkflow(_Command, tag="cancel_workflow"):
    """Close the execution as canceled (after a cancel request)."""

    details: msgspec.Raw = NULL


class ContinueAsNew(_Command, tag="continue_as_new"):
    """Close this run and start a new one with the same workflow id and fresh history."""

    workflow_type: str
    task_queue: str
    input: msgspec.Raw = EMPTY_ARGS
    run_timeout: float | None = None


Command = (
    ScheduleActivity
    | RequestCancelActivity
    | StartTimer
    | CancelTimer
    | RecordMarker
    | StartChildWorkflow
    | RequestCancelExternal
    | CompleteWorkflow
    | FailWorkflow
    | CancelWorkflow
    | ContinueAsNew
)

CLOSING_COMMANDS = (CompleteWorkflow, FailWorkflow, CancelWorkflow, ContinueAsNew)
