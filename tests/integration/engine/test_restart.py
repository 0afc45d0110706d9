"""Durable timers, timeouts and back-offs survive an engine restart."""

from __future__ import annotations

import asyncio

from cadenza.engine import Engine, Settings
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
