"""PostgreSQL: the hot path's statements keep index plans when the tables grow after the
session prepared them. A new cluster's tables are nearly empty when psycopg prepares its
statements; PostgreSQL's generic plan made then used to scan the whole table on every batch
ever after, so each workflow cost more than the one before."""

from __future__ import annotations

import asyncio

import psycopg

from cadenza.engine import Engine, Settings
from cadenza.sdk import Client, Worker, activity, workflow

GROWN = 20_000  # rows added behind the engine's back between the two rounds


@activity.defn
async def add_one(x: int) -> int:
    return x + 1


@workflow.defn
class OneStep:
    @workflow.run
    async def run(self, x: int) -> int:
        return await workflow.execute_activity(add_one, x, start_to_close_timeout=10)


async def _round(client: Client, prefix: str, count: int) -> list[int]:
    handles = [
        await client.start_workflow(OneStep, i, id=f"{prefix}-{i}", task_queue="grow")
        for i in range(count)
    ]
    return list(await asyncio.gather(*(h.result() for h in handles)))


def _grow(dsn: str) -> None:
    """Closed executions and other queues' tasks, as a cluster holds after months: a scan of
    either table reads all of them."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO executions (shard_id, run_id, namespace, workflow_id, workflow_type,"
            " task_queue, status, start_time_ms, close_time_ms, next_event_id, last_hash, state)"
            " SELECT i %% 4, 'old-run-' || i, 'archive', 'old-' || i, 'Old', 'elsewhere',"
            " 'completed', i, i, 3, '', '{}' FROM generate_series(1, %s) AS i",
            (GROWN,),
        )
        conn.execute(
            "INSERT INTO tasks (shard_id, task_id, kind, task_queue, namespace, workflow_id,"
            " run_id, ref_event_id, attempt, visible_at_ms, payload, created_ms)"
            " SELECT i %% 4, 'old-task-' || i, 'activity', 'elsewhere', 'archive', 'old-' || i,"
            " 'old-run-' || i, 5, 1, 0, '{}', 0 FROM generate_series(1, %s) AS i",
            (GROWN,),
        )


def _rows_scanned(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = conn.execute(
            "SELECT relname, seq_tup_read FROM pg_stat_user_tables"
            " WHERE relname IN ('executions', 'tasks')"
        ).fetchall()
    return {name: int(n) for name, n in rows}


async def test_writes_and_claims_probe_indexes_after_the_tables_grew(pg_database_factory) -> None:
    dsn = pg_database_factory("plans")
    engine = Engine(Settings(database_url=dsn, shard_count=4))
    await engine.start()
    try:
        client = Client(engine)
        async with Worker(client, task_queue="grow", workflows=[OneStep], activities=[add_one]):
            # Enough of every statement for psycopg to prepare it and PostgreSQL to settle
            # on a generic plan, all while the tables hold a few rows.
            assert await _round(client, "small", 12) == [i + 1 for i in range(12)]
            await asyncio.to_thread(_grow, dsn)
            assert await _round(client, "grown", 12) == [i + 1 for i in range(12)]
    finally:
        # A session's statistics reach pg_stat_user_tables at the latest when it ends.
        await engine.stop()
    await asyncio.sleep(0.3)
    scanned = await asyncio.to_thread(_rows_scanned, dsn)
    # A sequential scan of either grown table reads GROWN rows. Before the fix the workflows
    # scanned 28 times (560,750 rows). The worker's clean shutdown clears its sticky marks: on
    # executions only running runs (through their partial index); on tasks, which hold only
    # work in progress, with one scan.
    assert scanned["executions"] < GROWN, scanned
    assert scanned["tasks"] < 2 * GROWN, scanned
