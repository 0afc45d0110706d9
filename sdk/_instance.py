"""The workflow state machine: runs workflow code deterministically on its history.

A :class:`WorkflowInstance` is an asyncio event loop of its own. It never touches the machine's
clock, the network or the database: it takes history events, turns the *input* events
(started, activity resolved, timer fired, signal, cancel request, child resolved) into
resolutions of the futures that workflow code awaits, runs the code until no callback is ready,
and returns the *commands* the code produced (schedule an activity, start a timer, complete …).

Replay and live execution are one path. History is processed in order; at each successful
``workflow_task_started`` the input events it saw (ids up to its ``seen_up_to``) are delivered
as one activation, exactly as when the task first ran, and the command events that follow its
``workflow_task_completed`` must match, in order, the commands the code produces now. A
mismatch raises :class:`~cadenza.history.NonDeterminismError`. The final activation (the task
being worked on) returns its commands to be sent.

``asyncio.sleep``, ``asyncio.wait_for`` and other timer-based asyncio calls inside workflow code
become durable timers (``call_later`` is implemented with timer commands), and ``time()`` is the
workflow's time.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from cadenza.engine import (
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
from cadenza.history import (
    COMMAND_EVENT_TYPES,
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
    HistoryEvent,
    LocalActivityMarker,
    NonDeterminismError,
    RetryPolicySpec,
    TerminatedError,
    TimeoutError,
    WorkflowAlreadyStartedError,
    exception_from_failure,
    failure_from_exception,
    is_input_event,
)
from cadenza.history import events as ev
from cadenza.sdk._converter import decode_args, encode_value
from cadenza.sdk._definitions import WorkflowDefinition

log = logging.getLogger("cadenza.sdk.workflow")

_current: contextvars.ContextVar[WorkflowInstance] = contextvars.ContextVar("cadenza_workflow")

_OPTIONAL_COMMANDS = (CancelTimer, RequestCancelActivity, RequestCancelExternal)


class ContinueAsNewRequest(BaseException):
    """Raised by ``workflow.continue_as_new``; a BaseException so ``except Exception`` in
    workflow code cannot swallow it."""

    def __init__(self, command: ContinueAsNew) -> None:
        super().__init__("continue as new")
        self.command = command


class WorkflowCodeError(Exception):
    """Workflow code raised an exception that is not a FailureError: the task fails and is
    retried (after a fix), the workflow does not fail."""


@dataclass(frozen=True, kw_only=True)
class WorkflowInfo:
    """What workflow code may know about its execution (``workflow.info()``)."""

    namespace: str
    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    attempt: int
    first_run_id: str
    continued_from_run_id: str | None
    parent_workflow_id: str | None
    start_time: datetime
    execution_timeout: float | None
    run_timeout: float | None
    trigger: dict[str, Any]


class _Call:
    """A pending activity or child workflow."""

    __slots__ = ("command", "event_id", "future", "result_type", "sent", "seq", "start_future")

    def __init__(self, seq: int, command: Command, future: asyncio.Future[Any], result_type: Any):
        self.seq = seq
        self.command = command
        self.future = future
        self.result_type = result_type
        self.event_id = 0
        self.sent = False
        self.start_future: asyncio.Future[str] | None = None


class LocalActivityCall:
    """A local activity the workflow code awaits: the worker runs it between activations.

    Attributes:
        seq: The workflow's sequence number of local activities (1, 2, 3 …).
        activity_id: Id shown in the history.
        activity_type: Registered name of the activity.
        input: JSON arguments.
        start_to_close_timeout: Limit of one attempt, in seconds.
        schedule_to_close_timeout: Limit of all attempts together, in seconds.
        retry_policy: Retry policy (None: the default one).
        execution: The worker's running execution of it (kept across workflow tasks of a
            cached execution, so that a task handed over in time goes on waiting for it).
    """

    __slots__ = (
        "activity_id",
        "activity_type",
        "execution",
        "future",
        "input",
        "result_type",
        "retry_policy",
        "schedule_to_close_timeout",
        "seq",
        "start_to_close_timeout",
    )

    def __init__(
        self,
        *,
        seq: int,
        activity_id: str,
        activity_type: str,
        input: msgspec.Raw,
        start_to_close_timeout: float,
        schedule_to_close_timeout: float,
        retry_policy: RetryPolicySpec | None,
        future: asyncio.Future[Any],
        result_type: Any,
    ) -> None:
        self.seq = seq
        self.activity_id = activity_id
        self.activity_type = activity_type
        self.input = input
        self.start_to_close_timeout = start_to_close_timeout
        self.schedule_to_close_timeout = schedule_to_close_timeout
        self.retry_policy = retry_policy
        self.future = future
        self.result_type = result_type
        self.execution: asyncio.Future[LocalActivityMarker] | None = None


class _DurableTimerHandle(asyncio.TimerHandle):
    """What ``call_later`` returns: cancelling it cancels the durable timer."""

    def __init__(
        self,
        when: float,
        callback: Callable[..., Any],
        args: Sequence[Any],
        loop: WorkflowInstance,
        context: contextvars.Context | None,
        timer_id: str,
    ):
        super().__init__(when, callback, args, loop, context=context)
        self._timer_id = timer_id
        self._instance = loop

    def cancel(self) -> None:
        if not self.cancelled():
            self._instance._cancel_timer(self._timer_id)
        super().cancel()


class WorkflowInstance(asyncio.AbstractEventLoop):
    """One execution's workflow code and everything it is waiting for.

    Args:
        definition: The workflow class definition.
        namespace, workflow_id, run_id, task_queue: The execution's identity.
    """

    def __init__(
        self,
        definition: WorkflowDefinition,
        *,
        namespace: str,
        workflow_id: str,
        run_id: str,
        task_queue: str,
    ) -> None:
        self.definition = definition
        self.namespace = namespace
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.task_queue = task_queue
        self.last_event_id = 0
        self.closed = False
        self.replaying = True
        self._ready: collections.deque[asyncio.Handle] = collections.deque()
        self._now_ms = 0
        self._random: random.Random | None = None  # seeded by the started event
        self._commands: list[Command] = []
        self._sent: collections.deque[Command] = collections.deque()
        self._pending_inputs: list[HistoryEvent] = []
        self._activities: dict[int, _Call] = {}
        self._activity_by_event: dict[int, _Call] = {}
        self._children: dict[int, _Call] = {}
        self._child_by_event: dict[int, _Call] = {}
        self._timers: dict[str, tuple[asyncio.Future[None], asyncio.TimerHandle | None]] = {}
        self._timer_started_ids: dict[str, int] = {}
        self._seq = collections.Counter[str]()
        self._conditions: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._signal_buffer: dict[str, list[msgspec.Raw]] = collections.defaultdict(list)
        self._known_patches: set[str] = set()
        self._patch_memo: dict[str, bool] = {}
        self._local_calls: dict[int, LocalActivityCall] = {}
        self._local_markers: dict[int, LocalActivityMarker] = {}
        self.task_timeout = 10.0
        self._main: asyncio.Task[Any] | None = None
        self._object: Any = None
        self._cancel_requested = False
        # After a live activation, the next successful workflow_task_started in the history is
        # that same task: its activation already ran here and must not run twice.
        self._live_activation_done = False
        self._code_error: BaseException | None = None
        self.info: WorkflowInfo | None = None
        self._exception_handler: Callable[..., Any] | None = None

    # ================================================================== processing

    def process(
        self,
        events: Sequence[HistoryEvent],
        *,
        seen_up_to: int,
        started_time_ms: int,
        final: bool = True,
    ) -> list[Command]:
        """Apply history events (after :attr:`last_event_id`), then, if ``final``, run the
        activation of the current task and return its commands.

        Raises:
            NonDeterminismError: the code does not produce what the history recorded.
            WorkflowCodeError: workflow code raised an unexpected exception.
        """
        token = _current.set(self)
        try:
            for index, event in enumerate(events):
                if event.event_id <= self.last_event_id:
                    continue
                if event.event_id != self.last_event_id + 1:
                    raise NonDeterminismError(
                        f"history gap: expected event {self.last_event_id + 1}, got {event.event_id}"
                    )
                self.last_event_id = event.event_id
                attrs = event.attributes
                etype = event.event_type
                if isinstance(attrs, ev.WorkflowTaskStarted):
                    following = events[index + 1] if index + 1 < len(events) else None
                    if following is not None and following.event_type == "workflow_task_completed":
                        if self._live_activation_done:
                            self._live_activation_done = False
                        else:
                            self._patch_lookahead(events, index + 2)
                            self._activate(
                                attrs.seen_up_to, _ms(attrs.started_time), replaying=True
                            )
                    continue
                if etype in COMMAND_EVENT_TYPES:
                    self._match(event)
                    if etype in ev_close_types:
                        self.closed = True
                elif is_input_event(attrs):
                    self._pending_inputs.append(event)
                elif isinstance(
                    attrs, ev.WorkflowExecutionTerminated | ev.WorkflowExecutionTimedOut
                ):
                    self.closed = True
            if not final:
                return []
            if self._sent:
                leftover = [c for c in self._sent if not isinstance(c, _OPTIONAL_COMMANDS)]
                if leftover:
                    raise NonDeterminismError(
                        f"the workflow code produced {_describe(leftover[0])} which the history "
                        "does not have"
                    )
                self._sent.clear()
            commands = self._activate(seen_up_to, started_time_ms, replaying=False)
            self._live_activation_done = True
            return commands
        finally:
            _current.reset(token)

    def unmatched_commands(self) -> list[Command]:
        """Commands produced by replayed tasks that no history event matched (replay tests)."""
        return [c for c in self._sent if not isinstance(c, _OPTIONAL_COMMANDS)]

    def _patch_lookahead(self, events: Sequence[HistoryEvent], start: int) -> None:
        """Learn the markers a replayed task recorded before its code runs again: patches
        it passed and the outcomes of its local activities."""
        for later in events[start:]:
            if later.event_type not in COMMAND_EVENT_TYPES:
                break
            attrs = later.attributes
            if isinstance(attrs, ev.MarkerRecorded):
                if attrs.marker_name == "patch":
                    self._known_patches.add(str(attrs.details.get("patch_id")))
                elif attrs.local_activity is not None:
                    self._local_markers[attrs.local_activity.seq] = attrs.local_activity

    def _activate(self, seen_up_to: int, now_ms: int, *, replaying: bool) -> list[Command]:
        self.replaying = replaying
        self._now_ms = max(self._now_ms, now_ms)
        inputs = [e for e in self._pending_inputs if e.event_id <= seen_up_to]
        self._pending_inputs = [e for e in self._pending_inputs if e.event_id > seen_up_to]
        self._commands = []
        for event in inputs:
            self._deliver(event)
        self._run_until_quiet()
        return self._take_commands()

    def _take_commands(self) -> list[Command]:
        if self._code_error is not None:
            error, self._code_error = self._code_error, None
            raise WorkflowCodeError(f"workflow code raised {error!r}") from error
        commands = self._commands
        self._commands = []
        for command in commands:
            if isinstance(command, ScheduleActivity):
                self._activities[command.seq].sent = True
            elif isinstance(command, StartChildWorkflow):
                self._children[command.seq].sent = True
        # Every command must later match its event, whether it was replayed or just sent.
        self._sent.extend(commands)
        return commands

    # ================================================================== local activities

    def pending_local_activities(self) -> list[LocalActivityCall]:
        """Local activities the code waits for, in sequence order: the worker runs them all,
        then calls :meth:`resolve_local_activities`. Empty once the workflow closed."""
        if self.closed:
            return []
        return [self._local_calls[seq] for seq in sorted(self._local_calls)]

    def resolve_local_activities(
        self, outcomes: Sequence[tuple[LocalActivityCall, LocalActivityMarker]]
    ) -> list[Command]:
        """Deliver the outcomes of a batch of local activities (every pending one), run the
        code until it waits again, and return the commands produced: a ``local_activity``
        marker per outcome, then what the code did next.

        Raises:
            WorkflowCodeError: workflow code raised an unexpected exception.
        """
        token = _current.set(self)
        try:
            self._commands = []
            for call, marker in sorted(outcomes, key=lambda item: item[0].seq):
                self._resolve_local(call, marker)
            self._run_until_quiet()
            return self._take_commands()
        finally:
            _current.reset(token)

    def _resolve_local(self, call: LocalActivityCall, marker: LocalActivityMarker) -> None:
        self._local_calls.pop(call.seq, None)
        self._commands.append(RecordMarker(marker_name="local_activity", local_activity=marker))
        if call.future.done():
            return
        if marker.failure is None:
            call.future.set_result(marker.result)
        else:
            call.future.set_exception(self._local_activity_error(call, marker))

    def _resolve_recorded_local_activities(self) -> bool:
        """On replay, when the code waits: resolve the pending local activities from the
        markers their task recorded (all of them, as when the task first ran). Returns
        whether any was resolved."""
        if self.closed or not self._local_calls:
            return False
        pending = self.pending_local_activities()
        recorded = [call for call in pending if call.seq in self._local_markers]
        if not recorded:
            return False  # they ran in a later task (or run in the live one)
        for call in pending:
            marker = self._local_markers.get(call.seq)
            if marker is None:
                raise NonDeterminismError(
                    f"the workflow code now runs local activity {call.activity_type!r} "
                    f"(seq {call.seq}) which the history does not have at this point"
                )
            if marker.activity_type != call.activity_type:
                raise NonDeterminismError(
                    f"history recorded local activity {marker.activity_type!r} (seq {call.seq}) "
                    f"but the workflow code now runs {call.activity_type!r}"
                )
        for call in pending:
            self._resolve_local(call, self._local_markers.pop(call.seq))
        return True

    def _local_activity_error(
        self, call: LocalActivityCall, marker: LocalActivityMarker
    ) -> ActivityError:
        error = ActivityError(
            f"local activity {call.activity_type!r} failed",
            activity_type=call.activity_type,
            activity_id=call.activity_id,
            scheduled_event_id=0,
            attempt=marker.attempt,
            retry_state=marker.retry_state,
        )
        if marker.failure is not None:
            error.__cause__ = exception_from_failure(marker.failure)
        return error

    # ================================================================== matching

    def _match(self, event: HistoryEvent) -> None:
        attrs = event.attributes
        while (
            self._sent
            and isinstance(self._sent[0], _OPTIONAL_COMMANDS)
            and not _matches(self._sent[0], attrs)
        ):
            self._sent.popleft()  # a cancel of something already resolved records nothing
        if not self._sent:
            if isinstance(attrs, ev.MarkerRecorded) and attrs.marker_name == "patch":
                return  # a patch that the code no longer checks (deprecated) is fine
            raise NonDeterminismError(
                f"history event {event.event_id} ({event.event_type}) has no matching command: "
                "the workflow code no longer produces it"
            )
        command = self._sent[0]
        if not _matches(command, attrs):
            if isinstance(attrs, ev.MarkerRecorded) and attrs.marker_name == "patch":
                return
            raise NonDeterminismError(
                f"history event {event.event_id} ({_describe_event(attrs)}) does not match the "
                f"command the workflow code produced now ({_describe(command)})"
            )
        self._sent.popleft()
        if isinstance(command, ScheduleActivity):
            call = self._activities[command.seq]
            call.event_id = event.event_id
            self._activity_by_event[event.event_id] = call
        elif isinstance(command, StartChildWorkflow):
            call = self._children[command.seq]
            call.event_id = event.event_id
            self._child_by_event[event.event_id] = call
        elif isinstance(command, StartTimer):
            self._timer_started_ids[command.timer_id] = event.event_id

    # ================================================================== input delivery

    def _deliver(self, event: HistoryEvent) -> None:
        attrs = event.attributes
        match attrs:
            case ev.WorkflowExecutionStarted():
                self._start(attrs, event)
            case ev.WorkflowExecutionSignaled():
                self._signal(attrs.signal_name, attrs.input)
            case ev.WorkflowExecutionCancelRequested():
                if not self._cancel_requested and self._main is not None:
                    self._cancel_requested = True
                    self._main.cancel()
            case ev.ActivityTaskCompleted():
                call = self._activity_by_event.pop(attrs.scheduled_event_id, None)
                if call is not None and not call.future.done():
                    call.future.set_result(attrs.result)
            case ev.ActivityTaskFailed() | ev.ActivityTaskTimedOut() | ev.ActivityTaskCanceled():
                call = self._activity_by_event.pop(attrs.scheduled_event_id, None)
                if call is not None and not call.future.done():
                    call.future.set_exception(self._activity_error(call, attrs))
            case ev.TimerFired():
                entry = self._timers.pop(attrs.timer_id, None)
                if entry is not None:
                    future, handle = entry
                    if not future.done():
                        future.set_result(None)
                    if handle is not None and not handle.cancelled():
                        self._ready.append(handle)
            case ev.ChildWorkflowExecutionStarted():
                call = self._child_by_event.get(attrs.initiated_event_id)
                if (
                    call is not None
                    and call.start_future is not None
                    and not call.start_future.done()
                ):
                    call.start_future.set_result(attrs.run_id)
            case ev.StartChildWorkflowExecutionFailed():
                call = self._child_by_event.pop(attrs.initiated_event_id, None)
                if call is not None:
                    error = WorkflowAlreadyStartedError(attrs.workflow_id, "", attrs.cause)
                    if call.start_future is not None and not call.start_future.done():
                        call.start_future.set_exception(error)
                    if not call.future.done():
                        call.future.set_exception(error)
            case (
                ev.ChildWorkflowExecutionCompleted()
                | ev.ChildWorkflowExecutionFailed()
                | ev.ChildWorkflowExecutionCanceled()
                | ev.ChildWorkflowExecutionTimedOut()
                | ev.ChildWorkflowExecutionTerminated()
            ):
                call = self._child_by_event.pop(attrs.initiated_event_id, None)
                if call is None:
                    return
                if call.start_future is not None and not call.start_future.done():
                    call.start_future.set_result("")
                if call.future.done():
                    return
                if isinstance(attrs, ev.ChildWorkflowExecutionCompleted):
                    call.future.set_result(attrs.result)
                else:
                    call.future.set_exception(self._child_error(call, attrs))
            case _:
                pass

    def _start(self, attrs: ev.WorkflowExecutionStarted, event: HistoryEvent) -> None:
        self._random = random.Random(attrs.random_seed)
        self.task_timeout = attrs.task_timeout
        self._now_ms = max(self._now_ms, _ms(event.event_time))
        trigger: dict[str, Any] = {}
        if attrs.trigger is not None:
            trigger = msgspec.json.decode(msgspec.json.encode(attrs.trigger))
        self.info = WorkflowInfo(
            namespace=self.namespace,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            workflow_type=attrs.workflow_type,
            task_queue=attrs.task_queue,
            attempt=attrs.attempt,
            first_run_id=attrs.first_run_id or self.run_id,
            continued_from_run_id=attrs.continued_from_run_id,
            parent_workflow_id=attrs.parent.workflow_id if attrs.parent else None,
            start_time=event.event_time,
            execution_timeout=attrs.execution_timeout,
            run_timeout=attrs.run_timeout,
            trigger=trigger,
        )
        definition = self.definition
        try:
            args = decode_args(attrs.input, definition.arg_types)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            error = ApplicationError(
                f"workflow input does not match {definition.name}'s parameters: {exc}",
                type="InvalidInput",
                non_retryable=True,
            )
            self._commands.append(FailWorkflow(failure=failure_from_exception(error)))
            self.closed = True
            return
        self._object = definition.cls()
        run = getattr(self._object, definition.run_method)
        self._main = self.create_task(self._run_main(run, args), name="workflow-main")
        for name, buffered in list(self._signal_buffer.items()):
            if name in definition.signals:
                for payload in buffered:
                    self._signal(name, payload)
                del self._signal_buffer[name]

    async def _run_main(self, run: Callable[..., Any], args: list[Any]) -> None:
        try:
            result = await run(*args)
        except ContinueAsNewRequest as request:
            self._close(request.command)
            return
        except asyncio.CancelledError:
            if self._cancel_requested:
                self._close(CancelWorkflow())
                return
            self._close(FailWorkflow(failure=failure_from_exception(CancelledError("canceled"))))
            return
        except FailureError as exc:
            self._close(FailWorkflow(failure=failure_from_exception(exc)))
            return
        except Exception as exc:
            self._code_error = exc
            return
        self._close(CompleteWorkflow(result=encode_value(result, "result")))

    def _close(self, command: Command) -> None:
        self._commands.append(command)
        self.closed = True

    def _signal(self, name: str, payload: msgspec.Raw) -> None:
        handler = self.definition.signals.get(name)
        if handler is None or self._object is None:
            self._signal_buffer[name].append(payload)
            return
        try:
            args = decode_args(payload, handler.arg_types)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            log.warning("signal %r to %s dropped: bad arguments: %s", name, self.workflow_id, exc)
            return
        method = getattr(self._object, handler.method_name)
        if handler.is_async:
            self.create_task(method(*args), name=f"signal-{name}")
        else:
            self.call_soon(method, *args)

    def query(self, name: str, payload: msgspec.Raw) -> msgspec.Raw:
        """Answer a query from the current state (no commands may result)."""
        handler = self.definition.queries.get(name)
        if handler is None or self._object is None:
            known = ", ".join(sorted(self.definition.queries)) or "none"
            raise ApplicationError(f"unknown query {name!r} (known: {known})", type="UnknownQuery")
        args = decode_args(payload, handler.arg_types)
        token = _current.set(self)
        try:
            result = getattr(self._object, handler.method_name)(*args)
        finally:
            _current.reset(token)
        return encode_value(result, "result")

    # ================================================================== errors

    def _activity_error(self, call: _Call, attrs: Any) -> ActivityError:
        command = call.command
        if isinstance(attrs, ev.ActivityTaskCanceled):
            cause: BaseException = CancelledError("activity canceled")
            retry_state = "cancel_requested"
        else:
            cause = exception_from_failure(attrs.failure)
            retry_state = attrs.retry_state
        error = ActivityError(
            f"activity {command.activity_type!r} failed",  # type: ignore[union-attr]
            activity_type=command.activity_type,  # type: ignore[union-attr]
            activity_id=command.activity_id,  # type: ignore[union-attr]
            scheduled_event_id=call.event_id,
            attempt=getattr(attrs, "attempt", 0),
            retry_state=retry_state,
        )
        error.__cause__ = cause
        return error

    def _child_error(self, call: _Call, attrs: Any) -> ChildWorkflowError:
        command = call.command
        cause: BaseException
        if isinstance(attrs, ev.ChildWorkflowExecutionFailed):
            cause = exception_from_failure(attrs.failure)
        elif isinstance(attrs, ev.ChildWorkflowExecutionCanceled):
            cause = CancelledError("child workflow canceled")
        elif isinstance(attrs, ev.ChildWorkflowExecutionTimedOut):
            cause = TimeoutError("child workflow timed out", timeout_type="workflow_run")
        else:
            cause = TerminatedError("child workflow terminated")
        error = ChildWorkflowError(
            f"child workflow {command.workflow_id!r} did not complete",  # type: ignore[union-attr]
            workflow_type=command.workflow_type,  # type: ignore[union-attr]
            workflow_id=command.workflow_id,  # type: ignore[union-attr]
            run_id="",
        )
        error.__cause__ = cause
        return error

    # ================================================================== API for workflow code

    def now_ms(self) -> int:
        """The workflow's current time."""
        return self._now_ms

    def rng(self) -> random.Random:
        """The workflow's deterministic random generator."""
        if self._random is None:
            self._random = random.Random(0)
        return self._random

    def next_seq(self, kind: str) -> int:
        """The next sequence number of a kind of command."""
        self._seq[kind] += 1
        return self._seq[kind]

    def schedule_activity(self, command: ScheduleActivity, result_type: Any) -> _Call:
        """Add a schedule-activity command; returns the call whose future resolves with it."""
        call = _Call(command.seq, command, self.create_future(), result_type)
        self._activities[command.seq] = call
        self._commands.append(command)
        return call

    def cancel_activity(self, call: _Call) -> None:
        """Request cancellation of an activity (dropped unsent if it was never sent)."""
        if call.future.done() and not call.future.cancelled():
            return
        if not call.sent:
            if call.command in self._commands:
                self._commands.remove(call.command)
            return
        if call.event_id and call.event_id in self._activity_by_event:
            self._commands.append(RequestCancelActivity(scheduled_event_id=call.event_id))
            self._activity_by_event.pop(call.event_id, None)

    def start_child(self, command: StartChildWorkflow, result_type: Any) -> _Call:
        """Add a start-child command."""
        call = _Call(command.seq, command, self.create_future(), result_type)
        call.start_future = self.create_future()
        self._children[command.seq] = call
        self._commands.append(command)
        return call

    def cancel_child(self, call: _Call) -> None:
        """Request cancellation of a child workflow."""
        if not call.sent:
            if call.command in self._commands:
                self._commands.remove(call.command)
            return
        if call.event_id in self._child_by_event:
            command = call.command
            self._commands.append(
                RequestCancelExternal(
                    workflow_id=command.workflow_id,  # type: ignore[union-attr]
                    child_initiated_event_id=call.event_id,
                )
            )

    def start_timer(
        self, seconds: float, handle: asyncio.TimerHandle | None = None
    ) -> tuple[str, asyncio.Future[None]]:
        """Add a start-timer command; the future resolves when the timer fires."""
        timer_id = str(self.next_seq("timer"))
        future: asyncio.Future[None] = self.create_future()
        self._timers[timer_id] = (future, handle)
        self._commands.append(StartTimer(timer_id=timer_id, duration=max(seconds, 0.001)))
        return timer_id, future

    def _cancel_timer(self, timer_id: str) -> None:
        entry = self._timers.pop(timer_id, None)
        if entry is None:
            return
        future, _handle = entry
        if not future.done():
            future.cancel()
        for command in self._commands:
            if isinstance(command, StartTimer) and command.timer_id == timer_id:
                self._commands.remove(command)
                return
        self._commands.append(CancelTimer(timer_id=timer_id))

    def cancel_timer(self, timer_id: str) -> None:
        """Cancel a started timer."""
        self._cancel_timer(timer_id)

    def start_local_activity(self, call: LocalActivityCall) -> None:
        """Register a local activity; the worker runs it once the code waits."""
        self._local_calls[call.seq] = call

    def cancel_local_activity(self, call: LocalActivityCall) -> None:
        """Drop a local activity the code no longer waits for. The worker runs a batch only
        while the code waits, so a local activity is always dropped before it started: it
        records nothing, live or on replay."""
        self._local_calls.pop(call.seq, None)

    def patched(self, patch_id: str) -> bool:
        """See ``workflow.patched``."""
        if patch_id in self._patch_memo:
            return self._patch_memo[patch_id]
        result = (not self.replaying) or patch_id in self._known_patches
        self._patch_memo[patch_id] = result
        if result:
            self._commands.append(RecordMarker(marker_name="patch", details={"patch_id": patch_id}))
        return result

    def wait_condition(self, fn: Callable[[], bool]) -> asyncio.Future[None]:
        """A future resolved as soon as ``fn()`` is true."""
        future: asyncio.Future[None] = self.create_future()
        self._conditions.append((fn, future))
        return future

    def continue_as_new_command(
        self,
        args: Sequence[Any],
        workflow_type: str | None,
        task_queue: str | None,
        run_timeout: float | None,
    ) -> ContinueAsNew:
        """Build the continue-as-new command."""
        from cadenza.sdk._converter import encode_args

        info = self.info
        return ContinueAsNew(
            workflow_type=workflow_type or (info.workflow_type if info else self.definition.name),
            task_queue=task_queue or self.task_queue,
            input=encode_args(args),
            run_timeout=run_timeout,
        )

    # ================================================================== event loop

    def _run_until_quiet(self) -> None:
        previous = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(self)
        try:
            while True:
                while self._ready:
                    handle = self._ready.popleft()
                    if not handle._cancelled:
                        handle._run()
                resolved = False
                for fn, future in list(self._conditions):
                    if future.done():
                        self._conditions.remove((fn, future))
                        continue
                    try:
                        ok = fn()
                    except Exception as exc:  # a broken condition fails the task
                        self._code_error = exc
                        return
                    if ok:
                        self._conditions.remove((fn, future))
                        future.set_result(None)
                        resolved = True
                if not resolved and not self._ready:
                    if self.replaying and self._resolve_recorded_local_activities():
                        continue
                    return
        finally:
            asyncio.events._set_running_loop(previous)

    def call_soon(
        self, callback: Callable[..., Any], *args: Any, context: contextvars.Context | None = None
    ) -> asyncio.Handle:  # type: ignore[override]
        handle = asyncio.Handle(callback, args, self, context=context)
        self._ready.append(handle)
        return handle

    def call_later(
        self,
        delay: float,
        callback: Callable[..., Any],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:  # type: ignore[override]
        if delay <= 0:
            return self.call_soon(callback, *args, context=context)  # type: ignore[return-value]
        timer_id = str(self._seq["timer"] + 1)
        handle = _DurableTimerHandle(self.time() + delay, callback, args, self, context, timer_id)
        self.start_timer(delay, handle)
        return handle

    def call_at(
        self,
        when: float,
        callback: Callable[..., Any],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:  # type: ignore[override]
        return self.call_later(when - self.time(), callback, *args, context=context)

    def time(self) -> float:
        return self._now_ms / 1000

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(
        self, coro: Any, *, name: str | None = None, context: contextvars.Context | None = None
    ) -> asyncio.Task[Any]:  # type: ignore[override]
        return asyncio.Task(coro, loop=self, name=name, context=context)

    def get_debug(self) -> bool:
        return False

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        """Called by ``TimerHandle.cancel``; the durable timer is cancelled by the handle."""

    def is_running(self) -> bool:
        return True

    def is_closed(self) -> bool:
        return False

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, asyncio.CancelledError):
            return
        log.debug("workflow %s: %s", self.workflow_id, context.get("message"), exc_info=exc)

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.call_exception_handler(context)

    def get_exception_handler(self) -> Callable[..., Any] | None:
        return self._exception_handler

    def set_exception_handler(self, handler: Callable[..., Any] | None) -> None:
        self._exception_handler = handler


ev_close_types = frozenset(
    {
        "workflow_execution_completed",
        "workflow_execution_failed",
        "workflow_execution_canceled",
        "workflow_execution_continued_as_new",
    }
)


def current() -> WorkflowInstance:
    """The instance whose code is running (raises outside workflow code)."""
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError(
            "not in workflow code: this function is for @workflow.defn code"
        ) from None


def in_workflow() -> bool:
    """Whether the caller is workflow code."""
    return _current.get(None) is not None


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _matches(command: Command, attrs: Any) -> bool:
    match command:
        case ScheduleActivity():
            return (
                isinstance(attrs, ev.ActivityTaskScheduled)
                and attrs.activity_type == command.activity_type
                and attrs.activity_id == command.activity_id
            )
        case StartTimer():
            return isinstance(attrs, ev.TimerStarted) and attrs.timer_id == command.timer_id
        case CancelTimer():
            return isinstance(attrs, ev.TimerCanceled) and attrs.timer_id == command.timer_id
        case RequestCancelActivity():
            return (
                isinstance(attrs, ev.ActivityTaskCancelRequested)
                and attrs.scheduled_event_id == command.scheduled_event_id
            )
        case RecordMarker():
            if not (
                isinstance(attrs, ev.MarkerRecorded) and attrs.marker_name == command.marker_name
            ):
                return False
            local = command.local_activity
            if local is not None:
                return (
                    attrs.local_activity is not None
                    and attrs.local_activity.seq == local.seq
                    and attrs.local_activity.activity_type == local.activity_type
                )
            return attrs.details.get("patch_id") == command.details.get("patch_id")
        case StartChildWorkflow():
            return (
                isinstance(attrs, ev.StartChildWorkflowExecutionInitiated)
                and attrs.workflow_id == command.workflow_id
                and attrs.workflow_type == command.workflow_type
            )
        case RequestCancelExternal():
            return (
                isinstance(attrs, ev.RequestCancelExternalWorkflowExecutionInitiated)
                and attrs.workflow_id == command.workflow_id
            )
        case CompleteWorkflow():
            return isinstance(attrs, ev.WorkflowExecutionCompleted)
        case FailWorkflow():
            return isinstance(attrs, ev.WorkflowExecutionFailed)
        case CancelWorkflow():
            return isinstance(attrs, ev.WorkflowExecutionCanceled)
        case ContinueAsNew():
            return isinstance(attrs, ev.WorkflowExecutionContinuedAsNew)
    return False


def _describe(command: Command) -> str:
    match command:
        case ScheduleActivity():
            return f"schedule activity {command.activity_type!r} (id {command.activity_id})"
        case StartTimer():
            return f"start timer {command.timer_id} ({command.duration:g} s)"
        case StartChildWorkflow():
            return f"start child {command.workflow_type!r} ({command.workflow_id})"
        case RecordMarker():
            if command.local_activity is not None:
                local = command.local_activity
                return f"local activity {local.activity_type!r} (seq {local.seq})"
            return f"marker {command.marker_name} {command.details}"
    return type(command).__name__


def _describe_event(attrs: Any) -> str:
    if isinstance(attrs, ev.ActivityTaskScheduled):
        return f"activity {attrs.activity_type!r} (id {attrs.activity_id}) scheduled"
    if isinstance(attrs, ev.TimerStarted):
        return f"timer {attrs.timer_id} started ({attrs.duration:g} s)"
    if isinstance(attrs, ev.MarkerRecorded):
        if attrs.local_activity is not None:
            local = attrs.local_activity
            return f"local activity {local.activity_type!r} (seq {local.seq}) recorded"
        return f"marker {attrs.marker_name} {attrs.details}"
    return attrs.type if hasattr(attrs, "type") else type(attrs).__name__
