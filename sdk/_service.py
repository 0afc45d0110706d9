"""What clients and workers need from the engine, in process or over HTTP.

:class:`cadenza.engine.Engine` satisfies this protocol directly; the HTTP client of the
frontend implements it for workers and clients on other hosts.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

import msgspec

from cadenza.engine import (
    ActivityTaskInfo,
    Command,
    HeartbeatResponse,
    StartWorkflowRequest,
    StartWorkflowResponse,
    TaskToken,
    WorkflowDescription,
    WorkflowTaskInfo,
)
from cadenza.engine._schedule_api import (
    BackfillResult,
    FireTimeView,
    ScheduleAction,
    ScheduleDescription,
    ScheduleSummary,
    TriggerResult,
)
from cadenza.history import ExecutionSummary, Failure, HistoryEvent
from cadenza.history._schedule_records import ScheduleEvent
from cadenza.timers._spec import ScheduleSpec


class WorkflowService(Protocol):
    """The engine operations used by :class:`Client` and :class:`Worker`."""

    async def start_workflow(self, request: StartWorkflowRequest) -> StartWorkflowResponse: ...
    async def signal_workflow(
        self,
        namespace: str,
        workflow_id: str,
        run_id: str | None,
        signal_name: str,
        input: msgspec.Raw,
        *,
        request_id: str = "",
        identity: str = "",
    ) -> None: ...
    async def request_cancel_workflow(
        self,
        namespace: str,
        workflow_id: str,
        run_id: str | None = None,
        *,
        reason: str = "",
        request_id: str = "",
        identity: str = "",
    ) -> None: ...
    async def terminate_workflow(
        self,
        namespace: str,
        workflow_id: str,
        run_id: str | None = None,
        *,
        reason: str = "",
        identity: str = "",
    ) -> None: ...
    async def describe_workflow(
        self, namespace: str, workflow_id: str, run_id: str | None = None
    ) -> WorkflowDescription: ...
    async def get_history(
        self,
        namespace: str,
        workflow_id: str,
        run_id: str | None = None,
        *,
        after: int = 0,
        up_to: int | None = None,
        limit: int = 1000,
    ) -> tuple[str, list[HistoryEvent]]: ...
    async def list_workflows(
        self, namespace: str = "default", **filters: Any
    ) -> list[ExecutionSummary]: ...
    async def wait_for_close(
        self, namespace: str, workflow_id: str, run_id: str, timeout: float | None = None
    ) -> tuple[str, HistoryEvent]: ...
    async def query_workflow(
        self,
        namespace: str,
        workflow_id: str,
        run_id: str | None,
        query_type: str,
        args: msgspec.Raw,
        *,
        timeout: float = 10.0,
    ) -> msgspec.Raw: ...
    async def poll_workflow_task(
        self,
        namespace: str,
        task_queue: str,
        worker_id: str,
        *,
        workflow_types: frozenset[str] = frozenset(),
        timeout: float | None = None,
    ) -> WorkflowTaskInfo | None: ...
    async def poll_workflow_tasks(
        self,
        namespace: str,
        task_queue: str,
        worker_id: str,
        *,
        workflow_types: frozenset[str] = frozenset(),
        timeout: float | None = None,
        max_tasks: int = 1,
    ) -> list[WorkflowTaskInfo]: ...
    async def complete_workflow_task(
        self,
        token: TaskToken,
        commands: list[Command],
        *,
        identity: str = "",
        sticky: bool = True,
        force_new_task: bool = False,
    ) -> str: ...
    async def fail_workflow_task(
        self, token: TaskToken, *, cause: str, failure: Failure, identity: str = ""
    ) -> None: ...
    def respond_query(
        self, query_id: str, result: msgspec.Raw | None, error: str | None
    ) -> Any: ...
    async def poll_activity_task(
        self,
        namespace: str,
        task_queue: str,
        worker_id: str,
        *,
        activity_types: frozenset[str] = frozenset(),
        timeout: float | None = None,
    ) -> ActivityTaskInfo | None: ...
    async def poll_activity_tasks(
        self,
        namespace: str,
        task_queue: str,
        worker_id: str,
        *,
        activity_types: frozenset[str] = frozenset(),
        timeout: float | None = None,
        max_tasks: int = 1,
    ) -> list[ActivityTaskInfo]: ...
    async def complete_activity(
        self, token: TaskToken, result: msgspec.Raw, *, identity: str = ""
    ) -> bool: ...
    async def fail_activity(
        self, token: TaskToken, failure: Failure, *, identity: str = ""
    ) -> bool: ...
    async def report_activity_canceled(
        self, token: TaskToken, details: msgspec.Raw, *, identity: str = ""
    ) -> bool: ...
    async def release_sticky(self, worker_id: str) -> None: ...
    async def heartbeat_activity(
        self, token: TaskToken, details: list[Any]
    ) -> HeartbeatResponse: ...
    async def create_schedule(
        self,
        namespace: str,
        schedule_id: str,
        spec: ScheduleSpec | Mapping[str, Any],
        action: ScheduleAction,
        *,
        identity: str = "",
    ) -> ScheduleDescription: ...
    async def update_schedule(
        self,
        namespace: str,
        schedule_id: str,
        *,
        spec: ScheduleSpec | Mapping[str, Any] | None = None,
        action: ScheduleAction | None = None,
        identity: str = "",
    ) -> ScheduleDescription: ...
    async def describe_schedule(self, namespace: str, schedule_id: str) -> ScheduleDescription: ...
    async def list_schedules(
        self, namespace: str = "default", *, after: str = "", limit: int = 100
    ) -> list[ScheduleSummary]: ...
    async def pause_schedule(
        self, namespace: str, schedule_id: str, *, note: str = "", identity: str = ""
    ) -> None: ...
    async def unpause_schedule(
        self, namespace: str, schedule_id: str, *, note: str = "", identity: str = ""
    ) -> None: ...
    async def trigger_schedule(
        self, namespace: str, schedule_id: str, *, overlap: str = "", identity: str = ""
    ) -> TriggerResult: ...
    async def backfill_schedule(
        self,
        namespace: str,
        schedule_id: str,
        start: datetime,
        end: datetime,
        *,
        overlap: str = "",
        identity: str = "",
    ) -> BackfillResult: ...
    async def delete_schedule(
        self, namespace: str, schedule_id: str, *, identity: str = "", reason: str = ""
    ) -> None: ...
    async def preview_schedule(
        self,
        spec: ScheduleSpec | Mapping[str, Any],
        *,
        count: int = 10,
        after: datetime | None = None,
        schedule_id: str = "",
    ) -> list[FireTimeView]: ...
    async def get_schedule_history(
        self, namespace: str, schedule_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[ScheduleEvent]: ...
