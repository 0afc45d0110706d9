"""The worker: polls a task queue, runs workflow tasks and activities, reports back.

Workflow tasks run on a :class:`WorkflowInstance` kept in an LRU cache (sticky execution): the
next task of a cached execution only processes the events after the ones it already has. A
cache miss (a new worker, an eviction, a task that moved) replays the history from event 1. An
activation runs in a thread with a deadline: workflow code that blocks longer than
``deadlock_timeout`` fails the task with a clear error instead of freezing the worker.

Activities run on the worker's event loop (``async def``) or in its thread pool (``def``),
with their context (``activity.info()``, ``activity.heartbeat()``) set. Heartbeats are
throttled; the engine's answer tells a running activity that it was cancelled.

Local activities run inside the workflow task: after an activation, the worker runs the local
activities the code waits for (``_local_activities.py``), feeds their outcomes back and goes
on until the code waits for something else; if they still run at 80 % of the task timeout,
the task completes with what it has and asks for a new one (``force_new_task``).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from cadenza.activities import (
    ActivityContext,
    ActivityDefinition,
    ActivityInfo,
    reset_context,
    set_context,
)
from cadenza.engine import ActivityTaskInfo, StaleTaskError, TaskToken, WorkflowTaskInfo
from cadenza.history import (
    ApplicationError,
    CadenzaError,
    Failure,
    HistoryEvent,
    InvalidArgumentError,
    NonDeterminismError,
    PayloadEncodingError,
    ShardOwnershipLostError,
    failure_from_exception,
)
from cadenza.sdk._converter import encode_value
from cadenza.sdk._definitions import WorkflowDefinition
from cadenza.sdk._instance import WorkflowCodeError, WorkflowInstance
from cadenza.sdk._local_activities import decode_activity_args, run_local_activity
from cadenza.sdk._workflow_threads import Deadlines, WorkflowThreads

if TYPE_CHECKING:
    from cadenza.sdk._client import Client

log = logging.getLogger("cadenza.sdk.worker")

# Pauses between tries of an activity's outcome report (None: the last try).
_REPORT_RETRY_DELAYS: tuple[float | None, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, None)


class _DeadlockError(Exception):
    pass


class _UnknownLocalActivityError(Exception):
    """A workflow asked for a local activity this worker does not have."""


LOCAL_ACTIVITY_TASK_SHARE = 0.8
"""A workflow task whose local activities still run at this share of its timeout is completed
with what it has, and the workflow goes on in a new task (the running ones keep running)."""


def _ms_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


DEFAULT_MAX_CACHED_WORKFLOWS = 5000
"""Executions a worker keeps in memory between their tasks, unless told otherwise."""


async def _take_free_slots(slots: asyncio.Semaphore, most: int) -> int:
    """One slot to poll at all, then every free one up to ``most``: a busy queue fills them
    all in one claim; an idle one answers with its first task. Returns how many were taken."""
    await slots.acquire()
    taken = 1
    while taken < most and not slots.locked():
        await slots.acquire()
        taken += 1
    return taken


def _give_back(slots: asyncio.Semaphore, count: int) -> None:
    for _ in range(count):
        slots.release()


class Worker:
    """Runs workflows and activities of one task queue.

    Args:
        client: The client whose service (engine or server) the worker polls.
        task_queue: The queue to poll.
        server_url: Instead of a client: a server's URL (``http://host:7233``); the worker
            talks to it over HTTP and needs no database credentials.
        token: The server's worker token (with ``server_url``).
        namespace: Namespace (with ``server_url``; a client brings its own).
        workflows: ``@workflow.defn`` classes.
        activities: ``@activity.defn`` functions.
        max_concurrent_workflow_tasks: Workflow tasks run at once (default 200: a
            workflow task mostly waits, on its local activities and on the server, so a worker
            keeps many in flight; 50 made the benchmark's worker the bottleneck).
        max_concurrent_activities: Activities run at once (default 100).
        max_cached_workflows: Executions kept in memory for sticky execution (default 5000,
            about 13 KB each for a small workflow). Size it to the runs a worker has in
            progress at once: tasks are handed out oldest first, so with more runs under
            way than the cache holds, each one is evicted before its next task and every
            task replays the history (at 1000, a backlog of 3000 runs of three activities
            ran at 107 workflows/s; at 5000, 184).
        workflow_pollers: Concurrent workflow task long-polls (default 4).
        workflow_tasks_per_poll: Most workflow tasks one poll may take (1–100, default 16):
            a poll asks for as many as the worker has free slots, up to this, so a busy queue
            hands out many tasks per claim and per request.
        activity_pollers: Concurrent activity task long-polls (default 4).
        activity_tasks_per_poll: Most activity attempts one poll may take (1–100, default
            16), the same way: as many as the worker has free activity slots, up to this.
        activity_executor: Thread pool for sync activities (default: one of
            ``max_concurrent_activities`` threads).
        graceful_shutdown_timeout: How long running activities may finish on shutdown (10 s).
        deadlock_timeout: Longest a workflow activation may block (default 2 s).
        identity: Worker identity recorded in histories (default ``host:pid:random``).
        sticky: Keep executions cached and ask for their next tasks (default True).
    """

    def __init__(
        self,
        client: Client | None = None,
        *,
        task_queue: str,
        server_url: str | None = None,
        token: str = "",
        namespace: str = "default",
        workflows: Sequence[type] = (),
        activities: Sequence[Callable[..., Any]] = (),
        max_concurrent_workflow_tasks: int = 200,
        max_concurrent_activities: int = 100,
        max_cached_workflows: int = DEFAULT_MAX_CACHED_WORKFLOWS,
        workflow_pollers: int = 4,
        workflow_tasks_per_poll: int = 16,
        activity_pollers: int = 4,
        activity_tasks_per_poll: int = 16,
        activity_executor: concurrent.futures.Executor | None = None,
        graceful_shutdown_timeout: timedelta = timedelta(seconds=10),
        deadlock_timeout: float = 2.0,
        identity: str | None = None,
        sticky: bool = True,
        poll_timeout: float | None = None,
    ) -> None:
        if not task_queue:
            raise InvalidArgumentError("task_queue", "must not be empty")
        if not workflows and not activities:
            raise InvalidArgumentError("workflows", "a worker needs workflows or activities")
        if (client is None) == (server_url is None):
            raise InvalidArgumentError("client", "give either a client or a server_url")
        if client is None:
            from cadenza.frontend.remote import RemoteService
            from cadenza.sdk._client import Client as _Client

            client = _Client(RemoteService(str(server_url), token=token), namespace=namespace)
            self._owns_client = True
        else:
            self._owns_client = False
        self.client = client
        self.service = client.service
        self.namespace = client.namespace
        self.task_queue = task_queue
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._workflows: dict[str, WorkflowDefinition] = {}
        for cls in workflows:
            definition = WorkflowDefinition.of(cls)
            if definition.name in self._workflows:
                raise InvalidArgumentError(
                    "workflows", f"workflow type {definition.name!r} given twice"
                )
            self._workflows[definition.name] = definition
        self._activities: dict[str, ActivityDefinition] = {}
        for fn in activities:
            adef = ActivityDefinition.of(fn)
            if adef.name in self._activities:
                raise InvalidArgumentError("activities", f"activity type {adef.name!r} given twice")
            self._activities[adef.name] = adef
        self._wt_slots = asyncio.Semaphore(max_concurrent_workflow_tasks)
        self._activity_slots = asyncio.Semaphore(max_concurrent_activities)
        if max_cached_workflows < 0:
            raise InvalidArgumentError(
                "max_cached_workflows", f"must be 0 or more, got {max_cached_workflows}"
            )
        self._max_cached = max_cached_workflows
        self._cache: collections.OrderedDict[str, WorkflowInstance] = collections.OrderedDict()
        if not 1 <= workflow_tasks_per_poll <= 100:
            raise InvalidArgumentError(
                "workflow_tasks_per_poll",
                f"must be between 1 and 100, got {workflow_tasks_per_poll}",
            )
        self._tasks_per_poll = workflow_tasks_per_poll
        if not 1 <= activity_tasks_per_poll <= 100:
            raise InvalidArgumentError(
                "activity_tasks_per_poll",
                f"must be between 1 and 100, got {activity_tasks_per_poll}",
            )
        self._activities_per_poll = activity_tasks_per_poll
        self._workflow_pollers = workflow_pollers if self._workflows else 0
        self._activity_pollers = activity_pollers if self._activities else 0
        self._own_executor = activity_executor is None
        self._executor = activity_executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=max_concurrent_activities, thread_name_prefix="cadenza-activity"
        )
        self._wf_threads = WorkflowThreads(max(1, min(max_concurrent_workflow_tasks, 8)))
        self._grace = graceful_shutdown_timeout.total_seconds()
        self._deadlock_timeout = deadlock_timeout
        self._deadlines = Deadlines(deadlock_timeout, self._deadline_passed)
        self._sticky = sticky
        self._poll_timeout = poll_timeout
        self._stop = asyncio.Event()
        self._running_activities: dict[str, tuple[asyncio.Task[Any], ActivityContext]] = {}
        self._running_wts: set[asyncio.Task[Any]] = set()
        self._run_task: asyncio.Task[None] | None = None
        self.stats = collections.Counter[str]()

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Poll and run tasks until :meth:`shutdown`."""
        log.info(
            "worker %s on %r: %d workflow types, %d activity types",
            self.identity,
            self.task_queue,
            len(self._workflows),
            len(self._activities),
        )
        pollers = [
            asyncio.create_task(self._poll_workflow_tasks(), name=f"wf-poller-{i}")
            for i in range(self._workflow_pollers)
        ] + [
            asyncio.create_task(self._poll_activity_tasks(), name=f"act-poller-{i}")
            for i in range(self._activity_pollers)
        ]
        stop_wait = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait([*pollers, stop_wait], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop_wait and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in [*pollers, stop_wait]:
                task.cancel()
            for task in pollers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self._drain()
            for instance in self._cache.values():
                _drop_local_executions(instance)
            if self._workflows and self._sticky:
                try:
                    await self.service.release_sticky(self.identity)
                except CadenzaError as exc:
                    log.warning("could not release sticky workflow tasks: %s", exc)

    async def _drain(self) -> None:
        if self._running_activities:
            tasks = [t for t, _ in self._running_activities.values()]
            _, pending = await asyncio.wait(tasks, timeout=self._grace)
            for task_id, (task, ctx) in list(self._running_activities.items()):
                if task in pending:
                    log.warning(
                        "activity %s did not finish within the grace period; cancelling", task_id
                    )
                    ctx.cancelled.set()
                    task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        if self._running_wts:
            await asyncio.wait(list(self._running_wts), timeout=self._grace)
        if self._own_executor and isinstance(self._executor, concurrent.futures.ThreadPoolExecutor):
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._wf_threads.shutdown()

    async def start(self) -> None:
        """Start :meth:`run` in the background."""
        if self._run_task is None:
            self._run_task = asyncio.create_task(self.run(), name=f"worker-{self.task_queue}")

    async def shutdown(self) -> None:
        """Stop polling, let running activities finish (up to the grace period), stop."""
        self._stop.set()
        if self._run_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._run_task
            self._run_task = None
        if self._owns_client:
            await self.client.close()

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    # ------------------------------------------------------------------ workflow tasks

    async def _poll_workflow_tasks(self) -> None:
        types = frozenset(self._workflows)
        while not self._stop.is_set():
            slots = await _take_free_slots(self._wt_slots, self._tasks_per_poll)
            try:
                infos = await self.service.poll_workflow_tasks(
                    self.namespace,
                    self.task_queue,
                    self.identity,
                    workflow_types=types,
                    timeout=self._poll_timeout,
                    max_tasks=slots,
                )
            except asyncio.CancelledError:
                _give_back(self._wt_slots, slots)
                raise
            except Exception:
                _give_back(self._wt_slots, slots)
                log.exception("polling workflow tasks failed; retrying in 1 s")
                await asyncio.sleep(1.0)
                continue
            _give_back(self._wt_slots, slots - len(infos))
            for info in infos:
                task = asyncio.create_task(self._handle_workflow_task(info))
                self._running_wts.add(task)
                task.add_done_callback(self._wt_done)

    def _wt_done(self, task: asyncio.Task[Any]) -> None:
        self._running_wts.discard(task)
        self._wt_slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("workflow task handler failed", exc_info=task.exception())

    async def _fetch(self, info: WorkflowTaskInfo, after: int) -> list[HistoryEvent]:
        events: list[HistoryEvent] = []
        while after < info.seen_up_to:
            _, page = await self.service.get_history(
                info.namespace, info.workflow_id, info.run_id, after=after, up_to=info.seen_up_to
            )
            if not page:
                break
            events.extend(page)
            after = page[-1].event_id
        return events

    def _evict(self, run_id: str) -> None:
        _drop_local_executions(self._cache.pop(run_id, None))

    async def _activate(
        self,
        instance: WorkflowInstance,
        events: list[HistoryEvent],
        info: WorkflowTaskInfo,
        final: bool,
    ) -> list[Any]:
        return await self._in_workflow_thread(
            lambda: instance.process(
                events,
                seen_up_to=info.seen_up_to,
                started_time_ms=info.started_time_ms,
                final=final,
            )
        )

    async def _in_workflow_thread(self, fn: Callable[[], list[Any]]) -> list[Any]:
        """Run workflow code in the workflow threads, with the deadlock deadline.

        One loop future, set when the thread's outcome is handed back (see
        :mod:`cadenza.sdk._workflow_threads`), watched by the worker's shared deadline
        timer (:class:`~cadenza.sdk._workflow_threads.Deadlines`). If the deadline passes or the
        caller is cancelled, the thread's late outcome is dropped.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[Any]] = loop.create_future()
        self._wf_threads.submit(contextvars.copy_context(), fn, done)
        self._deadlines.watch(done)
        try:
            return await done
        finally:
            self._deadlines.unwatch(done)

    def _deadline_passed(self, done: asyncio.Future[list[Any]]) -> None:
        _settle(
            done,
            None,
            _DeadlockError(
                f"workflow code blocked the workflow task for more than {self._deadlock_timeout:g} s "
                "(no await on a workflow API? blocking I/O in workflow code?)"
            ),
        )

    async def _run_local_activities(
        self, instance: WorkflowInstance, task_deadline: float
    ) -> tuple[list[Any], bool]:
        """Run the local activities the workflow waits for, batch after batch, feeding their
        outcomes back, until it waits for something else. Returns the commands produced and
        whether the task's time ran out first (the running batch goes on in the next task).
        """
        loop = asyncio.get_running_loop()
        commands: list[Any] = []
        while True:
            calls = instance.pending_local_activities()
            if not calls:
                return commands, False
            unknown = sorted({c.activity_type for c in calls} - set(self._activities))
            if unknown:
                raise _UnknownLocalActivityError(
                    f"local activity type {unknown[0]!r} is not registered on worker "
                    f"{self.identity} (known: {', '.join(sorted(self._activities)) or 'none'}); "
                    "add it to Worker(activities=[...])"
                )
            for call in calls:
                if call.execution is None:
                    call.execution = asyncio.ensure_future(
                        run_local_activity(
                            instance, call, self._activities[call.activity_type], self._invoke
                        )
                    )
                    self.stats["local_activities"] += 1
            executions = [c.execution for c in calls if c.execution is not None]
            _, running = await asyncio.wait(
                executions, timeout=max(task_deadline - loop.time(), 0.0)
            )
            if running:
                return commands, True
            outcomes = [(c, c.execution.result()) for c in calls if c.execution is not None]
            commands += await self._in_workflow_thread(
                functools.partial(instance.resolve_local_activities, outcomes)
            )

    async def _handle_workflow_task(self, info: WorkflowTaskInfo) -> None:
        if info.query is not None:
            await self._handle_query(info)
            return
        token = info.token
        if token is None:
            return
        received = asyncio.get_running_loop().time()
        definition = self._workflows.get(info.workflow_type)
        if definition is None:
            await self._fail_wt(
                token,
                "unknown_workflow_type",
                Failure(
                    message=f"workflow type {info.workflow_type!r} is not registered on this worker "
                    f"(known: {', '.join(sorted(self._workflows))})",
                    type="UnknownWorkflowType",
                ),
            )
            return
        instance = self._cache.pop(info.run_id, None)
        if instance is not None and instance.last_event_id > info.seen_up_to:
            _drop_local_executions(instance)
            instance = None
        if instance is None:
            self.stats["cache_miss"] += 1
            instance = WorkflowInstance(
                definition,
                namespace=info.namespace,
                workflow_id=info.workflow_id,
                run_id=info.run_id,
                task_queue=info.task_queue,
            )
        else:
            self.stats["cache_hit"] += 1
        try:
            if info.history and info.history_after <= instance.last_event_id:
                # The task brought the events we lack (old ones are skipped by the instance).
                events = list(info.history)
                if events[-1].event_id < info.seen_up_to:
                    events += await self._fetch(info, events[-1].event_id)
            else:
                events = await self._fetch(info, instance.last_event_id)
            commands = await self._activate(instance, events, info, final=True)
            more, out_of_time = await self._run_local_activities(
                instance, received + LOCAL_ACTIVITY_TASK_SHARE * instance.task_timeout
            )
            commands += more
        except NonDeterminismError as exc:
            _drop_local_executions(instance)
            log.error("non-determinism in %s run %s: %s", info.workflow_id, info.run_id, exc)
            await self._fail_wt(
                token, "non_determinism", Failure(message=str(exc), type="NonDeterminismError")
            )
            return
        except WorkflowCodeError as exc:
            _drop_local_executions(instance)
            cause = exc.__cause__ or exc
            await self._fail_wt(token, "workflow_error", failure_from_exception(cause))
            return
        except _DeadlockError as exc:
            _drop_local_executions(instance)
            await self._fail_wt(token, "deadlock", Failure(message=str(exc), type="DeadlockError"))
            return
        except PayloadEncodingError as exc:
            _drop_local_executions(instance)
            await self._fail_wt(token, "bad_payload", failure_from_exception(exc))
            return
        except _UnknownLocalActivityError as exc:
            _drop_local_executions(instance)
            await self._fail_wt(
                token,
                "unknown_activity_type",
                Failure(message=str(exc), type="ActivityTypeNotRegistered"),
            )
            return
        except BaseException:
            _drop_local_executions(instance)
            raise
        if out_of_time:
            self.stats["workflow_task_handovers"] += 1
        try:
            outcome = await self.service.complete_workflow_task(
                token,
                commands,
                identity=self.identity,
                sticky=self._sticky,
                force_new_task=out_of_time,
            )
        except StaleTaskError:
            _drop_local_executions(instance)
            return
        except CadenzaError as exc:
            _drop_local_executions(instance)
            log.warning("completing workflow task of %s failed: %s", info.workflow_id, exc)
            return
        self.stats["workflow_tasks"] += 1
        if outcome == "completed" and not instance.closed and self._sticky:
            self._cache[info.run_id] = instance
            while len(self._cache) > self._max_cached:
                _drop_local_executions(self._cache.popitem(last=False)[1])
        else:
            _drop_local_executions(instance)

    async def _fail_wt(self, token: TaskToken, cause: str, failure: Failure) -> None:
        self._evict(token.run_id)
        self.stats["workflow_task_failures"] += 1
        with contextlib.suppress(StaleTaskError):
            await self.service.fail_workflow_task(
                token, cause=cause, failure=failure, identity=self.identity
            )

    async def _handle_query(self, info: WorkflowTaskInfo) -> None:
        query = info.query
        if query is None:
            return
        result: msgspec.Raw | None = None
        error: str | None = None
        definition = self._workflows.get(info.workflow_type)
        try:
            if definition is None:
                raise ApplicationError(f"workflow type {info.workflow_type!r} is not registered")
            instance = WorkflowInstance(
                definition,
                namespace=info.namespace,
                workflow_id=info.workflow_id,
                run_id=info.run_id,
                task_queue=info.task_queue,
            )
            events = await self._fetch(info, 0)
            # Answer from the newest state: replay, then apply the input that no completed
            # task has seen yet (its commands are discarded), as if the pending task had run.
            await self._activate(instance, events, info, final=True)
            result = instance.query(query.query_type, query.args)
        except Exception as exc:  # every failure goes back to the caller
            error = str(exc) or type(exc).__name__
        answer = self.service.respond_query(query.query_id, result, error)
        if inspect.isawaitable(answer):
            await answer

    # ------------------------------------------------------------------ activities

    async def _poll_activity_tasks(self) -> None:
        types = frozenset(self._activities)
        while not self._stop.is_set():
            slots = await _take_free_slots(self._activity_slots, self._activities_per_poll)
            try:
                infos = await self.service.poll_activity_tasks(
                    self.namespace,
                    self.task_queue,
                    self.identity,
                    activity_types=types,
                    timeout=self._poll_timeout,
                    max_tasks=slots,
                )
            except asyncio.CancelledError:
                _give_back(self._activity_slots, slots)
                raise
            except Exception:
                _give_back(self._activity_slots, slots)
                log.exception("polling activity tasks failed; retrying in 1 s")
                await asyncio.sleep(1.0)
                continue
            _give_back(self._activity_slots, slots - len(infos))
            for info in infos:
                self._start_activity(info)

    def _start_activity(self, task_info: ActivityTaskInfo) -> None:
        token = task_info.token
        key = f"{token.run_id}:{token.scheduled_event_id}:{token.attempt}"
        loop = asyncio.get_running_loop()
        heartbeats = _Heartbeater(self, token, task_info.heartbeat_timeout, loop)
        info = ActivityInfo(
            activity_id=task_info.activity_id,
            activity_type=task_info.activity_type,
            attempt=token.attempt,
            idempotency_key=f"{token.workflow_id}/{token.run_id}/{token.scheduled_event_id}",
            workflow_id=token.workflow_id,
            run_id=token.run_id,
            workflow_type=task_info.workflow_type,
            namespace=token.namespace,
            task_queue=task_info.task_queue,
            scheduled_event_id=token.scheduled_event_id,
            scheduled_time=_ms_dt(task_info.scheduled_time_ms),
            started_time=_ms_dt(task_info.started_time_ms),
            start_to_close_timeout=_td(task_info.start_to_close_timeout),
            schedule_to_close_timeout=_td(task_info.schedule_to_close_timeout),
            heartbeat_timeout=_td(task_info.heartbeat_timeout),
            heartbeat_details=tuple(task_info.heartbeat_details),
        )
        ctx = ActivityContext(info=info, heartbeater=heartbeats.record)
        heartbeats.context = ctx
        task = asyncio.create_task(self._run_activity(task_info, ctx, heartbeats))
        self._running_activities[key] = (task, ctx)
        heartbeats.task = task

        def done(_: asyncio.Task[Any]) -> None:
            self._running_activities.pop(key, None)
            self._activity_slots.release()

        task.add_done_callback(done)

    async def _run_activity(
        self, task_info: ActivityTaskInfo, ctx: ActivityContext, heartbeats: _Heartbeater
    ) -> None:
        try:
            await self._execute_activity(task_info, ctx, heartbeats)
        except CadenzaError as exc:
            # Reporting the outcome failed (the shard moved, the database is away): the
            # activity's timeout retries it, so one line is enough.
            log.warning(
                "reporting activity %s of %s failed: %s",
                task_info.token.scheduled_event_id,
                task_info.token.workflow_id,
                exc,
            )

    async def _report(self, send: Callable[[], Awaitable[Any]]) -> None:
        """Report an activity's outcome; a transient refusal (the database or the server
        momentarily unavailable, status 503) is retried for a few seconds before the attempt
        is left to its timeout. Without this a single "database is locked" on SQLite lost a
        finished activity's result until its start-to-close timeout."""
        for delay in _REPORT_RETRY_DELAYS:
            try:
                await send()
                return
            except ShardOwnershipLostError:
                raise  # the shard moved: a retry here cannot succeed before the takeover
            except CadenzaError as exc:
                if getattr(exc, "status", None) != 503 or delay is None:
                    raise
                log.info("reporting an activity outcome failed (%s); retrying in %g s", exc, delay)
                await asyncio.sleep(delay)

    async def _execute_activity(
        self, task_info: ActivityTaskInfo, ctx: ActivityContext, heartbeats: _Heartbeater
    ) -> None:
        token = task_info.token
        definition = self._activities.get(task_info.activity_type)
        try:
            if definition is None:
                raise ApplicationError(
                    f"activity type {task_info.activity_type!r} is not registered on worker "
                    f"{self.identity} (known: {', '.join(sorted(self._activities))})",
                    type="ActivityTypeNotRegistered",
                    non_retryable=True,
                )
            args = decode_activity_args(definition, task_info.input)
            result = await self._invoke(definition, args, ctx)
            try:
                payload = encode_value(result, "result")
            except PayloadEncodingError as exc:
                raise ApplicationError(
                    str(exc), type="PayloadEncodingError", non_retryable=True
                ) from None
            await heartbeats.stop()
        except asyncio.CancelledError:
            await heartbeats.stop()
            if ctx.cancelled.is_set() and not self._stop.is_set():
                await self._report(
                    lambda: self.service.report_activity_canceled(
                        token, msgspec.Raw(b"null"), identity=self.identity
                    )
                )
            elif self._stop.is_set():
                failure = Failure(
                    message="worker shut down while the activity ran", type="WorkerShutdown"
                )
                await self._report(
                    lambda: self.service.fail_activity(token, failure, identity=self.identity)
                )
            else:
                raise
        except Exception as exc:
            await heartbeats.stop(flush=True)
            if (
                ctx.cancelled.is_set()
                and isinstance(exc, ApplicationError)
                and exc.type == "CancelledError"
            ):
                await self._report(
                    lambda: self.service.report_activity_canceled(
                        token, msgspec.Raw(b"null"), identity=self.identity
                    )
                )
                return
            self.stats["activities_failed"] += 1
            failure = failure_from_exception(exc)
            await self._report(
                lambda: self.service.fail_activity(token, failure, identity=self.identity)
            )
        else:
            await self._report(
                lambda: self.service.complete_activity(token, payload, identity=self.identity)
            )
            self.stats["activities_completed"] += 1

    async def _invoke(
        self, definition: ActivityDefinition, args: list[Any], ctx: ActivityContext
    ) -> Any:
        if definition.is_async:
            token = set_context(ctx)
            try:
                return await definition.fn(*args)
            finally:
                reset_context(token)
        loop = asyncio.get_running_loop()

        def call() -> Any:
            token = set_context(ctx)
            try:
                return definition.fn(*args)
            finally:
                reset_context(token)

        return await loop.run_in_executor(self._executor, contextvars.copy_context().run, call)


def _drop_local_executions(instance: WorkflowInstance | None) -> None:
    """Stop the local activities still running for an instance that is dropped: a later
    task replays and runs them again (at least once)."""
    if instance is None:
        return
    for call in instance.pending_local_activities():
        if call.execution is not None and not call.execution.done():
            call.execution.cancel()


def _td(value: float | None) -> timedelta | None:
    return timedelta(seconds=value) if value is not None else None


class _Heartbeater:
    """Throttles an attempt's heartbeats and relays cancellation back to it."""

    def __init__(
        self,
        worker: Worker,
        token: TaskToken,
        timeout: float | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._worker = worker
        self._token = token
        self._interval = min(timeout * 0.5, 30.0) if timeout else 10.0
        self._loop = loop
        self._pending: list[Any] | None = None
        self._latest: list[Any] | None = None
        self._acked: list[Any] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._last_sent = 0.0
        self.context: ActivityContext | None = None
        self.task: asyncio.Task[Any] | None = None

    def record(self, details: Sequence[Any]) -> None:
        """Called by ``activity.heartbeat`` from the loop or from a thread."""
        try:
            asyncio.get_running_loop()
            in_loop = True
        except RuntimeError:
            in_loop = False
        if in_loop:
            self._record(list(details))
        else:
            self._loop.call_soon_threadsafe(self._record, list(details))

    def _record(self, details: list[Any]) -> None:
        self._pending = details
        self._latest = details
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send_loop())

    async def _send_loop(self) -> None:
        while self._pending is not None:
            wait = self._last_sent + self._interval - self._loop.time()
            if wait > 0 and self._last_sent:
                await asyncio.sleep(wait)
            details, self._pending = self._pending, None
            if details is None:
                return
            self._last_sent = self._loop.time()
            try:
                response = await self._worker.service.heartbeat_activity(self._token, details)
            except CadenzaError as exc:
                log.warning("heartbeat failed: %s", exc)
                continue
            self._acked = details
            if response.cancel_requested and self.context is not None:
                self.context.cancelled.set()
                if self.task is not None and not self.task.done():
                    definition = self._worker._activities.get(self.context.info.activity_type)
                    if definition is not None and definition.is_async:
                        self.task.cancel()

    async def stop(self, *, flush: bool = False) -> None:
        """Stop sending (the attempt is over); with ``flush``, first send details recorded
        since the last heartbeat so that the next attempt resumes from them."""
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sender
        self._pending = None
        details = self._latest
        if flush and details is not None and details is not self._acked:
            try:
                await self._worker.service.heartbeat_activity(self._token, details)
            except CadenzaError as exc:
                log.warning("final heartbeat failed: %s", exc)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """Give ``future`` its outcome unless it has one (the deadline passed, or it was
    cancelled)."""
    if future.done():
        return
    if isinstance(error, StopIteration):  # a Future refuses it as an exception
        error = RuntimeError(f"workflow code raised {error!r}")
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
