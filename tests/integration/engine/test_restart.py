"""Durable timers, timeouts and back-offs survive an engine restart."""

from __future__ import annotations

import asyncio

import psycopg

from cadenza.engine import Engine, Settings
from cadenza.history import SqlStore, StoreUnavailableError
from cadenza.sdk import Client, Worker
from tests.integration.engine import workflows as w


async def test_overdue_timer_fires_after_restart(db_url: str) -> None:
    settings = Settings(database_url=db_url, shard_count=4)
    engine = Engine(settings)
    await engine.start()
    client = Client(engine)
    async with Worker(client, task_queue="r", workflows=[w.CounterWorkflow]):
        handle = await client.start_workflow(
            w.CounterWorkflow.run, 0, 0, id="restart", task_queue="r"
        )
        for _ in range(200):  # until the 1 s timer is started
            if any(e.event_type == "timer_started" for e in await handle.fetch_history()):
                break
            await asyncio.sleep(0.01)
    await engine.stop()  # the timer is due while nothing runs
    await asyncio.sleep(1.2)
    engine = Engine(settings)
    await engine.start()
    client = Client(engine)
    try:
        async with Worker(client, task_queue="r", workflows=[w.CounterWorkflow]):
            result = await client.get_workflow_handle("restart").result(timeout=15)
        assert result["count"] == 0
        history = await client.get_workflow_handle("restart").fetch_history()
        assert [e.event_type for e in history].count("timer_fired") == 1
        assert (await engine.verify_history("default", "restart")).ok
    finally:
        await engine.stop()


async def test_a_loop_that_loses_the_database_restarts_instead_of_stopping_the_engine(
    db_url: str,
) -> None:
    engine = Engine(Settings(database_url=db_url, shard_count=2))
    await engine.start()
    runs: list[int] = []
    back = asyncio.Event()

    async def flaky_loop() -> None:
        runs.append(len(runs))
        if len(runs) < 3:
            raise StoreUnavailableError("database unavailable: connection lost")
        back.set()

    try:
        engine._spawn(flaky_loop, "flaky")
        await asyncio.wait_for(back.wait(), 10)
        assert runs == [0, 1, 2]
        assert engine.failure is None and not engine._stop.is_set()
    finally:
        await engine.stop()


async def test_engine_keeps_working_after_its_database_sessions_are_ended(
    pg_database_factory,
) -> None:
    dsn = pg_database_factory("sessions")
    engine = Engine(Settings(database_url=dsn, shard_count=2))
    await engine.start()
    client = Client(engine)
    try:
        async with Worker(client, task_queue="s", workflows=[w.CounterWorkflow]):
            first = await client.execute_workflow(
                w.CounterWorkflow.run, 0, 0, id="before", task_queue="s"
            )
            # What a peer does to a frozen process whose shards it takes.
            with psycopg.connect(dsn, autocommit=True) as admin:
                ended = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = %s AND pid <> pg_backend_pid()",
                    (engine.owner[:63],),
                ).fetchone()
            assert ended is not None and ended[0] >= 1
            second = await client.execute_workflow(
                w.CounterWorkflow.run, 0, 0, id="after", task_queue="s", execution_timeout=60
            )
        assert second["count"] == first["count"] == 0
        assert engine.failure is None
    finally:
        await engine.stop()


async def test_servers_started_together_on_an_empty_database_agree(pg_database_factory) -> None:
    dsn = pg_database_factory("together")
    engines = [Engine(Settings(database_url=dsn, shard_count=8)) for _ in range(3)]
    try:
        # All three migrate and create the cluster at the same moment: none may fail.
        await asyncio.gather(*(e.start() for e in engines))
        assert all(e.shard_count == 8 for e in engines)
        with psycopg.connect(dsn) as conn:
            rows = conn.execute("SELECT count(*) FROM shards").fetchone()
        assert rows is not None and rows[0] == 8
    finally:
        for e in engines:
            await e.stop()


async def test_concurrent_cluster_creation_creates_once(pg_database_factory) -> None:
    dsn = pg_database_factory("create")
    stores = [SqlStore(dsn) for _ in range(4)]
    try:
        await stores[0].migrate()
        for s in stores:  # connected, so that the creations below really overlap
            assert await s.shard_table() == []
        counts = await asyncio.gather(*(s.ensure_cluster(6 + i) for i, s in enumerate(stores)))
        assert len(set(counts)) == 1 and counts[0] in range(6, 10)
        with psycopg.connect(dsn) as conn:
            rows = conn.execute("SELECT count(*) FROM shards").fetchone()
        assert rows is not None and rows[0] == counts[0]
    finally:
        for s in stores:
            await s.close()


async def test_a_worker_that_outlives_its_engine_does_not_spin(db_url: str) -> None:
    engine = Engine(Settings(database_url=db_url, shard_count=2))
    await engine.start()
    client = Client(engine)
    async with Worker(client, task_queue="gone", workflows=[w.CounterWorkflow]):
        await engine.stop()
        loop = asyncio.get_running_loop()
        # A poll of a stopped engine answers "no task" only at its end (at most 1 s): a
        # worker's poll loop that got None at once would hold the event loop forever.
        for kind in ("workflow", "activity"):
            started = loop.time()
            if kind == "workflow":
                got = await engine.poll_workflow_task("default", "gone", "w", timeout=0.4)
            else:
                got = await engine.poll_activity_task("default", "gone", "w", timeout=0.4)
            assert got is None
            assert loop.time() - started >= 0.35
        # And the worker's own pollers leave the loop free meanwhile.
        before = loop.time()
        await asyncio.sleep(0.2)
        assert loop.time() - before < 1.0
