"""The SQL store of the event log: SQLite (aiosqlite, WAL) and PostgreSQL (psycopg 3).

This module is the only place that executes SQL against the event log. The same code runs on
both databases through SQLAlchemy 2 Core; the differences are kept in a few places:

* SQLite allows one writer at a time, so writes take an in-process lock and start with
  ``BEGIN IMMEDIATE`` (a deferred transaction that reads and then writes could fail to upgrade
  its lock); reads never block on writes thanks to WAL.
* PostgreSQL claims tasks with ``FOR UPDATE SKIP LOCKED``, and the fencing check reads the
  shard row ``FOR SHARE`` so that a concurrent takeover (which updates that row) waits for, or
  invalidates, the write.

Driver exceptions are translated into :class:`StoreError` subclasses in :func:`_translated`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, Protocol

import orjson
import psycopg
from sqlalchemy import (
    and_,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool
from sqlalchemy.util import greenlet_spawn

from cadenza.history import _tables as t
from cadenza.history._batch_write import TIMER_COLUMNS, BatchRows, distinct_runs
from cadenza.history._driver import DriverConnection, DriverSql
from cadenza.history._errors import (
    ConditionFailedError,
    InvalidArgumentError,
    ShardOwnershipLostError,
    StoreError,
    StoreUnavailableError,
)
from cadenza.history._events import HistoryEvent, decode_event
from cadenza.history._group_commit import GroupCommitter
from cadenza.history._records import (
    ExecutionRecord,
    ExecutionSummary,
    ExecutionWrite,
    TaskChange,
    TaskRecord,
    TimerRecord,
)
from cadenza.history._state import decode_state

# The hot path's statements, run on the driver connection (see ``_driver.py``). Each column
# list is its table's column order, so positional rows map the same way as SQLAlchemy rows.
_EXECUTION_COLUMNS = [c.name for c in t.executions.columns]
_TASK_COLUMNS = [c.name for c in t.tasks.columns]
_E = _EXECUTION_COLUMNS.index
_T = _TASK_COLUMNS.index


_SQL_GET_EXECUTION = DriverSql(
    f"SELECT {', '.join(_EXECUTION_COLUMNS)} FROM executions"
    " WHERE shard_id = :shard_id AND run_id = :run_id"
)
_SQL_LATEST_RUN = DriverSql(
    f"SELECT {', '.join(_EXECUTION_COLUMNS)} FROM executions"
    " WHERE shard_id = :shard_id AND namespace = :namespace AND workflow_id = :workflow_id"
    " ORDER BY (status = 'running') DESC, start_time_ms DESC LIMIT 1"
)
_SQL_READ_EVENTS = DriverSql(
    "SELECT data, hash FROM events"
    " WHERE shard_id = :shard_id AND run_id = :run_id AND event_id > :after"
    " AND event_id <= :up_to ORDER BY event_id LIMIT :limit"
)
_SQL_GET_TASK = DriverSql(
    f"SELECT {', '.join(_TASK_COLUMNS)} FROM tasks WHERE shard_id = :shard_id AND task_id = :task_id"
)
# FOR KEY SHARE: a takeover (SELECT … FOR UPDATE, then range_id + 1) waits for this write or
# invalidates it, while lease renewals (non-key updates) run freely. SQLite has one writer.
_SQL_FENCES = DriverSql(
    "SELECT shard_id, range_id FROM shards"
    " WHERE shard_id IN (SELECT value FROM json_each(:shard_ids))",
    postgresql="SELECT shard_id, range_id FROM shards WHERE shard_id = ANY(:shard_ids)"
    " FOR KEY SHARE",
)
_SQL_REGISTERED_TYPES = DriverSql(
    "SELECT type_name FROM worker_registrations"
    " WHERE namespace = :namespace AND task_queue = :task_queue AND kind = :kind"
)
_SQL_NOTIFY = DriverSql("SELECT pg_notify('cadenza', :payload)")
# Sent first in every hot write transaction on PostgreSQL (in its pipeline: no round trip of its
# own). Each of its statements touches a handful of rows by key, one batch's rows given as JSON;
# the plan for that is an index probe per row. psycopg prepares a statement after a few runs and
# PostgreSQL then keeps one generic plan for the session, planned with the table sizes of that
# moment: on a new cluster the tables are nearly empty, so it chose a hash join over a scan of
# the whole table, and kept it as the table grew (a workflow of three activities read about
# 3,000 rows by sequential scans, so cost grew with every workflow stored). With scans and
# hash/merge joins off for these transactions, every plan is an index nested loop at any size.
_SQL_KEYED_PLANS = DriverSql(
    "SELECT set_config('enable_seqscan', 'off', true),"
    " set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)"
)


def _claim_sql(workflow: bool, by_namespace: bool, by_shards: bool) -> DriverSql:
    """The claiming UPDATE for one shape of claim: the oldest visible, unleased tasks of a
    queue (not held for another worker's sticky cache), leased in one statement."""
    filters = ["kind = :claim_kind", "task_queue = :claim_queue"]
    if by_namespace:
        filters.append("namespace = :claim_namespace")
    sqlite_filters = list(filters)
    if by_shards:
        filters.append("shard_id = ANY(:claim_shards)")
        sqlite_filters.append("shard_id IN (SELECT value FROM json_each(:claim_shards))")
    seen = (
        ", seen_up_to = (SELECT e.next_event_id - 1 FROM executions e"
        " WHERE e.shard_id = tasks.shard_id AND e.run_id = tasks.run_id)"
        if workflow
        else ""
    )

    def text(where: list[str], lock: str) -> str:
        return (
            "UPDATE tasks SET lease_owner = :claim_owner, lease_until_ms = :claim_until,"
            f" started_at_ms = :claim_now{seen}"
            " WHERE (shard_id, task_id) IN (SELECT shard_id, task_id FROM tasks"
            f" WHERE {' AND '.join(where)} AND lease_owner IS NULL"
            " AND visible_at_ms <= :claim_now AND (sticky_worker IS NULL"
            " OR sticky_worker = :claim_owner OR sticky_until_ms <= :claim_now)"
            f" ORDER BY visible_at_ms LIMIT :claim_limit{lock})"
            f" RETURNING {', '.join(_TASK_COLUMNS)}"
        )

    return DriverSql(text(sqlite_filters, ""), postgresql=text(filters, " FOR UPDATE SKIP LOCKED"))


@functools.lru_cache(maxsize=64)
def _task_update_sql(columns: tuple[str, ...]) -> DriverSql:
    unknown = set(columns) - set(_TASK_COLUMNS)
    if unknown:
        raise InvalidArgumentError("tasks_update", f"unknown task columns {sorted(unknown)}")
    assignments = ", ".join(f"{c} = :{c}" for c in columns)
    return DriverSql(
        f"UPDATE tasks SET {assignments} WHERE shard_id = :shard_id AND task_id = :task_id"
    )


def _visible_order(task: TaskRecord) -> int:
    return task.visible_at_ms or 0


_CLAIM_SQL = {
    (w, n, s): _claim_sql(w, n, s)
    for w in (False, True)
    for n in (False, True)
    for s in (False, True)
}
_NO_LIMIT = 2**31 - 1  # event ids are 32-bit integers

log = logging.getLogger("cadenza.history.store")

_PG_COMMITS_IN_FLIGHT = 2
"""Group-commit transactions that may run at once on PostgreSQL. The second starts only when
one commit cannot keep up (see ``GroupCommitter``): one at a time makes the biggest batches.
On the 2-core benchmark machine one queue instead of two lanes by shard (each with its own
commit) took 2 servers + 2 workers from 4.7 to 2.7 statements per workflow."""

_CLUSTER_CREATE_LOCK_ID = 0x43414446  # "CADF"; migrations use "CADE"
_CLOSE_DRAIN_S = 5.0
_PING_AFTER_IDLE_S = 1.0


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch."""
    return int(time.time() * 1000)


class HistoryStore(Protocol):
    """What the engine needs from the event log's database. ``SqlStore`` implements it;
    metrics, retries and fault injection wrap the same protocol."""

    dialect: str

    async def close(self) -> None: ...
    async def migrate(self) -> list[int]: ...
    async def ensure_cluster(self, shard_count: int) -> int: ...
    async def acquire_shard(
        self, shard_id: int, owner: str, lease_until_ms: int, now: int
    ) -> int | None: ...
    async def renew_shards(
        self, owner: str, ranges: dict[int, int], lease_until_ms: int
    ) -> set[int]: ...
    async def release_shards(self, owner: str, shard_ids: Sequence[int]) -> None: ...
    async def terminate_sessions(self, owner: str) -> int: ...
    async def publish(self, notices: Sequence[str]) -> None: ...
    async def shard_table(self) -> list[dict[str, Any]]: ...
    async def heartbeat_member(
        self, owner: str, address: str, now: int, polling: Sequence[str] = ()
    ) -> None: ...
    async def live_members(self, since_ms: int) -> dict[str, str]: ...
    async def live_member_queues(self, since_ms: int) -> dict[str, tuple[str, frozenset[str]]]: ...
    async def remove_member(self, owner: str) -> None: ...
    async def get_execution(self, shard_id: int, run_id: str) -> ExecutionRecord | None: ...
    async def latest_run(
        self, shard_id: int, namespace: str, workflow_id: str
    ) -> ExecutionRecord | None: ...
    async def write(self, change: ExecutionWrite) -> None: ...
    async def read_events(
        self,
        shard_id: int,
        run_id: str,
        after: int = 0,
        up_to: int | None = None,
        limit: int = 1000,
    ) -> list[HistoryEvent]: ...
    async def claim_tasks(
        self,
        *,
        kind: str,
        namespace: str,
        task_queue: str,
        owner: str,
        now: int,
        lease_ms: int,
        limit: int = 1,
        timers_for: Callable[[TaskRecord], list[TimerRecord]] | None = None,
    ) -> list[TaskRecord]: ...
    async def get_task(self, shard_id: int, task_id: str) -> TaskRecord | None: ...
    async def record_heartbeat(
        self, shard_id: int, task_id: str, attempt: int, details: Any, now: int
    ) -> TaskRecord | None: ...
    async def delete_task(self, shard_id: int, task_id: str) -> None: ...
    async def next_timer_ms(self, shard_ids: Sequence[int]) -> int | None: ...
    async def due_timers(
        self, shard_ids: Sequence[int], now: int, limit: int
    ) -> list[TimerRecord]: ...
    async def next_visible_task_ms(
        self, kind: str, namespace: str, task_queue: str
    ) -> int | None: ...
    async def count_ready_tasks(self, now: int) -> int: ...
    async def next_held_task_ms(self, now: int) -> int | None: ...
    async def list_executions(
        self,
        *,
        namespace: str,
        status: str | None = None,
        workflow_type: str | None = None,
        workflow_id: str | None = None,
        started_after_ms: int | None = None,
        started_before_ms: int | None = None,
        limit: int = 100,
    ) -> list[ExecutionSummary]: ...
    async def register_types(
        self, namespace: str, task_queue: str, kind: str, names: Sequence[str], now: int
    ) -> None: ...
    async def registered_types(self, namespace: str, task_queue: str, kind: str) -> set[str]: ...


def normalize_url(url: str) -> str:
    """Accept plain ``sqlite:///path`` and ``postgresql://…`` URLs and pick our drivers."""
    if url.startswith("sqlite+aiosqlite://") or url.startswith("postgresql+psycopg://"):
        return url
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise InvalidArgumentError(
        "database_url",
        f"unsupported database URL {url.split(':', 1)[0]!r}: use sqlite:/// or postgresql://",
    )


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except StoreError:
        raise
    except IntegrityError as exc:
        raise ConditionFailedError(f"constraint violated: {exc.orig}") from exc
    except DBAPIError as exc:
        raise _driver_error(exc.orig, isinstance(exc, OperationalError)) from exc
    except (psycopg.Error, sqlite3.Error) as exc:
        # Raised by the statements run on the driver connection (``_driver.py``).
        if isinstance(exc, psycopg.IntegrityError | sqlite3.IntegrityError):
            raise ConditionFailedError(f"constraint violated: {exc}") from exc
        operational = isinstance(exc, psycopg.OperationalError | sqlite3.OperationalError)
        raise _driver_error(exc, operational) from exc
    except (TimeoutError, OSError) as exc:
        raise StoreUnavailableError(f"database unreachable: {exc}") from exc


def _driver_error(exc: BaseException, operational: bool) -> StoreError:
    # Deadlock and serialization failures: the transaction wrote nothing; the caller re-reads
    # and tries again, exactly as after a lost compare-and-swap.
    if getattr(exc, "sqlstate", None) in ("40P01", "40001"):
        return ConditionFailedError(f"transaction aborted, retry: {exc}")
    if operational:
        return StoreUnavailableError(f"database unavailable: {exc}")
    return StoreError(f"database error: {exc}")


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class _ReleasingSqliteConnection(sqlite3.Connection):
    """A sqlite3 connection that rolls back its open transaction when it is closed.

    sqlite3 closes with ``sqlite3_close_v2``: while a cursor still holds an unfinished
    statement, the database connection only becomes a "zombie" and keeps its transaction,
    and with it the write lock, until that statement is finalized. A statement interrupted
    by a cancelled task (SQLAlchemy then invalidates, that is closes, the connection) stays
    referenced by the cancellation's traceback until the garbage collector happens to
    collect it, and in the meantime every other writer gets "database is locked". Rolling
    back first aborts such statements and releases the lock at once.
    """

    def close(self) -> None:
        try:
            if self.in_transaction:
                self.rollback()
        except sqlite3.Error:
            log.debug("rollback before close failed", exc_info=True)
        super().close()


class SqlStore:
    """:class:`HistoryStore` on SQLAlchemy Core (async), for SQLite and PostgreSQL.

    Args:
        url: ``sqlite:///path.db``, ``sqlite:///:memory:`` or ``postgresql://user@host/db``.
        pool_size: Connections kept open (PostgreSQL; 16: a busy server holds about a dozen
            at once, and one above the pool is a new backend for each use). Up to
            ``pool_size // 4`` more open when needed and close when returned.
        connect_timeout: Seconds to wait for a connection.
        commits_in_flight: Group-commit transactions that may run at once (default 1 on
            SQLite, which has one writer, and 2 on PostgreSQL; see
            :data:`_PG_COMMITS_IN_FLIGHT`).
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 16,
        connect_timeout: float = 10.0,
        idle_txn_timeout: float = 10.0,
        application_name: str = "cadenza",
        commits_in_flight: int | None = None,
    ) -> None:
        self.url = normalize_url(url)
        self.dialect = "sqlite" if self.url.startswith("sqlite") else "postgresql"
        self._write_lock = asyncio.Lock()
        # When a connection was last found dead: connections used before then are pinged.
        self._ping_before: float | None = None
        self._shared_connection = False
        self._closed = False
        self._in_use = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._committer = GroupCommitter(
            self._write_batch,
            max_in_flight=commits_in_flight
            or (1 if url.startswith("sqlite") else _PG_COMMITS_IN_FLIGHT),
        )
        if self.dialect == "sqlite":
            memory = ":memory:" in self.url or self.url.endswith("sqlite+aiosqlite://")
            kwargs: dict[str, Any] = {
                "connect_args": {
                    "timeout": connect_timeout,
                    "factory": _ReleasingSqliteConnection,
                }
            }
            if memory:
                # One connection shared by everyone: reads must queue behind writes too.
                kwargs["poolclass"] = StaticPool
                self._shared_connection = True
            self._engine: AsyncEngine = create_async_engine(self.url, **kwargs)
            self._install_sqlite_hooks(memory)
        else:
            self._engine = create_async_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size // 4,
                connect_args={
                    "connect_timeout": int(connect_timeout),
                    "application_name": application_name[:63],
                    # A peer that vanished without closing the socket is noticed in ~1 min.
                    "keepalives": 1,
                    "keepalives_idle": 30,
                    "keepalives_interval": 10,
                    "keepalives_count": 3,
                    # A process paused in the middle of a transaction must not hold row locks
                    # (and block the shard's new owner) for longer than this.
                    "options": f"-c idle_in_transaction_session_timeout={int(idle_txn_timeout * 1000)}",
                },
            )

            self._install_ping_when_idle()

    def _install_ping_when_idle(self) -> None:
        """A pooled connection the server ended (a restart, a failover, a peer that took our
        shards while we were frozen) is replaced before use, not failed on: one that sat idle
        for more than a second is pinged when checked out (and dropped if the ping fails). A
        connection in steady use is not: a ping per checkout would be a round trip per
        statement of the hot path."""
        sync_engine = self._engine.sync_engine

        @event.listens_for(sync_engine, "connect")
        def _fresh(_dbapi_conn: Any, record: Any) -> None:
            record.info["cadenza_used"] = time.monotonic()

        @event.listens_for(sync_engine, "checkin")
        def _used(_dbapi_conn: Any, record: Any) -> None:
            if record is not None:
                record.info["cadenza_used"] = time.monotonic()

        @event.listens_for(sync_engine, "checkout")
        def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
            used = record.info.get("cadenza_used", 0.0)
            suspect = self._ping_before is not None and used <= self._ping_before
            if not suspect and time.monotonic() - used < _PING_AFTER_IDLE_S:
                return
            try:
                sync_engine.dialect.do_ping(dbapi_conn)
            except Exception as exc:
                # The pool discards this connection and checks out (or opens) another.
                raise DisconnectionError(f"pooled connection is gone: {exc}") from exc

    def _install_sqlite_hooks(self, memory: bool) -> None:
        sync_engine = self._engine.sync_engine

        @event.listens_for(sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_conn.cursor()
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=15000")
            cursor.close()

        @event.listens_for(sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            options = conn.get_execution_options()
            if options.get("cadenza_write"):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif not options.get("cadenza_read"):
                conn.exec_driver_sql("BEGIN")

    async def close(self) -> None:
        """Close every pooled connection, once the operations still running have returned
        theirs (at most a few seconds): a connection given back after the pool was disposed
        would stay open until the garbage collector finds it. Later operations fail with
        :class:`StoreUnavailableError`."""
        self._closed = True
        if self._in_use:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout=_CLOSE_DRAIN_S)
        await self._engine.dispose()

    @contextlib.contextmanager
    def _using(self) -> Iterator[None]:
        if self._closed:
            raise StoreUnavailableError("the store is closed")
        self._in_use += 1
        try:
            yield
        finally:
            self._in_use -= 1
            if not self._in_use:
                self._idle.set()

    # ------------------------------------------------------------------ transactions

    @contextlib.asynccontextmanager
    async def _write_txn(self) -> AsyncIterator[AsyncConnection]:
        with self._using(), _translated():
            if self.dialect == "sqlite":
                async with self._write_lock, self._engine.connect() as conn:
                    await conn.execution_options(cadenza_write=True)
                    async with conn.begin():
                        yield conn
            else:
                async with self._engine.begin() as conn:
                    yield conn

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        with self._using(), _translated():
            if self._shared_connection:
                async with self._write_lock, self._engine.connect() as conn:
                    yield conn
            else:
                # Reads run in autocommit: one statement is its own snapshot (what READ
                # COMMITTED gives a statement anyway), and no BEGIN/ROLLBACK round trips.
                async with self._engine.connect() as conn:
                    if self.dialect == "sqlite":
                        await conn.execution_options(cadenza_read=True)
                    else:
                        await conn.execution_options(isolation_level="AUTOCOMMIT")
                    yield conn

    @contextlib.asynccontextmanager
    async def _hot(self, write: bool) -> AsyncIterator[DriverConnection]:
        """A pooled connection's driver for the hot path, without a SQLAlchemy ``Connection``
        (its checkout, events and transaction objects cost more than the statements).

        ``write``: one transaction (``BEGIN IMMEDIATE`` on SQLite, behind the write lock),
        committed when the block ends and rolled back if it raises. Otherwise every statement
        is its own (autocommit) transaction.
        """
        with self._using(), _translated():
            sqlite = self.dialect == "sqlite"
            lock = self._write_lock if sqlite and (write or self._shared_connection) else None
            if lock is not None:
                await lock.acquire()
            try:
                fairy = await self._engine.raw_connection()
                driver = fairy.driver_connection
                healthy = False
                try:
                    if sqlite:
                        if write:
                            await driver.execute("BEGIN IMMEDIATE")
                    elif not write:
                        await driver.set_autocommit(True)
                    try:
                        yield DriverConnection(self.dialect, driver)
                    except BaseException as exc:
                        if isinstance(exc, psycopg.OperationalError):
                            # Maybe every connection of the pool is dead (a restart, a peer
                            # that ended our sessions): check each before its next use.
                            self._ping_before = time.monotonic()
                        # If the rollback fails too, the connection is invalidated below and
                        # the first error is the one reported.
                        try:
                            if not sqlite:
                                await driver.rollback()
                                if not write:
                                    await driver.set_autocommit(False)
                            elif driver.in_transaction:
                                await driver.execute("ROLLBACK")
                        except Exception:
                            log.debug("rollback failed; the connection is discarded", exc_info=True)
                        else:
                            healthy = True
                        raise
                    if write:
                        await (driver.execute("COMMIT") if sqlite else driver.commit())
                    if not sqlite and not write:
                        await driver.set_autocommit(False)
                    healthy = True
                finally:
                    # A connection left in an unknown state (an error in rollback, a cancel in
                    # the middle of a statement) is closed rather than pooled.
                    await greenlet_spawn(fairy.close if healthy else fairy.invalidate)
            finally:
                if lock is not None:
                    lock.release()

    # ------------------------------------------------------------------ schema

    async def migrate(self) -> list[int]:
        """Apply pending migrations; returns the versions applied now."""
        from cadenza.history._migrate import apply_migrations_txn

        async with self._write_txn() as conn:
            return await apply_migrations_txn(conn, self.dialect)

    async def ensure_cluster(self, shard_count: int) -> int:
        """Create the shard rows on first start; return the cluster's fixed shard count."""
        async with self._write_txn() as conn:
            if self.dialect == "postgresql":
                # Servers started together on an empty database: one creates, the others
                # wait here and then read what it created.
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:id)"), {"id": _CLUSTER_CREATE_LOCK_ID}
                )
            row = (
                await conn.execute(
                    select(t.cluster_metadata.c.value).where(
                        t.cluster_metadata.c.key == "shard_count"
                    )
                )
            ).first()
            if row is not None:
                return int(row[0])
            if shard_count < 1:
                raise InvalidArgumentError("shard_count", "must be at least 1")
            await conn.execute(
                insert(t.cluster_metadata).values(key="shard_count", value=str(shard_count))
            )
            await conn.execute(
                insert(t.shards),
                [
                    {"shard_id": i, "range_id": 0, "owner": None, "lease_until_ms": 0}
                    for i in range(shard_count)
                ],
            )
            return shard_count

    # ------------------------------------------------------------------ shards

    async def acquire_shard(
        self, shard_id: int, owner: str, lease_until_ms: int, now: int
    ) -> int | None:
        """Take a shard whose lease expired (or that ``owner`` holds): bump its range_id.

        Returns the new range_id (the fencing token), or None if another owner holds a live
        lease.
        """
        s = t.shards.c
        async with self._write_txn() as conn:
            if self.dialect == "postgresql":
                # A frozen owner may hold the shard row in an open transaction: do not wait
                # for it here; the takeover is tried again next round. FOR UPDATE conflicts with
                # the writers' FOR KEY SHARE: in-flight writes of the old owner finish first.
                await conn.execute(text("SET LOCAL lock_timeout = '1s'"))
                await conn.execute(
                    select(s.shard_id).where(s.shard_id == shard_id).with_for_update()
                )
            result = await conn.execute(
                update(t.shards)
                .where(
                    s.shard_id == shard_id,
                    or_(s.owner.is_(None), s.owner == owner, s.lease_until_ms < now),
                )
                .values(range_id=s.range_id + 1, owner=owner, lease_until_ms=lease_until_ms)
                .returning(s.range_id)
            )
            row = result.first()
            return int(row[0]) if row else None

    async def renew_shards(
        self, owner: str, ranges: dict[int, int], lease_until_ms: int
    ) -> set[int]:
        """Extend the leases of shards still held at the given range_ids; returns those kept."""
        if not ranges:
            return set()
        s = t.shards.c
        async with self._write_txn() as conn:
            result = await conn.execute(
                update(t.shards)
                .where(
                    s.owner == owner,
                    tuple_(s.shard_id, s.range_id).in_(list(ranges.items())),
                )
                .values(lease_until_ms=lease_until_ms)
                .returning(s.shard_id)
            )
            return {int(r[0]) for r in result}

    async def terminate_sessions(self, owner: str) -> int:
        """End every database session of a deposed owner (PostgreSQL): a frozen process must
        not keep row locks that block the shard's takeover. Returns how many were ended."""
        if self.dialect != "postgresql":
            return 0
        async with self._read() as conn:
            result = await conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :owner AND datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                ),
                {"owner": owner[:63]},
            )
            await conn.commit()
            return int(result.scalar() or 0)

    async def release_shards(self, owner: str, shard_ids: Sequence[int]) -> None:
        """Give shards up at once (clean shutdown) so another process can take them."""
        if not shard_ids:
            return
        s = t.shards.c
        async with self._write_txn() as conn:
            await conn.execute(
                update(t.shards)
                .where(s.owner == owner, s.shard_id.in_(list(shard_ids)))
                .values(owner=None, lease_until_ms=0)
            )

    async def shard_table(self) -> list[dict[str, Any]]:
        """Every shard row (id, range_id, owner, lease)."""
        async with self._read() as conn:
            rows = await conn.execute(select(t.shards).order_by(t.shards.c.shard_id))
            return [dict(r._mapping) for r in rows]

    # ------------------------------------------------------------------ members

    async def heartbeat_member(
        self, owner: str, address: str, now: int, polling: Sequence[str] = ()
    ) -> None:
        """Say that this process is alive, where it listens, and which task queues its
        workers are polling (``"kind|namespace|task_queue"``)."""
        m = t.cluster_members.c
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
        queues = _dumps(sorted(polling))
        statement = upsert(t.cluster_members).values(
            owner=owner, address=address, heartbeat_ms=now, started_ms=now, polling=queues
        )
        statement = statement.on_conflict_do_update(
            index_elements=[m.owner],
            set_={
                "heartbeat_ms": statement.excluded.heartbeat_ms,
                "address": address,
                "polling": queues,
            },
        )
        async with self._write_txn() as conn:
            await conn.execute(statement)

    async def live_members(self, since_ms: int) -> dict[str, str]:
        """Members whose last heartbeat is at or after ``since_ms``: owner → address."""
        m = t.cluster_members.c
        async with self._read() as conn:
            rows = await conn.execute(
                select(m.owner, m.address).where(m.heartbeat_ms >= since_ms).order_by(m.owner)
            )
            return {r[0]: r[1] for r in rows}

    async def live_member_queues(self, since_ms: int) -> dict[str, tuple[str, frozenset[str]]]:
        """Members whose last heartbeat is at or after ``since_ms``: owner → its address and
        the task queues its workers poll (as written by :meth:`heartbeat_member`)."""
        m = t.cluster_members.c
        async with self._read() as conn:
            rows = await conn.execute(
                select(m.owner, m.address, m.polling).where(m.heartbeat_ms >= since_ms)
            )
            return {r[0]: (r[1], frozenset(orjson.loads(r[2] or "[]"))) for r in rows}

    async def remove_member(self, owner: str) -> None:
        """Leave the cluster (clean shutdown)."""
        async with self._write_txn() as conn:
            await conn.execute(delete(t.cluster_members).where(t.cluster_members.c.owner == owner))

    # ------------------------------------------------------------------ executions

    @staticmethod
    def _execution(row: Sequence[Any]) -> ExecutionRecord:
        return ExecutionRecord(
            shard_id=row[_E("shard_id")],
            run_id=row[_E("run_id")],
            namespace=row[_E("namespace")],
            workflow_id=row[_E("workflow_id")],
            workflow_type=row[_E("workflow_type")],
            task_queue=row[_E("task_queue")],
            status=row[_E("status")],
            start_time_ms=row[_E("start_time_ms")],
            close_time_ms=row[_E("close_time_ms")],
            next_event_id=row[_E("next_event_id")],
            last_hash=row[_E("last_hash")],
            state=decode_state(row[_E("state")]),
            sticky_worker=row[_E("sticky_worker")],
        )

    async def _driver(self, conn: AsyncConnection | None) -> DriverConnection:
        if conn is None:
            raise StoreError("no connection")  # a programming error: callers pass one of the two
        return await DriverConnection.of(conn, self.dialect)

    async def get_execution(self, shard_id: int, run_id: str) -> ExecutionRecord | None:
        """One execution by run id, or None."""
        rows = await self._read_hot(_SQL_GET_EXECUTION, {"shard_id": shard_id, "run_id": run_id})
        return self._execution(rows[0]) if rows else None

    async def latest_run(
        self, shard_id: int, namespace: str, workflow_id: str
    ) -> ExecutionRecord | None:
        """The running execution of a workflow id, else its most recently started one."""
        params = {"shard_id": shard_id, "namespace": namespace, "workflow_id": workflow_id}
        rows = await self._read_hot(_SQL_LATEST_RUN, params)
        return self._execution(rows[0]) if rows else None

    async def write(self, change: ExecutionWrite) -> None:
        """Append events and their outbox atomically, with CAS and the fencing check.

        Writes that arrive together are committed in one transaction (group commit, see
        ``_group_commit.py``); each still succeeds or fails on its own.

        Raises:
            ConditionFailedError: the execution moved on (or, on create, a running execution
                with this workflow id exists).
            ShardOwnershipLostError: ``range_id`` is stale.
        """
        await self._committer.write(change)

    async def _write_batch(self, changes: Sequence[ExecutionWrite]) -> None:
        """Write a batch in one transaction. If its connection was dead before the commit
        was sent (a peer ended our sessions), nothing landed, and the batch goes once more on
        a checked connection, as :meth:`_read_hot` does for reads."""
        # One order for every transaction's row locks, so concurrent batches cannot deadlock.
        changes = sorted(changes, key=lambda c: (c.shard_id, c.run_id))
        reached_commit = [False]
        try:
            await self._write_batch_once(changes, reached_commit)
            return
        except StoreUnavailableError:
            just_found_dead = (
                self._ping_before is not None and time.monotonic() - self._ping_before <= 1.0
            )
            if reached_commit[0] or not just_found_dead:
                raise
            log.info("a pooled connection was dead; writing the batch again on a checked one")
        await self._write_batch_once(changes, [False])

    async def _write_batch_once(
        self, changes: Sequence[ExecutionWrite], reached_commit: list[bool]
    ) -> None:
        async with self._hot(write=True) as driver:
            fences: dict[int, int] = {}
            for change in changes:
                if fences.setdefault(change.shard_id, change.range_id) != change.range_id:
                    raise ShardOwnershipLostError(change.shard_id, change.range_id)
            # Every statement of the batch goes in one round trip; the fencing token and each
            # compare-and-swap are checked when the results are in, before the commit.
            writes = [w for change in changes for w in (change, *change.also)]
            # Two writes of one run (never from one engine, which serializes a run's writes)
            # go one after the other, so the second sees the first.
            groups = [writes] if distinct_runs(writes) else [[w] for w in writes]
            batches = [self._batch_rows(driver) for _ in groups]
            async with driver.pipeline():
                if driver.postgresql:
                    await driver.submit(_SQL_KEYED_PLANS, {}, query=True)
                fenced = await driver.submit(_SQL_FENCES, self._fence_params(fences), query=True)
                for batch, group in zip(batches, groups, strict=True):
                    await batch.send(group)
                notices = [n for w in writes for n in w.notify]
                if notices:
                    await self._notify_txn(None, notices, driver)
            self._check_fences(fences, await fenced.rows())
            for batch in batches:
                await batch.check()
            # The block's end sends the commit: past here, the batch may have landed.
            reached_commit[0] = True

    def _batch_rows(self, driver: DriverConnection) -> BatchRows:
        return BatchRows(driver, self._task_row, self._timer_row, self._submit_task_update)

    async def _submit_task_update(
        self, driver: DriverConnection, shard_id: int, change: TaskChange
    ) -> None:
        values = self._task_values(change.values)
        await driver.submit(
            _task_update_sql(tuple(sorted(values))),
            {**values, "shard_id": shard_id, "task_id": change.task_id},
        )

    async def _check_fences_txn(
        self,
        conn: AsyncConnection | None,
        fences: dict[int, int],
        driver: DriverConnection | None = None,
    ) -> None:
        driver = driver or await self._driver(conn)
        self._check_fences(fences, await driver.fetch(_SQL_FENCES, self._fence_params(fences)))

    def _fence_params(self, fences: dict[int, int]) -> dict[str, Any]:
        ids = list(fences)
        return {"shard_ids": ids if self.dialect == "postgresql" else orjson.dumps(ids).decode()}

    @staticmethod
    def _check_fences(fences: dict[int, int], rows: list[tuple[Any, ...]]) -> None:
        current = {int(a): int(b) for a, b in rows}
        for shard_id, range_id in fences.items():
            if current.get(shard_id) != range_id:
                raise ShardOwnershipLostError(shard_id, range_id)

    async def _notify_txn(
        self,
        conn: AsyncConnection | None,
        notices: list[str],
        driver: DriverConnection | None = None,
    ) -> None:
        """PostgreSQL NOTIFY, delivered to the other servers when the transaction commits."""
        if self.dialect != "postgresql":
            return
        driver = driver or await self._driver(conn)
        payload = ""
        for notice in notices:
            if len(payload) + len(notice) > 7000:
                await driver.submit(_SQL_NOTIFY, {"payload": payload}, query=True)
                payload = ""
            payload = f"{payload}\n{notice}" if payload else notice
        if payload:
            await driver.submit(_SQL_NOTIFY, {"payload": payload}, query=True)

    async def publish(self, notices: Sequence[str]) -> None:
        """Send cluster notices (PostgreSQL NOTIFY) outside any write; nothing on SQLite."""
        if self.dialect != "postgresql" or not notices:
            return
        async with self._read() as conn:
            await self._notify_txn(conn, list(notices))

    async def listen(self, on_notice: Callable[[str], None], stop: asyncio.Event) -> None:
        """Deliver every NOTIFY of the cluster to ``on_notice`` until ``stop`` (PostgreSQL;
        returns at once on SQLite, where one process serves everything)."""
        if self.dialect != "postgresql":
            return
        import psycopg

        dsn = self.url.replace("postgresql+psycopg://", "postgresql://", 1)
        while not stop.is_set():
            conn: Any = None
            try:
                conn = await _connect_cancel_safe(
                    psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=10)
                )
                await conn.execute("LISTEN cadenza")
                notices = conn.notifies()
                try:
                    async for notice in notices:
                        for line in notice.payload.split("\n"):
                            on_notice(line)
                        if stop.is_set():
                            break
                finally:
                    await notices.aclose()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cluster notifications interrupted (%s); reconnecting", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
            finally:
                if conn is not None and not conn.closed:
                    # Closed even when we are being cancelled: never left to the GC.
                    closing = asyncio.ensure_future(conn.close())
                    try:
                        await asyncio.shield(closing)
                    except asyncio.CancelledError:
                        await closing
                        raise

    async def _write_execution_txn(
        self, conn: AsyncConnection | None, change: ExecutionWrite
    ) -> None:
        """Write one execution's row (with its compare-and-swap), events and outbox inside the
        caller's transaction (the schedule store's writes)."""
        batch = self._batch_rows(await self._driver(conn))
        await batch.send([change])
        await batch.check()

    @staticmethod
    def _task_values(values: dict[str, Any]) -> dict[str, Any]:
        out = dict(values)
        if "payload" in out:
            out["payload"] = _dumps(out["payload"])
        if "heartbeat_details" in out and out["heartbeat_details"] is not None:
            out["heartbeat_details"] = _dumps(out["heartbeat_details"])
        if "cancel_requested" in out:
            out["cancel_requested"] = int(bool(out["cancel_requested"]))
        return out

    @staticmethod
    def _task_row(task: TaskRecord) -> dict[str, Any]:
        return {
            "shard_id": task.shard_id,
            "task_id": task.task_id,
            "kind": task.kind,
            "task_queue": task.task_queue,
            "namespace": task.namespace,
            "workflow_id": task.workflow_id,
            "run_id": task.run_id,
            "ref_event_id": task.ref_event_id,
            "attempt": task.attempt,
            "visible_at_ms": task.visible_at_ms,
            "lease_owner": task.lease_owner,
            "lease_until_ms": task.lease_until_ms,
            "started_at_ms": task.started_at_ms,
            "seen_up_to": task.seen_up_to,
            "sticky_worker": task.sticky_worker,
            "sticky_until_ms": task.sticky_until_ms,
            "heartbeat_at_ms": task.heartbeat_at_ms,
            "heartbeat_details": (
                _dumps(task.heartbeat_details) if task.heartbeat_details is not None else None
            ),
            "cancel_requested": int(task.cancel_requested),
            "payload": _dumps(task.payload),
            "created_ms": task.created_ms,
        }

    @staticmethod
    def _task(row: Sequence[Any]) -> TaskRecord:
        details = row[_T("heartbeat_details")]
        return TaskRecord(
            shard_id=row[_T("shard_id")],
            task_id=row[_T("task_id")],
            kind=row[_T("kind")],
            task_queue=row[_T("task_queue")],
            namespace=row[_T("namespace")],
            workflow_id=row[_T("workflow_id")],
            run_id=row[_T("run_id")],
            ref_event_id=row[_T("ref_event_id")],
            attempt=row[_T("attempt")],
            payload=orjson.loads(row[_T("payload")]),
            created_ms=row[_T("created_ms")],
            visible_at_ms=row[_T("visible_at_ms")],
            lease_owner=row[_T("lease_owner")],
            lease_until_ms=row[_T("lease_until_ms")],
            started_at_ms=row[_T("started_at_ms")],
            seen_up_to=row[_T("seen_up_to")],
            sticky_worker=row[_T("sticky_worker")],
            sticky_until_ms=row[_T("sticky_until_ms")],
            heartbeat_at_ms=row[_T("heartbeat_at_ms")],
            heartbeat_details=orjson.loads(details) if details is not None else None,
            cancel_requested=bool(row[_T("cancel_requested")]),
        )

    @staticmethod
    def _timer_row(timer: TimerRecord) -> dict[str, Any]:
        return {
            "shard_id": timer.shard_id,
            "timer_key": timer.timer_key,
            "fire_at_ms": timer.fire_at_ms,
            "namespace": timer.namespace,
            "workflow_id": timer.workflow_id,
            "run_id": timer.run_id,
            "kind": timer.kind,
            "ref_event_id": timer.ref_event_id,
            "attempt": timer.attempt,
        }

    # ------------------------------------------------------------------ events

    async def read_events(
        self,
        shard_id: int,
        run_id: str,
        after: int = 0,
        up_to: int | None = None,
        limit: int = 1000,
    ) -> list[HistoryEvent]:
        """Events of a run with ``after < event_id <= up_to``, in order, at most ``limit``."""
        params = {
            "shard_id": shard_id,
            "run_id": run_id,
            "after": after,
            "up_to": _NO_LIMIT if up_to is None else up_to,
            "limit": limit,
        }
        rows = await self._read_hot(_SQL_READ_EVENTS, params)
        return [decode_event(data, hash_hex) for data, hash_hex in rows]

    async def read_raw_events(
        self, shard_id: int, run_id: str, after: int = 0, limit: int = 1000
    ) -> list[tuple[int, str, str]]:
        """Stored ``(event_id, data, hash)`` rows, exactly as written (for verification)."""
        ev = t.events.c
        async with self._read() as conn:
            rows = await conn.execute(
                select(ev.event_id, ev.data, ev.hash)
                .where(ev.shard_id == shard_id, ev.run_id == run_id, ev.event_id > after)
                .order_by(ev.event_id)
                .limit(limit)
            )
            return [(int(a), str(b), str(c)) for a, b, c in rows]

    # ------------------------------------------------------------------ tasks

    async def claim_tasks(
        self,
        *,
        kind: str,
        namespace: str | None,
        task_queue: str,
        owner: str,
        now: int,
        lease_ms: int,
        limit: int = 1,
        timers_for: Callable[[TaskRecord], list[TimerRecord]] | None = None,
        shard_ids: Sequence[int] | None = None,
        notify_for: Callable[[list[TimerRecord]], list[str]] | None = None,
    ) -> list[TaskRecord]:
        """Lease up to ``limit`` visible tasks of a queue to ``owner``.

        A workflow task also records ``seen_up_to`` (the execution's last event id at this
        moment), which bounds the history its worker is given. ``timers_for`` returns timeout
        timers to insert with each claimed task, in the same transaction.
        """
        if shard_ids is not None and not shard_ids:
            return []
        statement = _CLAIM_SQL[kind == "workflow", namespace is not None, shard_ids is not None]
        params: dict[str, Any] = {
            "claim_kind": kind,
            "claim_queue": task_queue,
            "claim_namespace": namespace,
            "claim_owner": owner,
            "claim_now": now,
            "claim_until": now + lease_ms,
            "claim_limit": limit,
        }
        if shard_ids is not None:
            ids = list(shard_ids)
            params["claim_shards"] = (
                ids if self.dialect == "postgresql" else orjson.dumps(ids).decode()
            )
        async with self._hot(write=True) as driver:
            async with driver.pipeline():
                if driver.postgresql:
                    await driver.submit(_SQL_KEYED_PLANS, {}, query=True)
                found = await driver.submit(statement, params, query=True)
            rows = await found.rows()
            # Oldest first, as the subquery chose them (RETURNING keeps no order).
            claimed = sorted((self._task(row) for row in rows), key=_visible_order)
            if timers_for is not None:
                timers = [timer for task in claimed for timer in timers_for(task)]
                if timers:
                    await driver.insert_rows(
                        "timers", TIMER_COLUMNS, [self._timer_row(x) for x in timers]
                    )
                    if notify_for is not None:
                        notices = notify_for(timers)
                        if notices:
                            await self._notify_txn(None, notices, driver)
            return claimed

    async def get_task(self, shard_id: int, task_id: str) -> TaskRecord | None:
        """One task row, or None."""
        rows = await self._read_hot(_SQL_GET_TASK, {"shard_id": shard_id, "task_id": task_id})
        return self._task(rows[0]) if rows else None

    async def record_heartbeat(
        self, shard_id: int, task_id: str, attempt: int, details: Any, now: int
    ) -> TaskRecord | None:
        """Store an attempt's heartbeat; returns the task (with its cancel flag), or None if
        the attempt is no longer current."""
        tk = t.tasks.c
        async with self._write_txn() as conn:
            row = (
                await conn.execute(
                    update(t.tasks)
                    .where(
                        tk.shard_id == shard_id,
                        tk.task_id == task_id,
                        tk.attempt == attempt,
                        tk.lease_owner.is_not(None),
                    )
                    .values(heartbeat_at_ms=now, heartbeat_details=_dumps(details))
                    .returning(t.tasks)
                )
            ).first()
        return self._task(row) if row else None

    async def release_task(self, shard_id: int, task_id: str, visible_at_ms: int) -> None:
        """Give a leased task back, visible again at ``visible_at_ms``."""
        tk = t.tasks.c
        async with self._write_txn() as conn:
            await conn.execute(
                update(t.tasks)
                .where(tk.shard_id == shard_id, tk.task_id == task_id)
                .values(lease_owner=None, lease_until_ms=None, visible_at_ms=visible_at_ms)
            )

    async def release_sticky(self, worker_id: str) -> int:
        """Forget a worker's sticky preference (it shut down): its tasks go to anyone now."""
        tk = t.tasks.c
        e = t.executions.c
        async with self._write_txn() as conn:
            result = await conn.execute(
                update(t.tasks)
                .where(tk.sticky_worker == worker_id)
                .values(sticky_worker=None, sticky_until_ms=None)
            )
            # Only running runs can get another task; the status filter lets PostgreSQL read the
            # partial index of running runs instead of every execution ever stored.
            await conn.execute(
                update(t.executions)
                .where(e.status == "running", e.sticky_worker == worker_id)
                .values(sticky_worker=None)
            )
            return int(result.rowcount or 0)

    async def release_leases(self, kind: str, shard_ids: Sequence[int], now: int) -> int:
        """Release every lease of a kind of task in the given shards (crash recovery)."""
        if not shard_ids:
            return 0
        tk = t.tasks.c
        async with self._write_txn() as conn:
            result = await conn.execute(
                update(t.tasks)
                .where(
                    tk.kind == kind,
                    tk.shard_id.in_(list(shard_ids)),
                    tk.lease_owner.is_not(None),
                )
                .values(lease_owner=None, lease_until_ms=None, visible_at_ms=now)
            )
            return int(result.rowcount or 0)

    async def delete_task(self, shard_id: int, task_id: str) -> None:
        """Remove a task row (transfer tasks once done)."""
        tk = t.tasks.c
        async with self._write_txn() as conn:
            await conn.execute(
                delete(t.tasks).where(tk.shard_id == shard_id, tk.task_id == task_id)
            )

    async def next_visible_task_ms(self, kind: str, namespace: str, task_queue: str) -> int | None:
        """When the next unleased task of a queue becomes visible (for long-poll wake-ups)."""
        tk = t.tasks.c
        async with self._read() as conn:
            return (
                await conn.execute(
                    select(func.min(tk.visible_at_ms)).where(
                        tk.kind == kind,
                        tk.task_queue == task_queue,
                        tk.namespace == namespace,
                        tk.lease_owner.is_(None),
                    )
                )
            ).scalar()

    async def count_ready_tasks(self, now: int) -> int:
        """Unleased tasks visible now, any queue (the test environment's idle check)."""
        tk = t.tasks.c
        async with self._read() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count()).where(
                            tk.lease_owner.is_(None), tk.visible_at_ms <= now
                        )
                    )
                ).scalar()
                or 0
            )

    async def next_held_task_ms(self, now: int) -> int | None:
        """When the earliest unleased task that is not visible yet becomes visible (a
        schedule's run written ahead of its time), any queue; None: no such task."""
        tk = t.tasks.c
        async with self._read() as conn:
            return (
                await conn.execute(
                    select(func.min(tk.visible_at_ms)).where(
                        tk.lease_owner.is_(None), tk.visible_at_ms > now
                    )
                )
            ).scalar()

    # ------------------------------------------------------------------ timers

    async def next_timer_ms(self, shard_ids: Sequence[int]) -> int | None:
        """The earliest fire time among the given shards' timers."""
        if not shard_ids:
            return None
        tm = t.timers.c
        async with self._read() as conn:
            return (
                await conn.execute(
                    select(func.min(tm.fire_at_ms)).where(tm.shard_id.in_(list(shard_ids)))
                )
            ).scalar()

    async def due_timers(self, shard_ids: Sequence[int], now: int, limit: int) -> list[TimerRecord]:
        """Timers of the given shards due at ``now``, earliest first."""
        if not shard_ids:
            return []
        tm = t.timers.c
        async with self._read() as conn:
            rows = await conn.execute(
                select(t.timers)
                .where(tm.shard_id.in_(list(shard_ids)), tm.fire_at_ms <= now)
                .order_by(tm.fire_at_ms)
                .limit(limit)
            )
            return [TimerRecord(**dict(r._mapping)) for r in rows]

    # ------------------------------------------------------------------ visibility

    async def list_executions(
        self,
        *,
        namespace: str,
        status: str | None = None,
        workflow_type: str | None = None,
        workflow_id: str | None = None,
        started_after_ms: int | None = None,
        started_before_ms: int | None = None,
        limit: int = 100,
    ) -> list[ExecutionSummary]:
        """Executions matching the filters, newest first."""
        e = t.executions.c
        conditions = [e.namespace == namespace]
        if status is not None:
            conditions.append(e.status == status)
        if workflow_type is not None:
            conditions.append(e.workflow_type == workflow_type)
        if workflow_id is not None:
            conditions.append(e.workflow_id == workflow_id)
        if started_after_ms is not None:
            conditions.append(e.start_time_ms >= started_after_ms)
        if started_before_ms is not None:
            conditions.append(e.start_time_ms < started_before_ms)
        async with self._read() as conn:
            rows = await conn.execute(
                select(
                    e.namespace,
                    e.workflow_id,
                    e.run_id,
                    e.workflow_type,
                    e.task_queue,
                    e.status,
                    e.start_time_ms,
                    e.close_time_ms,
                    e.next_event_id,
                )
                .where(and_(*conditions))
                .order_by(e.start_time_ms.desc(), e.run_id)
                .limit(limit)
            )
            return [
                ExecutionSummary(
                    namespace=r[0],
                    workflow_id=r[1],
                    run_id=r[2],
                    workflow_type=r[3],
                    task_queue=r[4],
                    status=r[5],
                    start_time_ms=r[6],
                    close_time_ms=r[7],
                    history_length=r[8] - 1,
                )
                for r in rows
            ]

    # ------------------------------------------------------------------ registrations

    async def register_types(
        self, namespace: str, task_queue: str, kind: str, names: Sequence[str], now: int
    ) -> None:
        """Record that a worker serves these workflow or activity types on a queue."""
        if not names:
            return
        w = t.worker_registrations.c
        rows = [
            {
                "namespace": namespace,
                "task_queue": task_queue,
                "kind": kind,
                "type_name": n,
                "last_seen_ms": now,
            }
            for n in names
        ]
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
        statement = upsert(t.worker_registrations)
        statement = statement.on_conflict_do_update(
            index_elements=[w.namespace, w.task_queue, w.kind, w.type_name],
            set_={"last_seen_ms": statement.excluded.last_seen_ms},
        )
        async with self._write_txn() as conn:
            await conn.execute(statement, rows)

    async def registered_types(self, namespace: str, task_queue: str, kind: str) -> set[str]:
        """The types any worker has registered on a queue."""
        params = {"namespace": namespace, "task_queue": task_queue, "kind": kind}
        rows = await self._read_hot(_SQL_REGISTERED_TYPES, params)
        return {r[0] for r in rows}

    async def _read_hot(self, sql: DriverSql, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """One query on the driver path. If the connection turns out to be dead (the server
        restarted, or a peer ended our sessions), the query runs once more: the pool then pings
        every connection used before the failure and replaces the dead ones."""
        try:
            async with self._hot(write=False) as driver:
                return await driver.fetch(sql, params)
        except StoreUnavailableError:
            if self._ping_before is None or time.monotonic() - self._ping_before > 1.0:
                raise
            log.info("a pooled connection was dead; reading again on a checked one")
        async with self._hot(write=False) as driver:
            return await driver.fetch(sql, params)


async def _connect_cancel_safe(connecting: Awaitable[Any]) -> Any:
    """Await a driver connection; if we are cancelled meanwhile, let the connect finish and
    close what it opened (a cancelled ``connect`` would otherwise leave an open connection to
    the garbage collector)."""
    task = asyncio.ensure_future(connecting)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            conn = await task
            await conn.close()
        raise
