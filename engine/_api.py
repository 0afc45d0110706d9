"""Requests and responses of the engine's service surface.

The in-process client and worker call the engine with these structs, and the HTTP frontend
sends the same structs as JSON, so a worker behaves the same next to the engine or on another
host.
"""

from __future__ import annotations

from typing import Any

import msgspec

from cadenza.history import EMPTY_ARGS, HistoryEvent, RetryPolicySpec
from cadenza.history._events import TriggerInfo

ID_REUSE_POLICIES = ("allow_duplicate", "allow_duplicate_failed_only", "reject_duplicate")
ID_CONFLICT_POLICIES = ("fail", "use_existing", "terminate_existing")


class StartWorkflowRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Start an execution.

    Attributes:
        workflow_id: Business key; at most one running execution per id.
        workflow_type: Registered workflow type name.
        task_queue: Queue its workflow tasks go to.
        input: JSON array of arguments.
        namespace: Namespace (``default``).
        id_reuse_policy: When a *closed* execution with the id exists: ``allow_duplicate``
            (default), ``allow_duplicate_failed_only``, ``reject_duplicate``.
        id_conflict_policy: When a *running* execution with the id exists: ``fail`` (default,
            raises WorkflowAlreadyStartedError), ``use_existing`` (returns it),
            ``terminate_existing``.
        execution_timeout: Seconds the whole chain of runs may take (None: unlimited).
        run_timeout: Seconds one run may take (None: unlimited).
        task_timeout: Seconds a worker may hold a workflow task (default 10).
        request_id: Makes a retried start idempotent.
        trigger: What started it (client, schedule, webhook).
        memo: Free JSON attributes shown by describe.
        identity: Who asks (recorded in the history).
    """

    workflow_id: str
    workflow_type: str
    task_queue: str
    input: msgspec.Raw = EMPTY_ARGS
    namespace: str = "default"
    id_reuse_policy: str = "allow_duplicate"
    id_conflict_policy: str = "fail"
    execution_timeout: float | None = None
    run_timeout: float | None = None
    task_timeout: float | None = None
    retry_policy: RetryPolicySpec | None = None
    request_id: str = ""
    trigger: TriggerInfo | None = None
    memo: dict[str, Any] = {}
    identity: str = ""


class StartWorkflowResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The run that the start created (``started``) or found (``use_existing``)."""

    workflow_id: str
    run_id: str
    started: bool


class TaskToken(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """Identifies one attempt of one task; stale tokens are rejected or ignored."""

    shard_id: int
    namespace: str
    workflow_id: str
    run_id: str
    scheduled_event_id: int
    attempt: int


class QueryRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A query delivered to a worker with (or instead of) a workflow task."""

    query_id: str
    query_type: str
    args: msgspec.Raw = EMPTY_ARGS


class WorkflowTaskInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A workflow task handed to a worker.

    The worker reads the history up to ``seen_up_to`` (from its cache position, or from the
    start) and answers with commands. ``history`` carries the events after ``history_after``
    when the engine could include them: all of them for a worker without the execution
    cached, only the new ones for the sticky worker that has it. With ``query`` set and no
    token, it is a query only.
    """

    namespace: str
    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    seen_up_to: int
    started_time_ms: int
    attempt: int
    token: TaskToken | None = None
    query: QueryRequest | None = None
    history_after: int = 0
    history: list[HistoryEvent] = []


class ActivityTaskInfo(msgspec.Struct, frozen=True, kw_only=True):
    """An activity attempt handed to a worker."""

    token: TaskToken
    activity_id: str
    activity_type: str
    task_queue: str
    input: msgspec.Raw
    workflow_type: str
    scheduled_time_ms: int
    started_time_ms: int
    schedule_to_close_timeout: float | None = None
    start_to_close_timeout: float | None = None
    heartbeat_timeout: float | None = None
    heartbeat_details: list[Any] = []


class HeartbeatResponse(msgspec.Struct, frozen=True, kw_only=True):
    """``cancel_requested`` tells the activity to stop."""

    cancel_requested: bool


class PendingActivityView(msgspec.Struct, frozen=True, kw_only=True):
    """An activity as describe shows it."""

    activity_id: str
    activity_type: str
    scheduled_event_id: int
    attempt: int
    state: str
    last_heartbeat_details: Any = None


class WorkflowDescription(msgspec.Struct, frozen=True, kw_only=True):
    """What describe returns."""

    namespace: str
    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    status: str
    start_time_ms: int
    close_time_ms: int | None
    history_length: int
    last_hash: str
    pending_activities: list[PendingActivityView] = []
    pending_timers: int = 0
    pending_children: int = 0
    memo: dict[str, Any] = {}
    parent_workflow_id: str | None = None
