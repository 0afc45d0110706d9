"""Schedules from the client: create, find, list and preview schedules; a handle per schedule.

Example::

    handle = await client.create_schedule(
        "nightly-report",
        {"kind": "cron", "cron": "0 30 1 * * ?", "calendar": "VN"},
        Report.run,
        "daily",
        task_queue="reports",
    )
    await handle.pause(note="bank holiday freeze")
    print((await handle.describe()).next_fire_times)

Each fire starts the workflow with id ``{schedule id}/{nominal time, UTC ISO-8601}Z``; the
workflow reads its nominal time from ``workflow.info().trigger["nominal_time"]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cadenza.engine._schedule_api import (
    BackfillResult,
    FireTimeView,
    ScheduleAction,
    ScheduleDescription,
    ScheduleSummary,
    TriggerResult,
)
from cadenza.history import InvalidArgumentError
from cadenza.history._schedule_records import ScheduleEvent
from cadenza.sdk._common import RetryPolicy, seconds
from cadenza.sdk._converter import encode_args
from cadenza.sdk._definitions import WorkflowDefinition
from cadenza.timers._spec import ScheduleSpec

if TYPE_CHECKING:
    from cadenza.sdk._service import WorkflowService

__all__ = ["ScheduleClientMixin", "ScheduleHandle", "schedule_action"]

SpecInput = ScheduleSpec | Mapping[str, Any]
"""A spec struct, or its JSON/YAML form (``{"kind": "cron", "cron": "0 0 2 * * ?"}``)."""


def schedule_action(
    workflow: Any,
    *args: Any,
    task_queue: str,
    execution_timeout: timedelta | float | None = None,
    run_timeout: timedelta | float | None = None,
    task_timeout: timedelta | float | None = None,
    retry_policy: RetryPolicy | None = None,
    memo: dict[str, Any] | None = None,
) -> ScheduleAction:
    """What each fire starts: a workflow (a ``@workflow.defn`` class, its run method, or a
    type name) with arguments and options, as for ``Client.start_workflow``."""
    if isinstance(workflow, str):
        if not workflow:
            raise InvalidArgumentError("workflow", "workflow type must not be empty")
        type_name = workflow
    else:
        type_name = WorkflowDefinition.of(workflow).name
    return ScheduleAction(
        workflow_type=type_name,
        task_queue=task_queue,
        input=encode_args(args),
        execution_timeout=seconds(execution_timeout, "execution_timeout"),
        run_timeout=seconds(run_timeout, "run_timeout"),
        task_timeout=seconds(task_timeout, "task_timeout"),
        retry_policy=retry_policy.to_spec() if retry_policy is not None else None,
        memo=memo or {},
    )


class _ClientLike:
    service: WorkflowService
    namespace: str
    identity: str


class ScheduleHandle:
    """A schedule seen from a client.

    Attributes:
        id: The schedule id.
    """

    def __init__(self, client: _ClientLike, schedule_id: str) -> None:
        self._client = client
        self.id = schedule_id

    async def describe(self) -> ScheduleDescription:
        """Spec, action, state, the next 10 fire times and the last runs with their outcome.

        Raises:
            ScheduleNotFoundError: No such schedule (``NotFoundError`` over HTTP).
        """
        return await self._client.service.describe_schedule(self._client.namespace, self.id)

    async def update(
        self, *, spec: SpecInput | None = None, action: ScheduleAction | None = None
    ) -> ScheduleDescription:
        """Replace the spec and/or the action (see :func:`schedule_action`); the audit log
        records every changed field. The new spec fires from now on."""
        return await self._client.service.update_schedule(
            self._client.namespace,
            self.id,
            spec=spec,
            action=action,
            identity=self._client.identity,
        )

    async def pause(self, *, note: str = "") -> None:
        """Stop firing until :meth:`unpause`; ``note`` says why (shown by describe)."""
        await self._client.service.pause_schedule(
            self._client.namespace, self.id, note=note, identity=self._client.identity
        )

    async def unpause(self, *, note: str = "") -> None:
        """Fire again; what was missed meanwhile follows the catch-up policy."""
        await self._client.service.unpause_schedule(
            self._client.namespace, self.id, note=note, identity=self._client.identity
        )

    async def trigger(self, *, overlap: str = "") -> TriggerResult:
        """Fire now (nominal time: now), applying ``overlap`` (default: the schedule's)."""
        return await self._client.service.trigger_schedule(
            self._client.namespace, self.id, overlap=overlap, identity=self._client.identity
        )

    async def backfill(
        self, start: datetime, end: datetime, *, overlap: str = ""
    ) -> BackfillResult:
        """Run the spec's fires in ``[start, end]`` now, each with its own nominal time (at
        most 10,000; ``overlap`` ``allow_all`` or ``buffer_all`` runs every one)."""
        return await self._client.service.backfill_schedule(
            self._client.namespace,
            self.id,
            start,
            end,
            overlap=overlap,
            identity=self._client.identity,
        )

    async def delete(self, *, reason: str = "") -> None:
        """Delete the schedule; its runs keep running and its audit log stays."""
        await self._client.service.delete_schedule(
            self._client.namespace, self.id, identity=self._client.identity, reason=reason
        )

    async def history(self) -> list[ScheduleEvent]:
        """The schedule's audit log: every change (with who made it) and every fire."""
        events: list[ScheduleEvent] = []
        while True:
            page = await self._client.service.get_schedule_history(
                self._client.namespace, self.id, after=events[-1].event_id if events else 0
            )
            events.extend(page)
            if len(page) < 1000:
                return events


class ScheduleClientMixin:
    """Schedule methods of :class:`~cadenza.sdk.Client`."""

    service: WorkflowService
    namespace: str
    identity: str

    async def create_schedule(
        self,
        id: str,
        spec: SpecInput,
        workflow: Any,
        *args: Any,
        task_queue: str,
        execution_timeout: timedelta | float | None = None,
        run_timeout: timedelta | float | None = None,
        task_timeout: timedelta | float | None = None,
        retry_policy: RetryPolicy | None = None,
        memo: dict[str, Any] | None = None,
    ) -> ScheduleHandle:
        """Create a schedule that starts ``workflow(*args)`` on each fire.

        Args:
            id: Schedule id (``/`` allowed, e.g. ``billing/nightly``).
            spec: When it fires and its policies (``docs/schedules.md``).
            workflow: A ``@workflow.defn`` class, its run method, or a type name.
            *args: The workflow's arguments (the same for every fire).
            task_queue: Queue of the workers that run it.
            execution_timeout, run_timeout, task_timeout: As for ``start_workflow``.
            retry_policy: Retries of the whole workflow.
            memo: JSON attributes recorded with every run.

        Raises:
            InvalidArgumentError: A bad id, spec or action (nothing is created).
            ScheduleAlreadyExistsError: The id is taken.
        """
        action = schedule_action(
            workflow,
            *args,
            task_queue=task_queue,
            execution_timeout=execution_timeout,
            run_timeout=run_timeout,
            task_timeout=task_timeout,
            retry_policy=retry_policy,
            memo=memo,
        )
        await self.service.create_schedule(self.namespace, id, spec, action, identity=self.identity)
        return ScheduleHandle(self, id)

    def get_schedule_handle(self, id: str) -> ScheduleHandle:
        """A handle to an existing schedule (nothing is checked until it is used)."""
        return ScheduleHandle(self, id)

    async def list_schedules(
        self, *, after: str = "", limit: int = 100
    ) -> Sequence[ScheduleSummary]:
        """Schedules of the namespace ordered by id (those after ``after``)."""
        return await self.service.list_schedules(self.namespace, after=after, limit=limit)

    async def preview_schedule(
        self,
        spec: SpecInput,
        *,
        count: int = 10,
        after: datetime | None = None,
        schedule_id: str = "",
    ) -> list[FireTimeView]:
        """The next fire times of a spec, without creating it (``schedule_id`` seeds the
        jitter)."""
        return await self.service.preview_schedule(
            spec, count=count, after=after, schedule_id=schedule_id
        )
