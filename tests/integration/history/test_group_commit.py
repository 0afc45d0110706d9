"""Group commit on the driver path: writes that arrive together share one transaction (one
pipeline on PostgreSQL), a loser in a batch fails alone, and failed writes leave every pooled
connection usable and outside any transaction."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from cadenza.engine import Engine, Settings
from cadenza.engine._mutation import Mutation
from cadenza.history import ConditionFailedError, ExecutionRecord, verify_chain
from cadenza.history._events import WorkflowExecutionSignaled
from cadenza.sdk import Client

pytestmark = pytest.mark.asyncio


async def _runs(engine: Engine, count: int) -> list[tuple[int, str, str]]:
    client = Client(engine)
    runs = []
    for i in range(count):
        handle = await client.start_workflow("Anything", id=f"wf-{i}", task_queue="q")
        shard = engine.shard_of("default", f"wf-{i}")
        runs.append((shard, f"wf-{i}", handle.first_execution_run_id or ""))
    return runs


def _signal(engine: Engine, shard: int, workflow_id: str, record: ExecutionRecord, *names: str):
    mutation = Mutation(
        shard_id=shard,
        range_id=engine.range_id(shard),
        namespace="default",
        workflow_id=workflow_id,
        run_id=record.run_id,
        now_ms=engine.clock.now_ms(),
        record=record,
    )
    for name in names:
        mutation.add(WorkflowExecutionSignaled(signal_name=name))
    return mutation.to_write()


async def _records(engine: Engine, runs: list[tuple[int, str, str]]) -> list[ExecutionRecord]:
    records = []
    for shard, _wf, run_id in runs:
        record = await engine.store.get_execution(shard, run_id)
        assert record is not None
        records.append(record)
    return records


async def test_writes_arriving_together_share_transactions_and_all_land(fresh_url: str) -> None:
    engine = Engine(Settings(database_url=fresh_url, shard_count=1))
    await engine.start()
    try:
        runs = await _runs(engine, 12)
        records = await _records(engine, runs)
        committer = engine.store._committer
        batches, writes = committer.batches, committer.writes
        await asyncio.gather(
            *(
                engine.store.write(_signal(engine, shard, wf, record, f"s-{wf}"))
                for (shard, wf, _run), record in zip(runs, records, strict=True)
            )
        )
        assert committer.writes - writes == 12
        # All twelve arrived while the first commit ran: far fewer transactions than writes.
        assert committer.batches - batches < 12
        for shard, wf, run_id in runs:
            events = await engine.store.read_events(shard, run_id)
            assert events[-1].attributes.signal_name == f"s-{wf}"
            assert verify_chain("default", wf, run_id, events).ok
    finally:
        await engine.stop()


async def test_a_stale_write_in_a_batch_fails_alone(fresh_url: str) -> None:
    engine = Engine(Settings(database_url=fresh_url, shard_count=1))
    await engine.start()
    try:
        runs = await _runs(engine, 6)
        records = await _records(engine, runs)
        shard, wf, run_id = runs[0]
        stale = await engine.store.get_execution(shard, run_id)
        assert stale is not None
        # Run 0 moves on, so a second write built on its old row must lose its CAS.
        await engine.store.write(_signal(engine, shard, wf, records[0], "first"))
        committer = engine.store._committer
        batches = committer.batches
        outcomes = await asyncio.gather(
            engine.store.write(_signal(engine, shard, wf, stale, "stale")),
            *(
                engine.store.write(_signal(engine, s, w, record, f"s-{w}"))
                for (s, w, _r), record in zip(runs[1:], records[1:], strict=True)
            ),
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], ConditionFailedError)
        assert outcomes[0].lost_runs == {(shard, run_id)}
        assert outcomes[1:] == [None] * 5
        # The five winners went again together, not one transaction each.
        assert committer.batches - batches < 5
        events = await engine.store.read_events(shard, run_id)
        assert [e.attributes.signal_name for e in events[2:]] == ["first"]
        for s, w, r in runs[1:]:
            assert (await engine.store.read_events(s, r))[-1].attributes.signal_name == f"s-{w}"
    finally:
        await engine.stop()


async def test_failed_writes_leave_the_pool_usable_and_no_transaction_open(
    fresh_url: str,
) -> None:
    engine = Engine(Settings(database_url=fresh_url, shard_count=1))
    await engine.start()
    try:
        [(shard, wf, run_id)] = await _runs(engine, 1)
        # Far more failures than the pool has connections: each must hand its connection
        # back rolled back, or the pool would run dry (or later writes would wait behind a
        # transaction left open).
        for i in range(40):
            fresh = await engine.store.get_execution(shard, run_id)
            stale = await engine.store.get_execution(shard, run_id)
            assert fresh is not None and stale is not None
            await engine.store.write(_signal(engine, shard, wf, fresh, f"ok{i}"))
            with pytest.raises(ConditionFailedError):
                await engine.store.write(_signal(engine, shard, wf, stale, f"lost{i}"))
        events = await engine.store.read_events(shard, run_id)
        assert [e.attributes.signal_name for e in events[2:]] == [f"ok{i}" for i in range(40)]
        assert verify_chain("default", wf, run_id, events).ok
        if engine.store.dialect == "postgresql":
            dsn = fresh_url
            with psycopg.connect(dsn, autocommit=True) as conn:
                open_txns = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state LIKE 'idle in transaction%'"
                ).fetchone()
            assert open_txns == (0,)
    finally:
        await engine.stop()


async def test_a_write_of_many_events_lands_whole_in_multi_row_chunks(fresh_url: str) -> None:
    engine = Engine(Settings(database_url=fresh_url, shard_count=1))
    await engine.start()
    try:
        ((shard, wf, run_id),) = await _runs(engine, 1)
        (record,) = await _records(engine, [(shard, wf, run_id)])
        # PostgreSQL: chunks of 64, 32, 4 and 1 rows
        names = [f"s-{i}" for i in range(101)]
        await engine.store.write(_signal(engine, shard, wf, record, *names))
        events = await engine.store.read_events(shard, run_id)
        signals = [e.attributes.signal_name for e in events if e.event_type.endswith("signaled")]
        assert signals == [f"s-{i}" for i in range(101)]
        assert [e.event_id for e in events] == list(range(1, len(events) + 1))
        assert verify_chain("default", wf, run_id, events).ok
    finally:
        await engine.stop()
