"""Cluster notices (PostgreSQL NOTIFY) are sent only where another server acts on them: no task
notice for a queue the sender's own workers poll, and a close notice only for a run another
server waits on. Two servers on one PostgreSQL database, workers over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import psycopg
import pytest

from cadenza.engine import Engine
from cadenza.frontend.remote import RemoteService
from cadenza.sdk import Client
from tests.integration.engine import workflows as w
from tests.integration.engine.test_task_dispatch import _ids_of, _until, _worker

pytestmark = pytest.mark.asyncio


@contextlib.asynccontextmanager
async def _notices(engine: Engine) -> AsyncIterator[list[str]]:
    """Every cluster notice line sent on the engine's database while the block runs."""
    lines: list[str] = []
    conn = await psycopg.AsyncConnection.connect(engine.settings.database_url, autocommit=True)
    await conn.execute("LISTEN cadenza")

    async def read() -> None:
        async for notice in conn.notifies():
            lines.extend(notice.payload.split("\n"))

    reader = asyncio.ensure_future(read())
    try:
        yield lines
        await asyncio.sleep(0.3)  # notices of the last commits
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await conn.close()


async def test_runs_served_and_awaited_by_their_owner_send_no_notices(cluster) -> None:
    (first, first_url), (second, second_url) = cluster
    clients = [Client(RemoteService(first_url)), Client(RemoteService(second_url))]
    workflow_key = ("workflow", "default", "quiet")
    try:
        async with (
            _worker(clients[0], "quiet", "worker-of-first"),
            _worker(clients[1], "quiet", "worker-of-second"),
        ):
            await _until(
                lambda: all(
                    e.dispatch.shards_for(workflow_key) == e.shards.owned() for e in (first, second)
                )
            )
            async with _notices(first) as lines:
                for engine, client in zip((first, second), clients, strict=True):
                    for i in _ids_of(engine, f"quiet-{engine.owner[-4:]}", 3):
                        handle = await client.start_workflow(
                            w.OrderWorkflow.run, w.Order(i, 1), id=i, task_queue="quiet"
                        )
                        assert (await asyncio.wait_for(handle.result(), 30))["cents"] == 100
    finally:
        for client in clients:
            await client.close()
    sent = [line for line in lines if line.split("|")[1:2] in (["t"], ["c"], ["w"])]
    assert sent == []


async def test_a_wait_on_another_servers_run_is_announced_and_its_close_notified(
    cluster,
) -> None:
    (first, first_url), (second, second_url) = cluster
    owner_client, other_client = Client(RemoteService(first_url)), Client(RemoteService(second_url))
    try:
        async with _worker(owner_client, "watched", "worker-of-first"):
            workflow_id = _ids_of(first, "watched", 1)[0]
            async with _notices(first) as lines:
                await owner_client.start_workflow(
                    w.OrderWorkflow.run,
                    w.Order(workflow_id, 2),
                    id=workflow_id,
                    task_queue="watched",
                )
                # Waiting through the server that does not own the run: woken by the close
                # notice, well before the waits' 5 s re-read.
                loop = asyncio.get_running_loop()
                started = loop.time()
                result = await asyncio.wait_for(
                    other_client.get_workflow_handle(workflow_id).result(), 30
                )
                waited = loop.time() - started
    finally:
        await owner_client.close()
        await other_client.close()
    assert result["cents"] == 200
    assert waited < 4.0
    record = await first.load_run("default", workflow_id)
    waits = [line for line in lines if line.startswith(f"{second.owner}|w|")]
    closes = [line for line in lines if line.startswith(f"{first.owner}|c|")]
    assert waits and all(line == f"{second.owner}|w|{record.run_id}" for line in waits)
    assert closes and all(line == f"{first.owner}|c|{record.run_id}" for line in closes)
    assert first.close_interest.wanted(record.run_id)
    assert not second.close_interest.wanted(record.run_id)  # its own wait is not an interest
