"""Firing timers: what each kind of timer row does when it is due.

Every branch deletes the timer row in the same write as the events it appends, so a timer
fires once even if two processes race for it (the compare-and-swap lets one of them win), and
a timer that no longer applies (its activity completed, its run closed) is simply removed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cadenza.engine._mutation import Mutation, activity_task_id, workflow_task_id
from cadenza.engine._workflow_tasks import RETRY_VISIBLE_RESET
from cadenza.history import TaskChange, TaskRecord, TimerRecord
from cadenza.history._events import (
    TimerFired,
    WorkflowExecutionTimedOut,
    WorkflowTaskTimedOut,
)

if TYPE_CHECKING:
    from cadenza.engine._engine import Engine

log = logging.getLogger("cadenza.engine.timers")


class TimeoutOps:
    """Timer firing of :class:`~cadenza.engine.Engine`."""

    async def fire_timer(self: Engine, timer: TimerRecord) -> None:
        """Apply a due timer to its execution (the timer service calls this)."""
        if timer.kind.startswith("schedule"):
            await self.fire_schedule_timer(timer)
            return
        task: TaskRecord | None = None
        if timer.kind.startswith("activity_"):
            task = await self.store.get_task(
                timer.shard_id, activity_task_id(timer.run_id, timer.ref_event_id)
            )
        elif timer.kind.startswith("workflow_task"):
            task = await self.store.get_task(timer.shard_id, workflow_task_id(timer.run_id))

        def decide(m: Mutation) -> None:
            m.timers_delete.append(timer.timer_key)
            if not m.state.running:
                return
            handler = _HANDLERS.get(timer.kind)
            if handler is None:
                log.error("unknown timer kind %r (%s); dropped", timer.kind, timer.timer_key)
                return
            handler(self, m, timer, task)

        await self.update(timer.shard_id, timer.run_id, decide, missing_ok=True)


def _user_timer(engine: Engine, m: Mutation, timer: TimerRecord, task: TaskRecord | None) -> None:
    timer_id = timer.timer_key.split(":", 2)[2]
    pending = m.state.timers.get(timer_id)
    if pending is None or pending.started_event_id != timer.ref_event_id:
        return
    m.add(TimerFired(timer_id=timer_id, started_event_id=timer.ref_event_id))
    m.schedule_workflow_task()


def _activity_timeout(timeout_type: str):  # type: ignore[no-untyped-def]
    def handle(engine: Engine, m: Mutation, timer: TimerRecord, task: TaskRecord | None) -> None:
        pending = m.state.activities.get(timer.ref_event_id)
        if pending is None:
            return
        if timeout_type != "schedule_to_close":
            current = task is not None and task.attempt == timer.attempt and task.lease_owner
            if pending.attempt != timer.attempt or not current:
                return
        if timeout_type == "heartbeat" and task is not None:
            seconds = float(task.payload.get("heartbeat") or 0)
            last = task.heartbeat_at_ms or task.started_at_ms or 0
            due = last + int(seconds * 1000)
            if due > m.now_ms:
                # It heartbeated since the timer was set: re-arm at the new deadline.
                m.timer(timer.timer_key, due, timer.kind, timer.ref_event_id, timer.attempt)
                return
        engine.activity_timed_out(m, pending, task, timeout_type)

    return handle


def _activity_retry(
    engine: Engine, m: Mutation, timer: TimerRecord, task: TaskRecord | None
) -> None:
    pending = m.state.activities.get(timer.ref_event_id)
    if pending is None or pending.attempt != timer.attempt or task is None:
        return
    m.tasks_update.append(TaskChange(task.task_id, {"visible_at_ms": m.now_ms}))
    m.wake_keys.append(("activity", task.namespace, task.task_queue))


def _workflow_task_timeout(
    engine: Engine, m: Mutation, timer: TimerRecord, task: TaskRecord | None
) -> None:
    state = m.state
    if (
        task is None
        or task.lease_owner is None
        or task.attempt != timer.attempt
        or state.wt_scheduled_event_id != timer.ref_event_id
    ):
        return
    m.add(WorkflowTaskTimedOut(scheduled_event_id=timer.ref_event_id, attempt=timer.attempt))
    m.tasks_update.append(
        TaskChange(
            task.task_id,
            {**RETRY_VISIBLE_RESET, "attempt": timer.attempt + 1, "visible_at_ms": m.now_ms},
        )
    )
    m.sticky_worker, m.set_sticky = None, True
    engine.track_inflight(task.task_id, False)
    m.wake_keys.append(("workflow", task.namespace, task.task_queue))


def _workflow_task_retry(
    engine: Engine, m: Mutation, timer: TimerRecord, task: TaskRecord | None
) -> None:
    if task is None or task.attempt != timer.attempt or task.lease_owner is not None:
        return
    m.tasks_update.append(TaskChange(task.task_id, {"visible_at_ms": m.now_ms}))
    m.wake_keys.append(("workflow", task.namespace, task.task_queue))


def _workflow_timeout(
    engine: Engine, m: Mutation, timer: TimerRecord, task: TaskRecord | None
) -> None:
    engine.close_with(m, WorkflowExecutionTimedOut(timeout_type="workflow_run"))


_HANDLERS = {
    "user_timer": _user_timer,
    "activity_start_to_close": _activity_timeout("start_to_close"),
    "activity_heartbeat": _activity_timeout("heartbeat"),
    "activity_schedule_to_close": _activity_timeout("schedule_to_close"),
    "activity_retry": _activity_retry,
    "workflow_task_timeout": _workflow_task_timeout,
    "workflow_task_retry": _workflow_task_retry,
    "workflow_timeout": _workflow_timeout,
}
