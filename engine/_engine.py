"""The engine: one process's share of the history service.

It owns shards, appends events through :class:`~cadenza.engine._mutation.Mutation` writes,
dispatches workflow and activity tasks to workers (long polls), fires timers and runs transfer
tasks (work that crosses executions: starting children, notifying parents). Clients and workers
call the public coroutines here, in process or through the HTTP frontend.

The operations are grouped in mixins by area (``_workflow_tasks``, ``_activity_tasks``,
``_timeouts``, ``_transfer``); this module holds the lifecycle, the update loop and the client
operations.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import orjson

from cadenza.engine._activity_tasks import ActivityTaskOps
from cadenza.engine._api import (
    ID_CONFLICT_POLICIES,
    ID_REUSE_POLICIES,
    PendingActivityView,
    StartWorkflowRequest,
    StartWorkflowResponse,
    WorkflowDescription,
)
from cadenza.engine._close_interest import CloseInterest
from cadenza.engine._config import Settings
from cadenza.engine._job_calendars import CALENDAR_NOTICE, CalendarSync
from cadenza.engine._mutation import Mutation
from cadenza.engine._notify import Notifier, wait_event
from cadenza.engine._run_cache import WrittenRuns
from cadenza.engine._schedules import ScheduleOps
from cadenza.engine._shards import ShardController, shard_for
from cadenza.engine._sync_match import Reservation, SyncMatch
from cadenza.engine._task_dispatch import PollerPresence, QueueKey, TaskDispatch
from cadenza.engine._timeouts import TimeoutOps
from cadenza.engine._transfer import TransferOps
from cadenza.engine._validation import MAX_NAME_LENGTH, check_id
from cadenza.engine._workflow_tasks import WorkflowTaskOps
from cadenza.history import (
    ConditionFailedError,
    ExecutionRecord,
    ExecutionSummary,
    HistoryEvent,
    HistoryStore,
    InvalidArgumentError,
    NewExecution,
    PayloadTooLargeError,
    QueryFailedError,
    ShardOwnershipLostError,
    SqlStore,
    StoreError,
    TaskRecord,
    UnknownTypeError,
    WorkflowAlreadyStartedError,
    WorkflowClosedError,
    WorkflowNotFoundError,
    verify_chain,
)
from cadenza.history._chain import ChainVerdict
from cadenza.history._events import (
    ParentRef,
    WorkflowExecutionCancelRequested,
    WorkflowExecutionSignaled,
    WorkflowExecutionStarted,
    WorkflowExecutionTerminated,
)
from cadenza.timers import Clock, SystemClock, TimerService

log = logging.getLogger("cadenza.engine")

_LOOP_RESTART_MIN_S = 0.5
_CLOSE_RECHECK_S = 5.0
_SERVED_TYPE_TTL_S = 10.0
# A queue no worker has registered on accepts any type; that answer is kept this long, so
# a burst of starts before the first worker polls reads the registrations once, not per start.
_UNSERVED_QUEUE_TTL_S = 1.0
_LOOP_RESTART_MAX_S = 10.0

T = TypeVar("T")

_MAX_CAS_RETRIES = 50


class _PendingQuery:
    """A query waiting for a worker. ``origin`` is the server that asked, when another server
    relayed it here because its worker may poll this one."""

    __slots__ = ("args", "future", "origin", "query_id", "query_type", "run_id", "shard_id")

    def __init__(
        self,
        shard_id: int,
        run_id: str,
        query_type: str,
        args: msgspec.Raw,
        *,
        query_id: str | None = None,
        origin: str | None = None,
    ) -> None:
        self.query_id = query_id or uuid.uuid4().hex
        self.shard_id = shard_id
        self.run_id = run_id
        self.query_type = query_type
        self.args = args
        self.origin = origin
        self.future: asyncio.Future[msgspec.Raw] = asyncio.get_running_loop().create_future()


# PostgreSQL NOTIFY carries at most 8000 bytes; a relayed query or answer must fit in one.
_MAX_RELAYED_QUERY_CHARS = 7000


class Engine(WorkflowTaskOps, ActivityTaskOps, TimeoutOps, TransferOps, ScheduleOps):
    """The history service of one process.

    Args:
        settings: Engine settings (database URL, limits, timeouts).
        store: A store to use instead of opening ``settings.database_url``.
        clock: Time source (a virtual clock in tests).
        owner: Unique id of this process for shard leases (random by default).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        store: HistoryStore | None = None,
        clock: Clock | None = None,
        owner: str | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._own_store = store is None
        self.owner = owner or f"engine-{uuid.uuid4().hex[:12]}"
        self.store: HistoryStore = store or SqlStore(
            self.settings.database_url,
            idle_txn_timeout=max(2.0, self.settings.shard_lease_seconds),
            application_name=self.owner,
        )
        self.clock: Clock = clock or SystemClock()
        self.notifier = Notifier()
        self.shards: ShardController | None = None
        self.poller_presence = PollerPresence()
        self.sync_match = SyncMatch(self.notifier)
        self.dispatch = TaskDispatch(self.owner)
        self.close_interest = CloseInterest(keep_s=2 * _CLOSE_RECHECK_S + 5.0)
        self.timer_service: TimerService | None = None
        self.shard_count = self.settings.shard_count
        self._stop = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._run_locks: dict[str, asyncio.Lock] = {}
        self._run_lock_users: collections.Counter[str] = collections.Counter()
        self._queries: dict[tuple[str, str], collections.deque[_PendingQuery]] = {}
        self._queries_by_id: dict[str, _PendingQuery] = {}
        self._background: set[asyncio.Future[None]] = set()
        self._held_wakes: dict[tuple[tuple[str, str, str], int], int] = {}
        self._served_types: dict[tuple[str, str, str, str], float] = {}
        self._unserved_queues: dict[tuple[str, str, str], float] = {}
        self._type_reads: dict[tuple[str, str, str], asyncio.Future[set[str]]] = {}
        self._registered: set[tuple[str, str, str, frozenset[str]]] = set()
        self._random = random.Random()
        # Rows of executions this process wrote last (it owns their shards, so they are
        # current unless a compare-and-swap says otherwise) and task rows it handed out.
        self._executions: collections.OrderedDict[str, ExecutionRecord] = collections.OrderedDict()
        self._execution_cache_size = 10_000
        # Histories and closed runs this process wrote (see _run_cache).
        self.written = WrittenRuns()
        self._claimed: dict[str, TaskRecord] = {}
        self.inflight_tasks = 0
        self._inflight_ids: set[str] = set()
        self.started = False
        self.failure: BaseException | None = None
        # Business calendars stored by `apply` (registered in this process; see _job_calendars).
        self.calendar_sync = CalendarSync(self.store)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, take_shards: bool = True) -> None:
        """Migrate the schema, take shards and start the background loops.

        With ``take_shards=False`` the engine only reads (command-line tools next to a running
        server): it owns no shard, so any write raises ShardOwnershipLostError.
        """
        await self.store.migrate()
        self.shard_count = await self.store.ensure_cluster(self.settings.shard_count)
        await self.calendar_sync.load()
        if not take_shards:
            self.started = True
            return
        self.shards = ShardController(
            self.store,
            self.owner,
            self.shard_count,
            self.settings.shard_lease_seconds,
            SystemClock(),
            address=self.settings.advertise_url,
            on_acquired=self._on_shard_acquired,
            on_released=self.forget_shard,
            polling=self.poller_presence.queues,
            on_round=self._on_lease_round,
        )
        await self.shards.acquire_available()
        self.timer_service = TimerService(
            self.store, self.clock, self.fire_timer, self.shards.owned
        )
        await self.recover_transfer_tasks()
        timer_service, shards = self.timer_service, self.shards
        self._spawn(lambda: timer_service.run(self._stop), "timers")
        self._spawn(lambda: shards.run(self._stop), "shard-leases")
        self._spawn(lambda: self.transfer_loop(self._stop), "transfer")
        self._spawn(lambda: self.store.listen(self.on_cluster_notice, self._stop), "cluster-notify")
        self._spawn(lambda: self.calendar_sync.run(self._stop), "calendars")
        self.started = True
        log.info(
            "engine %s started on %s with %d/%d shards",
            self.owner,
            self.store.dialect,
            len(self.shards.owned()),
            self.shard_count,
        )

    def _spawn(self, loop_factory: Callable[[], Awaitable[None]], name: str) -> None:
        async def supervised() -> None:
            backoff = _LOOP_RESTART_MIN_S
            while True:
                started = asyncio.get_running_loop().time()
                try:
                    await loop_factory()
                    return
                except asyncio.CancelledError:
                    raise
                except StoreError as exc:
                    # The database went away for a moment (restart, failover, our sessions
                    # ended by a peer that took our shards while we were frozen): the loop
                    # starts over once it is back instead of leaving a zombie engine.
                    if self._stop.is_set():
                        return
                    if asyncio.get_running_loop().time() - started > 30:
                        backoff = _LOOP_RESTART_MIN_S
                    log.warning("engine loop %s: %s; restarting it in %.1f s", name, exc, backoff)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), timeout=backoff)
                    backoff = min(backoff * 2, _LOOP_RESTART_MAX_S)
                except BaseException as exc:  # a dead loop must stop the engine loudly
                    log.critical("engine loop %s died: %r; stopping the engine", name, exc)
                    self.failure = exc
                    self._stop.set()
                    self.notifier.notify_all()
                    return

        self._loops.append(asyncio.create_task(supervised(), name=f"cadenza-{name}"))

    def _on_shard_acquired(self, shard_id: int) -> None:
        if self.timer_service is not None:
            self.timer_service.notify(0)
        self.notifier.notify("transfer")
        if self.shards is not None:
            self.dispatch.set_owned(self.shards.owned())

    def _on_lease_round(self) -> None:
        shards = self.shards
        if shards is None:
            return
        if self.dispatch.update(shards.owned(), shards.shard_owners, shards.member_polling):
            # Some queue may now be served from more shards: let its pollers look at once.
            for key in self.notifier.poll_keys():
                if isinstance(key, tuple) and key[0] in ("workflow", "activity"):
                    self.notifier.notify(key)

    def claim_shards(self, key: QueueKey) -> list[int] | None:
        """The shards whose tasks of a queue this server's pollers claim (None: all); see
        :mod:`cadenza.engine._task_dispatch`."""
        self.poller_presence.seen(key)
        return self.dispatch.shards_for(key)

    async def wait_stopped(self) -> None:
        """Return once the engine is stopping (stop() was called or a loop died)."""
        await self._stop.wait()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called (or a loop died)."""
        return self._stop.is_set()

    async def stop(self) -> None:
        """Stop the loops, release the shards, close the store we opened."""
        self._stop.set()
        self.notifier.notify_all()
        for pending in list(self._queries_by_id.values()):
            if not pending.future.done():
                pending.future.set_exception(QueryFailedError("engine is shutting down"))
        for task in [*self._loops, *self._background]:
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loops.clear()
        if self.shards is not None:
            with contextlib.suppress(StoreError):
                await self.shards.release_all()
        if self._own_store:
            await self.store.close()
        self.started = False
        log.info("engine %s stopped", self.owner)

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ helpers

    def shard_of(self, namespace: str, workflow_id: str) -> int:
        """The shard of a workflow id."""
        return shard_for(namespace, workflow_id, self.shard_count)

    def range_id(self, shard_id: int) -> int:
        """Our fencing token for a shard (raises if we do not own it)."""
        if self.shards is None:
            raise ShardOwnershipLostError(shard_id, -1)
        return self.shards.range_id(shard_id)

    def check_payload(self, field: str, payload: msgspec.Raw | bytes) -> None:
        """Reject a payload over the configured limit."""
        size = len(payload)
        if size > self.settings.payload_limit_bytes:
            raise PayloadTooLargeError(
                field,
                f"payload is {size} bytes; the limit is {self.settings.payload_limit_bytes} bytes",
            )

    @contextlib.asynccontextmanager
    async def _run_lock(self, run_id: str):  # type: ignore[no-untyped-def]
        lock = self._run_locks.get(run_id)
        if lock is None:
            lock = self._run_locks[run_id] = asyncio.Lock()
        self._run_lock_users[run_id] += 1
        try:
            async with lock:
                yield
        finally:
            self._run_lock_users[run_id] -= 1
            if self._run_lock_users[run_id] <= 0:
                del self._run_lock_users[run_id]
                self._run_locks.pop(run_id, None)

    async def update(
        self,
        shard_id: int,
        run_id: str,
        decide: Callable[[Mutation], T | Awaitable[T]],
        *,
        missing_ok: bool = False,
    ) -> T | None:
        """Read an execution, let ``decide`` add events, write it with CAS; retry on conflict.

        ``decide`` may raise to abort (nothing is written). Returns what ``decide`` returned.
        """
        async with self._run_lock(run_id):
            for _ in range(_MAX_CAS_RETRIES):
                # The cached row is taken out while this update owns it: if anything below
                # fails, it is simply not put back and the next update reads the database.
                record = self._executions.pop(run_id, None)
                if record is None or record.shard_id != shard_id:
                    record = await self.store.get_execution(shard_id, run_id)
                if record is None:
                    if missing_ok:
                        return None
                    raise WorkflowNotFoundError("?", run_id)
                mutation = Mutation(
                    shard_id=shard_id,
                    range_id=self.range_id(shard_id),
                    namespace=record.namespace,
                    workflow_id=record.workflow_id,
                    run_id=run_id,
                    now_ms=self.clock.now_ms(),
                    record=record,
                )
                mutation.sticky_timeout_ms = int(self.settings.sticky_timeout * 1000)
                result = decide(mutation)
                if inspect.isawaitable(result):
                    result = await result
                if mutation.empty:
                    self._remember(record)
                    return result  # type: ignore[return-value]
                if await self.commit(mutation):
                    return result  # type: ignore[return-value]
            raise StoreError(f"run {run_id}: too many concurrent writers")

    def _remember(self, record: ExecutionRecord) -> None:
        if not record.state.running:
            return
        self._executions[record.run_id] = record
        if len(self._executions) > self._execution_cache_size:
            self._executions.popitem(last=False)

    def forget_shard(self, shard_id: int) -> None:
        """Drop cached rows of a shard we no longer own."""
        if self.shards is not None:
            self.dispatch.set_owned(self.shards.owned())
        for run_id in [r for r, rec in self._executions.items() if rec.shard_id == shard_id]:
            del self._executions[run_id]
        self.written.forget_shard(shard_id)

    @property
    def clustered(self) -> bool:
        """Several servers share this database: wake-ups must cross processes."""
        return (
            self.store.dialect == "postgresql"
            and self.shards is not None
            and len(self.shards.members) > 1
        )

    def _cluster_notices(self, mutation: Mutation) -> None:
        for m in (mutation, *mutation.also):
            now = self.clock.now_ms()
            # A held task (a schedule's fire written ahead): other servers wake their
            # pollers when it becomes visible, not now.
            # A task written leased to a waiting poll of ours (a sync match) needs no notice.
            free = [t for t in m.tasks_insert if t.kind != "transfer" and t.lease_owner is None]
            held = {
                (t.kind, t.namespace, t.task_queue, t.visible_at_ms)
                for t in free
                if t.visible_at_ms is not None and t.visible_at_ms > now
            }
            keys = {
                (t.kind, t.namespace, t.task_queue)
                for t in free
                if t.visible_at_ms is None or t.visible_at_ms <= now
            }
            keys.update(m.wake_keys)
            # Other servers ignore task notices of a queue whose tasks the sender's own
            # workers take (TaskDispatch.peer_serves), so none is sent for such a queue.
            polled = self.poller_presence.polls
            keys = {key for key in keys if not polled(key)}
            held = {h for h in held if not polled(h[:3])}
            m.notify = [f"{self.owner}|t|{k}|{ns}|{q}" for k, ns, q in sorted(keys)]
            m.notify.extend(f"{self.owner}|t|{k}|{ns}|{q}|{at}" for k, ns, q, at in sorted(held))
            if m.closed and self.close_interest.wanted(m.run_id):
                m.notify.append(f"{self.owner}|c|{m.run_id}")

    def on_cluster_notice(self, line: str) -> None:
        """A NOTIFY from another server: wake local pollers, the timer loop, result waiters."""
        parts = line.split("|")
        if len(parts) < 3 or parts[0] == self.owner:
            return
        kind = parts[1]
        if kind == "t" and len(parts) in (5, 6):
            key = (parts[2], parts[3], parts[4])
            if self.dispatch.peer_serves(parts[0], key):
                return  # the sender's own pollers take its tasks of this queue
            if len(parts) == 5:
                self.notifier.notify_tasks(key)
            elif parts[5].isdigit():
                self._wake_when_visible(key, int(parts[5]))
        elif kind == "m" and len(parts) == 4 and self.timer_service is not None:
            if self.shards is not None and int(parts[2]) in self.shards.owned():
                self.timer_service.notify(int(parts[3]))
        elif kind == "c":
            self.notifier.notify(("closed", parts[2]))
        elif kind == "w" and len(parts) == 3:
            self.close_interest.note(parts[2])
            if self.written.closed(parts[2]) is not None:  # it closed before the notice came
                self._publish_soon(f"{self.owner}|c|{parts[2]}")
        elif kind == CALENDAR_NOTICE:
            self.calendar_sync.changed()
        elif kind == "q":
            self._accept_relayed_query(parts[0], line.split("|", 2)[2])
        elif kind == "a":
            self._answer_relayed_query(line.split("|", 2)[2])

    def timer_notices(self, timers: list[Any]) -> list[str]:
        """NOTIFY lines for timers written into shards another server owns."""
        if not self.clustered or self.shards is None:
            return []
        owned = set(self.shards.owned())
        return [
            f"{self.owner}|m|{t.shard_id}|{t.fire_at_ms}" for t in timers if t.shard_id not in owned
        ]

    async def commit(self, mutation: Mutation) -> bool:
        """Write a mutation; False if the CAS lost (the caller re-reads and retries)."""
        matched = self._match_new_tasks(mutation) if self.sync_match.waiting() else []
        if self.clustered:
            self._cluster_notices(mutation)
        for m in (mutation, *mutation.also):
            m.writer = self.owner
        try:
            await self.store.write(mutation.to_write())
        except ConditionFailedError:
            self._unmatch(mutation, matched)
            return False
        except ShardOwnershipLostError:
            self._unmatch(mutation, matched)
            if self.shards is not None:
                self.shards.drop(mutation.shard_id)
            self.forget_shard(mutation.shard_id)
            raise
        except BaseException:
            self._unmatch(mutation, matched)
            raise
        self._after_commit(mutation)
        for m in (mutation, *mutation.also):
            record = m.written_record()
            self.written.record(
                m.shard_id,
                m.run_id,
                m.events,
                created=m.create is not None,
                closed_record=record if m.closed else None,
            )
            self._remember(record)
        for reservation in matched:
            self.track_inflight(reservation.leased.task_id, True, reservation.leased)
            SyncMatch.deliver(reservation)
        return True

    def _match_new_tasks(self, mutation: Mutation) -> list[Reservation]:
        """Write the new tasks that a waiting poll of this process can take as leased to it
        (see :mod:`cadenza.engine._sync_match`)."""
        matched: list[Reservation] = []
        now = self.clock.now_ms()
        for m in (mutation, *mutation.also):
            seen_up_to = m.state.next_event_id - 1
            for index, task in enumerate(m.tasks_insert):
                if task.kind not in ("workflow", "activity"):
                    continue
                reservation = self.sync_match.reserve(task, now, seen_up_to)
                if reservation is not None:
                    m.tasks_insert[index] = reservation.leased
                    m.timers_insert.extend(reservation.timers)
                    matched.append(reservation)
        return matched

    @staticmethod
    def _unmatch(mutation: Mutation, matched: list[Reservation]) -> None:
        """The write failed: give the reservations back and the mutation its own rows."""
        for reservation in matched:
            SyncMatch.withdraw(reservation)
        if not matched:
            return
        originals = {id(r.leased): r.original for r in matched}
        timers = {id(timer) for r in matched for timer in r.timers}
        for m in (mutation, *mutation.also):
            m.tasks_insert = [originals.get(id(t), t) for t in m.tasks_insert]
            m.timers_insert = [t for t in m.timers_insert if id(t) not in timers]

    def _wake_when_visible(self, key: tuple[str, str, str], visible_at_ms: int) -> None:
        """Wake a poller of ``key`` when a held task becomes visible (by the engine's clock,
        so a virtual clock releases it when moved). Held tasks of one queue and instant share
        one sleeper."""
        if visible_at_ms <= self.clock.now_ms():
            self.notifier.notify_one(key)
            return
        slot = (key, visible_at_ms)
        waiting = self._held_wakes.get(slot)
        self._held_wakes[slot] = (waiting or 0) + 1
        if waiting is None:
            task = asyncio.get_running_loop().create_task(self._release_held(slot))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _release_held(self, slot: tuple[tuple[str, str, str], int]) -> None:
        key, visible_at_ms = slot
        try:
            await self.clock.sleep_until(visible_at_ms, asyncio.Event())
        finally:
            count = self._held_wakes.pop(slot, 0)
        if count:
            self.notifier.notify_tasks(key, count)

    def _after_commit(self, mutation: Mutation) -> None:
        for m in (mutation, *mutation.also):
            for task in m.tasks_insert:
                if task.kind == "transfer":
                    self.notifier.notify("transfer")
                elif task.lease_owner is not None:
                    continue  # handed to a waiting poll with this commit
                elif task.visible_at_ms is not None and task.visible_at_ms > m.now_ms:
                    key = (task.kind, task.namespace, task.task_queue)
                    self._wake_when_visible(key, task.visible_at_ms)
                else:
                    self.notifier.notify_tasks((task.kind, task.namespace, task.task_queue))
            for key in m.wake_keys:
                self.notifier.notify_one(key)
            for task in m.tasks_insert:
                if task.sticky_worker and task.sticky_until_ms and task.lease_owner is None:
                    key = (task.kind, task.namespace, task.task_queue)
                    delay = max(0.0, (task.sticky_until_ms - self.clock.now_ms()) / 1000)
                    asyncio.get_running_loop().call_later(delay + 0.01, self.notifier.notify, key)
            if m.timers_insert and self.timer_service is not None:
                self.timer_service.notify(min(t.fire_at_ms for t in m.timers_insert))
            if m.closed:
                self.notifier.notify(("closed", m.run_id))
            if m.events:
                self.notifier.notify(("events", m.run_id))

    async def load_run(
        self, namespace: str, workflow_id: str, run_id: str | None = None
    ) -> ExecutionRecord:
        """The named run, or the workflow id's running (else latest) run."""
        check_id("workflow_id", workflow_id)
        shard_id = self.shard_of(namespace, workflow_id)
        if run_id:
            record = await self.store.get_execution(shard_id, run_id)
            if record is None or record.workflow_id != workflow_id or record.namespace != namespace:
                raise WorkflowNotFoundError(workflow_id, run_id)
            return record
        record = await self.store.latest_run(shard_id, namespace, workflow_id)
        if record is None:
            raise WorkflowNotFoundError(workflow_id)
        return record

    # ------------------------------------------------------------------ start

    async def start_workflow(
        self,
        request: StartWorkflowRequest,
        *,
        parent: ParentRef | None = None,
        release_ms: int | None = None,
    ) -> StartWorkflowResponse:
        """Start an execution, applying the id conflict and reuse policies.

        ``release_ms``: hold the first workflow task until then (a schedule's fire written
        ahead of its time).

        Raises:
            InvalidArgumentError: a bad id, type, queue, policy or timeout (nothing written).
            PayloadTooLargeError: the input is over the limit.
            UnknownTypeError: workers on the queue do not know the workflow type.
            WorkflowAlreadyStartedError: the policies reject the start.
        """
        await self._validate_start(request)
        namespace, workflow_id = request.namespace, request.workflow_id
        shard_id = self.shard_of(namespace, workflow_id)
        for attempt in range(_MAX_CAS_RETRIES):
            # The first try does not look the id up: its insert is guarded (it writes only if
            # no execution of the id exists), so a new id — the common case — costs no read,
            # and any existing run makes it lose, re-read and apply the policies below.
            guarded = attempt == 0
            existing = (
                None if guarded else await self.store.latest_run(shard_id, namespace, workflow_id)
            )
            if existing is not None:
                if request.request_id and request.request_id in existing.state.request_ids:
                    return StartWorkflowResponse(
                        workflow_id=workflow_id, run_id=existing.run_id, started=False
                    )
                if existing.status == "running":
                    policy = request.id_conflict_policy
                    if policy == "use_existing":
                        return StartWorkflowResponse(
                            workflow_id=workflow_id, run_id=existing.run_id, started=False
                        )
                    if policy == "terminate_existing":
                        await self.terminate_workflow(
                            namespace,
                            workflow_id,
                            existing.run_id,
                            reason="terminated by a start with id_conflict_policy=terminate_existing",
                            identity=request.identity,
                        )
                        continue
                    raise WorkflowAlreadyStartedError(
                        workflow_id, existing.run_id, "a run with this id is running"
                    )
                reuse = request.id_reuse_policy
                if reuse == "reject_duplicate":
                    raise WorkflowAlreadyStartedError(
                        workflow_id, existing.run_id, "id_reuse_policy is reject_duplicate"
                    )
                if reuse == "allow_duplicate_failed_only" and existing.status == "completed":
                    raise WorkflowAlreadyStartedError(
                        workflow_id,
                        existing.run_id,
                        "the last run completed and id_reuse_policy is allow_duplicate_failed_only",
                    )
            run_id = str(uuid.uuid4())
            mutation = self.new_run_mutation(
                shard_id=shard_id,
                namespace=namespace,
                workflow_id=workflow_id,
                run_id=run_id,
                started=WorkflowExecutionStarted(
                    workflow_type=request.workflow_type,
                    task_queue=request.task_queue,
                    input=request.input,
                    random_seed=self._random.getrandbits(63),
                    first_run_id=run_id,
                    parent=parent,
                    execution_timeout=request.execution_timeout,
                    run_timeout=request.run_timeout,
                    task_timeout=request.task_timeout or self.settings.workflow_task_timeout,
                    retry_policy=request.retry_policy,
                    trigger=request.trigger,
                    memo=request.memo,
                    identity=request.identity,
                    request_id=request.request_id,
                ),
                release_ms=release_ms,
                only_if_id_unused=guarded,
            )
            if await self.commit(mutation):
                log.debug("started %s %s run %s", request.workflow_type, workflow_id, run_id)
                return StartWorkflowResponse(workflow_id=workflow_id, run_id=run_id, started=True)
        raise StoreError(f"workflow {workflow_id!r}: too many concurrent starts")

    def new_run_mutation(
        self,
        *,
        shard_id: int,
        namespace: str,
        workflow_id: str,
        run_id: str,
        started: WorkflowExecutionStarted,
        now_ms: int | None = None,
        release_ms: int | None = None,
        only_if_id_unused: bool = False,
    ) -> Mutation:
        """A mutation creating a run: started event, first workflow task, run timeout.

        ``release_ms`` (a schedule's fire written ahead): the first workflow task stays
        invisible to workers until then, and the run's timeouts count from then.
        ``only_if_id_unused``: the write loses if any execution of the id exists.
        """
        now = self.clock.now_ms() if now_ms is None else now_ms
        release = now if release_ms is None else max(now, release_ms)
        mutation = Mutation(
            shard_id=shard_id,
            range_id=self.range_id(shard_id),
            namespace=namespace,
            workflow_id=workflow_id,
            run_id=run_id,
            now_ms=now,
            create=NewExecution(
                workflow_type=started.workflow_type,
                task_queue=started.task_queue,
                start_time_ms=now,
                only_if_id_unused=only_if_id_unused,
            ),
        )
        mutation.add(started)
        mutation.schedule_workflow_task(visible_at_ms=release)
        timeouts = [x for x in (started.run_timeout, started.execution_timeout) if x]
        if timeouts:
            mutation.timer(
                f"wf-timeout:{run_id}", release + int(min(timeouts) * 1000), "workflow_timeout", 1
            )
        return mutation

    async def _validate_start(self, request: StartWorkflowRequest) -> None:
        check_id("workflow_id", request.workflow_id)
        check_id("workflow_type", request.workflow_type, MAX_NAME_LENGTH)
        check_id("task_queue", request.task_queue, MAX_NAME_LENGTH)
        check_id("namespace", request.namespace, MAX_NAME_LENGTH)
        if request.id_reuse_policy not in ID_REUSE_POLICIES:
            raise InvalidArgumentError(
                "id_reuse_policy", f"must be one of {', '.join(ID_REUSE_POLICIES)}"
            )
        if request.id_conflict_policy not in ID_CONFLICT_POLICIES:
            raise InvalidArgumentError(
                "id_conflict_policy", f"must be one of {', '.join(ID_CONFLICT_POLICIES)}"
            )
        for name in ("execution_timeout", "run_timeout", "task_timeout"):
            value = getattr(request, name)
            if value is not None and value <= 0:
                raise InvalidArgumentError(name, "must be positive")
        self.check_payload("input", request.input)
        await self.check_type_registered(
            request.namespace, request.task_queue, "workflow", request.workflow_type
        )

    async def check_type_registered(
        self, namespace: str, task_queue: str, kind: str, type_name: str
    ) -> None:
        """With ``strict_types``, reject a type that the queue's workers do not serve."""
        if not self.settings.strict_types:
            return
        key = (namespace, task_queue, kind, type_name)
        queue = (namespace, task_queue, kind)
        now = asyncio.get_running_loop().time()
        if self._served_types.get(key, 0.0) > now or self._unserved_queues.get(queue, 0.0) > now:
            return  # seen served (or the queue unserved) a moment ago: no read per start
        known = await self._registered_types(queue)
        if len(self._served_types) + len(self._unserved_queues) > 10_000:
            self._served_types.clear()
            self._unserved_queues.clear()
        if type_name in known:
            self._served_types[key] = now + _SERVED_TYPE_TTL_S
        elif not known:
            self._unserved_queues[queue] = now + _UNSERVED_QUEUE_TTL_S
        else:
            raise UnknownTypeError(
                f"{kind}_type",
                f"{type_name!r} is not registered by any worker on task queue {task_queue!r} "
                f"(known: {', '.join(sorted(known))})",
            )

    async def _registered_types(self, queue: tuple[str, str, str]) -> set[str]:
        """The types registered on ``queue``: one read shared by the callers that ask while
        it is under way (a cancelled caller leaves it running for the others)."""
        read = self._type_reads.get(queue)
        if read is None:
            read = asyncio.ensure_future(self.store.registered_types(*queue))
            self._type_reads[queue] = read

            def done(future: asyncio.Future[set[str]], queue: tuple[str, str, str] = queue) -> None:
                self._type_reads.pop(queue, None)
                if not future.cancelled():
                    future.exception()  # retrieved here even if every caller went away

            read.add_done_callback(done)
        return await asyncio.shield(read)

    async def register_types(
        self, namespace: str, task_queue: str, kind: str, names: frozenset[str]
    ) -> None:
        """Record what a polling worker serves (once per engine and set of names)."""
        key = (namespace, task_queue, kind, names)
        if key in self._registered or not names:
            return
        await self.store.register_types(
            namespace, task_queue, kind, sorted(names), self.clock.now_ms()
        )
        self._registered.add(key)
        self._unserved_queues.pop((namespace, task_queue, kind), None)

    # ------------------------------------------------------------------ signal, cancel, terminate

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
    ) -> None:
        """Deliver a signal to a running execution.

        Raises:
            WorkflowClosedError: the execution has closed (nothing is written).
        """
        check_id("signal_name", signal_name, MAX_NAME_LENGTH)
        self.check_payload("input", input)
        record = await self.load_run(namespace, workflow_id, run_id)

        def decide(m: Mutation) -> None:
            if not m.state.running:
                raise WorkflowClosedError(workflow_id, m.run_id, m.state.status, "signal")
            if request_id and request_id in m.state.request_ids:
                return
            m.add(
                WorkflowExecutionSignaled(
                    signal_name=signal_name, input=input, identity=identity, request_id=request_id
                )
            )
            m.schedule_workflow_task()

        await self.update(record.shard_id, record.run_id, decide)

    async def request_cancel_workflow(
        self,
        namespace: str,
        workflow_id: str,
        run_id: str | None = None,
        *,
        reason: str = "",
        request_id: str = "",
        identity: str = "",
    ) -> None:
        """Ask a running execution to cancel; its code decides how (it may clean up)."""
        record = await self.load_run(namespace, workflow_id, run_id)

        def decide(m: Mutation) -> None:
            if not m.state.running:
                raise WorkflowClosedError(workflow_id, m.run_id, m.state.status, "cancel")
            if m.state.cancel_requested or (request_id and request_id in m.state.request_ids):
                return
            m.add(
                WorkflowExecutionCancelRequested(
                    reason=reason, identity=identity, request_id=request_id
                )
            )
            m.schedule_workflow_task()

        await self.update(record.shard_id, record.run_id, decide)

    async def terminate_workflow(
        self,
        namespace: str,
        workflow_id: str,
        run_id: str | None = None,
        *,
        reason: str = "",
        identity: str = "",
    ) -> None:
        """Close a running execution at once; its code does not run again."""
        record = await self.load_run(namespace, workflow_id, run_id)

        def decide(m: Mutation) -> None:
            if not m.state.running:
                raise WorkflowClosedError(workflow_id, m.run_id, m.state.status, "terminate")
            self.close_with(m, WorkflowExecutionTerminated(reason=reason, identity=identity))

        await self.update(record.shard_id, record.run_id, decide)

    # ------------------------------------------------------------------ reads

    async def describe_workflow(
        self, namespace: str, workflow_id: str, run_id: str | None = None
    ) -> WorkflowDescription:
        """Status, timing, pending work of a run."""
        record = await self.load_run(namespace, workflow_id, run_id)
        state = record.state
        views: list[PendingActivityView] = []
        for act in state.activities.values():
            task = await self.store.get_task(
                record.shard_id, f"a:{record.run_id}:{act.scheduled_event_id}"
            )
            if task is None:
                status = "scheduled"
            elif task.lease_owner:
                status = "started"
            elif task.visible_at_ms is None:
                status = "backing_off"
            else:
                status = "scheduled"
            views.append(
                PendingActivityView(
                    activity_id=act.activity_id,
                    activity_type=act.activity_type,
                    scheduled_event_id=act.scheduled_event_id,
                    attempt=act.attempt,
                    state="cancel_requested" if act.cancel_requested else status,
                    last_heartbeat_details=task.heartbeat_details if task else None,
                )
            )
        memo: dict[str, Any] = {}
        first = await self.store.read_events(record.shard_id, record.run_id, 0, 1, 1)
        if first and isinstance(first[0].attributes, WorkflowExecutionStarted):
            memo = first[0].attributes.memo
        return WorkflowDescription(
            namespace=record.namespace,
            workflow_id=record.workflow_id,
            run_id=record.run_id,
            workflow_type=record.workflow_type,
            task_queue=record.task_queue,
            status=record.status,
            start_time_ms=record.start_time_ms,
            close_time_ms=record.close_time_ms,
            history_length=record.next_event_id - 1,
            last_hash=record.last_hash,
            pending_activities=views,
            pending_timers=len(state.timers),
            pending_children=len(state.children),
            memo=memo,
            parent_workflow_id=state.parent.workflow_id if state.parent else None,
        )

    async def get_history(
        self,
        namespace: str,
        workflow_id: str,
        run_id: str | None = None,
        *,
        after: int = 0,
        up_to: int | None = None,
        limit: int = 1000,
    ) -> tuple[str, list[HistoryEvent]]:
        """A page of a run's history: ``(run_id, events after `after`)``."""
        if limit < 1 or limit > 10_000:
            raise InvalidArgumentError("limit", "must be between 1 and 10000")
        record = await self.load_run(namespace, workflow_id, run_id)
        events = await self.store.read_events(record.shard_id, record.run_id, after, up_to, limit)
        return record.run_id, events

    async def verify_history(
        self, namespace: str, workflow_id: str, run_id: str | None = None
    ) -> ChainVerdict:
        """Verify a run's hash chain end to end, and that it ends at the stored last hash."""
        record = await self.load_run(namespace, workflow_id, run_id)
        events: list[HistoryEvent] = []
        after = 0
        while True:
            page = await self.store.read_events(record.shard_id, record.run_id, after, None, 1000)
            events.extend(page)
            if len(page) < 1000:
                break
            after = page[-1].event_id
        verdict = verify_chain(record.namespace, record.workflow_id, record.run_id, events)
        if verdict.ok and events and events[-1].hash != record.last_hash:
            return ChainVerdict(
                False,
                len(events),
                events[-1].event_id,
                "last event does not match the execution's last hash",
            )
        if verdict.ok and len(events) != record.next_event_id - 1:
            return ChainVerdict(
                False, len(events), len(events) + 1, "events are missing at the end"
            )
        return verdict

    async def list_workflows(
        self,
        namespace: str = "default",
        *,
        status: str | None = None,
        workflow_type: str | None = None,
        workflow_id: str | None = None,
        started_after_ms: int | None = None,
        started_before_ms: int | None = None,
        limit: int = 100,
    ) -> list[ExecutionSummary]:
        """Executions matching the filters, newest first."""
        if limit < 1 or limit > 10_000:
            raise InvalidArgumentError("limit", "must be between 1 and 10000")
        return await self.store.list_executions(
            namespace=namespace,
            status=status,
            workflow_type=workflow_type,
            workflow_id=workflow_id,
            started_after_ms=started_after_ms,
            started_before_ms=started_before_ms,
            limit=limit,
        )

    async def wait_closed(
        self, namespace: str, workflow_id: str, run_id: str, timeout: float | None = None
    ) -> ExecutionRecord:
        """Wait until a run closes (or the timeout, which raises TimeoutError)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            waiter = self.notifier.waiter(("closed", run_id))
            closed = self.written.closed(run_id)
            if (
                closed is not None
                and closed[0].workflow_id == workflow_id
                and closed[0].namespace == namespace
            ):
                return closed[0]
            record = await self.load_run(namespace, workflow_id, run_id)
            if not record.state.running:
                return record
            shards = self.shards
            if self.clustered and shards is not None and record.shard_id not in shards.owned():
                await self._announce_wait(run_id)
            # Every close wakes its waiters: in this process directly, from other servers by
            # NOTIFY (CloseInterest). The periodic re-read is only a safety net for a lost
            # notice; frequent re-reads by thousands of waiters would cost more than the
            # workflows themselves.
            step = _CLOSE_RECHECK_S
            remaining = step if deadline is None else min(step, deadline - loop.time())
            if remaining <= 0:
                raise TimeoutError(f"workflow {workflow_id!r} did not close in time")
            await wait_event(waiter, remaining)

    async def _announce_wait(self, run_id: str) -> None:
        """Tell the other servers that this one waits on ``run_id`` (see CloseInterest)."""
        try:
            await self.store.publish([f"{self.owner}|w|{run_id}"])
        except StoreError as exc:  # the periodic re-read still ends the wait
            log.info("wait on run %s not announced: %s", run_id, exc)

    async def wait_for_close(
        self, namespace: str, workflow_id: str, run_id: str, timeout: float | None = None
    ) -> tuple[str, HistoryEvent]:
        """Wait until a run closes; returns its status and the event that closed it.

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
        """
        record = await self.wait_closed(namespace, workflow_id, run_id, timeout)
        return record.status, await self.close_event(record)

    async def close_event(self, record: ExecutionRecord) -> HistoryEvent:
        """The event that closed a run."""
        closed = self.written.closed(record.run_id)
        if closed is not None and closed[1].event_id == record.state.close_event_id:
            return closed[1]
        events = await self.store.read_events(
            record.shard_id,
            record.run_id,
            record.state.close_event_id - 1,
            record.state.close_event_id,
            1,
        )
        if not events:
            raise StoreError(f"run {record.run_id}: close event missing")
        return events[0]

    # ------------------------------------------------------------------ queries

    async def query_workflow(
        self,
        namespace: str,
        workflow_id: str,
        run_id: str | None,
        query_type: str,
        args: msgspec.Raw,
        *,
        timeout: float = 10.0,
    ) -> msgspec.Raw:
        """Ask a worker of the run's task queue to answer a query from the workflow's state."""
        check_id("query_type", query_type, MAX_NAME_LENGTH)
        self.check_payload("args", args)
        record = await self.load_run(namespace, workflow_id, run_id)
        pending = _PendingQuery(record.shard_id, record.run_id, query_type, args)
        key = (record.namespace, record.task_queue)
        self._enqueue_query(key, pending)
        relayed = False
        if self.clustered:
            # The run's workers may poll another server: offer the query to every server.
            relayed = await self._relay_query(record, pending, timeout)
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), timeout)
        except TimeoutError:
            where = "" if relayed or not self.clustered else " on this server"
            raise QueryFailedError(
                f"no worker answered query {query_type!r} within {timeout:g} s{where}"
            ) from None
        finally:
            self._forget_query(key, pending)

    def _enqueue_query(self, key: tuple[str, str], pending: _PendingQuery) -> None:
        self._queries.setdefault(key, collections.deque()).append(pending)
        self._queries_by_id[pending.query_id] = pending
        self.notifier.notify_one(("workflow", key[0], key[1]))

    def _forget_query(self, key: tuple[str, str], pending: _PendingQuery) -> None:
        if self._queries_by_id.get(pending.query_id) is pending:
            del self._queries_by_id[pending.query_id]
        with contextlib.suppress(ValueError):
            self._queries.get(key, collections.deque()).remove(pending)

    async def _relay_query(
        self, record: ExecutionRecord, pending: _PendingQuery, timeout: float
    ) -> bool:
        notice = orjson.dumps(
            {
                "id": pending.query_id,
                "ns": record.namespace,
                "tq": record.task_queue,
                "shard": record.shard_id,
                "run": record.run_id,
                "type": pending.query_type,
                "args": bytes(pending.args).decode(),
                "timeout": timeout,
            }
        ).decode()
        if len(notice) > _MAX_RELAYED_QUERY_CHARS:
            log.info("query %s not relayed: its arguments are too large", pending.query_id)
            return False
        try:
            await self.store.publish([f"{self.owner}|q|{notice}"])
        except StoreError as exc:
            log.warning("query %s not relayed to other servers: %s", pending.query_id, exc)
            return False
        return True

    def _accept_relayed_query(self, origin: str, body: str) -> None:
        """Another server's query: offer it to the workers polling here until it expires."""
        try:
            q = orjson.loads(body)
            pending = _PendingQuery(
                int(q["shard"]),
                str(q["run"]),
                str(q["type"]),
                msgspec.Raw(str(q["args"]).encode()),
                query_id=str(q["id"]),
                origin=origin,
            )
            key = (str(q["ns"]), str(q["tq"]))
            timeout = float(q["timeout"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.warning("ignoring a malformed relayed query from %s: %s", origin, exc)
            return
        self._enqueue_query(key, pending)
        asyncio.get_running_loop().call_later(timeout, self._forget_query, key, pending)

    def _answer_relayed_query(self, body: str) -> None:
        try:
            answer = orjson.loads(body)
            query_id = str(answer["id"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            log.warning("ignoring a malformed query answer: %s", exc)
            return
        pending = self._queries_by_id.get(query_id)
        if pending is None or pending.origin is not None or pending.future.done():
            return
        if answer.get("error") is not None:
            pending.future.set_exception(QueryFailedError(str(answer["error"])))
        else:
            pending.future.set_result(msgspec.Raw(str(answer.get("result", "null")).encode()))

    def take_query(self, namespace: str, task_queue: str) -> _PendingQuery | None:
        """The oldest unanswered query for a queue, for a polling worker."""
        queue = self._queries.get((namespace, task_queue))
        while queue:
            pending = queue.popleft()
            if not pending.future.done():
                return pending
        return None

    def respond_query(self, query_id: str, result: msgspec.Raw | None, error: str | None) -> None:
        """A worker's answer to a query."""
        pending = self._queries_by_id.get(query_id)
        if pending is None or pending.future.done():
            return
        if pending.origin is not None:
            # Relayed from another server: the answer goes back the same way.
            pending.future.set_result(msgspec.Raw(b"null"))
            self._spawn_answer(pending, result, error)
            return
        if error is not None:
            pending.future.set_exception(QueryFailedError(error))
        else:
            pending.future.set_result(result or msgspec.Raw(b"null"))

    def _spawn_answer(
        self, pending: _PendingQuery, result: msgspec.Raw | None, error: str | None
    ) -> None:
        body: dict[str, Any] = {"id": pending.query_id}
        if error is not None:
            body["error"] = error
        else:
            body["result"] = bytes(result or b"null").decode()
        notice = orjson.dumps(body).decode()
        if len(notice) > _MAX_RELAYED_QUERY_CHARS:
            notice = orjson.dumps(
                {
                    "id": pending.query_id,
                    "error": f"the query's answer ({len(notice)} bytes) is too large to relay "
                    "between servers; send the query to the server its worker polls",
                }
            ).decode()

        self._publish_soon(
            f"{self.owner}|a|{notice}", f"answer of relayed query {pending.query_id} lost"
        )

    def _publish_soon(self, notice: str, lost: str = "cluster notice lost") -> None:
        """Send a cluster notice in the background (a failure is logged as ``lost``)."""

        async def publish() -> None:
            try:
                await self.store.publish([notice])
            except StoreError as exc:
                log.warning("%s: %s", lost, exc)

        task = asyncio.ensure_future(publish())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ test support

    async def next_due_ms(self) -> int | None:
        """When something is next due in this process: the earliest timer of our shards or
        the earliest held task to become visible (the time-skipping test environment jumps
        the virtual clock there)."""
        owned = self.shards.owned() if self.shards is not None else []
        times = [
            x
            for x in (
                await self.store.next_timer_ms(owned),
                await self.store.next_held_task_ms(self.clock.now_ms()),
            )
            if x is not None
        ]
        return min(times) if times else None

    async def is_idle(self) -> bool:
        """No task is running or ready to run (the time-skipping test environment uses it)."""
        if self.inflight_tasks:
            return False
        return await self.store.count_ready_tasks(self.clock.now_ms()) == 0


__all__ = ["Engine"]
