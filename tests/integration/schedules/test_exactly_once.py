"""Exactly-once starts: two engines on one PostgreSQL fire the same schedules, and every nominal
time starts one workflow, once.

* Shards moving back and forth: both engines claim the shards under the same owner name with a
  very short lease, so each keeps taking the shards from the other (each takeover bumps the
  fencing token) while both timer loops fire schedules every second.
* Split brain with a valid token: the second engine is handed the first one's fencing tokens,
  so the fence cannot tell them apart, and both fire the same due timers at the same time;
  the compare-and-swap on the schedule (and the derived workflow ids) must still start each
  fire once.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from cadenza.engine import Engine, Settings, shard_for
from cadenza.engine._schedule_api import ScheduleAction
from cadenza.history import ShardOwnershipLostError, SqlStore
from cadenza.timers import VirtualClock
from cadenza.timers._schedule_eval import format_nominal

NS = "default"
SCHEDULES = 12
ACTION = ScheduleAction(workflow_type="Tick", task_queue="q")
SPEC = {
    "kind": "cron",
    "cron": "* * * * * ?",
    "overlap": "allow_all",
    "catch_up": {"window": None, "mode": "all"},
}


def _engine(settings: Settings, **kwargs: Any) -> Engine:
    """An engine with a small connection pool (the test server is shared)."""
    store = SqlStore(settings.database_url, pool_size=3, idle_txn_timeout=2.0)
    engine = Engine(settings, store=store, **kwargs)
    engine.__dict__["_test_store"] = store
    return engine


async def _stop(engine: Engine) -> None:
    await engine.stop()
    await engine.__dict__["_test_store"].close()


async def _settled(settings: Settings) -> Engine:
    """After the engines under test stopped: an engine that carries out the messages still in
    flight (starts handed to another shard, reports), then pauses every schedule, so that what
    was decided is complete before it is checked. The messages go first: a start written
    ahead of its time and carried out after a pause is, by design, not started."""
    # A lease long enough that a loaded machine's late renewal cannot drop a shard while the
    # checks run (the engines under test used 0.3 s leases to move shards often).
    engine = _engine(dataclasses.replace(settings, shard_lease_seconds=5.0))
    await engine.start()
    for _ in range(150):
        if engine.shards is not None and len(engine.shards.owned()) == settings.shard_count:
            break
        await asyncio.sleep(0.1)
    await _messages_done(settings)
    for i in range(SCHEDULES):
        await engine.pause_schedule(NS, f"s{i}", note="checking", identity="test")
    await _messages_done(settings)
    return engine


async def _messages_done(settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while loop.time() < deadline:
        with psycopg.connect(settings.database_url) as conn:
            left = conn.execute(
                "SELECT count(*) FROM timers WHERE kind IN ('schedule_start', 'schedule_report')"
            ).fetchone()
        if left is not None and left[0] == 0:
            return
        await asyncio.sleep(0.1)


def _starts(dsn: str) -> Counter[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT workflow_id FROM executions").fetchall()
    return Counter(row[0] for row in rows)


async def _check_every_fire_started_once(engine: Engine, dsn: str) -> int:
    starts = _starts(dsn)
    doubled = {k: v for k, v in starts.items() if v != 1}
    assert not doubled, f"started more than once: {doubled}"
    total = 0
    for i in range(SCHEDULES):
        schedule_id = f"s{i}"
        record = await engine.schedule_store.get(
            engine.schedule_shard(NS, schedule_id), NS, schedule_id
        )
        assert record is not None
        history = await engine.get_schedule_history(NS, schedule_id)
        fired = [e.attributes for e in history if e.event_type == "fired"]
        assert all(not f.skipped and f.run_id for f in fired), [f for f in fired if f.skipped]
        description = await engine.describe_schedule(NS, schedule_id)
        assert not any(r.run_id == "" for r in description.running)  # no start left pending
        nominal = sorted(int(f.nominal_time.timestamp() * 1000) for f in fired)
        # every second from the first fire on (recorded in any order), without a gap or a repeat
        if nominal:
            assert nominal == list(range(nominal[0], nominal[0] + 1000 * len(nominal), 1000))
        ids = {f"{schedule_id}/{format_nominal(n)}" for n in nominal}
        assert ids == {k for k in starts if k.startswith(f"{schedule_id}/")}
        assert (await engine.verify_schedule_history(NS, schedule_id)).ok
        total += len(nominal)
    return total


async def test_shards_moving_between_two_engines_start_each_fire_once(pg_url: str) -> None:
    settings = Settings(
        database_url=pg_url, shard_count=4, shard_lease_seconds=0.3, strict_types=False
    )
    first = _engine(settings, owner="twin")
    await first.start()
    for i in range(SCHEDULES):
        await first.create_schedule(NS, f"s{i}", SPEC, ACTION, identity="test")
    second = _engine(settings, owner="twin")  # takes the shards over at once
    await second.start()
    try:
        moves = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 4.0
        while loop.time() < deadline:
            table = await first.store.shard_table()
            moves = max(moves, min(row["range_id"] for row in table))
            await asyncio.sleep(0.1)
        assert moves >= 4  # the shards really moved back and forth
    finally:
        await _stop(second)
        await _stop(first)
    checker = await _settled(settings)
    try:
        total = await _check_every_fire_started_once(checker, pg_url)
        assert total >= SCHEDULES * 2  # both engines made progress despite the moves
    finally:
        await _stop(checker)


async def test_two_engines_with_the_same_token_start_each_fire_once(pg_url: str) -> None:
    start = datetime(2026, 3, 2, 0, 0, 0, 500_000, tzinfo=UTC)
    clock = VirtualClock(int(start.timestamp() * 1000))
    settings = Settings(database_url=pg_url, shard_count=4, strict_types=False)
    first = _engine(settings, clock=clock, owner="a")
    second = _engine(settings, clock=clock, owner="b")
    await first.start()
    await second.start()  # the shards are taken: it gets none
    try:
        for i in range(SCHEDULES):
            await first.create_schedule(NS, f"s{i}", SPEC, ACTION, identity="test")
        for _ in range(15):
            # Split brain: each engine believes it owns every shard, with valid tokens.
            ranges = {**first.shards._ranges, **second.shards._ranges}  # type: ignore[union-attr]
            first.shards._ranges = dict(ranges)  # type: ignore[union-attr]
            second.shards._ranges = dict(ranges)  # type: ignore[union-attr]
            clock.advance_to(clock.now_ms() + 1000)
            due = await first.store.due_timers(list(ranges), clock.now_ms(), 1000)
            due = [t for t in due if t.kind == "schedule_fire"]
            results = await asyncio.gather(
                *(engine.fire_schedule_timer(t) for t in due for engine in (first, second)),
                return_exceptions=True,
            )
            unexpected = [r for r in results if r is not None and not _is_conflict(r)]
            assert not unexpected, unexpected
        await asyncio.sleep(0.2)  # let the timer loops finish what they took
        last = await first.describe_schedule(NS, "s0")
        assert last.next_fire_times[0].nominal_time >= start + timedelta(seconds=15)
    finally:
        await _stop(second)
        await _stop(first)
    checker = await _settled(settings)
    try:
        total = await _check_every_fire_started_once(checker, pg_url)
        assert total >= SCHEDULES * 14
    finally:
        await _stop(checker)


async def test_two_servers_sharing_the_shards_start_each_fire_once(pg_url: str) -> None:
    """A normal cluster: the shards are split between two engines, so most runs live in a
    shard the schedule's owner does not own and are started by the other engine."""
    settings = Settings(database_url=pg_url, shard_count=4, strict_types=False)
    first = _engine(settings, owner="one")
    await first.start()
    second = _engine(settings, owner="two")
    await second.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while loop.time() < deadline:  # fair shares: two shards each
            await first.shards.rebalance()  # type: ignore[union-attr]
            await second.shards.acquire_available()  # type: ignore[union-attr]
            if len(second.shards.owned()) == 2 and len(first.shards.owned()) == 2:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.1)
        for i in range(SCHEDULES):
            owner = first if i % 2 else second
            try:
                await owner.create_schedule(NS, f"s{i}", SPEC, ACTION, identity="test")
            except ShardOwnershipLostError:
                other = second if owner is first else first
                await other.create_schedule(NS, f"s{i}", SPEC, ACTION, identity="test")
        await asyncio.sleep(3.5)
        owner_of = {s: "one" for s in first.shards.owned()}  # type: ignore[union-attr]
        owner_of.update({s: "two" for s in second.shards.owned()})  # type: ignore[union-attr]
    finally:
        await _stop(second)
        await _stop(first)
    with psycopg.connect(pg_url) as conn:
        writers = conn.execute(
            "SELECT x.workflow_id, x.shard_id, e.writer FROM executions x JOIN events e "
            "ON e.shard_id = x.shard_id AND e.run_id = x.run_id AND e.event_id = 1"
        ).fetchall()
    handed_over = 0
    for workflow_id, shard_id, writer in writers:
        schedule_id = workflow_id.split("/")[0]
        schedule_shard = shard_for(NS, schedule_id, 4)
        assert writer == owner_of[shard_id]  # a run is written by its own shard's owner
        handed_over += owner_of[schedule_shard] != writer
    assert handed_over > 0  # starts were handed to the other engine
    checker = await _settled(settings)
    try:
        total = await _check_every_fire_started_once(checker, pg_url)
        assert total >= SCHEDULES * 2
    finally:
        await _stop(checker)


def _is_conflict(error: BaseException) -> bool:
    from cadenza.history import StoreError

    return isinstance(error, StoreError)
