"""The API of workflow code: ``from cadenza.sdk import workflow``.

Workflow code must be deterministic: given the same history it must make the same calls in the
same order. Time, randomness and ids come from here (``workflow.now()``, ``workflow.random()``,
``workflow.uuid4()``), never from ``datetime.now()`` or ``random``; waiting is done with
``workflow.sleep`` (or ``asyncio.sleep``, which becomes a durable timer), activities and child
workflows. Use ``workflow.patched("change-id")`` to change code of running workflows safely.
"""

from __future__ import annotations

import asyncio
import random as _random_module
import uuid as _uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from cadenza.activities import ActivityDefinition
from cadenza.engine import ScheduleActivity, StartChildWorkflow
from cadenza.history import InvalidArgumentError
from cadenza.sdk._common import RetryPolicy, seconds
from cadenza.sdk._converter import decode_value, encode_args
from cadenza.sdk._definitions import WorkflowDefinition, defn, query, run, signal
from cadenza.sdk._instance import (
    ContinueAsNewRequest,
    LocalActivityCall,
    WorkflowInfo,
    current,
    in_workflow,
)

__all__ = [
    "RetryPolicy",
    "WorkflowInfo",
    "continue_as_new",
    "defn",
    "execute_activity",
    "execute_child_workflow",
    "execute_local_activity",
    "in_workflow",
    "info",
    "is_replaying",
    "now",
    "patched",
    "query",
    "random",
    "run",
    "signal",
    "sleep",
    "start_activity",
    "start_child_workflow",
    "start_local_activity",
    "uuid4",
    "wait_condition",
]

PARENT_CLOSE_POLICIES = ("terminate", "request_cancel", "abandon")

LOCAL_ACTIVITY_TASK_SHARE = 0.8
"""Share of the workflow task timeout that a local activity, retries included, may take."""


def info() -> WorkflowInfo:
    """The running execution's :class:`WorkflowInfo`."""
    instance = current()
    if instance.info is None:
        raise RuntimeError("workflow info is not available before the workflow started")
    return instance.info


def now() -> datetime:
    """The workflow's current time (UTC): the start time of the current workflow task, the
    same on every replay."""
    return datetime.fromtimestamp(current().now_ms() / 1000, tz=UTC)


def random() -> _random_module.Random:
    """A random generator seeded from the history: the same numbers on every replay."""
    return current().rng()


def uuid4() -> _uuid.UUID:
    """A version-4 UUID drawn from :func:`random` (deterministic)."""
    return _uuid.UUID(int=current().rng().getrandbits(128), version=4)


def is_replaying() -> bool:
    """Whether the code is re-running a task already recorded (e.g. to skip logging)."""
    return current().replaying


def patched(patch_id: str) -> bool:
    """Whether new code may run at this point.

    Returns True for executions that reach this point with the new code (and records a marker
    in their history), False when replaying a history recorded before the change. Keep both
    branches until no execution that started before the change is running.
    """
    if not patch_id:
        raise InvalidArgumentError("patch_id", "must not be empty")
    return current().patched(patch_id)


async def sleep(duration: timedelta | float) -> None:
    """Sleep on a durable timer: it survives restarts and fires once."""
    secs = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
    if secs <= 0:
        await asyncio.sleep(0)
        return
    instance = current()
    timer_id, future = instance.start_timer(secs)
    try:
        await future
    except asyncio.CancelledError:
        instance.cancel_timer(timer_id)
        raise


async def wait_condition(
    fn: Callable[[], bool], *, timeout: timedelta | float | None = None
) -> None:
    """Wait until ``fn()`` is true (re-checked after every change of state).

    Raises:
        asyncio.TimeoutError: when ``timeout`` passes first (a durable timer).
    """
    future = current().wait_condition(fn)
    if timeout is None:
        await future
        return
    secs = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    await asyncio.wait_for(future, secs)


def _activity_name(activity: Callable[..., Any] | str) -> tuple[str, Any]:
    if isinstance(activity, str):
        if not activity:
            raise InvalidArgumentError("activity", "activity name must not be empty")
        return activity, Any
    definition = ActivityDefinition.of(activity)
    return definition.name, definition.return_type


def start_activity(
    activity: Callable[..., Any] | str,
    *args: Any,
    start_to_close_timeout: timedelta | float | None = None,
    schedule_to_close_timeout: timedelta | float | None = None,
    heartbeat_timeout: timedelta | float | None = None,
    retry_policy: RetryPolicy | None = None,
    task_queue: str | None = None,
    activity_id: str | None = None,
    result_type: Any = None,
) -> asyncio.Task[Any]:
    """Schedule an activity; returns a task that resolves with its result.

    Args:
        activity: An ``@activity.defn`` function or a registered activity name.
        *args: Its arguments (JSON-encodable).
        start_to_close_timeout: Limit of one attempt.
        schedule_to_close_timeout: Limit of all attempts together. One of the two is required.
        heartbeat_timeout: Longest gap between heartbeats of an attempt.
        retry_policy: Retry policy (default: 1 s doubling to 100 s, unlimited attempts).
        task_queue: Queue of the activity workers (default: the workflow's).
        activity_id: Id shown in the history (default: a sequence number).
        result_type: Type to decode the result into (default: the function's return hint).

    Raises:
        ActivityError: (from the task) when the activity failed for good; ``__cause__`` says
            why (ApplicationError, TimeoutError, CancelledError).
    """
    instance = current()
    name, return_type = _activity_name(activity)
    stc = seconds(start_to_close_timeout, "start_to_close_timeout")
    s2c = seconds(schedule_to_close_timeout, "schedule_to_close_timeout")
    if stc is None and s2c is None:
        raise InvalidArgumentError(
            "start_to_close_timeout",
            "one of start_to_close_timeout or schedule_to_close_timeout is required",
        )
    seq = instance.next_seq("activity")
    command = ScheduleActivity(
        seq=seq,
        activity_id=activity_id or str(seq),
        activity_type=name,
        task_queue=task_queue or instance.task_queue,
        input=encode_args(args),
        schedule_to_close_timeout=s2c,
        start_to_close_timeout=stc if stc is not None else s2c,
        heartbeat_timeout=seconds(heartbeat_timeout, "heartbeat_timeout"),
        retry_policy=retry_policy.to_spec() if retry_policy else None,
    )
    call = instance.schedule_activity(
        command, result_type if result_type is not None else return_type
    )

    async def wait() -> Any:
        try:
            raw = await call.future
        except asyncio.CancelledError:
            instance.cancel_activity(call)
            raise
        return decode_value(raw, call.result_type)

    return instance.create_task(wait(), name=f"activity-{command.activity_id}")


async def execute_activity(activity: Callable[..., Any] | str, *args: Any, **options: Any) -> Any:
    """Run an activity and return its result; options as for :func:`start_activity`."""
    return await start_activity(activity, *args, **options)


def start_local_activity(
    activity: Callable[..., Any] | str,
    *args: Any,
    start_to_close_timeout: timedelta | float | None = None,
    schedule_to_close_timeout: timedelta | float | None = None,
    retry_policy: RetryPolicy | None = None,
    activity_id: str | None = None,
    result_type: Any = None,
) -> asyncio.Task[Any]:
    """Run an activity inside this worker, in the current workflow task; returns a task that
    resolves with its result.

    A local activity is not dispatched through the server: the worker that runs the workflow
    task runs the function as soon as the workflow code waits, retries it locally, and feeds
    the outcome back into the workflow in the *same* workflow task. Its outcome is recorded as
    a ``marker_recorded`` event (``marker_name = "local_activity"``) with the task's
    completion; on replay the recorded outcome is returned without running the function.
    Use it for short work (a lookup, a computation, a quick call); anything that may take
    longer than a fraction of the workflow task timeout belongs in :func:`start_activity`.

    If the worker dies before the workflow task completes, nothing was recorded: another
    worker runs the local activities again (at least once, like normal activities).

    Args:
        activity: An ``@activity.defn`` function or a registered activity name; it must be
            registered on the worker (``Worker(activities=[...])``).
        *args: Its arguments (JSON-encodable).
        start_to_close_timeout: Limit of one attempt (default: the schedule-to-close limit).
        schedule_to_close_timeout: Limit of all attempts together (default and maximum: 80 %
            of the workflow task timeout, 8 s for the default 10 s).
        retry_policy: Retry policy, applied by the worker with local back-off (default: 1 s
            doubling, unlimited attempts, bounded by ``schedule_to_close_timeout``).
        activity_id: Id shown in the history (default: the local activity sequence number).
        result_type: Type to decode the result into (default: the function's return hint).

    Raises:
        InvalidArgumentError: an option is invalid (the error names it), for instance a
            timeout longer than 80 % of the workflow task timeout.
        ActivityError: (from the task) when the activity failed for good; ``__cause__`` says
            why (ApplicationError, TimeoutError).
    """
    instance = current()
    name, return_type = _activity_name(activity)
    stc = seconds(start_to_close_timeout, "start_to_close_timeout")
    s2c = seconds(schedule_to_close_timeout, "schedule_to_close_timeout")
    if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
        raise InvalidArgumentError("retry_policy", "must be a workflow.RetryPolicy")
    if activity_id is not None and not activity_id:
        raise InvalidArgumentError("activity_id", "must not be empty")
    bound = LOCAL_ACTIVITY_TASK_SHARE * instance.task_timeout
    for field_name, value in (
        ("schedule_to_close_timeout", s2c),
        ("start_to_close_timeout", stc),
    ):
        if value is not None and value > bound:
            raise InvalidArgumentError(
                field_name,
                f"{value:g} s is longer than a local activity may take: at most 80 % of the "
                f"workflow task timeout ({bound:g} s of {instance.task_timeout:g} s); use "
                "execute_activity for longer work",
            )
    s2c = s2c if s2c is not None else bound
    stc = min(stc, s2c) if stc is not None else s2c
    seq = instance.next_seq("local_activity")
    call = LocalActivityCall(
        seq=seq,
        activity_id=activity_id or str(seq),
        activity_type=name,
        input=encode_args(args),
        start_to_close_timeout=stc,
        schedule_to_close_timeout=s2c,
        retry_policy=retry_policy.to_spec() if retry_policy else None,
        future=instance.create_future(),
        result_type=result_type if result_type is not None else return_type,
    )
    instance.start_local_activity(call)

    async def wait() -> Any:
        try:
            raw = await call.future
        except asyncio.CancelledError:
            instance.cancel_local_activity(call)
            raise
        return decode_value(raw, call.result_type)

    return instance.create_task(wait(), name=f"local-activity-{call.activity_id}")


async def execute_local_activity(
    activity: Callable[..., Any] | str, *args: Any, **options: Any
) -> Any:
    """Run a local activity and return its result; options as for
    :func:`start_local_activity`."""
    return await start_local_activity(activity, *args, **options)


class ChildWorkflowHandle:
    """A started child workflow: ``await handle`` gives its result."""

    def __init__(self, call: Any, task: asyncio.Task[Any], workflow_id: str) -> None:
        self._call = call
        self._task = task
        self.id = workflow_id

    @property
    def first_execution_run_id(self) -> str:
        """Run id of the child (known once it started)."""
        future = self._call.start_future
        return (
            future.result()
            if future is not None and future.done() and not future.exception()
            else ""
        )

    def __await__(self) -> Any:
        return self._task.__await__()

    def cancel(self) -> None:
        """Request cancellation of the child."""
        current().cancel_child(self._call)


async def start_child_workflow(
    workflow: Any,
    *args: Any,
    id: str,
    task_queue: str | None = None,
    execution_timeout: timedelta | float | None = None,
    run_timeout: timedelta | float | None = None,
    parent_close_policy: str = "terminate",
    result_type: Any = None,
) -> ChildWorkflowHandle:
    """Start a child workflow and wait until it has started.

    Args:
        workflow: A ``@workflow.defn`` class, its run method, or a workflow type name.
        id: The child's workflow id.
        parent_close_policy: What happens to the child when this workflow closes:
            ``terminate`` (default), ``request_cancel`` or ``abandon``.

    Raises:
        WorkflowAlreadyStartedError: a workflow with that id is running.
    """
    instance = current()
    if parent_close_policy not in PARENT_CLOSE_POLICIES:
        raise InvalidArgumentError(
            "parent_close_policy", f"must be one of {', '.join(PARENT_CLOSE_POLICIES)}"
        )
    if isinstance(workflow, str):
        type_name, return_type = workflow, Any
    else:
        definition = WorkflowDefinition.of(workflow)
        type_name, return_type = definition.name, definition.return_type
    seq = instance.next_seq("child")
    command = StartChildWorkflow(
        seq=seq,
        workflow_id=id,
        workflow_type=type_name,
        task_queue=task_queue or instance.task_queue,
        input=encode_args(args),
        execution_timeout=seconds(execution_timeout, "execution_timeout"),
        run_timeout=seconds(run_timeout, "run_timeout"),
        parent_close_policy=parent_close_policy,
    )
    call = instance.start_child(command, result_type if result_type is not None else return_type)

    async def wait_result() -> Any:
        try:
            raw = await call.future
        except asyncio.CancelledError:
            instance.cancel_child(call)
            raise
        return decode_value(raw, call.result_type)

    task = instance.create_task(wait_result(), name=f"child-{id}")
    handle = ChildWorkflowHandle(call, task, id)
    try:
        await call.start_future
    except asyncio.CancelledError:
        instance.cancel_child(call)
        raise
    return handle


async def execute_child_workflow(workflow: Any, *args: Any, **options: Any) -> Any:
    """Start a child workflow and return its result (options as for start_child_workflow)."""
    handle = await start_child_workflow(workflow, *args, **options)
    return await handle


def continue_as_new(
    *args: Any,
    workflow: Any = None,
    task_queue: str | None = None,
    run_timeout: timedelta | float | None = None,
) -> NoReturn:
    """Close this run and start a new one with the same id, fresh history and ``args``."""
    instance = current()
    type_name = None
    if workflow is not None:
        type_name = workflow if isinstance(workflow, str) else WorkflowDefinition.of(workflow).name
    raise ContinueAsNewRequest(
        instance.continue_as_new_command(
            args, type_name, task_queue, seconds(run_timeout, "run_timeout")
        )
    )
