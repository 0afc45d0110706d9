"""The rows of a group-commit batch, gathered by kind and sent with one call per kind.

A batch's writes (``ExecutionWrite``) each bring an execution row, events and outbox rows.
They are gathered by kind — compare-and-swap updates, execution inserts, events, purges,
deletes by key, task updates, inserts — and each kind is one ``executemany`` (inside the
batch's PostgreSQL pipeline; on SQLite one hop to aiosqlite's thread instead of one per row).
The order of kinds is the order a single write needs (a closing write purges the run's outbox
before inserting what follows the close), and the writes of a batch are of different runs, so
their rows never meet; a batch with two writes of one run sends them one after the other.

On PostgreSQL each kind is one statement whose only parameter is its rows as one JSON array
(``json_to_recordset``; see :meth:`DriverConnection.submit_rows`): psycopg's cost per
statement parameter, not the database, was most of what a row cost. The compare-and-swaps are
one ``UPDATE … FROM json_to_recordset(…) WHERE next_event_id = expected RETURNING`` and the
guarded creates one ``INSERT … SELECT … WHERE NOT EXISTS … RETURNING``; :meth:`BatchRows.check`
names the writes whose keys did not come back. (Per-parameter ``VALUES`` lists and
``unnest(arrays)`` were tried before: both cost more in psycopg than they saved.) On SQLite, in
process, each kind is one ``executemany`` and each compare-and-swap its own statement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from cadenza.history import _tables as t
from cadenza.history._driver import DriverConnection, DriverSql, Submitted
from cadenza.history._errors import ConditionFailedError
from cadenza.history._records import ExecutionWrite, TaskRecord, TimerRecord
from cadenza.history._state import encode_state

RowOf = Callable[[Any], dict[str, Any]]


def _columns(table: Table) -> list[str]:
    return [c.name for c in table.columns]


def _insert_if_id_unused(table: Table) -> DriverSql:
    # Typed parameters: in ``INSERT … SELECT`` PostgreSQL cannot infer a NULL's type.
    names = _columns(table)

    def text(dialect: Any) -> str:
        values = ", ".join(
            f"CAST(:{n} AS {table.c[n].type.compile(dialect=dialect)})" for n in names
        )
        return (
            f"INSERT INTO {table.name} ({', '.join(names)}) SELECT {values} WHERE NOT EXISTS"
            f" (SELECT 1 FROM {table.name} WHERE shard_id = :shard_id"
            " AND namespace = :namespace AND workflow_id = :workflow_id)"
        )

    return DriverSql(text(sqlite_dialect.dialect()), postgresql=text(pg_dialect.dialect()))


INSERT_EXECUTION_IF_ID_UNUSED = _insert_if_id_unused(t.executions)
# A write that lost its compare-and-swap would collide with the winner's event ids; skipping
# the row instead of failing lets the batch's check name the loser (and the others go again
# without it). A winner never meets a conflict: ids at or above its expected one cannot exist.
_SKIP_CONFLICT = "ON CONFLICT DO NOTHING"
_EXECUTION_COLUMNS = tuple(_columns(t.executions))
_EVENT_COLUMNS = tuple(_columns(t.events))
_TASK_COLUMNS = tuple(_columns(t.tasks))
TIMER_COLUMNS = tuple(_columns(t.timers))
_CAS = (
    "UPDATE executions SET status = :status, close_time_ms = :close_time_ms,"
    " next_event_id = :next_event_id, last_hash = :last_hash, state = :state{sticky}"
    " WHERE shard_id = :shard_id AND run_id = :run_id AND next_event_id = :expected"
)
_UPDATE_EXECUTION = DriverSql(_CAS.format(sticky=""))
_UPDATE_EXECUTION_STICKY = DriverSql(_CAS.format(sticky=", sticky_worker = :sticky_worker"))

# PostgreSQL: one statement per kind, its rows in one JSON parameter.
_PG_CAS = (
    "UPDATE executions AS x SET status = v.status, close_time_ms = v.close_time_ms,"
    " next_event_id = v.next_event_id, last_hash = v.last_hash, state = v.state,"
    " sticky_worker = CASE WHEN v.set_sticky THEN v.sticky_worker ELSE x.sticky_worker END"
    " FROM json_to_recordset(%s::json) AS v(shard_id integer, run_id text, expected integer,"
    " status text, close_time_ms bigint, next_event_id integer, last_hash text, state text,"
    " sticky_worker text, set_sticky boolean)"
    " WHERE x.shard_id = v.shard_id AND x.run_id = v.run_id AND x.next_event_id = v.expected"
    " RETURNING x.shard_id, x.run_id"
)
_PG_GUARDED_CREATE = (
    f"INSERT INTO executions ({', '.join(_EXECUTION_COLUMNS)})"
    f" SELECT {', '.join('v.' + c for c in _EXECUTION_COLUMNS)}"
    " FROM json_populate_recordset(NULL::executions, %s::json) AS v WHERE NOT EXISTS"
    " (SELECT 1 FROM executions x WHERE x.shard_id = v.shard_id"
    " AND x.namespace = v.namespace AND x.workflow_id = v.workflow_id)"
    " RETURNING shard_id, run_id"
)


def distinct_runs(writes: Sequence[ExecutionWrite]) -> bool:
    """True if no two writes are of the same run (then their rows cannot meet)."""
    return len({(w.shard_id, w.run_id) for w in writes}) == len(writes)


class BatchRows:
    """Gathers the rows of a batch by kind and writes each kind with one statement."""

    def __init__(
        self,
        driver: DriverConnection,
        task_row: Callable[[TaskRecord], dict[str, Any]],
        timer_row: Callable[[TimerRecord], dict[str, Any]],
        task_update: Callable[[DriverConnection, int, Any], Any],
    ) -> None:
        self._driver = driver
        self._task_row = task_row
        self._timer_row = timer_row
        self._task_update = task_update
        self._cas: list[tuple[Submitted, ExecutionWrite]] = []
        # PostgreSQL: one statement for many writes; the keys it returns are the winners.
        self._cas_sets: list[tuple[Submitted, list[ExecutionWrite]]] = []

    async def send(self, writes: Sequence[ExecutionWrite]) -> None:
        """Send every row of ``writes`` (inside the batch's transaction and pipeline)."""
        creates: list[dict[str, Any]] = []
        guarded: list[tuple[dict[str, Any], ExecutionWrite]] = []
        updates: list[tuple[dict[str, Any], ExecutionWrite]] = []
        events: list[dict[str, Any]] = []
        purges: list[dict[str, Any]] = []
        task_deletes: list[dict[str, Any]] = []
        timer_deletes: list[dict[str, Any]] = []
        tasks: list[dict[str, Any]] = []
        timers: list[dict[str, Any]] = []
        for w in writes:
            state = w.state
            row = {
                "shard_id": w.shard_id,
                "run_id": w.run_id,
                "status": state.status,
                "close_time_ms": (
                    int(state.close_time.timestamp() * 1000) if state.close_time else None
                ),
                "next_event_id": state.next_event_id,
                "last_hash": w.last_hash,
                "state": encode_state(state).decode(),
                "sticky_worker": w.sticky_worker if w.set_sticky else None,
            }
            if w.create is not None:
                row.update(
                    namespace=w.namespace,
                    workflow_id=w.workflow_id,
                    workflow_type=w.create.workflow_type,
                    task_queue=w.create.task_queue,
                    start_time_ms=w.create.start_time_ms,
                )
                if w.create.only_if_id_unused:
                    guarded.append((row, w))
                else:
                    creates.append(row)
            else:
                row["expected"] = w.expected_next_event_id
                updates.append((row, w))
            writer = w.writer or None
            for ev, data in zip(w.events, w.event_data, strict=True):
                events.append(
                    {
                        "shard_id": w.shard_id,
                        "run_id": w.run_id,
                        "event_id": ev.event_id,
                        "event_type": ev.event_type,
                        "event_time_ms": int(ev.event_time.timestamp() * 1000),
                        "data": data.decode(),
                        "hash": ev.hash,
                        "writer": writer,
                        "range_id": w.range_id,
                    }
                )
            if w.purge_outbox:
                # The run closed: nothing of its outbox may fire or be dispatched any more
                # (which also removes whatever the write would delete by key).
                purges.append({"shard_id": w.shard_id, "run_id": w.run_id})
            else:
                task_deletes += [
                    {"shard_id": w.shard_id, "task_id": k} for k in sorted(w.tasks_delete)
                ]
                timer_deletes += [
                    {"shard_id": w.shard_id, "timer_key": k} for k in sorted(w.timers_delete)
                ]
            tasks += [self._task_row(task) for task in w.tasks_insert]
            timers += [self._timer_row(timer) for timer in w.timers_insert]
        # Updates before inserts: a continue-as-new closes the old run in the same batch as it
        # creates the new one, and only one run of a workflow id may be running.
        await self._send_updates(updates)
        await self._driver.insert_rows("executions", _EXECUTION_COLUMNS, creates)
        await self._send_guarded(guarded)
        await self._driver.insert_rows("events", _EVENT_COLUMNS, events, _SKIP_CONFLICT)
        await self._driver.delete_rows("tasks", "run_id", purges)
        await self._driver.delete_rows("timers", "run_id", purges)
        await self._driver.delete_rows("tasks", "task_id", task_deletes)
        for w in writes:
            for change in w.tasks_update:
                await self._task_update(self._driver, w.shard_id, change)
        await self._driver.insert_rows("tasks", _TASK_COLUMNS, tasks)
        await self._driver.delete_rows("timers", "timer_key", timer_deletes)
        await self._driver.insert_rows("timers", TIMER_COLUMNS, timers)

    async def _send_updates(self, updates: list[tuple[dict[str, Any], ExecutionWrite]]) -> None:
        if not updates:
            return
        if not self._driver.postgresql:
            for row, w in updates:
                statement = _UPDATE_EXECUTION_STICKY if w.set_sticky else _UPDATE_EXECUTION
                self._cas.append((await self._driver.submit(statement, row), w))
            return
        for row, w in updates:
            row["set_sticky"] = w.set_sticky
        submitted = await self._driver.submit_rows(_PG_CAS, [row for row, _ in updates])
        self._cas_sets.append((submitted, [w for _, w in updates]))

    async def _send_guarded(self, guarded: list[tuple[dict[str, Any], ExecutionWrite]]) -> None:
        if not guarded:
            return
        if not self._driver.postgresql:
            for row, w in guarded:
                self._cas.append((await self._driver.submit(INSERT_EXECUTION_IF_ID_UNUSED, row), w))
            return
        # Two starts of one id in one statement would both pass NOT EXISTS (and collide on
        # the unique index): a repeated id goes in a statement of its own, after.
        first: list[tuple[dict[str, Any], ExecutionWrite]] = []
        again: list[tuple[dict[str, Any], ExecutionWrite]] = []
        seen: set[tuple[int, str, str]] = set()
        for row, w in guarded:
            key = (w.shard_id, w.namespace, w.workflow_id)
            (again if key in seen else first).append((row, w))
            seen.add(key)
        for group in [first] + [[item] for item in again]:
            submitted = await self._driver.submit_rows(
                _PG_GUARDED_CREATE, [row for row, _ in group]
            )
            self._cas_sets.append((submitted, [w for _, w in group]))

    async def check(self) -> None:
        """Raise :class:`ConditionFailedError` if a write lost its compare-and-swap (call it
        once the statements' results are in)."""
        lost = [w for submitted, w in self._cas if submitted.rowcount != 1]
        for submitted, group in self._cas_sets:
            won = {(int(shard_id), str(run_id)) for shard_id, run_id in await submitted.rows()}
            lost += [w for w in group if (w.shard_id, w.run_id) not in won]
        if not lost:
            return
        w = lost[0]
        reason = (
            f"workflow {w.workflow_id!r} has an execution already"
            if w.create is not None
            else f"run {w.run_id}: next_event_id moved past {w.expected_next_event_id}"
        )
        more = f" (and {len(lost) - 1} more writes of the batch)" if len(lost) > 1 else ""
        raise ConditionFailedError(
            reason + more, lost_runs=frozenset((x.shard_id, x.run_id) for x in lost)
        )
