"""Transfer tasks: work that crosses from one execution to another.

Starting a child, telling a parent that its child closed, cancelling or terminating another
execution: each is a task row written in the same transaction as the event that calls for it
(the outbox), then carried out by the shard owner's transfer loop. Each action is idempotent
(a child start carries a request id derived from the parent event; a parent accepts a child's
outcome only while that child is pending), so running a transfer task twice after a crash is
harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from cadenza.engine._api import StartWorkflowRequest
from cadenza.engine._mutation import Mutation
from cadenza.engine._notify import wait_event
from cadenza.engine._schedule_api import SCHEDULE_TRANSFER_ACTIONS, schedule_of_run
from cadenza.history import (
    CadenzaError,
    EventAttributes,
    InvalidArgumentError,
    NotFoundError,
    TaskRecord,
    WorkflowAlreadyStartedError,
    WorkflowClosedError,
)
from cadenza.history._events import (
    ChildWorkflowExecutionCanceled,
    ChildWorkflowExecutionCompleted,
    ChildWorkflowExecutionFailed,
    ChildWorkflowExecutionStarted,
    ChildWorkflowExecutionTerminated,
    ChildWorkflowExecutionTimedOut,
    ParentRef,
    StartChildWorkflowExecutionFailed,
    StartChildWorkflowExecutionInitiated,
    WorkflowExecutionCompleted,
    WorkflowExecutionContinuedAsNew,
    WorkflowExecutionFailed,
)

if TYPE_CHECKING:
    from cadenza.engine._engine import Engine

log = logging.getLogger("cadenza.engine.transfer")

TRANSFER_QUEUE = "__transfer__"


class TransferOps:
    """Transfer task handling of :class:`~cadenza.engine.Engine`."""

    def transfer(
        self: Engine, m: Mutation, event_id: int, action: str, payload: dict[str, Any]
    ) -> None:
        """Add a transfer task to a mutation (the outbox of cross-execution work)."""
        m.task(
            task_id=f"t:{m.run_id}:{event_id}:{action}",
            kind="transfer",
            task_queue=TRANSFER_QUEUE,
            ref_event_id=event_id,
            attempt=1,
            visible_at_ms=m.now_ms,
            payload={"action": action, **payload},
        )

    def close_with(self: Engine, m: Mutation, close_event: EventAttributes) -> None:
        """Append the event that closes a run, with its consequences: the outbox of the run is
        purged, the parent is told, children follow their parent-close policy."""
        children = list(m.state.children.values())
        close_id = m.add(close_event)
        state = m.state
        if state.parent is not None and not isinstance(
            close_event, WorkflowExecutionContinuedAsNew
        ):
            self.transfer(m, close_id, "notify_parent", {})
        if isinstance(close_event, WorkflowExecutionContinuedAsNew):
            return
        schedule_id = schedule_of_run(m.workflow_id)
        if schedule_id is not None:  # a schedule's run: the schedule learns it closed
            self.transfer(m, close_id, "notify_schedule", {"schedule_id": schedule_id})
        for child in children:
            if child.parent_close_policy == "abandon":
                continue
            action = (
                "cancel_child"
                if child.parent_close_policy == "request_cancel"
                else "terminate_child"
            )
            self.transfer(
                m,
                child.initiated_event_id,
                action,
                {"workflow_id": child.workflow_id, "run_id": child.run_id},
            )

    async def recover_transfer_tasks(self: Engine) -> None:
        """Release transfer tasks left leased by a crashed process of our shards."""
        if self.shards is None:
            return
        await self.store.release_leases("transfer", self.shards.owned(), self.clock.now_ms())

    async def transfer_loop(self: Engine, stop: asyncio.Event) -> None:
        """Carry out transfer tasks of our shards until ``stop``."""
        while not stop.is_set():
            waiter = self.notifier.waiter("transfer")
            owned = self.shards.owned() if self.shards is not None else []
            now = self.clock.now_ms()
            tasks = await self.store.claim_tasks(
                kind="transfer",
                namespace=None,
                task_queue=TRANSFER_QUEUE,
                owner=self.owner,
                now=now,
                lease_ms=600_000,
                limit=50,
                shard_ids=owned,
            )
            if tasks:
                await asyncio.gather(*(self._run_transfer_safely(task) for task in tasks))
                continue
            await wait_event(waiter, 5.0)

    async def _run_transfer_safely(self: Engine, task: TaskRecord) -> None:
        try:
            await self.run_transfer(task)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("transfer task %s failed; retrying in 1 s", task.task_id)
            with contextlib.suppress(Exception):
                await self.store.release_task(
                    task.shard_id, task.task_id, self.clock.now_ms() + 1000
                )
            return
        await self.store.delete_task(task.shard_id, task.task_id)

    async def run_transfer(self: Engine, task: TaskRecord) -> None:
        """Carry out one transfer task."""
        action = task.payload.get("action")
        if action == "start_child":
            await self._start_child(task)
        elif action == "notify_parent":
            await self._notify_parent(task)
        elif action in SCHEDULE_TRANSFER_ACTIONS:
            await self.run_schedule_transfer(task)
        elif action in ("terminate_child", "cancel_child", "cancel_external"):
            workflow_id = task.payload["workflow_id"]
            run_id = task.payload.get("run_id") or None
            with contextlib.suppress(NotFoundError, WorkflowClosedError):
                if action == "terminate_child":
                    await self.terminate_workflow(
                        task.namespace,
                        workflow_id,
                        run_id,
                        reason="parent closed",
                        identity="cadenza",
                    )
                else:
                    await self.request_cancel_workflow(
                        task.namespace,
                        workflow_id,
                        run_id,
                        reason="requested by " + task.workflow_id,
                        request_id=task.task_id,
                        identity="cadenza",
                    )
        else:
            log.error("unknown transfer action %r in %s; dropped", action, task.task_id)

    async def _start_child(self: Engine, task: TaskRecord) -> None:
        events = await self.store.read_events(
            task.shard_id, task.run_id, task.ref_event_id - 1, task.ref_event_id, 1
        )
        if not events or not isinstance(events[0].attributes, StartChildWorkflowExecutionInitiated):
            return
        attrs = events[0].attributes
        initiated = task.ref_event_id
        request = StartWorkflowRequest(
            workflow_id=attrs.workflow_id,
            workflow_type=attrs.workflow_type,
            task_queue=attrs.task_queue,
            input=attrs.input,
            namespace=task.namespace,
            execution_timeout=attrs.execution_timeout,
            run_timeout=attrs.run_timeout,
            request_id=f"child:{task.run_id}:{initiated}",
            identity=f"parent:{task.workflow_id}",
        )
        parent = ParentRef(
            namespace=task.namespace,
            workflow_id=task.workflow_id,
            run_id=task.run_id,
            initiated_event_id=initiated,
        )
        outcome: EventAttributes
        try:
            response = await self.start_workflow(request, parent=parent)
            outcome = ChildWorkflowExecutionStarted(
                initiated_event_id=initiated, workflow_id=attrs.workflow_id, run_id=response.run_id
            )
        except WorkflowAlreadyStartedError:
            outcome = StartChildWorkflowExecutionFailed(
                initiated_event_id=initiated,
                workflow_id=attrs.workflow_id,
                cause="workflow_already_exists",
            )
        except InvalidArgumentError as exc:
            outcome = StartChildWorkflowExecutionFailed(
                initiated_event_id=initiated, workflow_id=attrs.workflow_id, cause=str(exc)
            )

        def decide(m: Mutation) -> None:
            child = m.state.children.get(initiated)
            if not m.state.running or child is None or child.run_id:
                return
            m.add(outcome)
            m.schedule_workflow_task()

        await self.update(task.shard_id, task.run_id, decide, missing_ok=True)

    async def _notify_parent(self: Engine, task: TaskRecord) -> None:
        record = await self.store.get_execution(task.shard_id, task.run_id)
        if record is None or record.state.parent is None:
            return
        parent = record.state.parent
        close = await self.close_event(record)
        initiated = parent.initiated_event_id
        attrs = close.attributes
        outcome: EventAttributes
        if isinstance(attrs, WorkflowExecutionCompleted):
            outcome = ChildWorkflowExecutionCompleted(
                initiated_event_id=initiated, result=attrs.result
            )
        elif isinstance(attrs, WorkflowExecutionFailed):
            outcome = ChildWorkflowExecutionFailed(
                initiated_event_id=initiated, failure=attrs.failure
            )
        elif record.status == "canceled":
            outcome = ChildWorkflowExecutionCanceled(initiated_event_id=initiated)
        elif record.status == "timed_out":
            outcome = ChildWorkflowExecutionTimedOut(initiated_event_id=initiated)
        else:
            outcome = ChildWorkflowExecutionTerminated(initiated_event_id=initiated)
        parent_shard = self.shard_of(parent.namespace, parent.workflow_id)

        def decide(m: Mutation) -> None:
            child = m.state.children.get(initiated)
            if not m.state.running or child is None:
                return
            if not child.run_id:
                m.add(
                    ChildWorkflowExecutionStarted(
                        initiated_event_id=initiated,
                        workflow_id=record.workflow_id,
                        run_id=record.state.first_run_id or record.run_id,
                    )
                )
            m.add(outcome)
            m.schedule_workflow_task()

        try:
            await self.update(parent_shard, parent.run_id, decide, missing_ok=True)
        except CadenzaError:
            raise
