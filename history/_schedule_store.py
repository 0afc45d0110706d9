"""The SQL of schedules: rows, the audit log, and the all-or-nothing write of fires.

It shares the event log's :class:`~cadenza.history._store.SqlStore` (its connections, its
SQLite write lock and its error translation). The write path is built for firing many
schedules at once: :meth:`ScheduleStore.write` takes the changes of a batch of schedules *and*
the runs their fires start, and commits them in one transaction with a fixed number of
statements (one per table, not one per schedule): the fencing tokens of every shard involved
are checked, each schedule row is updated only if its ``version`` is still the one read
(compare-and-swap), the fire timers are replaced, and the new executions are inserted with
their first events and tasks. If anything conflicts, nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cadenza.history import _schedule_tables as st
from cadenza.history import _tables as t
from cadenza.history._errors import (
    ConditionFailedError,
    InvalidArgumentError,
)
from cadenza.history._records import ExecutionWrite, TimerRecord
from cadenza.history._schedule_records import (
    ScheduleEvent,
    ScheduleRecord,
    ScheduleWrite,
    decode_schedule_event,
)
from cadenza.history._state import encode_state
from cadenza.history._store import SqlStore

__all__ = ["ScheduleStore"]

ScheduleKey = tuple[int, str, str]
"""``(shard_id, namespace, schedule_id)``."""

_ROW_FIELDS = (
    "status",
    "kind",
    "spec",
    "action",
    "state",
    "paused",
    "note",
    "next_fire_ms",
    "run_count",
    "created_ms",
    "updated_ms",
    "version",
    "next_event_id",
    "last_hash",
)


def _row_values(record: ScheduleRecord) -> dict[str, Any]:
    values = {name: getattr(record, name) for name in _ROW_FIELDS}
    values["paused"] = int(record.paused)
    return values


class ScheduleStore:
    """Schedules and their audit logs in the event log's database.

    Args:
        store: The event log's SQL store; its connections and transactions are shared.

    Raises:
        InvalidArgumentError: ``store`` is not a :class:`SqlStore`.
    """

    def __init__(self, store: Any) -> None:
        if not isinstance(store, SqlStore):
            raise InvalidArgumentError(
                "store", f"schedules need the SQL store, got {type(store).__name__}"
            )
        self._store = store
        s = st.schedules.c
        self._update_statement = (
            update(st.schedules)
            .where(
                s.shard_id == bindparam("k_shard"),
                s.namespace == bindparam("k_namespace"),
                s.schedule_id == bindparam("k_schedule"),
                s.version == bindparam("k_version"),
            )
            .values({name: bindparam(f"v_{name}") for name in _ROW_FIELDS})
        )
        tm = t.timers.c
        if store.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
        statement = upsert(t.timers)
        self._timer_upsert = statement.on_conflict_do_update(
            index_elements=[tm.shard_id, tm.timer_key],
            set_={
                name: statement.excluded[name]
                for name in ("fire_at_ms", "namespace", "workflow_id", "run_id", "kind")
                + ("ref_event_id", "attempt")
            },
        )
        self._timer_delete = delete(t.timers).where(
            tm.shard_id == bindparam("k_shard"), tm.timer_key == bindparam("k_key")
        )

    # ------------------------------------------------------------------ reads

    @staticmethod
    def _record(row: Any) -> ScheduleRecord:
        m = row._mapping
        return ScheduleRecord(
            shard_id=m["shard_id"],
            namespace=m["namespace"],
            schedule_id=m["schedule_id"],
            status=m["status"],
            kind=m["kind"],
            spec=m["spec"],
            action=m["action"],
            state=m["state"],
            paused=bool(m["paused"]),
            note=m["note"],
            next_fire_ms=m["next_fire_ms"],
            run_count=m["run_count"],
            created_ms=m["created_ms"],
            updated_ms=m["updated_ms"],
            version=m["version"],
            next_event_id=m["next_event_id"],
            last_hash=m["last_hash"],
        )

    async def get(self, shard_id: int, namespace: str, schedule_id: str) -> ScheduleRecord | None:
        """One schedule row (deleted ones too), or None."""
        s = st.schedules.c
        async with self._store._read() as conn:
            row = (
                await conn.execute(
                    select(st.schedules).where(
                        s.shard_id == shard_id,
                        s.namespace == namespace,
                        s.schedule_id == schedule_id,
                    )
                )
            ).first()
        return self._record(row) if row else None

    async def get_many(self, keys: Sequence[ScheduleKey]) -> dict[ScheduleKey, ScheduleRecord]:
        """The rows of several schedules at once (missing ones are absent from the result)."""
        if not keys:
            return {}
        s = st.schedules.c
        async with self._store._read() as conn:
            rows = await conn.execute(
                select(st.schedules).where(
                    tuple_(s.shard_id, s.namespace, s.schedule_id).in_(list(set(keys)))
                )
            )
            records = [self._record(r) for r in rows]
        return {(r.shard_id, r.namespace, r.schedule_id): r for r in records}

    async def list_schedules(
        self,
        namespace: str,
        *,
        after: str = "",
        limit: int = 100,
        include_deleted: bool = False,
    ) -> list[ScheduleRecord]:
        """Schedules of a namespace ordered by id, those after ``after``, at most ``limit``."""
        s = st.schedules.c
        conditions = [s.namespace == namespace, s.schedule_id > after]
        if not include_deleted:
            conditions.append(s.status == "active")
        async with self._store._read() as conn:
            rows = await conn.execute(
                select(st.schedules).where(*conditions).order_by(s.schedule_id).limit(limit)
            )
            return [self._record(r) for r in rows]

    async def read_events(
        self, shard_id: int, namespace: str, schedule_id: str, after: int = 0, limit: int = 1000
    ) -> list[ScheduleEvent]:
        """Audit events of a schedule with ``event_id > after``, in order, at most ``limit``."""
        ev = st.schedule_events.c
        async with self._store._read() as conn:
            rows = await conn.execute(
                select(ev.data, ev.hash)
                .where(
                    ev.shard_id == shard_id,
                    ev.namespace == namespace,
                    ev.schedule_id == schedule_id,
                    ev.event_id > after,
                )
                .order_by(ev.event_id)
                .limit(limit)
            )
            return [decode_schedule_event(data, hash_hex) for data, hash_hex in rows]

    async def latest_runs(
        self, keys: Sequence[tuple[int, str, str]]
    ) -> dict[tuple[str, str], tuple[str, str]]:
        """For ``(shard_id, namespace, workflow_id)`` keys: ``(namespace, workflow_id) ->
        (run_id, status)`` of the running run, else the latest one, of the ids that exist."""
        if not keys:
            return {}
        e = t.executions.c
        async with self._store._read() as conn:
            rows = await conn.execute(
                select(e.namespace, e.workflow_id, e.run_id, e.status, e.start_time_ms).where(
                    tuple_(e.shard_id, e.namespace, e.workflow_id).in_(list(set(keys)))
                )
            )
            found: dict[tuple[str, str], tuple[str, str, int]] = {}
            for namespace, workflow_id, run_id, status, started in rows:
                key = (namespace, workflow_id)
                rank = (status == "running", started)
                current = found.get(key)
                if current is None or rank > (current[1] == "running", current[2]):
                    found[key] = (run_id, status, started)
        return {k: (v[0], v[1]) for k, v in found.items()}

    async def run_statuses(
        self, keys: Sequence[tuple[int, str]]
    ) -> dict[str, tuple[str, int | None]]:
        """``run_id -> (status, close_time_ms)`` for ``(shard_id, run_id)`` keys that exist."""
        if not keys:
            return {}
        e = t.executions.c
        async with self._store._read() as conn:
            rows = await conn.execute(
                select(e.run_id, e.status, e.close_time_ms).where(
                    tuple_(e.shard_id, e.run_id).in_(list(set(keys)))
                )
            )
            return {r[0]: (r[1], r[2]) for r in rows}

    async def remove_timer(self, shard_id: int, timer_key: str) -> None:
        """Delete a timer row that has no schedule any more."""
        async with self._store._write_txn() as conn:
            await conn.execute(self._timer_delete, {"k_shard": shard_id, "k_key": timer_key})

    # ------------------------------------------------------------------ the write

    async def deliver(self, timers: Sequence[TimerRecord], notices: Sequence[str] = ()) -> None:
        """Insert message timers into (other servers') shards; one already there is kept (a
        message delivered twice is one message). ``notices`` wake the shards' owners
        (PostgreSQL NOTIFY)."""
        if not timers:
            return
        if self._store.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
        statement = upsert(t.timers).on_conflict_do_nothing(
            index_elements=[t.timers.c.shard_id, t.timers.c.timer_key]
        )
        async with self._store._write_txn() as conn:
            await conn.execute(statement, [SqlStore._timer_row(x) for x in timers])
            if notices:
                await self._store._notify_txn(conn, list(notices))

    async def write(
        self,
        writes: Sequence[ScheduleWrite],
        runs: Sequence[ExecutionWrite] = (),
        fences: Mapping[int, int] | None = None,
        notices: Sequence[str] = (),
    ) -> None:
        """Commit schedule changes and the runs their fires start, all or nothing.

        Args:
            writes: At most one per schedule.
            runs: Executions to create (or change) in the same transaction.
            fences: ``shard_id -> range_id`` of every shard written (the schedules' and the
                runs'); all must still be current.
            notices: Wake-ups for other servers (PostgreSQL NOTIFY, sent at commit).

        Raises:
            ConditionFailedError: A schedule changed since it was read (or, on create, exists),
                or a run's workflow id is running already. Nothing was written.
            ShardOwnershipLostError: A fencing token is stale. Nothing was written.
        """
        async with self._store._write_txn() as conn:
            if fences:
                await self._store._check_fences_txn(conn, dict(fences))
            await self._write_schedules_txn(conn, writes)
            await self._write_runs_txn(conn, runs)
            if notices:
                await self._store._notify_txn(conn, list(notices))

    async def _write_schedules_txn(
        self, conn: AsyncConnection, writes: Sequence[ScheduleWrite]
    ) -> None:
        if not writes:
            return
        ordered = sorted(
            writes, key=lambda w: (w.record.shard_id, w.record.namespace, w.record.schedule_id)
        )
        creates = [w for w in ordered if w.create]
        updates = [w for w in ordered if not w.create]
        if creates:
            await conn.execute(
                insert(st.schedules),
                [
                    {
                        "shard_id": w.record.shard_id,
                        "namespace": w.record.namespace,
                        "schedule_id": w.record.schedule_id,
                        **_row_values(w.record),
                    }
                    for w in creates
                ],
            )
        if updates:
            params = [
                {
                    "k_shard": w.record.shard_id,
                    "k_namespace": w.record.namespace,
                    "k_schedule": w.record.schedule_id,
                    "k_version": w.expected_version,
                    **{f"v_{k}": v for k, v in _row_values(w.record).items()},
                }
                for w in updates
            ]
            result = await conn.execute(self._update_statement, params)
            if result.rowcount != len(updates):
                raise ConditionFailedError(
                    f"{len(updates) - (result.rowcount or 0)} of {len(updates)} schedules "
                    "changed since they were read"
                )
        events = [
            {
                "shard_id": w.record.shard_id,
                "namespace": w.record.namespace,
                "schedule_id": w.record.schedule_id,
                "event_id": event.event_id,
                "event_type": event.event_type,
                "event_time_ms": int(event.event_time.timestamp() * 1000),
                "identity": event.identity,
                "data": data.decode(),
                "hash": event.hash,
            }
            for w in ordered
            for event, data in zip(w.events, w.event_data, strict=True)
        ]
        if events:
            await self._insert_txn(conn, st.schedule_events, events)
        cleared = [
            {"k_shard": w.record.shard_id, "k_key": w.timer_key} for w in ordered if w.timer is None
        ]
        if cleared:
            await conn.execute(self._timer_delete, cleared)
        armed = [SqlStore._timer_row(w.timer) for w in ordered if w.timer is not None]
        if armed:  # one upsert per fire timer instead of a delete and an insert
            await conn.execute(self._timer_upsert, armed)
        messages = [SqlStore._timer_row(m) for w in ordered for m in w.messages]
        if messages:
            await self._insert_txn(conn, t.timers, messages)

    @staticmethod
    async def _insert_txn(conn: AsyncConnection, table: Any, rows: list[dict[str, Any]]) -> None:
        """Insert many rows with one ``executemany`` (psycopg pipelines it; SQLite loops in
        C). Multi-row ``VALUES`` statements were measured slower on both: SQLAlchemy and
        psycopg spend more time compiling and parsing them than the round trips cost."""
        await conn.execute(insert(table), rows)

    async def _write_runs_txn(self, conn: AsyncConnection, runs: Sequence[ExecutionWrite]) -> None:
        simple: list[ExecutionWrite] = []
        for run in runs:
            if run.create is not None and not (run.also or run.tasks_update or run.tasks_delete):
                simple.append(run)
            else:
                await self._store._write_execution_txn(conn, run)
        if not simple:
            return
        executions = []
        events = []
        for run in simple:
            state, create = run.state, run.create
            if create is None:
                continue
            executions.append(
                {
                    "shard_id": run.shard_id,
                    "run_id": run.run_id,
                    "namespace": run.namespace,
                    "workflow_id": run.workflow_id,
                    "workflow_type": create.workflow_type,
                    "task_queue": create.task_queue,
                    "start_time_ms": create.start_time_ms,
                    "status": state.status,
                    "close_time_ms": None,
                    "next_event_id": state.next_event_id,
                    "last_hash": run.last_hash,
                    "state": encode_state(state).decode(),
                    "sticky_worker": run.sticky_worker if run.set_sticky else None,
                }
            )
            for event, data in zip(run.events, run.event_data, strict=True):
                events.append(
                    {
                        "shard_id": run.shard_id,
                        "run_id": run.run_id,
                        "event_id": event.event_id,
                        "event_type": event.event_type,
                        "event_time_ms": int(event.event_time.timestamp() * 1000),
                        "data": data.decode(),
                        "hash": event.hash,
                        "writer": run.writer or None,
                        "range_id": run.range_id,
                    }
                )
        await self._insert_txn(conn, t.executions, executions)
        if events:
            await self._insert_txn(conn, t.events, events)
        tasks = [SqlStore._task_row(task) for run in simple for task in run.tasks_insert]
        if tasks:
            await self._insert_txn(conn, t.tasks, tasks)
        timers = [SqlStore._timer_row(timer) for run in simple for timer in run.timers_insert]
        if timers:
            await self._insert_txn(conn, t.timers, timers)
