"""Workflow tasks: long-poll, completion with commands, failure.

A workflow task is dispatched by leasing its row; the lease records ``seen_up_to``, the last
event the worker is given. Nothing is appended at dispatch: the ``workflow_task_started``
event is written with the task's outcome, so a task costs one write, not two. Events that
arrive while the task runs are appended at once; the replayer knows from ``seen_up_to`` that
this task did not see them, and the completion schedules another task for them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

import msgspec

from cadenza.engine._api import QueryRequest, TaskToken, WorkflowTaskInfo
from cadenza.engine._commands import (
    CLOSING_COMMANDS,
    CancelTimer,
    CancelWorkflow,
    Command,
    CompleteWorkflow,
    ContinueAsNew,
    FailWorkflow,
    RecordMarker,
    RequestCancelActivity,
    RequestCancelExternal,
    ScheduleActivity,
    StartChildWorkflow,
    StartTimer,
)
from cadenza.engine._mutation import Mutation, activity_task_id, ms_to_dt, workflow_task_id
from cadenza.engine._retry import workflow_task_backoff_ms
from cadenza.engine._sync_match import claim_lease
from cadenza.engine._validation import MAX_NAME_LENGTH, check_id
from cadenza.history import (
    CadenzaError,
    Failure,
    InvalidArgumentError,
    ShardOwnershipLostError,
    TaskChange,
    TaskRecord,
    TimerRecord,
    UnknownTypeError,
)
from cadenza.history._events import (
    ActivityTaskCanceled,
    ActivityTaskCancelRequested,
    ActivityTaskFailed,
    ActivityTaskScheduled,
    ActivityTaskStarted,
    MarkerRecorded,
    RequestCancelExternalWorkflowExecutionInitiated,
    StartChildWorkflowExecutionInitiated,
    TimerCanceled,
    TimerStarted,
    WorkflowExecutionCanceled,
    WorkflowExecutionCompleted,
    WorkflowExecutionContinuedAsNew,
    WorkflowExecutionFailed,
    WorkflowExecutionStarted,
    WorkflowTaskCompleted,
    WorkflowTaskFailed,
    WorkflowTaskStarted,
)

if TYPE_CHECKING:
    from cadenza.engine._engine import Engine

log = logging.getLogger("cadenza.engine.workflow_tasks")

MAX_TASKS_PER_POLL = 100


def check_max_tasks(max_tasks: int) -> None:
    """A poll's ``max_tasks`` is 1 to :data:`MAX_TASKS_PER_POLL`; else InvalidArgumentError."""
    if not 1 <= max_tasks <= MAX_TASKS_PER_POLL:
        raise InvalidArgumentError(
            "max_tasks", f"must be between 1 and {MAX_TASKS_PER_POLL}, got {max_tasks}"
        )


"""Most workflow tasks one poll may lease at once (``poll_workflow_tasks(max_tasks=…)``)."""


class StaleTaskError(CadenzaError):
    """The task token no longer names the current attempt (it timed out, or the run closed)."""

    status = 409


def activity_timer_keys(run_id: str, scheduled_event_id: int, attempt: int) -> list[str]:
    """Timer rows that belong to one attempt of an activity."""
    return [
        f"a-stc:{run_id}:{scheduled_event_id}:{attempt}",
        f"a-hb:{run_id}:{scheduled_event_id}:{attempt}",
        f"a-retry:{run_id}:{scheduled_event_id}:{attempt}",
    ]


def wt_timeout_key(run_id: str, scheduled_event_id: int, attempt: int) -> str:
    """Timer row of a workflow task attempt's timeout."""
    return f"wt-timeout:{run_id}:{scheduled_event_id}:{attempt}"


def _wt_timers(task: TaskRecord) -> list[TimerRecord]:
    timeout = float(task.payload.get("timeout", 10.0))
    return [
        TimerRecord(
            shard_id=task.shard_id,
            timer_key=wt_timeout_key(task.run_id, task.ref_event_id, task.attempt),
            fire_at_ms=(task.started_at_ms or 0) + int(timeout * 1000),
            namespace=task.namespace,
            workflow_id=task.workflow_id,
            run_id=task.run_id,
            kind="workflow_task_timeout",
            ref_event_id=task.ref_event_id,
            attempt=task.attempt,
        )
    ]


def token_of(task: TaskRecord) -> TaskToken:
    """The token a worker completes a leased task attempt with."""
    return TaskToken(
        shard_id=task.shard_id,
        namespace=task.namespace,
        workflow_id=task.workflow_id,
        run_id=task.run_id,
        scheduled_event_id=task.ref_event_id,
        attempt=task.attempt,
    )


_HISTORY_IN_TASK = 1000

RETRY_VISIBLE_RESET: dict[str, Any] = {
    "lease_owner": None,
    "lease_until_ms": None,
    "started_at_ms": None,
    "seen_up_to": None,
    "sticky_worker": None,
    "sticky_until_ms": None,
}


class WorkflowTaskOps:
    """Workflow task operations of :class:`~cadenza.engine.Engine`."""

    async def poll_workflow_task(
        self: Engine,
        namespace: str,
        task_queue: str,
        worker_id: str,
        *,
        workflow_types: frozenset[str] = frozenset(),
        timeout: float | None = None,
    ) -> WorkflowTaskInfo | None:
        """Wait up to ``timeout`` seconds for a workflow task (or a query) of a queue."""
        tasks = await self.poll_workflow_tasks(
            namespace, task_queue, worker_id, workflow_types=workflow_types, timeout=timeout
        )
        return tasks[0] if tasks else None

    async def poll_workflow_tasks(
        self: Engine,
        namespace: str,
        task_queue: str,
        worker_id: str,
        *,
        workflow_types: frozenset[str] = frozenset(),
        timeout: float | None = None,
        max_tasks: int = 1,
    ) -> list[WorkflowTaskInfo]:
        """Wait up to ``timeout`` seconds for workflow tasks (or a query) of a queue.

        Returns as soon as any task is visible: up to ``max_tasks`` of them, leased in one
        transaction (a busy queue hands a worker many tasks for the price of one claim; an
        idle one answers the first task as soon as it is written). A query comes alone. An
        empty list means nothing came within the poll.
        """
        check_id("task_queue", task_queue, MAX_NAME_LENGTH)
        check_max_tasks(max_tasks)
        await self.register_types(namespace, task_queue, "workflow", workflow_types)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.settings.poll_timeout if timeout is None else timeout)
        key = ("workflow", namespace, task_queue)
        lease_ms = int(self.settings.workflow_task_timeout * 1000)
        # How a commit leases a new task to this poll while it waits (as the claim would).
        lease = claim_lease(worker_id, lease_ms, _wt_timers, records_seen=True)
        while not self.stopping:
            ticket = self.notifier.ticket(key, capacity=max_tasks)
            query = self.take_query(namespace, task_queue)
            if query is not None:
                record = await self.store.get_execution(query.shard_id, query.run_id)
                if record is not None:
                    self.notifier.release(key, ticket)
                    return [
                        WorkflowTaskInfo(
                            namespace=record.namespace,
                            workflow_id=record.workflow_id,
                            run_id=record.run_id,
                            workflow_type=record.workflow_type,
                            task_queue=record.task_queue,
                            seen_up_to=record.next_event_id - 1,
                            started_time_ms=self.clock.now_ms(),
                            attempt=1,
                            query=QueryRequest(
                                query_id=query.query_id,
                                query_type=query.query_type,
                                args=query.args,
                            ),
                        )
                    ]
            now = self.clock.now_ms()
            claimed = await self.store.claim_tasks(
                kind="workflow",
                namespace=namespace,
                task_queue=task_queue,
                owner=worker_id,
                now=now,
                lease_ms=lease_ms,
                limit=max_tasks,
                shard_ids=self.claim_shards(key),
                timers_for=_wt_timers,
                notify_for=self.timer_notices,
            )
            if claimed:
                self.notifier.release(key, ticket)
                if len(claimed) == max_tasks:
                    # More may be waiting: let another poller of the queue look at once.
                    self.notifier.notify_one(key)
                for task in claimed:
                    self.track_inflight(task.task_id, True, task)
                if self.timer_service is not None:
                    self.timer_service.notify(min(_wt_timers(t)[0].fire_at_ms for t in claimed))
                return [await self._task_info(task, worker_id, now) for task in claimed]
            remaining = deadline - loop.time()
            if remaining <= 0:
                self.notifier.release(key, ticket)
                return []
            # A task held for another worker's cache becomes free when its sticky window
            # ends; look again by then even if nothing notifies us.
            delivered = await self.sync_match.wait(
                key,
                ticket,
                worker_id=worker_id,
                capacity=max_tasks,
                lease=lease,
                timeout=min(remaining, self.settings.sticky_timeout),
            )
            if delivered:
                return [await self._task_info(task, worker_id, now) for task in delivered]
        # The engine is stopping: answer "no task" at the poll's end (at most a second
        # away), not at once, so a worker that outlives its engine does not spin.
        await asyncio.sleep(max(0.0, min(deadline - loop.time(), 1.0)))
        return []

    async def _task_info(
        self: Engine, task: TaskRecord, worker_id: str, now: int
    ) -> WorkflowTaskInfo:
        """What a worker is handed for a claimed workflow task."""
        after, history = await self._history_for(task, worker_id)
        return WorkflowTaskInfo(
            history_after=after,
            history=history,
            namespace=task.namespace,
            workflow_id=task.workflow_id,
            run_id=task.run_id,
            workflow_type=str(task.payload.get("workflow_type", "")),
            task_queue=task.task_queue,
            seen_up_to=task.seen_up_to or 0,
            started_time_ms=task.started_at_ms or now,
            attempt=task.attempt,
            token=token_of(task),
        )

    async def _history_for(self: Engine, task: TaskRecord, worker_id: str) -> tuple[int, list[Any]]:
        """The events to hand out with a workflow task: only the new ones when the worker
        has the execution cached, else all of them when there are not too many."""
        seen = task.seen_up_to or 0
        cached = self._executions.get(task.run_id)
        after = 0
        if (
            cached is not None
            and cached.sticky_worker == worker_id
            and task.sticky_worker == worker_id
            and 0 < cached.worker_position <= seen
        ):
            after = cached.worker_position
        if seen - after > _HISTORY_IN_TASK:
            return 0, []
        written = self.written.history(task.run_id, after, seen)
        if written is not None:
            return after, written
        events = await self.store.read_events(
            task.shard_id, task.run_id, after, seen, _HISTORY_IN_TASK
        )
        return after, events

    async def release_sticky(self: Engine, worker_id: str) -> None:
        """A worker is shutting down: its sticky workflow tasks may go to any worker now."""
        if await self.store.release_sticky(worker_id):
            for key in list(self.notifier._events):
                if isinstance(key, tuple) and key[0] == "workflow":
                    self.notifier.notify(key)

    def track_inflight(
        self: Engine, task_id: str, running: bool, task: TaskRecord | None = None
    ) -> None:
        """Remember tasks held by workers: their leased rows (so that the completion need not
        read them again) and their count (the test environment's idle check)."""
        if running:
            self._inflight_ids.add(task_id)
            if task is not None:
                self._claimed[task_id] = task
        else:
            self._inflight_ids.discard(task_id)
            self._claimed.pop(task_id, None)
        self.inflight_tasks = len(self._inflight_ids)

    async def leased_task(
        self: Engine, shard_id: int, task_id: str, attempt: int
    ) -> TaskRecord | None:
        """The leased row of a task attempt: from memory when this process handed it out."""
        task = self._claimed.get(task_id)
        if task is not None and task.attempt == attempt:
            return task
        return await self.store.get_task(shard_id, task_id)

    async def _current_wt(self: Engine, token: TaskToken) -> TaskRecord:
        # Another server's shard: refuse before reading anything (the request is forwarded,
        # and the owner completes the task: our copy of its row is of no further use).
        try:
            self.range_id(token.shard_id)
        except ShardOwnershipLostError:
            self.track_inflight(workflow_task_id(token.run_id), False)
            raise
        task = await self.leased_task(token.shard_id, workflow_task_id(token.run_id), token.attempt)
        if (
            task is None
            or task.lease_owner is None
            or task.attempt != token.attempt
            or task.ref_event_id != token.scheduled_event_id
        ):
            self.track_inflight(workflow_task_id(token.run_id), False)
            raise StaleTaskError(
                f"workflow task {token.run_id}/{token.scheduled_event_id} attempt {token.attempt} "
                "is no longer current"
            )
        return task

    async def complete_workflow_task(
        self: Engine,
        token: TaskToken,
        commands: list[Command],
        *,
        identity: str = "",
        sticky: bool = True,
        force_new_task: bool = False,
    ) -> str:
        """Record a workflow task's commands; returns ``completed`` or ``unhandled_command``.

        ``unhandled_command`` means the task tried to close the workflow while new input (a
        signal, say) had arrived that it had not seen: the task was failed and will run again
        with that input, so nothing is lost. The worker must drop its cached state.

        ``force_new_task`` schedules the next workflow task at once (sticky to this worker)
        even without new input: a worker whose local activities need more time than the
        task's timeout leaves records what it has and goes on in a new task.
        """
        task = await self._current_wt(token)
        unknown: dict[str, str] = {}
        for command in commands:
            if isinstance(command, ScheduleActivity):
                try:
                    await self.check_type_registered(
                        token.namespace, command.task_queue, "activity", command.activity_type
                    )
                except UnknownTypeError as exc:
                    unknown[command.activity_type] = str(exc)
        cancel_rows: dict[int, TaskRecord | None] = {}
        for command in commands:
            if isinstance(command, RequestCancelActivity):
                cancel_rows[command.scheduled_event_id] = await self.store.get_task(
                    token.shard_id, activity_task_id(token.run_id, command.scheduled_event_id)
                )

        def decide(m: Mutation) -> str:
            state = m.state
            if (
                not state.running
                or state.wt_scheduled_event_id != token.scheduled_event_id
                or state.wt_attempt != token.attempt
            ):
                raise StaleTaskError(f"run {token.run_id}: workflow task is no longer pending")
            seen = task.seen_up_to or 0
            started_id = m.add(
                WorkflowTaskStarted(
                    scheduled_event_id=token.scheduled_event_id,
                    seen_up_to=seen,
                    started_time=ms_to_dt(task.started_at_ms or m.now_ms),
                    attempt=task.attempt,
                    identity=identity,
                )
            )
            m.timers_delete.append(wt_timeout_key(m.run_id, task.ref_event_id, task.attempt))
            closing = any(isinstance(c, CLOSING_COMMANDS) for c in commands)
            if closing and state.has_unseen_input(seen):
                m.add(
                    WorkflowTaskFailed(
                        scheduled_event_id=token.scheduled_event_id,
                        started_event_id=started_id,
                        cause="unhandled_command",
                        failure=Failure(
                            message="new input arrived while the workflow task ran; "
                            "it runs again before the workflow may close",
                            type="UnhandledCommand",
                            source="server",
                        ),
                        attempt=task.attempt,
                        identity=identity,
                    )
                )
                m.tasks_update.append(
                    TaskChange(
                        task.task_id,
                        {
                            **RETRY_VISIBLE_RESET,
                            "attempt": task.attempt + 1,
                            "visible_at_ms": m.now_ms,
                        },
                    )
                )
                m.sticky_worker, m.set_sticky = None, True
                m.wake_keys.append(("workflow", task.namespace, task.task_queue))
                return "unhandled_command"
            completed_id = m.add(
                WorkflowTaskCompleted(
                    scheduled_event_id=token.scheduled_event_id,
                    started_event_id=started_id,
                    identity=identity,
                )
            )
            m.tasks_delete.append(task.task_id)
            for command in commands:
                if m.closed:
                    break
                self._apply_command(m, command, completed_id, unknown, cancel_rows)
            m.sticky_worker = task.lease_owner if sticky else None
            m.set_sticky = True
            if m.record is not None:
                m.record.worker_position = seen if sticky else 0
            if not m.closed and (force_new_task or state.has_unseen_input(seen)):
                m.schedule_workflow_task(sticky_worker=m.sticky_worker)
            return "completed"

        try:
            outcome = await self.update(token.shard_id, token.run_id, decide)
        finally:
            self.track_inflight(task.task_id, False)
        return outcome or "completed"

    def _apply_command(
        self: Engine,
        m: Mutation,
        command: Command,
        completed_id: int,
        unknown_activities: dict[str, str],
        cancel_rows: dict[int, TaskRecord | None],
    ) -> None:
        state = m.state
        match command:
            case ScheduleActivity():
                self.check_payload("input", command.input)
                scheduled_id = m.add(
                    ActivityTaskScheduled(
                        activity_id=command.activity_id,
                        activity_type=command.activity_type,
                        task_queue=command.task_queue,
                        input=command.input,
                        schedule_to_close_timeout=command.schedule_to_close_timeout,
                        start_to_close_timeout=command.start_to_close_timeout,
                        heartbeat_timeout=command.heartbeat_timeout,
                        retry_policy=command.retry_policy,
                        workflow_task_completed_event_id=completed_id,
                    )
                )
                if command.activity_type in unknown_activities:
                    # Fail it at once with a typed, non-retryable error the workflow can catch.
                    started_id = m.add(
                        ActivityTaskStarted(
                            scheduled_event_id=scheduled_id, attempt=1, started_time=m.now
                        )
                    )
                    m.add(
                        ActivityTaskFailed(
                            scheduled_event_id=scheduled_id,
                            started_event_id=started_id,
                            attempt=1,
                            failure=Failure(
                                message=unknown_activities[command.activity_type],
                                type="ActivityTypeNotRegistered",
                                non_retryable=True,
                            ),
                            retry_state="non_retryable_failure",
                        )
                    )
                    return
                m.task(
                    task_id=activity_task_id(m.run_id, scheduled_id),
                    kind="activity",
                    task_queue=command.task_queue,
                    ref_event_id=scheduled_id,
                    attempt=1,
                    visible_at_ms=m.now_ms,
                    payload={
                        "activity_type": command.activity_type,
                        "activity_id": command.activity_id,
                        "input": bytes(command.input).decode(),
                        "workflow_type": state.workflow_type,
                        "scheduled_ms": m.now_ms,
                        "schedule_to_close": command.schedule_to_close_timeout,
                        "start_to_close": command.start_to_close_timeout,
                        "heartbeat": command.heartbeat_timeout,
                    },
                )
                if command.schedule_to_close_timeout:
                    m.timer(
                        f"a-s2c:{m.run_id}:{scheduled_id}",
                        m.now_ms + int(command.schedule_to_close_timeout * 1000),
                        "activity_schedule_to_close",
                        scheduled_id,
                    )
            case RequestCancelActivity():
                pending = state.activities.get(command.scheduled_event_id)
                if pending is None or pending.cancel_requested:
                    return
                sched = command.scheduled_event_id
                m.add(
                    ActivityTaskCancelRequested(
                        scheduled_event_id=sched, workflow_task_completed_event_id=completed_id
                    )
                )
                row = cancel_rows.get(sched)
                if row is None or row.lease_owner is None:
                    # Not running: cancel at once.
                    m.add(ActivityTaskCanceled(scheduled_event_id=sched, attempt=pending.attempt))
                    m.tasks_delete.append(activity_task_id(m.run_id, sched))
                    m.timers_delete.extend(activity_timer_keys(m.run_id, sched, pending.attempt))
                    m.timers_delete.append(f"a-s2c:{m.run_id}:{sched}")
                else:
                    m.tasks_update.append(
                        TaskChange(activity_task_id(m.run_id, sched), {"cancel_requested": True})
                    )
            case StartTimer():
                check_id("timer_id", command.timer_id, MAX_NAME_LENGTH)
                duration = max(command.duration, 0.001)
                fire_ms = m.now_ms + int(duration * 1000)
                started_id = m.add(
                    TimerStarted(
                        timer_id=command.timer_id,
                        fire_time=ms_to_dt(fire_ms),
                        duration=duration,
                        workflow_task_completed_event_id=completed_id,
                    )
                )
                m.timer(f"user:{m.run_id}:{command.timer_id}", fire_ms, "user_timer", started_id)
            case CancelTimer():
                timer = state.timers.get(command.timer_id)
                if timer is None:
                    return
                m.add(
                    TimerCanceled(
                        timer_id=command.timer_id,
                        started_event_id=timer.started_event_id,
                        workflow_task_completed_event_id=completed_id,
                    )
                )
                m.timers_delete.append(f"user:{m.run_id}:{command.timer_id}")
            case RecordMarker():
                check_id("marker_name", command.marker_name, MAX_NAME_LENGTH)
                local = command.local_activity
                if (command.marker_name == "local_activity") != (local is not None):
                    raise InvalidArgumentError(
                        "local_activity",
                        "a local_activity marker must carry its outcome, and only it may",
                    )
                if local is not None:
                    check_id("local_activity.activity_type", local.activity_type, MAX_NAME_LENGTH)
                    self.check_payload("local_activity.result", local.result)
                m.add(
                    MarkerRecorded(
                        marker_name=command.marker_name,
                        details=command.details,
                        local_activity=local,
                        workflow_task_completed_event_id=completed_id,
                    )
                )
            case StartChildWorkflow():
                check_id("workflow_id", command.workflow_id)
                self.check_payload("input", command.input)
                initiated_id = m.add(
                    StartChildWorkflowExecutionInitiated(
                        workflow_id=command.workflow_id,
                        workflow_type=command.workflow_type,
                        task_queue=command.task_queue,
                        input=command.input,
                        execution_timeout=command.execution_timeout,
                        run_timeout=command.run_timeout,
                        parent_close_policy=command.parent_close_policy,
                        workflow_task_completed_event_id=completed_id,
                    )
                )
                self.transfer(m, initiated_id, "start_child", {})
            case RequestCancelExternal():
                event_id = m.add(
                    RequestCancelExternalWorkflowExecutionInitiated(
                        workflow_id=command.workflow_id,
                        run_id=command.run_id,
                        child_initiated_event_id=command.child_initiated_event_id,
                        workflow_task_completed_event_id=completed_id,
                    )
                )
                self.transfer(
                    m,
                    event_id,
                    "cancel_external",
                    {"workflow_id": command.workflow_id, "run_id": command.run_id},
                )
            case CompleteWorkflow():
                self.check_payload("result", command.result)
                self.close_with(
                    m,
                    WorkflowExecutionCompleted(
                        result=command.result, workflow_task_completed_event_id=completed_id
                    ),
                )
            case FailWorkflow():
                self.close_with(
                    m,
                    WorkflowExecutionFailed(
                        failure=command.failure, workflow_task_completed_event_id=completed_id
                    ),
                )
            case CancelWorkflow():
                self.close_with(
                    m,
                    WorkflowExecutionCanceled(
                        details=command.details, workflow_task_completed_event_id=completed_id
                    ),
                )
            case ContinueAsNew():
                self.check_payload("input", command.input)
                new_run_id = str(uuid.uuid4())
                self.close_with(
                    m,
                    WorkflowExecutionContinuedAsNew(
                        new_run_id=new_run_id,
                        workflow_type=command.workflow_type,
                        task_queue=command.task_queue,
                        input=command.input,
                        workflow_task_completed_event_id=completed_id,
                    ),
                )
                m.also.append(
                    self.new_run_mutation(
                        shard_id=m.shard_id,
                        namespace=m.namespace,
                        workflow_id=m.workflow_id,
                        run_id=new_run_id,
                        now_ms=m.now_ms,
                        started=WorkflowExecutionStarted(
                            workflow_type=command.workflow_type,
                            task_queue=command.task_queue,
                            input=command.input,
                            random_seed=self._random.getrandbits(63),
                            first_run_id=state.first_run_id or m.run_id,
                            continued_from_run_id=m.run_id,
                            parent=state.parent,
                            execution_timeout=state.execution_timeout,
                            run_timeout=command.run_timeout or state.run_timeout,
                            task_timeout=state.task_timeout,
                            retry_policy=state.retry_policy,
                        ),
                    )
                )
            case _:
                raise InvalidArgumentError("commands", f"unknown command {command!r}")

    async def fail_workflow_task(
        self: Engine,
        token: TaskToken,
        *,
        cause: str,
        failure: Failure,
        identity: str = "",
    ) -> None:
        """Record a failed workflow task (non-determinism, an exception in workflow code);
        it is retried after a back-off, with the worker's fixed code once it is deployed."""
        task = await self._current_wt(token)
        log.warning(
            "workflow task failed: %s run %s cause=%s: %s",
            token.workflow_id,
            token.run_id,
            cause,
            failure.message,
        )

        def decide(m: Mutation) -> None:
            state = m.state
            if (
                not state.running
                or state.wt_scheduled_event_id != token.scheduled_event_id
                or state.wt_attempt != token.attempt
            ):
                raise StaleTaskError(f"run {token.run_id}: workflow task is no longer pending")
            started_id = m.add(
                WorkflowTaskStarted(
                    scheduled_event_id=token.scheduled_event_id,
                    seen_up_to=task.seen_up_to or 0,
                    started_time=ms_to_dt(task.started_at_ms or m.now_ms),
                    attempt=task.attempt,
                    identity=identity,
                )
            )
            m.add(
                WorkflowTaskFailed(
                    scheduled_event_id=token.scheduled_event_id,
                    started_event_id=started_id,
                    cause=cause,
                    failure=failure,
                    attempt=task.attempt,
                    identity=identity,
                )
            )
            m.timers_delete.append(wt_timeout_key(m.run_id, task.ref_event_id, task.attempt))
            backoff = workflow_task_backoff_ms(task.attempt, self.settings.workflow_task_retry_max)
            m.tasks_update.append(
                TaskChange(
                    task.task_id,
                    {**RETRY_VISIBLE_RESET, "attempt": task.attempt + 1, "visible_at_ms": None},
                )
            )
            m.timer(
                f"wt-retry:{m.run_id}:{task.attempt + 1}",
                m.now_ms + backoff,
                "workflow_task_retry",
                task.ref_event_id,
                task.attempt + 1,
            )
            m.sticky_worker, m.set_sticky = None, True

        try:
            await self.update(token.shard_id, token.run_id, decide)
        finally:
            self.track_inflight(task.task_id, False)


def raw_input(value: Any) -> msgspec.Raw:
    """Encode a Python value as a raw JSON payload."""
    return msgspec.Raw(msgspec.json.encode(value))
