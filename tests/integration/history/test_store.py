"""The event log store: compare-and-swap, fencing, tamper evidence, migrations."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid

import psycopg
import pytest
from sqlalchemy import create_engine, inspect

from cadenza.engine import Engine, Settings
from cadenza.engine._mutation import Mutation
from cadenza.history import (
    ConditionFailedError,
    ShardOwnershipLostError,
    SqlStore,
    TimerRecord,
    _tables,
    verify_chain,
)
from cadenza.history._driver import DriverSql
from cadenza.history._events import WorkflowExecutionSignaled
from cadenza.sdk import Client

pytestmark = pytest.mark.asyncio


async def _started(url: str) -> tuple[Engine, Client, str]:
    engine = Engine(Settings(database_url=url, shard_count=4))
    await engine.start()
    client = Client(engine)
    handle = await client.start_workflow("Anything", id="wf-1", task_queue="q")
    return engine, client, handle.first_execution_run_id or ""


async def test_compare_and_swap_rejects_a_stale_writer(fresh_url: str) -> None:
    engine, _client, run_id = await _started(fresh_url)
    try:
        shard = engine.shard_of("default", "wf-1")
        record = await engine.store.get_execution(shard, run_id)
        assert record is not None
        stale = await engine.store.get_execution(shard, run_id)
        fresh = Mutation(
            shard_id=shard,
            range_id=engine.range_id(shard),
            namespace="default",
            workflow_id="wf-1",
            run_id=run_id,
            now_ms=engine.clock.now_ms(),
            record=record,
        )
        fresh.add(WorkflowExecutionSignaled(signal_name="a"))
        await engine.store.write(fresh.to_write())
        late = Mutation(
            shard_id=shard,
            range_id=engine.range_id(shard),
            namespace="default",
            workflow_id="wf-1",
            run_id=run_id,
            now_ms=engine.clock.now_ms(),
            record=stale,
        )
        late.add(WorkflowExecutionSignaled(signal_name="b"))
        with pytest.raises(ConditionFailedError):
            await engine.store.write(late.to_write())
        events = await engine.store.read_events(shard, run_id)
        assert [e.event_type for e in events][-1] == "workflow_execution_signaled"
        assert events[-1].attributes.signal_name == "a"
        assert verify_chain("default", "wf-1", run_id, events).ok
    finally:
        await engine.stop()


async def test_a_writer_with_a_stale_fencing_token_cannot_append(fresh_url: str) -> None:
    engine, client, run_id = await _started(fresh_url)
    try:
        shard = engine.shard_of("default", "wf-1")
        old_token = engine.range_id(shard)
        # Another process takes the shard over (its lease expired).
        other = SqlStore(fresh_url)
        new_token = await other.acquire_shard(shard, "other-process", 10**15, 10**15)
        await other.close()
        assert new_token == old_token + 1
        before = len(await engine.store.read_events(shard, run_id))
        with pytest.raises(ShardOwnershipLostError):
            await client.get_workflow_handle("wf-1").signal("late")
        assert len(await engine.store.read_events(shard, run_id)) == before
        assert shard not in engine.shards.owned()
    finally:
        await engine.stop()


async def test_tampering_is_detected_at_the_edited_event(fresh_url: str) -> None:
    engine, client, run_id = await _started(fresh_url)
    try:
        handle = client.get_workflow_handle("wf-1")
        for name in ("a", "b", "c"):
            await handle.signal(name)
        assert (await engine.verify_history("default", "wf-1")).ok
        # Rewrite the signal name of event 4 behind the engine's back.
        if fresh_url.startswith("sqlite"):
            with sqlite3.connect(fresh_url[len("sqlite:///") :]) as conn:
                conn.execute(
                    'UPDATE events SET data = replace(data, \'"signal_name":"b"\', \'"signal_name":"B"\') '
                    "WHERE run_id = ?",
                    (run_id,),
                )
        else:
            with psycopg.connect(fresh_url, autocommit=True) as conn:
                conn.execute(
                    'UPDATE events SET data = replace(data, \'"signal_name":"b"\', \'"signal_name":"B"\') '
                    "WHERE run_id = %s",
                    (run_id,),
                )
        verdict = await engine.verify_history("default", "wf-1")
        assert not verdict.ok
        events = await engine.store.read_events(engine.shard_of("default", "wf-1"), run_id)
        edited = next(e for e in events if getattr(e.attributes, "signal_name", None) == "B")
        assert verdict.first_bad_event_id == edited.event_id
    finally:
        await engine.stop()


async def test_timer_rows_are_written_with_their_shard(fresh_url: str) -> None:
    store = SqlStore(fresh_url)
    try:
        await store.migrate()
        await store.ensure_cluster(4)
        assert await store.next_timer_ms([0, 1, 2, 3]) is None
        assert await store.due_timers([0], 10, 10) == []
        assert isinstance(TimerRecord, type)
    finally:
        await store.close()


def _schema(url: str) -> dict:
    if url.startswith("sqlite"):
        engine = create_engine(url)
    else:
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        inspector = inspect(engine)
        out = {}
        for table in sorted(inspector.get_table_names()):
            columns = {
                c["name"]: (type(c["type"]).__name__.replace("BIGINT", "INTEGER"), c["nullable"])
                for c in inspector.get_columns(table)
            }
            pk = tuple(inspector.get_pk_constraint(table)["constrained_columns"])
            indexes = sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(table)
            )
            out[table] = (columns, pk, indexes)
        return out
    finally:
        engine.dispose()


async def test_migrations_build_exactly_the_declared_schema(request, tmp_path) -> None:
    """One schema truth: a database built by running every migration equals one built from
    the table definitions, on both databases."""
    factory = request.getfixturevalue("pg_database_factory")
    for kind in ("sqlite", "postgresql"):
        if kind == "sqlite":
            migrated, declared = f"sqlite:///{tmp_path}/m.db", f"sqlite:///{tmp_path}/d.db"
        else:
            migrated, declared = factory("mig"), factory("decl")
        store = SqlStore(migrated)
        await store.migrate()
        await store.close()
        sync_url = (
            declared
            if kind == "sqlite"
            else declared.replace("postgresql://", "postgresql+psycopg://", 1)
        )
        engine = create_engine(sync_url)
        _tables.metadata.create_all(engine)
        engine.dispose()
        assert _schema(migrated) == _schema(declared), kind


async def test_unique_running_execution_per_workflow_id(fresh_url: str) -> None:
    engine, client, _ = await _started(fresh_url)
    try:
        from cadenza.history import WorkflowAlreadyStartedError

        with pytest.raises(WorkflowAlreadyStartedError):
            await client.start_workflow(
                "Anything", id="wf-1", task_queue="q", request_id=uuid.uuid4().hex
            )
    finally:
        await engine.stop()


async def test_close_waits_for_operations_in_flight_then_refuses_new_ones(fresh_url: str) -> None:
    import asyncio
    import gc

    from sqlalchemy import text

    from cadenza.history import StoreUnavailableError

    store = SqlStore(fresh_url)
    await store.migrate()
    reading = asyncio.Event()
    order: list[str] = []

    async def slow_read() -> None:
        async with store._read() as conn:
            reading.set()
            await asyncio.sleep(0.3)
            await conn.execute(text("SELECT 1"))
            order.append("read done")

    task = asyncio.create_task(slow_read())
    await reading.wait()
    await store.close()  # waits for the read, which gives its connection back first
    order.append("closed")
    await task
    assert order == ["read done", "closed"]
    with pytest.raises(StoreUnavailableError, match="closed"):
        await store.get_execution(0, "nope")
    gc.collect()  # a connection left open would warn here (warnings are errors)


async def test_reads_right_after_a_peer_ended_every_session_succeed(pg_database_factory) -> None:
    dsn = pg_database_factory("ended")
    store = SqlStore(dsn)
    try:
        await store.migrate()
        # Several pooled connections, all used a moment ago (so none is due a ping).
        await asyncio.gather(*(store.registered_types("n", "q", "workflow") for _ in range(6)))
        name = dsn.rsplit("/", 1)[1]
        with psycopg.connect(dsn.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
            ended = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            ).fetchone()
        assert ended is not None and ended[0] >= 1
        # The first read meets a dead connection, marks the pool and reads again on a
        # checked one; the ones after it no longer meet dead connections.
        for _ in range(8):
            assert await store.registered_types("n", "q", "workflow") == set()
        assert await store.get_execution(0, "no-such-run") is None
    finally:
        await store.close()


async def test_a_batch_writes_its_winners_and_names_its_losers(fresh_url: str) -> None:
    """Writes that meet in one group-commit batch: the stale one fails alone, with nothing
    written; the others are written."""
    engine = Engine(Settings(database_url=fresh_url, shard_count=4))
    await engine.start()
    try:
        client = Client(engine)
        ids = [f"b-{i}" for i in range(12)]
        handles = [await client.start_workflow("Anything", id=i, task_queue="q") for i in ids]

        async def mutation(workflow_id: str, run_id: str, signal: str) -> Mutation:
            shard = engine.shard_of("default", workflow_id)
            record = await engine.store.get_execution(shard, run_id)
            assert record is not None
            m = Mutation(
                shard_id=shard,
                range_id=engine.range_id(shard),
                namespace="default",
                workflow_id=workflow_id,
                run_id=run_id,
                now_ms=engine.clock.now_ms(),
                record=record,
            )
            m.add(WorkflowExecutionSignaled(signal_name=signal))
            return m

        runs = [h.first_execution_run_id or "" for h in handles]
        stale = await mutation(ids[0], runs[0], "stale")
        await engine.store.write((await mutation(ids[0], runs[0], "first")).to_write())
        fresh = [await mutation(i, r, "fresh") for i, r in zip(ids[1:], runs[1:], strict=True)]
        outcomes = await asyncio.gather(
            engine.store.write(stale.to_write()),
            *(engine.store.write(m.to_write()) for m in fresh),
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], ConditionFailedError)
        assert outcomes[1:] == [None] * len(fresh)
        for workflow_id, run_id in zip(ids, runs, strict=True):
            shard = engine.shard_of("default", workflow_id)
            events = await engine.store.read_events(shard, run_id)
            signals = [
                e.attributes.signal_name for e in events if e.event_type.endswith("signaled")
            ]
            assert signals == (["first"] if workflow_id == ids[0] else ["fresh"])
            assert verify_chain("default", workflow_id, run_id, events).ok
    finally:
        await engine.stop()


async def test_guarded_creates_of_one_id_in_one_batch_write_one_run(fresh_url: str) -> None:
    """Creates of one workflow id that only write if the id is unused, sent together: one
    wins, the others lose their compare-and-swap, and only the winner's rows exist."""
    from cadenza.history._events import WorkflowExecutionStarted

    engine = Engine(Settings(database_url=fresh_url, shard_count=4))
    await engine.start()
    try:
        shard = engine.shard_of("default", "dup")
        # Sorted: a batch writes in (shard, run id) order, so the first run is the winner.
        runs = sorted(str(uuid.uuid4()) for _ in range(4))
        writes = [
            engine.new_run_mutation(
                shard_id=shard,
                namespace="default",
                workflow_id="dup",
                run_id=run_id,
                started=WorkflowExecutionStarted(workflow_type="T", task_queue="q"),
                only_if_id_unused=True,
            ).to_write()
            for run_id in runs
        ]
        # One batch, as a group-commit batch would hold them.
        with pytest.raises(ConditionFailedError) as lost:
            await engine.store._write_batch(writes)
        assert lost.value.lost_runs == frozenset((shard, r) for r in runs[1:])
        # The batch failed as a whole (nothing written); the group committer sends the
        # winner again alone.
        assert not await engine.list_workflows("default", workflow_id="dup")
        await engine.store.write(writes[0])
        listed = await engine.list_workflows("default", workflow_id="dup")
        assert [x.run_id for x in listed] == [runs[0]]
    finally:
        await engine.stop()


async def test_concurrent_starts_of_one_id_start_one_run(fresh_url: str) -> None:
    """Starts of one id that meet in one batch: exactly one run, the others refused."""
    from cadenza.history import WorkflowAlreadyStartedError

    engine = Engine(Settings(database_url=fresh_url, shard_count=4))
    await engine.start()
    try:
        client = Client(engine)
        outcomes = await asyncio.gather(
            *(client.start_workflow("Anything", id="same", task_queue="q") for _ in range(6)),
            *(client.start_workflow("Anything", id=f"other-{i}", task_queue="q") for i in range(6)),
            return_exceptions=True,
        )
        same, others = outcomes[:6], outcomes[6:]
        assert sum(not isinstance(o, BaseException) for o in same) == 1
        assert all(
            isinstance(o, WorkflowAlreadyStartedError) for o in same if isinstance(o, BaseException)
        )
        assert not any(isinstance(o, BaseException) for o in others)
        assert len(await engine.list_workflows("default", workflow_id="same")) == 1
    finally:
        await engine.stop()


async def test_a_sqlite_write_cut_off_mid_statement_does_not_keep_the_write_lock(
    tmp_path,
) -> None:
    """A statement left unfinished on a connection that is then closed (what a cancelled
    task leaves behind: SQLAlchemy invalidates the connection, the traceback keeps the
    cursor) must not hold SQLite's write lock: the next writer proceeds at once."""
    from sqlalchemy import text

    store = SqlStore(f"sqlite:///{tmp_path}/locks.db")
    await store.migrate()
    await store.ensure_cluster(4)
    kept = []
    with contextlib.suppress(Exception):
        async with store._write_txn() as conn:
            await conn.execute(text("SELECT 1"))
            driver = (await conn.get_raw_connection()).driver_connection
            # Rows pending: the statement is neither finished nor reset.
            kept.append(
                await driver.execute("UPDATE shards SET lease_until_ms = 1 RETURNING shard_id")
            )
            await conn.invalidate()
    try:
        await asyncio.wait_for(store.heartbeat_member("next-writer", "127.0.0.1:1", 5), 5)
        assert await store.live_members(0) == {"next-writer": "127.0.0.1:1"}
        # The interrupted update was rolled back, not committed by the close.
        assert {row["lease_until_ms"] for row in await store.shard_table()} != {1}
    finally:
        kept.clear()
        await store.close()


async def test_a_busy_server_reuses_its_pooled_connections(pg_database_factory) -> None:
    """A dozen concurrent users, round after round, open a dozen PostgreSQL sessions once:
    none is closed and opened again (the pool used to be 10, and the busiest server's extra
    connections were a new backend each time)."""
    url = pg_database_factory("pool")
    dbname = url.rsplit("/", 1)[1]
    store = SqlStore(url)
    try:
        await store.migrate()

        def sessions() -> int:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SELECT pg_stat_clear_snapshot()")
                row = conn.execute(
                    "SELECT sessions FROM pg_stat_database WHERE datname = %s", (dbname,)
                ).fetchone()
                return int(row[0])

        sleep = DriverSql("SELECT pg_sleep(0.02)")

        async def user() -> None:
            async with store._hot(write=False) as driver:
                await driver.fetch(sleep, {})

        before = await asyncio.to_thread(sessions)
        for _ in range(6):
            await asyncio.gather(*(user() for _ in range(13)))
        # The statistics of a session reach pg_stat_database when it ends or within a second.
        await asyncio.sleep(1.1)
        opened = await asyncio.to_thread(sessions) - before
        # 13 pooled ones, plus this test's own two counting sessions.
        assert opened <= 13 + 2, f"{opened} sessions opened for 13 concurrent users"
    finally:
        await store.close()


async def test_release_sticky_frees_the_running_runs_of_a_worker(fresh_url: str) -> None:
    """A stopping worker's running runs may go to any worker; closed runs are left as they
    are (they get no tasks, and skipping them keeps the statement off the closed majority)."""
    store = SqlStore(fresh_url)
    try:
        await store.migrate()
        insert = DriverSql(
            "INSERT INTO executions (shard_id, run_id, namespace, workflow_id, workflow_type,"
            " task_queue, status, start_time_ms, next_event_id, last_hash, state, sticky_worker)"
            " VALUES (0, :run, 'default', :run, 'T', 'q', :status, 0, 3, '', '{}', :worker)"
        )
        rows = [
            ("r-run", "running", "w1"),
            ("r-done", "completed", "w1"),
            ("r-other", "running", "w2"),
        ]
        async with store._hot(write=True) as driver:
            for run, status, worker in rows:
                await driver.submit(insert, {"run": run, "status": status, "worker": worker})
        await store.release_sticky("w1")
        read = DriverSql("SELECT run_id, sticky_worker FROM executions")
        async with store._hot(write=False) as driver:
            sticky = dict(await driver.fetch(read, {}))
        assert sticky == {"r-run": None, "r-done": "w1", "r-other": "w2"}
    finally:
        await store.close()
