"""Building one atomic write of an execution: events with their hashes, state, outbox.

A :class:`Mutation` starts from the execution as read (state, ``next_event_id``, last hash).
Each :meth:`Mutation.add` numbers the event, chains its hash and applies it to the state with
the same function that rebuilds state from history. Tasks and timers that follow from the
events are collected beside them, and :meth:`Mutation.to_write` hands the lot to the store,
which commits it only if nobody appended in between (compare-and-swap on ``next_event_id``)
and the shard is still ours (``range_id``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cadenza.history import (
    EventAttributes,
    ExecutionRecord,
    ExecutionState,
    ExecutionWrite,
    HistoryEvent,
    NewExecution,
    TaskChange,
    TaskRecord,
    TimerRecord,
    apply_event,
    chain_hash,
    genesis_hash,
    new_state,
)
from cadenza.history._events import WorkflowTaskScheduled, encode_event_fields


def ms_to_dt(ms: int) -> datetime:
    """Epoch milliseconds to an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def dt_to_ms(value: datetime) -> int:
    """Aware datetime to epoch milliseconds."""
    return int(value.timestamp() * 1000)


def activity_task_id(run_id: str, scheduled_event_id: int) -> str:
    """Derived id of an activity's task row (one row serves every attempt)."""
    return f"a:{run_id}:{scheduled_event_id}"


def workflow_task_id(run_id: str) -> str:
    """Derived id of a run's workflow task row (at most one at a time)."""
    return f"w:{run_id}"


class Mutation:
    """Accumulates one write of one execution.

    Args:
        shard_id: The execution's shard.
        range_id: This process's fencing token for the shard.
        record: The execution as read, or None when creating it.
        namespace, workflow_id, run_id: Identity (needed when creating).
        now_ms: The time stamped on every event of this write.
    """

    def __init__(
        self,
        *,
        shard_id: int,
        range_id: int,
        namespace: str,
        workflow_id: str,
        run_id: str,
        now_ms: int,
        record: ExecutionRecord | None = None,
        create: NewExecution | None = None,
    ) -> None:
        self.shard_id = shard_id
        self.range_id = range_id
        self.namespace = namespace
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.now_ms = now_ms
        self.now = ms_to_dt(now_ms)
        self.record = record
        self.create = create
        if record is not None:
            self.state: ExecutionState = record.state
            self.expected_next_event_id = record.next_event_id
            self.last_hash = record.last_hash
        else:
            self.state = new_state(namespace, workflow_id, run_id)
            self.expected_next_event_id = 0
            self.last_hash = genesis_hash(namespace, workflow_id, run_id)
        self.events: list[HistoryEvent] = []
        self.event_data: list[bytes] = []
        self.tasks_insert: list[TaskRecord] = []
        self.tasks_delete: list[str] = []
        self.tasks_update: list[TaskChange] = []
        self.timers_insert: list[TimerRecord] = []
        self.timers_delete: list[str] = []
        self.sticky_worker: str | None = None
        self.set_sticky = False
        self.also: list[Mutation] = []
        self.new_wt_task = False
        self.closed = False
        self.sticky_timeout_ms = 5000
        self.wake_keys: list[tuple[str, str, str]] = []
        self.notify: list[str] = []
        self.writer = ""

    # ------------------------------------------------------------------ events

    def add(self, attributes: EventAttributes) -> int:
        """Append an event; returns its id."""
        event_id = self.state.next_event_id
        data = encode_event_fields(event_id, self.now, attributes)
        digest = chain_hash(self.last_hash, data)
        event = HistoryEvent(
            event_id=event_id, event_time=self.now, attributes=attributes, hash=digest
        )
        was_running = self.state.running
        apply_event(self.state, event)
        self.last_hash = digest
        self.events.append(event)
        self.event_data.append(data)
        if was_running and not self.state.running:
            self.closed = True
        return event.event_id

    @property
    def empty(self) -> bool:
        """True when nothing would be written."""
        return not (
            self.events
            or self.tasks_insert
            or self.tasks_delete
            or self.tasks_update
            or self.timers_insert
            or self.timers_delete
            or self.set_sticky
        )

    # ------------------------------------------------------------------ outbox

    def task(self, **values: Any) -> TaskRecord:
        """Insert a task row of this execution."""
        task = TaskRecord(
            shard_id=self.shard_id,
            namespace=self.namespace,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            created_ms=self.now_ms,
            **values,
        )
        self.tasks_insert.append(task)
        return task

    def timer(
        self, key: str, fire_at_ms: int, kind: str, ref_event_id: int, attempt: int = 0
    ) -> None:
        """Insert a timer row of this execution."""
        self.timers_insert.append(
            TimerRecord(
                shard_id=self.shard_id,
                timer_key=key,
                fire_at_ms=fire_at_ms,
                namespace=self.namespace,
                workflow_id=self.workflow_id,
                run_id=self.run_id,
                kind=kind,
                ref_event_id=ref_event_id,
                attempt=attempt,
            )
        )

    def schedule_workflow_task(
        self, *, sticky_worker: str | None = None, visible_at_ms: int | None = None
    ) -> None:
        """Schedule a workflow task unless one is pending or the execution is closed.

        The task prefers the worker that has the execution cached (``sticky_worker``, or the
        one recorded on the execution) for ``sticky_timeout_ms``; after that any worker may
        take it. ``visible_at_ms`` holds it from every worker until then (default: now).
        """
        if not self.state.running or self.state.wt_scheduled_event_id:
            return
        if sticky_worker is None and self.record is not None and not self.set_sticky:
            sticky_worker = self.record.sticky_worker
        event_id = self.add(WorkflowTaskScheduled(task_queue=self.state.task_queue, attempt=1))
        self.task(
            task_id=workflow_task_id(self.run_id),
            kind="workflow",
            task_queue=self.state.task_queue,
            ref_event_id=event_id,
            attempt=1,
            payload={"workflow_type": self.state.workflow_type, "timeout": self.state.task_timeout},
            visible_at_ms=self.now_ms if visible_at_ms is None else visible_at_ms,
            sticky_worker=sticky_worker,
            sticky_until_ms=(self.now_ms + self.sticky_timeout_ms) if sticky_worker else None,
        )
        self.new_wt_task = True

    # ------------------------------------------------------------------ write

    def written_record(self) -> ExecutionRecord:
        """The execution row as it is once this mutation committed."""
        state = self.state
        close_ms = dt_to_ms(state.close_time) if state.close_time else None
        if self.record is not None:
            record = self.record
            record.status = state.status
            record.close_time_ms = close_ms
            record.next_event_id = state.next_event_id
            record.last_hash = self.last_hash
            if self.set_sticky:
                record.sticky_worker = self.sticky_worker
            return record
        create = self.create
        return ExecutionRecord(
            shard_id=self.shard_id,
            run_id=self.run_id,
            namespace=self.namespace,
            workflow_id=self.workflow_id,
            workflow_type=create.workflow_type if create else state.workflow_type,
            task_queue=create.task_queue if create else state.task_queue,
            status=state.status,
            start_time_ms=create.start_time_ms if create else self.now_ms,
            close_time_ms=close_ms,
            next_event_id=state.next_event_id,
            last_hash=self.last_hash,
            state=state,
            sticky_worker=self.sticky_worker if self.set_sticky else None,
        )

    def to_write(self) -> ExecutionWrite:
        """The store request for this mutation (and the ones in ``also``)."""
        return ExecutionWrite(
            shard_id=self.shard_id,
            range_id=self.range_id,
            namespace=self.namespace,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            expected_next_event_id=self.expected_next_event_id,
            events=self.events,
            event_data=self.event_data,
            state=self.state,
            last_hash=self.last_hash,
            create=self.create,
            sticky_worker=self.sticky_worker,
            set_sticky=self.set_sticky,
            purge_outbox=self.closed,
            notify=self.notify,
            writer=self.writer,
            tasks_insert=self.tasks_insert,
            tasks_delete=self.tasks_delete,
            tasks_update=self.tasks_update,
            timers_insert=self.timers_insert,
            timers_delete=self.timers_delete,
            also=[m.to_write() for m in self.also],
        )
