"""Schedules in the engine: operations, and firing through the timer service.

Each schedule lives on shard ``shard_for(namespace, schedule_id)``; its next fire is a row of
the ``timers`` table (kind ``schedule_fire``) written with its state, so the per-shard timer
loop fires schedules like any other timer. A fire is one transaction: the schedule's new state
and audit events, its next timer, *and* the runs it starts (their started event, first workflow
task and timeouts), under the fencing tokens of every shard involved and a compare-and-swap on
the schedule's ``version``. Two engines that fire the same schedule therefore cannot both
succeed, and a run cannot be started without the schedule recording it (or the reverse). The
started workflow id is derived from the nominal time (``{schedule_id}/{UTC ISO-8601}Z``) and
every start looks the derived ids up first, so a fire that was already started is recorded as
``already_started`` instead of running twice.

Due timers reach :meth:`ScheduleOps.fire_schedule_timer` one by one from the timer service,
up to its concurrency at a time; a small batcher gathers the ones that arrive together and
fires them in one transaction with a fixed number of statements. A batch that conflicts (a
concurrent change, a derived id that exists) falls back to firing its schedules one at a time.

When a run that a schedule started closes, the run's close writes a transfer task
(``notify_schedule``) that tells the schedule: overlap policies and fixed delays depend on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from cadenza.engine._api import StartWorkflowRequest
from cadenza.engine._mutation import Mutation
from cadenza.engine._schedule_api import (
    SCHEDULE_TRANSFER_ACTIONS,
    BackfillResult,
    FireTimeView,
    ScheduleAction,
    ScheduleDescription,
    ScheduleRun,
    ScheduleRunView,
    ScheduleSummary,
    TriggerResult,
    schedule_of_run,
)
from cadenza.engine._schedule_logic import (
    REPORT_KIND,
    START_KIND,
    START_OUTCOMES,
    STOP_KIND,
    TIMER_KIND,
    EvaluatorCache,
    ScheduleChange,
    action_json,
    spec_json,
    timer_key,
)
from cadenza.engine._shards import shard_for
from cadenza.engine._validation import MAX_NAME_LENGTH, check_id
from cadenza.history import (
    ChainVerdict,
    ConditionFailedError,
    InvalidArgumentError,
    NotFoundError,
    ShardOwnershipLostError,
    StoreError,
    TaskRecord,
    TimerRecord,
    WorkflowAlreadyStartedError,
    WorkflowClosedError,
)
from cadenza.history._events import TriggerInfo, WorkflowExecutionStarted
from cadenza.history._schedule_records import (
    ScheduleEvent,
    ScheduleNotFoundError,
    ScheduleRecord,
    verify_schedule_chain,
)
from cadenza.history._schedule_store import ScheduleStore
from cadenza.timers._schedule_eval import ScheduleEvaluator
from cadenza.timers._spec import ScheduleSpec, decode_schedule_spec

if TYPE_CHECKING:
    from cadenza.engine._engine import Engine

log = logging.getLogger("cadenza.engine.schedules")

T = TypeVar("T")

MAX_SCHEDULE_ID_LENGTH = 900
"""Leaves room for the ``/{nominal time}`` of derived workflow ids (1000 characters)."""

MAX_BATCH = 256
_MAX_CAS_RETRIES = 30
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _ms(value: datetime, field: str) -> int:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgumentError(field, "must be a timezone-aware date-time")
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


class _FireBatcher:
    """Gathers due schedule timers into batches (the first caller leads) and pipelines them.

    The timer service fires due timers concurrently, a few dozen at a time; each call waits
    here for its batch's outcome, so a failure is still reported per timer (and retried by the
    timer service). To make batches larger than the timer service's concurrency, the leader
    also pulls the other due fire timers of our shards (``pull``) into its batch; when the
    timer service then hands one of those over (it read them before they were fired), the
    call returns at once. A batch is read and decided (``prepare``) while the previous one
    commits, so the database and the decisions work at the same time.
    """

    def __init__(
        self,
        prepare: Callable[[list[TimerRecord]], Any],
        pull: Callable[[set[str], int], Any],
        limit: int = MAX_BATCH,
    ) -> None:
        self._prepare = prepare
        self._pull = pull
        self._limit = limit
        self._pending: list[tuple[TimerRecord, asyncio.Future[None] | None]] = []
        self._leading = False
        self._done: dict[str, int] = {}
        self._inflight_keys: set[str] = set()
        self._inflight: asyncio.Task[None] | None = None
        self._busy: dict[str, asyncio.Future[None]] = {}

    async def submit(self, timer: TimerRecord) -> None:
        if self._done.get(timer.timer_key) == timer.fire_at_ms:
            return  # fired already, in a batch that pulled it
        busy = self._busy.get(timer.timer_key)
        if busy is not None:
            # It is in a batch being decided or committed (pulled in before the timer service
            # handed it over): wait for that batch; a failure there is retried later.
            await asyncio.shield(busy)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((timer, future))
        if not self._leading:
            self._leading = True
            try:
                await self._lead()
            finally:
                self._leading = False
                for marker in self._busy.values():
                    if not marker.done():
                        marker.set_result(None)
                self._busy.clear()
                for _, waiting in self._pending:
                    if waiting is not None and not waiting.done():
                        waiting.set_exception(StoreError("schedule fire batch interrupted"))
                self._pending.clear()
        await future

    async def _lead(self) -> None:
        await asyncio.sleep(0)  # the other timers of this round join the batch
        try:
            while True:
                while self._pending:
                    batch = self._pending[: self._limit]
                    del self._pending[: self._limit]
                    await self._fill(batch)
                    marker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                    for timer, _ in batch:
                        self._busy[timer.timer_key] = marker
                    try:
                        finish = await self._prepare([t for t, _ in batch])
                    except Exception as exc:
                        self._resolve(batch, [exc] * len(batch))
                        continue
                    if self._inflight is not None:
                        await self._inflight
                    self._inflight_keys = {t.timer_key for t, _ in batch}
                    self._inflight = asyncio.create_task(self._finish(batch, finish))
                if self._inflight is None:
                    return
                await self._inflight  # timers that arrive meanwhile are led next
                self._inflight, self._inflight_keys = None, set()
        except BaseException:
            if self._inflight is not None:
                self._inflight.cancel()
                self._inflight, self._inflight_keys = None, set()
            raise

    async def _finish(
        self, batch: list[tuple[TimerRecord, asyncio.Future[None] | None]], finish: Any
    ) -> None:
        outcomes: Sequence[BaseException | None]
        try:
            outcomes = await finish()
        except Exception as exc:
            outcomes = [exc] * len(batch)
        self._resolve(batch, outcomes)

    def _resolve(
        self,
        batch: list[tuple[TimerRecord, asyncio.Future[None] | None]],
        outcomes: Sequence[BaseException | None],
    ) -> None:
        if len(self._done) > 50_000:
            self._done.clear()
        for timer, _ in batch:
            marker = self._busy.pop(timer.timer_key, None)
            if marker is not None and not marker.done():
                marker.set_result(None)
        for (timer, waiting), outcome in zip(batch, outcomes, strict=True):
            if outcome is None:
                self._done[timer.timer_key] = timer.fire_at_ms
            if waiting is None or waiting.done():
                continue
            if outcome is None:
                waiting.set_result(None)
            else:
                waiting.set_exception(outcome)

    async def _fill(self, batch: list[tuple[TimerRecord, asyncio.Future[None] | None]]) -> None:
        room = self._limit - len(batch)
        if room <= 0:
            return
        taken = {t.timer_key for t, _ in batch} | {t.timer_key for t, _ in self._pending}
        taken |= self._inflight_keys | set(self._busy)
        try:
            extra: list[TimerRecord] = await self._pull(taken, room)
        except Exception:  # the batch still runs with what it has
            log.exception("pulling due schedule timers failed")
            return
        # Timers handed over while we were pulling are in _pending: keep them there only.
        taken = {t.timer_key for t, _ in self._pending} | set(self._busy)
        batch.extend(
            (t, None)
            for t in extra
            if t.timer_key not in taken and self._done.get(t.timer_key) != t.fire_at_ms
        )


class ScheduleOps:
    """Schedule operations of :class:`~cadenza.engine.Engine`."""

    # ------------------------------------------------------------------ plumbing

    @property
    def schedule_store(self: Engine) -> ScheduleStore:
        """The schedules' SQL (sharing the event log's store)."""
        store = self.__dict__.get("_schedule_store")
        if store is None:
            store = self.__dict__["_schedule_store"] = ScheduleStore(self.store)
        return store

    def _schedule_cache(self: Engine) -> EvaluatorCache:
        cache = self.__dict__.get("_schedule_evaluators")
        if cache is None:
            cache = self.__dict__["_schedule_evaluators"] = EvaluatorCache()
        return cache

    def schedule_shard(self: Engine, namespace: str, schedule_id: str) -> int:
        """The shard of a schedule."""
        return shard_for(namespace, schedule_id, self.shard_count)

    def _check_schedule_id(self: Engine, namespace: str, schedule_id: str) -> None:
        check_id("namespace", namespace, MAX_NAME_LENGTH)
        check_id("schedule_id", schedule_id, MAX_SCHEDULE_ID_LENGTH)
        if schedule_id != schedule_id.strip() or any(ord(c) < 32 for c in schedule_id):
            raise InvalidArgumentError(
                "schedule_id", "must not contain control characters or surrounding spaces"
            )

    async def _check_action(self: Engine, namespace: str, action: ScheduleAction) -> None:
        if not isinstance(action, ScheduleAction):
            raise InvalidArgumentError("action", "expected a ScheduleAction")
        check_id("action.workflow_type", action.workflow_type, MAX_NAME_LENGTH)
        check_id("action.task_queue", action.task_queue, MAX_NAME_LENGTH)
        for name in ("execution_timeout", "run_timeout", "task_timeout"):
            value = getattr(action, name)
            if value is not None and not value > 0:
                raise InvalidArgumentError(f"action.{name}", "must be positive")
        try:
            msgspec.json.decode(bytes(action.input), type=list[msgspec.Raw])
        except (msgspec.ValidationError, msgspec.DecodeError):
            raise InvalidArgumentError(
                "action.input", "must be a JSON array of arguments"
            ) from None
        self.check_payload("action.input", action.input)
        await self.check_type_registered(
            namespace, action.task_queue, "workflow", action.workflow_type
        )

    @staticmethod
    def _spec(spec: ScheduleSpec | Mapping[str, Any]) -> ScheduleSpec:
        if isinstance(spec, ScheduleSpec):
            spec.validate()
            return spec
        if isinstance(spec, Mapping):
            try:
                return decode_schedule_spec(dict(spec))
            except InvalidArgumentError as exc:
                raise InvalidArgumentError(f"spec.{exc.field}", exc.reason) from None
        raise InvalidArgumentError("spec", "expected a schedule spec (a mapping with 'kind')")

    def _new_change(
        self: Engine, namespace: str, schedule_id: str, record: ScheduleRecord | None, **kw: Any
    ) -> ScheduleChange:
        owned = set(self.shards.owned()) if self.shards is not None else set()
        return ScheduleChange(
            shard_id=self.schedule_shard(namespace, schedule_id),
            namespace=namespace,
            schedule_id=schedule_id,
            record=record,
            now_ms=self.clock.now_ms(),
            cache=self._schedule_cache(),
            shard_of=lambda wid: self.shard_of(namespace, wid),
            owned=owned.__contains__,
            lead_ms=int(self.settings.schedule_fire_ahead * 1000),
            **kw,
        )

    async def _run_statuses(
        self: Engine, changes: Sequence[ScheduleChange]
    ) -> dict[str, tuple[str, int | None]]:
        keys = [
            (self.shard_of(c.namespace, run.workflow_id), run.run_id)
            for c in changes
            for run in c.state.running
        ]
        return await self.schedule_store.run_statuses(keys) if keys else {}

    async def _existing_runs(
        self: Engine, changes: Sequence[ScheduleChange]
    ) -> dict[tuple[str, str], tuple[str, str]]:
        keys = [
            (self.shard_of(c.namespace, wid), c.namespace, wid) for c in changes for wid in c.wanted
        ]
        return await self.schedule_store.latest_runs(keys) if keys else {}

    async def _change_schedule(
        self: Engine,
        namespace: str,
        schedule_id: str,
        operate: Callable[[ScheduleChange], T],
    ) -> tuple[T, ScheduleChange]:
        """Read a schedule, let ``operate`` decide, write it with CAS; retry on conflict.

        ``operate`` may raise to abort (nothing is written).
        """
        shard_id = self.schedule_shard(namespace, schedule_id)
        existing: dict[str, tuple[str, str]] = {}
        for _ in range(_MAX_CAS_RETRIES):
            record = await self.schedule_store.get(shard_id, namespace, schedule_id)
            change = self._new_change(namespace, schedule_id, record, existing=existing)
            change.run_status = await self._run_statuses([change])
            result = operate(change)
            if change.wanted:
                found = await self._existing_runs([change])
                hits = {wid: v for (_, wid), v in found.items() if wid not in existing}
                if hits:
                    existing.update(hits)
                    continue  # decide again, knowing which derived ids have runs
            if not change.changed:
                return result, change
            try:
                await self._commit_schedule_changes([change])
            except ConditionFailedError:
                continue
            return result, change
        raise StoreError(f"schedule {schedule_id!r}: too many concurrent writers")

    def _run_mutations(self: Engine, change: ScheduleChange) -> list[Mutation]:
        action = change.action
        if action is None:
            return []
        mutations: list[Mutation] = []
        for start in change.starts:
            started = WorkflowExecutionStarted(
                workflow_type=action.workflow_type,
                task_queue=action.task_queue,
                input=action.input,
                random_seed=self._random.getrandbits(63),
                first_run_id=start.run_id,
                execution_timeout=action.execution_timeout,
                run_timeout=action.run_timeout,
                task_timeout=action.task_timeout or self.settings.workflow_task_timeout,
                retry_policy=action.retry_policy,
                trigger=TriggerInfo(
                    source="schedule",
                    schedule_id=change.schedule_id,
                    nominal_time=_utc(start.nominal_ms),
                    actual_time=_utc(max(start.actual_ms, start.release_ms)),
                ),
                memo=action.memo,
                identity=f"schedule:{change.schedule_id}",
                request_id=start.workflow_id,
            )
            mutations.append(
                self.new_run_mutation(
                    shard_id=self.shard_of(change.namespace, start.workflow_id),
                    namespace=change.namespace,
                    workflow_id=start.workflow_id,
                    run_id=start.run_id,
                    started=started,
                    now_ms=start.actual_ms,
                    release_ms=start.release_ms,
                )
            )
        return mutations

    async def _commit_schedule_changes(
        self: Engine,
        changes: Sequence[ScheduleChange],
        mutations: Mapping[int, list[Mutation]] | None = None,
    ) -> None:
        """Write changes and the runs they start in one transaction (fenced, CAS).

        Raises:
            ConditionFailedError: a schedule moved on, or a derived id is running already.
            ShardOwnershipLostError: a shard is not ours (any more).
        """
        runs: list[Mutation] = []
        fences: dict[int, int] = {}
        for change in changes:
            fences[change.shard_id] = self.range_id(change.shard_id)
            made = mutations.get(id(change)) if mutations is not None else None
            for m in made if made is not None else self._run_mutations(change):
                runs.append(m)
                fences[m.shard_id] = m.range_id
        writes = [c.to_write() for c in changes]
        clustered = self.clustered
        notices: list[str] = []
        for m in runs:
            m.writer = self.owner
            if clustered:
                self._cluster_notices(m)
                notices.extend(m.notify)
        messages = [timer for w in writes for timer in w.messages]
        notices.extend(self.timer_notices(messages))
        try:
            await self.schedule_store.write(writes, [m.to_write() for m in runs], fences, notices)
        except ShardOwnershipLostError as exc:
            if self.shards is not None:
                self.shards.drop(exc.shard_id)
            raise
        for m in runs:
            self._after_commit(m)
        if self.timer_service is not None:
            times = [w.timer.fire_at_ms for w in writes if w.timer is not None]
            times += [t.fire_at_ms for t in messages]
            if times:
                self.timer_service.notify(min(times))

    # ------------------------------------------------------------------ firing

    async def fire_schedule_timer(self: Engine, timer: TimerRecord) -> None:
        """Fire a due schedule timer (the timer service calls this through ``fire_timer``)."""
        if timer.kind == START_KIND:
            await self._start_for_schedule(timer)
        elif timer.kind == REPORT_KIND:
            await self._report_for_schedule(timer)
        elif timer.kind == STOP_KIND:
            await self._stop_for_schedule(timer)
        elif timer.kind == TIMER_KIND:
            batcher = self.__dict__.get("_schedule_batcher")
            if batcher is None:
                batcher = self.__dict__["_schedule_batcher"] = _FireBatcher(
                    self._prepare_fire_batch, self._pull_due_fires
                )
            await batcher.submit(timer)
        else:
            log.error("unknown schedule timer kind %r (%s); dropped", timer.kind, timer.timer_key)
            await self.schedule_store.remove_timer(timer.shard_id, timer.timer_key)

    async def _pull_due_fires(self: Engine, taken: set[str], room: int) -> list[TimerRecord]:
        """Due schedule fire timers of our shards not in ``taken`` (at most ``room``)."""
        owned = self.shards.owned() if self.shards is not None else []
        due = await self.store.due_timers(owned, self.clock.now_ms(), room + len(taken))
        fires = [t for t in due if t.kind == TIMER_KIND and t.timer_key not in taken]
        return fires[:room]

    async def _fire_batch(self: Engine, timers: list[TimerRecord]) -> list[BaseException | None]:
        """Fire a batch of due schedule timers; the outcome of each (None: done)."""
        finish = await self._prepare_fire_batch(timers)
        return await finish()

    async def _prepare_fire_batch(
        self: Engine, timers: list[TimerRecord]
    ) -> Callable[[], Awaitable[list[BaseException | None]]]:
        """Read and decide a batch of due fires; returns what commits it (and reports each
        timer's outcome)."""
        outcomes: dict[tuple[str, str], BaseException | None] = {}
        keys = {(t.namespace, t.workflow_id): t for t in timers}
        records = await self.schedule_store.get_many(
            [(t.shard_id, t.namespace, t.workflow_id) for t in keys.values()]
        )
        changes: list[ScheduleChange] = []
        for (namespace, schedule_id), timer in keys.items():
            record = records.get((timer.shard_id, namespace, schedule_id))
            if record is None or record.shard_id != timer.shard_id:
                outcomes[(namespace, schedule_id)] = None
                await self._drop_orphan_timer(timer)
                continue
            changes.append(self._new_change(namespace, schedule_id, record))
        statuses = await self._run_statuses(changes)
        for change in changes:
            change.run_status = statuses
            change.fire_due()
        found = await self._existing_runs(changes)
        batch: list[ScheduleChange] = []
        alone: list[ScheduleChange] = []
        mutations: dict[int, list[Mutation]] = {}
        for change in changes:
            timer = keys[(change.namespace, change.schedule_id)]
            if any((change.namespace, wid) in found for wid in change.wanted):
                alone.append(change)
                continue
            if not change.changed:
                if change.timer_ms == timer.fire_at_ms and timer.fire_at_ms > change.now:
                    outcomes[(change.namespace, change.schedule_id)] = None
                    continue
                change.defer_if_stalled()
            try:
                mutations[id(change)] = self._run_mutations(change)
            except ShardOwnershipLostError as exc:
                outcomes[(change.namespace, change.schedule_id)] = exc
                continue
            batch.append(change)

        async def finish() -> list[BaseException | None]:
            await self._commit_fire_batch(batch, alone, mutations, outcomes)
            return [outcomes.get((t.namespace, t.workflow_id)) for t in timers]

        return finish

    async def _commit_fire_batch(
        self: Engine,
        batch: list[ScheduleChange],
        alone: list[ScheduleChange],
        mutations: dict[int, list[Mutation]],
        outcomes: dict[tuple[str, str], BaseException | None],
    ) -> None:
        if batch:
            try:
                await self._commit_schedule_changes(batch, mutations)
            except (ConditionFailedError, ShardOwnershipLostError):
                alone.extend(batch)
            else:
                for change in batch:
                    outcomes[(change.namespace, change.schedule_id)] = None
        for change in alone:
            try:
                await self._change_schedule(
                    change.namespace, change.schedule_id, lambda c: c.fire_due()
                )
                outcomes[(change.namespace, change.schedule_id)] = None
            except Exception as exc:
                outcomes[(change.namespace, change.schedule_id)] = exc

    async def _drop_orphan_timer(self: Engine, timer: TimerRecord) -> None:
        log.warning("schedule timer %s has no schedule; removed", timer.timer_key)
        await self.schedule_store.remove_timer(timer.shard_id, timer.timer_key)

    # ------------------------------------------------------------------ messages between shards
    #
    # A schedule and the runs it starts usually live in different shards, which other servers
    # may own. Only a shard's owner writes to it, so work for another shard is delivered as a
    # timer row due now in that shard (written with the change that calls for it, and woken
    # by NOTIFY on PostgreSQL): its owner's timer loop carries it out and deletes it. Each
    # message is idempotent, so one carried out twice after a crash does no harm.

    async def _start_for_schedule(self: Engine, timer: TimerRecord) -> None:
        """Start a scheduled run in our shard (``schedule_start``) and report to the schedule."""
        namespace, workflow_id = timer.namespace, timer.workflow_id
        schedule_id = schedule_of_run(workflow_id)
        record = None
        if schedule_id is not None:
            record = await self.schedule_store.get(
                self.schedule_shard(namespace, schedule_id), namespace, schedule_id
            )
        if schedule_id is None or record is None or record.status != "active":
            await self.schedule_store.remove_timer(timer.shard_id, timer.timer_key)
            return
        change = self._new_change(namespace, schedule_id, record)
        action = change.action
        if action is None:
            return
        now = self.clock.now_ms()
        nominal = datetime.fromisoformat(workflow_id[len(schedule_id) + 1 :].replace("Z", "+00:00"))
        # A spec fire (attempt 0) the schedule wrote ahead of its time is held until then.
        release = now
        if timer.attempt == 0:
            nominal_ms = _ms(nominal, "nominal")
            release = max(now, change.due_ms(nominal_ms))
            if release > now and not change.plans_fire(nominal_ms):
                # Paused or given a new spec since the fire was written ahead, before its
                # time: the old plan's run is not started.
                detail = "the schedule was paused or changed before the run's time"
                await self._report_to_schedule(
                    namespace,
                    schedule_id,
                    workflow_id,
                    "",
                    lambda c: c.start_reported(workflow_id, "", "start_failed", now, detail),
                    ref=1,
                    attempt=START_OUTCOMES.index("start_failed"),
                    at=now,
                )
                await self.schedule_store.remove_timer(timer.shard_id, timer.timer_key)
                return
        request = StartWorkflowRequest(
            workflow_id=workflow_id,
            workflow_type=action.workflow_type,
            task_queue=action.task_queue,
            input=action.input,
            namespace=namespace,
            execution_timeout=action.execution_timeout,
            run_timeout=action.run_timeout,
            task_timeout=action.task_timeout,
            retry_policy=action.retry_policy,
            request_id=workflow_id,
            trigger=TriggerInfo(
                source="schedule",
                schedule_id=schedule_id,
                nominal_time=nominal,
                actual_time=_utc(release),
            ),
            memo=action.memo,
            identity=f"schedule:{schedule_id}",
        )
        outcome, run_id, detail = "started", "", ""
        try:
            run_id = (await self.start_workflow(request, release_ms=release)).run_id
        except WorkflowAlreadyStartedError as exc:
            outcome, run_id = "already_started", exc.run_id
        except InvalidArgumentError as exc:
            outcome, detail = "start_failed", str(exc)
            log.warning("schedule %r: starting %s failed: %s", schedule_id, workflow_id, exc)
        await self._report_to_schedule(
            namespace,
            schedule_id,
            workflow_id,
            run_id,
            lambda c: c.start_reported(workflow_id, run_id, outcome, release, detail),
            ref=1,
            attempt=START_OUTCOMES.index(outcome),
            at=release,  # a remote report is delivered at the run's release time
        )
        await self.schedule_store.remove_timer(timer.shard_id, timer.timer_key)

    async def _report_to_schedule(
        self: Engine,
        namespace: str,
        schedule_id: str,
        workflow_id: str,
        run_id: str,
        operate: Callable[[ScheduleChange], Any],
        *,
        ref: int,
        attempt: int,
        at: int,
    ) -> None:
        """Apply a report to a schedule we own, else deliver it to its shard's owner."""
        shard_id = self.schedule_shard(namespace, schedule_id)
        if self.shards is not None and shard_id in self.shards.owned():
            with contextlib.suppress(ShardOwnershipLostError):
                await self._change_schedule(namespace, schedule_id, operate)
                return
        what = "start" if ref == 1 else "close"
        message = TimerRecord(
            shard_id=shard_id,
            timer_key=f"{REPORT_KIND}:{namespace}:{workflow_id}:{run_id}:{what}",
            fire_at_ms=at,
            namespace=namespace,
            workflow_id=workflow_id,
            run_id=run_id,
            kind=REPORT_KIND,
            ref_event_id=ref,
            attempt=attempt,
        )
        await self.schedule_store.deliver([message], self.timer_notices([message]))

    async def _report_for_schedule(self: Engine, timer: TimerRecord) -> None:
        """A report delivered to our schedule: a run started (``ref_event_id`` 1) or closed."""
        namespace, workflow_id, run_id = timer.namespace, timer.workflow_id, timer.run_id
        schedule_id = schedule_of_run(workflow_id)
        if schedule_id is not None and timer.ref_event_id == 1:
            outcome = START_OUTCOMES[timer.attempt] if 0 <= timer.attempt < 3 else "started"
            await self._change_schedule(
                namespace,
                schedule_id,
                lambda c: c.start_reported(workflow_id, run_id, outcome, timer.fire_at_ms),
            )
        elif schedule_id is not None:
            record = await self.store.get_execution(self.shard_of(namespace, workflow_id), run_id)
            if record is not None and record.status != "running":
                status, close_ms = record.status, record.close_time_ms
                await self._change_schedule(
                    namespace,
                    schedule_id,
                    lambda c: c.run_closed(workflow_id, run_id, status, close_ms),
                )
        await self.schedule_store.remove_timer(timer.shard_id, timer.timer_key)

    async def _stop_for_schedule(self: Engine, timer: TimerRecord) -> None:
        """Cancel (``attempt`` 1) or terminate a run in our shard for an overlap policy."""
        schedule_id = schedule_of_run(timer.workflow_id) or "?"
        reason = f"overlap policy of schedule {schedule_id!r}"
        if timer.attempt == 3:
            reason = (
                f"schedule {schedule_id!r} was paused, changed or deleted before this run's time"
            )
        with contextlib.suppress(NotFoundError, WorkflowClosedError):
            if timer.attempt == 1:
                await self.request_cancel_workflow(
                    timer.namespace,
                    timer.workflow_id,
                    timer.run_id or None,
                    reason=reason,
                    request_id=timer.timer_key,
                    identity=f"schedule:{schedule_id}",
                )
            else:
                await self.terminate_workflow(
                    timer.namespace,
                    timer.workflow_id,
                    timer.run_id or None,
                    reason=reason,
                    identity=f"schedule:{schedule_id}",
                )
        await self.schedule_store.remove_timer(timer.shard_id, timer.timer_key)

    async def run_schedule_transfer(self: Engine, task: TaskRecord) -> None:
        """Carry out a schedule's transfer task: ``notify_schedule``, written when a run that
        a schedule started closes, tells the schedule (directly when we own its shard)."""
        if task.payload.get("action") != "notify_schedule":
            log.error("unknown schedule transfer %r; dropped", task.payload.get("action"))
            return
        record = await self.store.get_execution(task.shard_id, task.run_id)
        if record is None:
            return
        schedule_id = task.payload.get("schedule_id") or schedule_of_run(task.workflow_id)
        first = await self.store.read_events(task.shard_id, task.run_id, 0, 1, 1)
        if first and isinstance(first[0].attributes, WorkflowExecutionStarted):
            trigger = first[0].attributes.trigger
            if trigger is not None and trigger.schedule_id:
                schedule_id = trigger.schedule_id
        if not schedule_id:
            return
        status, close_ms = record.status, record.close_time_ms
        workflow_id, run_id = task.workflow_id, task.run_id
        await self._report_to_schedule(
            task.namespace,
            schedule_id,
            workflow_id,
            run_id,
            lambda c: c.run_closed(workflow_id, run_id, status, close_ms),
            ref=2,
            attempt=0,
            at=self.clock.now_ms(),
        )

    # ------------------------------------------------------------------ operations

    async def create_schedule(
        self: Engine,
        namespace: str,
        schedule_id: str,
        spec: ScheduleSpec | Mapping[str, Any],
        action: ScheduleAction,
        *,
        identity: str = "",
    ) -> ScheduleDescription:
        """Create a schedule; it fires from now on.

        Args:
            namespace: Its namespace.
            schedule_id: Its id (letters, digits and punctuation; ``/`` allowed).
            spec: When it fires and its policies (a :class:`ScheduleSpec`, or its JSON form).
            action: What each fire starts.
            identity: Who creates it (recorded in its audit log).

        Raises:
            InvalidArgumentError: A bad id, spec or action (nothing is written).
            ScheduleAlreadyExistsError: The id is taken.
        """
        self._check_schedule_id(namespace, schedule_id)
        checked = self._spec(spec)
        await self._check_action(namespace, action)
        await self._change_schedule(
            namespace, schedule_id, lambda c: c.create(checked, action, identity)
        )
        return await self.describe_schedule(namespace, schedule_id)

    async def update_schedule(
        self: Engine,
        namespace: str,
        schedule_id: str,
        *,
        spec: ScheduleSpec | Mapping[str, Any] | None = None,
        action: ScheduleAction | None = None,
        identity: str = "",
    ) -> ScheduleDescription:
        """Replace a schedule's spec and/or action; the audit log records each changed field.

        A new spec takes effect from now: its next fire is computed from now (nothing is
        caught up), runs in progress are not touched, ``max_runs`` keeps counting.

        Raises:
            InvalidArgumentError: A bad spec or action (nothing is written).
            ScheduleNotFoundError: No such schedule.
        """
        self._check_schedule_id(namespace, schedule_id)
        checked = self._spec(spec) if spec is not None else None
        if action is not None:
            await self._check_action(namespace, action)
        await self._change_schedule(
            namespace, schedule_id, lambda c: c.update(checked, action, identity)
        )
        return await self.describe_schedule(namespace, schedule_id)

    async def pause_schedule(
        self: Engine, namespace: str, schedule_id: str, *, note: str = "", identity: str = ""
    ) -> None:
        """Pause a schedule (no fire until unpaused; trigger and backfill still work)."""
        self._check_schedule_id(namespace, schedule_id)
        await self._change_schedule(namespace, schedule_id, lambda c: c.pause(note, identity))

    async def unpause_schedule(
        self: Engine, namespace: str, schedule_id: str, *, note: str = "", identity: str = ""
    ) -> None:
        """Unpause a schedule; what it missed follows its catch-up policy."""
        self._check_schedule_id(namespace, schedule_id)
        await self._change_schedule(namespace, schedule_id, lambda c: c.unpause(note, identity))

    async def trigger_schedule(
        self: Engine, namespace: str, schedule_id: str, *, overlap: str = "", identity: str = ""
    ) -> TriggerResult:
        """Fire a schedule now (nominal time: now), outside its spec.

        Args:
            overlap: Overlap policy for this fire (default: the schedule's).
        """
        self._check_schedule_id(namespace, schedule_id)
        (outcome, workflow_id, run_id), change = await self._change_schedule(
            namespace, schedule_id, lambda c: c.trigger(identity, overlap)
        )
        return TriggerResult(
            outcome=outcome,  # type: ignore[arg-type]
            nominal_time=change.now_dt,
            workflow_id=workflow_id,
            run_id=run_id,
        )

    async def backfill_schedule(
        self: Engine,
        namespace: str,
        schedule_id: str,
        start: datetime,
        end: datetime,
        *,
        overlap: str = "",
        identity: str = "",
    ) -> BackfillResult:
        """Run the spec's fires in ``[start, end]`` now (each with its own nominal time).

        At most 10,000 fires per request; they are started in chunks by the timer loop.

        Args:
            overlap: Overlap policy for these fires (default: the schedule's; ``allow_all``
                or ``buffer_all`` run every one).

        Raises:
            InvalidArgumentError: A reversed, future, empty or too large range.
        """
        self._check_schedule_id(namespace, schedule_id)
        start_ms, end_ms = _ms(start, "start"), _ms(end, "end")
        count, _ = await self._change_schedule(
            namespace,
            schedule_id,
            lambda c: c.backfill(start_ms, end_ms, identity, overlap),
        )
        return BackfillResult(fire_count=count)

    async def delete_schedule(
        self: Engine, namespace: str, schedule_id: str, *, identity: str = "", reason: str = ""
    ) -> None:
        """Delete a schedule. Its runs keep running; its audit log is kept."""
        self._check_schedule_id(namespace, schedule_id)
        await self._change_schedule(namespace, schedule_id, lambda c: c.delete(identity, reason))

    # ------------------------------------------------------------------ reads

    async def describe_schedule(
        self: Engine, namespace: str, schedule_id: str
    ) -> ScheduleDescription:
        """Spec, action, state, the next 10 fire times and the last runs with their outcome.

        Raises:
            ScheduleNotFoundError: No such schedule.
        """
        self._check_schedule_id(namespace, schedule_id)
        shard_id = self.schedule_shard(namespace, schedule_id)
        record = await self.schedule_store.get(shard_id, namespace, schedule_id)
        if record is None or record.status != "active":
            raise ScheduleNotFoundError(schedule_id)
        change = self._new_change(namespace, schedule_id, record)
        spec, action, state, evaluator = change.spec, change.action, change.state, change.evaluator
        if spec is None or action is None or evaluator is None:
            raise ScheduleNotFoundError(schedule_id)
        runs = [*state.running, *state.recent]
        statuses = await self.schedule_store.run_statuses(
            [(self.shard_of(namespace, r.workflow_id), r.run_id) for r in runs]
        )
        first = state.next_nominal_ms
        left = None if spec.max_runs is None else max(0, spec.max_runs - state.run_count)
        upcoming = evaluator.upcoming(first, 10, left)
        return ScheduleDescription(
            namespace=namespace,
            schedule_id=schedule_id,
            spec=spec_json(spec),
            action=action,
            paused=record.paused,
            note=record.note,
            created_time=_utc(record.created_ms),
            updated_time=_utc(record.updated_ms),
            version=record.version,
            run_count=state.run_count,
            missed_count=state.missed_count,
            skipped_count=state.skipped_count,
            next_fire_times=[
                FireTimeView(nominal_time=_utc(n), actual_time=_utc(change.due_ms(n)))
                for n in upcoming
            ],
            running=[_view(r, statuses) for r in state.running],
            recent_runs=[_view(r, statuses) for r in state.recent],
            buffered=len(state.buffer),
            backfill_pending=bool(state.backfills),
            history_length=record.next_event_id - 1,
        )

    async def list_schedules(
        self: Engine, namespace: str = "default", *, after: str = "", limit: int = 100
    ) -> list[ScheduleSummary]:
        """Schedules of a namespace ordered by id (those after ``after``, at most ``limit``)."""
        check_id("namespace", namespace, MAX_NAME_LENGTH)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidArgumentError("limit", "must be between 1 and 1000")
        records = await self.schedule_store.list_schedules(namespace, after=after, limit=limit)
        out: list[ScheduleSummary] = []
        for record in records:
            change = self._new_change(namespace, record.schedule_id, record)
            state, action = change.state, change.action
            last = (
                state.running[-1] if state.running else (state.recent[0] if state.recent else None)
            )
            out.append(
                ScheduleSummary(
                    namespace=namespace,
                    schedule_id=record.schedule_id,
                    kind=record.kind,
                    workflow_type=action.workflow_type if action is not None else "",
                    paused=record.paused,
                    note=record.note,
                    next_fire_time=(
                        _utc(record.next_fire_ms) if record.next_fire_ms is not None else None
                    ),
                    run_count=record.run_count,
                    running=len(state.running),
                    last_run=_view(last, {}) if last is not None else None,
                )
            )
        return out

    async def preview_schedule(
        self: Engine,
        spec: ScheduleSpec | Mapping[str, Any],
        *,
        count: int = 10,
        after: datetime | None = None,
        schedule_id: str = "",
    ) -> list[FireTimeView]:
        """The next fire times of a spec without creating a schedule (``max_runs`` applies; a
        fixed delay assumes runs of no length).

        Raises:
            InvalidArgumentError: A bad spec, count or instant.
        """
        checked = self._spec(spec)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 10_000:
            raise InvalidArgumentError("count", "must be between 1 and 10000")
        after_ms = self.clock.now_ms() if after is None else _ms(after, "after")
        evaluator = ScheduleEvaluator(checked, schedule_id=schedule_id)
        evaluator.check_fires(after_ms, require_fire=False)
        return [
            FireTimeView(nominal_time=f.nominal, actual_time=f.actual)
            for f in evaluator.preview(after_ms, count)
        ]

    async def get_schedule_history(
        self: Engine, namespace: str, schedule_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[ScheduleEvent]:
        """A page of a schedule's audit log (deleted schedules too): events after ``after``.

        Raises:
            ScheduleNotFoundError: The id never existed.
        """
        self._check_schedule_id(namespace, schedule_id)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidArgumentError("limit", "must be between 1 and 10000")
        shard_id = self.schedule_shard(namespace, schedule_id)
        record = await self.schedule_store.get(shard_id, namespace, schedule_id)
        if record is None:
            raise ScheduleNotFoundError(schedule_id)
        return await self.schedule_store.read_events(shard_id, namespace, schedule_id, after, limit)

    async def verify_schedule_history(
        self: Engine, namespace: str, schedule_id: str
    ) -> ChainVerdict:
        """Recompute a schedule's audit chain end to end (and that it ends at the row's head)."""
        events: list[ScheduleEvent] = []
        while True:
            page = await self.get_schedule_history(
                namespace, schedule_id, after=events[-1].event_id if events else 0
            )
            events.extend(page)
            if len(page) < 1000:
                break
        verdict = verify_schedule_chain(namespace, schedule_id, events)
        record = await self.schedule_store.get(
            self.schedule_shard(namespace, schedule_id), namespace, schedule_id
        )
        if verdict.ok and record is not None and events and events[-1].hash != record.last_hash:
            return ChainVerdict(False, len(events), events[-1].event_id, "head does not match")
        return verdict


def _view(run: ScheduleRun, statuses: Mapping[str, tuple[str, int | None]]) -> ScheduleRunView:
    status, close_ms = run.status, run.close_ms
    live = statuses.get(run.run_id)
    if live is not None and status == "running":
        status, close_ms = live
    return ScheduleRunView(
        workflow_id=run.workflow_id,
        run_id=run.run_id,
        nominal_time=_utc(run.nominal_ms),
        actual_time=_utc(run.actual_ms),
        source=run.source,
        status=status,
        close_time=_utc(close_ms) if close_ms is not None else None,
    )


__all__ = ["SCHEDULE_TRANSFER_ACTIONS", "ScheduleOps", "action_json", "timer_key"]
