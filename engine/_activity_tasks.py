"""Activity tasks: long-poll, completion, failure with retries, heartbeats, cancellation.

One task row serves every attempt of an activity; an attempt is identified by
``(run_id, scheduled_event_id, attempt)``. Each attempt's outcome is recorded as
``activity_task_started`` + its outcome event, so every retry is visible in the history, and an
outcome reported for an attempt that is no longer current changes nothing (completing twice is
a no-op).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import msgspec

from cadenza.engine._api import ActivityTaskInfo, HeartbeatResponse, TaskToken
from cadenza.engine._mutation import Mutation, activity_task_id, dt_to_ms, ms_to_dt
from cadenza.engine._retry import decide_retry
from cadenza.engine._sync_match import claim_lease
from cadenza.engine._validation import MAX_NAME_LENGTH, check_id
from cadenza.engine._workflow_tasks import (
    RETRY_VISIBLE_RESET,
    activity_timer_keys,
    check_max_tasks,
    token_of,
)
from cadenza.history import (
    Failure,
    PayloadTooLargeError,
    ShardOwnershipLostError,
    TaskChange,
    TaskRecord,
    TimerRecord,
)
from cadenza.history._events import (
    ActivityTaskCanceled,
    ActivityTaskCompleted,
    ActivityTaskFailed,
    ActivityTaskStarted,
    ActivityTaskTimedOut,
)
from cadenza.history._state import PendingActivity

if TYPE_CHECKING:
    from cadenza.engine._engine import Engine

_DEFAULT_ACTIVITY_LEASE_MS = 3_600_000


def _activity_timers(task: TaskRecord) -> list[TimerRecord]:
    started = task.started_at_ms or 0
    timers: list[TimerRecord] = []
    for kind, key_prefix, seconds in (
        ("activity_start_to_close", "a-stc", task.payload.get("start_to_close")),
        ("activity_heartbeat", "a-hb", task.payload.get("heartbeat")),
    ):
        if seconds:
            timers.append(
                TimerRecord(
                    shard_id=task.shard_id,
                    timer_key=f"{key_prefix}:{task.run_id}:{task.ref_event_id}:{task.attempt}",
                    fire_at_ms=started + int(float(seconds) * 1000),
                    namespace=task.namespace,
                    workflow_id=task.workflow_id,
                    run_id=task.run_id,
                    kind=kind,
                    ref_event_id=task.ref_event_id,
                    attempt=task.attempt,
                )
            )
    return timers


class ActivityTaskOps:
    """Activity task operations of :class:`~cadenza.engine.Engine`."""

    async def poll_activity_task(
        self: Engine,
        namespace: str,
        task_queue: str,
        worker_id: str,
        *,
        activity_types: frozenset[str] = frozenset(),
        timeout: float | None = None,
    ) -> ActivityTaskInfo | None:
        """Wait up to ``timeout`` seconds for an activity attempt of a queue."""
        tasks = await self.poll_activity_tasks(
            namespace, task_queue, worker_id, activity_types=activity_types, timeout=timeout
        )
        return tasks[0] if tasks else None

    async def poll_activity_tasks(
        self: Engine,
        namespace: str,
        task_queue: str,
        worker_id: str,
        *,
        activity_types: frozenset[str] = frozenset(),
        timeout: float | None = None,
        max_tasks: int = 1,
    ) -> list[ActivityTaskInfo]:
        """Wait up to ``timeout`` seconds for activity attempts of a queue.

        Returns as soon as any is visible: up to ``max_tasks`` of them, leased in one
        transaction (a worker with free slots takes a busy queue's attempts for the price of
        one claim; an idle queue answers its first attempt as soon as it is written). An empty
        list means nothing came within the poll.
        """
        check_id("task_queue", task_queue, MAX_NAME_LENGTH)
        check_max_tasks(max_tasks)
        await self.register_types(namespace, task_queue, "activity", activity_types)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.settings.poll_timeout if timeout is None else timeout)
        key = ("activity", namespace, task_queue)
        # How a commit leases a new attempt to this poll while it waits (as the claim would).
        lease = claim_lease(
            worker_id, _DEFAULT_ACTIVITY_LEASE_MS, _activity_timers, records_seen=False
        )
        while not self.stopping:
            ticket = self.notifier.ticket(key, capacity=max_tasks)
            now = self.clock.now_ms()
            claimed = await self.store.claim_tasks(
                kind="activity",
                namespace=namespace,
                task_queue=task_queue,
                owner=worker_id,
                now=now,
                lease_ms=_DEFAULT_ACTIVITY_LEASE_MS,
                limit=max_tasks,
                shard_ids=self.claim_shards(key),
                timers_for=_activity_timers,
                notify_for=self.timer_notices,
            )
            if claimed:
                self.notifier.release(key, ticket)
                if len(claimed) == max_tasks:
                    # More may be waiting: let another poller of the queue look at once.
                    self.notifier.notify_one(key)
                fire_at: list[int] = []
                for task in claimed:
                    self.track_inflight(task.task_id, True, task)
                    fire_at += [t.fire_at_ms for t in _activity_timers(task)]
                if self.timer_service is not None and fire_at:
                    self.timer_service.notify(min(fire_at))
                return [self._activity_info(task, now) for task in claimed]
            remaining = deadline - loop.time()
            if remaining <= 0:
                self.notifier.release(key, ticket)
                return []
            delivered = await self.sync_match.wait(
                key,
                ticket,
                worker_id=worker_id,
                capacity=max_tasks,
                lease=lease,
                timeout=remaining,
            )
            if delivered:
                return [self._activity_info(task, now) for task in delivered]
        # The engine is stopping: answer "no task" at the poll's end (at most a second
        # away), not at once, so a worker that outlives its engine does not spin.
        await asyncio.sleep(max(0.0, min(deadline - loop.time(), 1.0)))
        return []

    @staticmethod
    def _activity_info(task: TaskRecord, now: int) -> ActivityTaskInfo:
        """What a worker is handed for a leased activity attempt."""
        p = task.payload
        details = task.heartbeat_details
        return ActivityTaskInfo(
            token=token_of(task),
            activity_id=p["activity_id"],
            activity_type=p["activity_type"],
            task_queue=task.task_queue,
            input=msgspec.Raw(p["input"].encode()),
            workflow_type=p.get("workflow_type", ""),
            scheduled_time_ms=p.get("scheduled_ms", task.created_ms),
            started_time_ms=task.started_at_ms or now,
            schedule_to_close_timeout=p.get("schedule_to_close"),
            start_to_close_timeout=p.get("start_to_close"),
            heartbeat_timeout=p.get("heartbeat"),
            heartbeat_details=list(details) if isinstance(details, list) else [],
        )

    async def _current_activity(self: Engine, token: TaskToken) -> TaskRecord | None:
        # Another server's shard: refuse before reading anything (the request is forwarded,
        # and the owner records the outcome: our copy of the task's row is of no further use).
        task_id = activity_task_id(token.run_id, token.scheduled_event_id)
        try:
            self.range_id(token.shard_id)
        except ShardOwnershipLostError:
            self.track_inflight(task_id, False)
            raise
        task = await self.leased_task(
            token.shard_id, activity_task_id(token.run_id, token.scheduled_event_id), token.attempt
        )
        if task is None or task.attempt != token.attempt or task.lease_owner is None:
            self.track_inflight(activity_task_id(token.run_id, token.scheduled_event_id), False)
            return None
        return task

    async def complete_activity(
        self: Engine, token: TaskToken, result: msgspec.Raw, *, identity: str = ""
    ) -> bool:
        """Record an attempt's result. Returns False (and changes nothing) when the attempt is
        no longer current: already completed, timed out, canceled, or the run closed."""
        try:
            self.check_payload("result", result)
        except PayloadTooLargeError as exc:
            return await self.fail_activity(
                token,
                Failure(message=str(exc), type="PayloadTooLargeError", non_retryable=True),
                identity=identity,
            )
        task = await self._current_activity(token)
        if task is None:
            return False

        def decide(m: Mutation) -> bool:
            pending = m.state.activities.get(token.scheduled_event_id)
            if pending is None or pending.attempt != token.attempt:
                return False
            started_id = self._attempt_started(m, task, identity)
            m.add(
                ActivityTaskCompleted(
                    scheduled_event_id=token.scheduled_event_id,
                    started_event_id=started_id,
                    attempt=token.attempt,
                    result=result,
                    identity=identity,
                )
            )
            self._activity_done(m, pending)
            return True

        try:
            return bool(await self.update(token.shard_id, token.run_id, decide, missing_ok=True))
        finally:
            self.track_inflight(task.task_id, False)

    async def fail_activity(
        self: Engine, token: TaskToken, failure: Failure, *, identity: str = ""
    ) -> bool:
        """Record a failed attempt; the retry policy decides whether another one follows."""
        task = await self._current_activity(token)
        if task is None:
            return False

        def decide(m: Mutation) -> bool:
            pending = m.state.activities.get(token.scheduled_event_id)
            if pending is None or pending.attempt != token.attempt:
                return False
            started_id = self._attempt_started(m, task, identity)
            if pending.cancel_requested:
                retry_state, next_ms = "cancel_requested", None
            else:
                retry_state, next_ms = decide_retry(
                    pending.retry_policy,
                    attempt=token.attempt,
                    failure=failure,
                    now_ms=m.now_ms,
                    scheduled_ms=dt_to_ms(pending.scheduled_time),
                    schedule_to_close=pending.schedule_to_close_timeout,
                )
            m.add(
                ActivityTaskFailed(
                    scheduled_event_id=token.scheduled_event_id,
                    started_event_id=started_id,
                    attempt=token.attempt,
                    failure=failure,
                    retry_state=retry_state,
                    next_attempt_time=ms_to_dt(next_ms) if next_ms is not None else None,
                    identity=identity,
                )
            )
            self._after_attempt(m, pending, token.attempt, retry_state, next_ms)
            return True

        try:
            return bool(await self.update(token.shard_id, token.run_id, decide, missing_ok=True))
        finally:
            self.track_inflight(task.task_id, False)

    async def report_activity_canceled(
        self: Engine, token: TaskToken, details: msgspec.Raw, *, identity: str = ""
    ) -> bool:
        """The activity stopped after a cancel request."""
        task = await self._current_activity(token)
        if task is None:
            return False

        def decide(m: Mutation) -> bool:
            pending = m.state.activities.get(token.scheduled_event_id)
            if pending is None or pending.attempt != token.attempt:
                return False
            self._attempt_started(m, task, identity)
            m.add(
                ActivityTaskCanceled(
                    scheduled_event_id=token.scheduled_event_id,
                    attempt=token.attempt,
                    details=details,
                    identity=identity,
                )
            )
            self._activity_done(m, pending)
            return True

        try:
            return bool(await self.update(token.shard_id, token.run_id, decide, missing_ok=True))
        finally:
            self.track_inflight(task.task_id, False)

    async def heartbeat_activity(
        self: Engine, token: TaskToken, details: list[Any]
    ) -> HeartbeatResponse:
        """Store an attempt's progress details; tells the activity whether to stop."""
        encoded = msgspec.json.encode(details)
        self.check_payload("details", encoded)
        task = await self.store.record_heartbeat(
            token.shard_id,
            activity_task_id(token.run_id, token.scheduled_event_id),
            token.attempt,
            details,
            self.clock.now_ms(),
        )
        # An attempt that is no longer current must stop too.
        return HeartbeatResponse(cancel_requested=task is None or task.cancel_requested)

    # ------------------------------------------------------------------ shared steps

    def _attempt_started(self: Engine, m: Mutation, task: TaskRecord, identity: str) -> int:
        return m.add(
            ActivityTaskStarted(
                scheduled_event_id=task.ref_event_id,
                attempt=task.attempt,
                started_time=ms_to_dt(task.started_at_ms or m.now_ms),
                identity=identity or (task.lease_owner or ""),
            )
        )

    def _activity_done(self: Engine, m: Mutation, pending: PendingActivity) -> None:
        sched = pending.scheduled_event_id
        m.tasks_delete.append(activity_task_id(m.run_id, sched))
        m.timers_delete.extend(activity_timer_keys(m.run_id, sched, pending.attempt))
        m.timers_delete.append(f"a-s2c:{m.run_id}:{sched}")
        m.schedule_workflow_task()

    def _after_attempt(
        self: Engine,
        m: Mutation,
        pending: PendingActivity,
        attempt: int,
        retry_state: str,
        next_ms: int | None,
    ) -> None:
        sched = pending.scheduled_event_id
        m.timers_delete.extend(activity_timer_keys(m.run_id, sched, attempt))
        if retry_state == "in_progress" and next_ms is not None:
            m.tasks_update.append(
                TaskChange(
                    activity_task_id(m.run_id, sched),
                    {
                        **RETRY_VISIBLE_RESET,
                        "attempt": attempt + 1,
                        "visible_at_ms": None,
                        "cancel_requested": False,
                    },
                )
            )
            m.timer(
                f"a-retry:{m.run_id}:{sched}:{attempt + 1}",
                next_ms,
                "activity_retry",
                sched,
                attempt + 1,
            )
        else:
            self._activity_done(m, pending)

    def timeout_failure(
        self: Engine, timeout_type: str, attempt: int, details: Any = None
    ) -> Failure:
        """The failure recorded for an activity timeout."""
        extra = list(details) if isinstance(details, list) else []
        return Failure(
            message=f"activity {timeout_type.replace('_', '-')} timeout (attempt {attempt})",
            type="TimeoutError",
            source="timeout",
            details=[timeout_type, *extra],
        )

    def activity_timed_out(
        self: Engine,
        m: Mutation,
        pending: PendingActivity,
        task: TaskRecord | None,
        timeout_type: str,
    ) -> None:
        """Record an attempt's timeout (start-to-close, heartbeat or schedule-to-close)."""
        attempt = pending.attempt
        started_id = 0
        if task is not None and task.lease_owner is not None and task.attempt == attempt:
            started_id = self._attempt_started(m, task, "")
        failure = self.timeout_failure(
            timeout_type, attempt, task.heartbeat_details if task is not None else None
        )
        if timeout_type == "schedule_to_close" or pending.cancel_requested:
            retry_state, next_ms = "timeout", None
        else:
            retry_state, next_ms = decide_retry(
                pending.retry_policy,
                attempt=attempt,
                failure=None,
                now_ms=m.now_ms,
                scheduled_ms=dt_to_ms(pending.scheduled_time),
                schedule_to_close=pending.schedule_to_close_timeout,
            )
        m.add(
            ActivityTaskTimedOut(
                scheduled_event_id=pending.scheduled_event_id,
                attempt=attempt,
                timeout_type=timeout_type,
                failure=failure,
                retry_state=retry_state,
                next_attempt_time=ms_to_dt(next_ms) if next_ms is not None else None,
                started_event_id=started_id,
            )
        )
        if task is not None:
            self.track_inflight(task.task_id, False)
        self._after_attempt(m, pending, attempt, retry_state, next_ms)
