"""The client: start workflows, and signal, query, cancel, terminate, describe and read them."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from cadenza.engine import Engine, Settings, StartWorkflowRequest, WorkflowDescription
from cadenza.history import (
    CancelledError,
    ExecutionSummary,
    HistoryEvent,
    InvalidArgumentError,
    TerminatedError,
    TimeoutError,
    WorkflowFailureError,
    exception_from_failure,
)
from cadenza.history import events as ev
from cadenza.sdk._common import seconds
from cadenza.sdk._converter import decode_value, encode_args
from cadenza.sdk._definitions import WorkflowDefinition
from cadenza.sdk._schedule_client import ScheduleClientMixin
from cadenza.sdk._service import WorkflowService


def _workflow_type(workflow: Any) -> tuple[str, Any]:
    if isinstance(workflow, str):
        if not workflow:
            raise InvalidArgumentError("workflow", "workflow type must not be empty")
        return workflow, Any
    definition = WorkflowDefinition.of(workflow)
    return definition.name, definition.return_type


def _ms(value: datetime | None) -> int | None:
    return int(value.timestamp() * 1000) if value is not None else None


class WorkflowHandle:
    """A workflow execution seen from a client.

    Attributes:
        id: The workflow id.
        run_id: The run this handle was created for (None: the latest run).
        first_execution_run_id: The run started by this handle's start call, if any.
    """

    def __init__(
        self,
        client: Client,
        workflow_id: str,
        *,
        run_id: str | None = None,
        result_type: Any = Any,
        first_execution_run_id: str | None = None,
    ) -> None:
        self._client = client
        self.id = workflow_id
        self.run_id = run_id
        self.first_execution_run_id = first_execution_run_id
        self._result_type = result_type

    async def result(
        self, *, follow_runs: bool = True, timeout: timedelta | float | None = None
    ) -> Any:
        """Wait for the workflow to close and return its result.

        Follows continue-as-new to the final run unless ``follow_runs`` is False.

        Raises:
            WorkflowFailureError: it failed, was canceled, terminated or timed out; the reason
                is ``__cause__``.
            asyncio.TimeoutError: ``timeout`` passed first.
        """
        service = self._client.service
        ns = self._client.namespace
        run_id = self.run_id or (await self.describe()).run_id
        wait = seconds(timeout, "timeout")
        loop = asyncio.get_running_loop()
        deadline = None if wait is None else loop.time() + wait
        while True:
            remaining = None if deadline is None else max(0.001, deadline - loop.time())
            status, close = await service.wait_for_close(ns, self.id, run_id, remaining)
            attrs = close.attributes
            if isinstance(attrs, ev.WorkflowExecutionContinuedAsNew) and follow_runs:
                run_id = attrs.new_run_id
                continue
            if isinstance(attrs, ev.WorkflowExecutionCompleted):
                return decode_value(attrs.result, self._result_type)
            error = WorkflowFailureError(self.id, run_id, status)
            if isinstance(attrs, ev.WorkflowExecutionFailed):
                error.__cause__ = exception_from_failure(attrs.failure)
            elif isinstance(attrs, ev.WorkflowExecutionCanceled):
                error.__cause__ = CancelledError("workflow canceled")
            elif isinstance(attrs, ev.WorkflowExecutionTerminated):
                error.__cause__ = TerminatedError(attrs.reason or "workflow terminated")
            elif isinstance(attrs, ev.WorkflowExecutionTimedOut):
                error.__cause__ = TimeoutError(
                    "workflow timed out", timeout_type=attrs.timeout_type
                )
            raise error

    async def signal(self, signal: Any, *args: Any, request_id: str | None = None) -> None:
        """Send a signal (a handler method or its name) with arguments.

        Raises:
            WorkflowClosedError: the workflow has closed.
        """
        name = (
            signal
            if isinstance(signal, str)
            else getattr(signal, "__cadenza_workflow_signal__", getattr(signal, "__name__", ""))
        )
        await self._client.service.signal_workflow(
            self._client.namespace,
            self.id,
            self.run_id,
            name,
            encode_args(args),
            request_id=request_id or uuid.uuid4().hex,
            identity=self._client.identity,
        )

    async def query(
        self, query: Any, *args: Any, result_type: Any = Any, timeout: float = 10.0
    ) -> Any:
        """Ask the workflow a question (a query handler method or its name)."""
        name = (
            query
            if isinstance(query, str)
            else getattr(query, "__cadenza_workflow_query__", getattr(query, "__name__", ""))
        )
        raw = await self._client.service.query_workflow(
            self._client.namespace, self.id, self.run_id, name, encode_args(args), timeout=timeout
        )
        return decode_value(raw, result_type)

    async def cancel(self, *, reason: str = "") -> None:
        """Request cancellation; the workflow's code decides how to wind down."""
        await self._client.service.request_cancel_workflow(
            self._client.namespace,
            self.id,
            self.run_id,
            reason=reason,
            request_id=uuid.uuid4().hex,
            identity=self._client.identity,
        )

    async def terminate(self, *, reason: str = "") -> None:
        """Close the workflow at once; its code does not run again."""
        await self._client.service.terminate_workflow(
            self._client.namespace,
            self.id,
            self.run_id,
            reason=reason,
            identity=self._client.identity,
        )

    async def describe(self) -> WorkflowDescription:
        """Status, timing and pending work of the run."""
        return await self._client.service.describe_workflow(
            self._client.namespace, self.id, self.run_id
        )

    async def fetch_history(self) -> list[HistoryEvent]:
        """Every event of the run (paged internally)."""
        events: list[HistoryEvent] = []
        run_id = self.run_id
        after = 0
        while True:
            run_id, page = await self._client.service.get_history(
                self._client.namespace, self.id, run_id, after=after
            )
            events.extend(page)
            if len(page) < 1000:
                return events
            after = page[-1].event_id


class Client(ScheduleClientMixin):
    """Starts and manages workflows.

    Args:
        service: The engine (in process) or a remote service.
        namespace: Namespace of every call (``default``).
        identity: Recorded in histories as who did what.
    """

    def __init__(
        self, service: WorkflowService, *, namespace: str = "default", identity: str = "client"
    ) -> None:
        self.service = service
        self.namespace = namespace
        self.identity = identity
        self._owned_engine: Engine | None = None

    @classmethod
    async def connect(
        cls,
        target: str | Engine,
        *,
        namespace: str = "default",
        identity: str = "client",
        **settings: Any,
    ) -> Client:
        """Connect to an engine: an :class:`Engine` object, a database URL (an embedded
        engine is started and stopped with :meth:`close`), or an ``http(s)://`` server URL."""
        if isinstance(target, Engine):
            return cls(target, namespace=namespace, identity=identity)
        if target.startswith(("http://", "https://")):
            from cadenza.frontend.remote import RemoteService

            return cls(RemoteService(target, **settings), namespace=namespace, identity=identity)
        engine = Engine(Settings(database_url=target, **settings))
        await engine.start()
        client = cls(engine, namespace=namespace, identity=identity)
        client._owned_engine = engine
        return client

    async def close(self) -> None:
        """Stop the embedded engine, if this client started one."""
        if self._owned_engine is not None:
            await self._owned_engine.stop()
            self._owned_engine = None
        closer = getattr(self.service, "close", None)
        if closer is not None and not isinstance(self.service, Engine):
            with contextlib.suppress(Exception):
                await closer()

    async def start_workflow(
        self,
        workflow: Any,
        *args: Any,
        id: str,
        task_queue: str,
        id_reuse_policy: str = "allow_duplicate",
        id_conflict_policy: str = "fail",
        execution_timeout: timedelta | float | None = None,
        run_timeout: timedelta | float | None = None,
        task_timeout: timedelta | float | None = None,
        request_id: str | None = None,
        memo: dict[str, Any] | None = None,
        result_type: Any = None,
    ) -> WorkflowHandle:
        """Start a workflow; returns its handle.

        Args:
            workflow: A ``@workflow.defn`` class, its run method, or a type name.
            *args: Arguments of its run method (JSON-encodable).
            id: Workflow id (business key; 1–1000 characters).
            task_queue: Queue of the workers that run it.
            id_reuse_policy: For an id whose last run closed: ``allow_duplicate`` (default),
                ``allow_duplicate_failed_only``, ``reject_duplicate``.
            id_conflict_policy: For an id with a running run: ``fail`` (default),
                ``use_existing``, ``terminate_existing``.
            execution_timeout: Limit for the whole chain of runs.
            run_timeout: Limit for one run.
            task_timeout: Limit for one workflow task (default 10 s).
            request_id: Makes a retried call idempotent (random by default).
            memo: JSON attributes shown by describe.

        Raises:
            InvalidArgumentError, PayloadEncodingError, PayloadTooLargeError,
            UnknownTypeError: bad input; nothing was written.
            WorkflowAlreadyStartedError: the policies rejected the start.
        """
        type_name, return_type = _workflow_type(workflow)
        response = await self.service.start_workflow(
            StartWorkflowRequest(
                workflow_id=id,
                workflow_type=type_name,
                task_queue=task_queue,
                input=encode_args(args),
                namespace=self.namespace,
                id_reuse_policy=id_reuse_policy,
                id_conflict_policy=id_conflict_policy,
                execution_timeout=seconds(execution_timeout, "execution_timeout"),
                run_timeout=seconds(run_timeout, "run_timeout"),
                task_timeout=seconds(task_timeout, "task_timeout"),
                request_id=request_id or uuid.uuid4().hex,
                memo=memo or {},
                identity=self.identity,
            )
        )
        return WorkflowHandle(
            self,
            id,
            run_id=response.run_id,
            result_type=result_type if result_type is not None else return_type,
            first_execution_run_id=response.run_id,
        )

    async def execute_workflow(self, workflow: Any, *args: Any, **options: Any) -> Any:
        """Start a workflow and wait for its result (options as for :meth:`start_workflow`)."""
        handle = await self.start_workflow(workflow, *args, **options)
        return await handle.result()

    def get_workflow_handle(
        self, workflow_id: str, *, run_id: str | None = None, result_type: Any = Any
    ) -> WorkflowHandle:
        """A handle to an existing workflow (its latest run unless ``run_id`` is given)."""
        return WorkflowHandle(self, workflow_id, run_id=run_id, result_type=result_type)

    async def list_workflows(
        self,
        *,
        status: str | None = None,
        workflow_type: str | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        limit: int = 100,
    ) -> Sequence[ExecutionSummary]:
        """Executions matching the filters, newest first."""
        return await self.service.list_workflows(
            self.namespace,
            status=status,
            workflow_type=workflow_type,
            started_after_ms=_ms(started_after),
            started_before_ms=_ms(started_before),
            limit=limit,
        )
