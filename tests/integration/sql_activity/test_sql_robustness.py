"""Failure paths: a cancelled run, a server that accepts and never answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cadenza.activities._sql import sql_query
from cadenza.activities._sql_pools import sql_pool_status
from cadenza.history import ApplicationError

SLEEPING = (
    "SELECT count(*) AS n FROM pg_stat_activity"
    " WHERE wait_event = 'PgSleep' AND datname = current_database()"
)


async def _wait_until(predicate, *, limit: float = 10.0) -> None:
    """Poll ``predicate`` (a database query, so no event to wait on) until it holds."""
    async with asyncio.timeout(limit):
        while True:
            if await predicate():
                return
            await asyncio.sleep(0.05)


@pytest.mark.postgres
async def test_cancelled_run_releases_its_connection(pg_conn):
    async def sleepers() -> int:
        return (await sql_query({"connection": pg_conn.name, "sql": SLEEPING}))["rows"][0]["n"]

    task = asyncio.create_task(
        sql_query({"connection": pg_conn.name, "sql": "SELECT pg_sleep(30)"})
    )

    async def started() -> bool:
        return await sleepers() > 0

    await _wait_until(started)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def gone() -> bool:
        return await sleepers() == 0

    await _wait_until(gone)  # the server stopped the statement: the connection was dropped
    assert sql_pool_status(pg_conn.name)["checked_out"] == 0
    again = await sql_query({"connection": pg_conn.name, "sql": "SELECT 1 AS one"})
    assert again["rows"] == [{"one": 1}]


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A local server that accepts connections and never sends a byte."""
    release = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    release.set()
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("postgresql", {"database": "x"}),
        ("mysql", {"database": "x"}),
        ("oracle", {"service_name": "X", "user": "u", "password": "p"}),
    ],
)
async def test_silent_server_ends_in_a_retryable_connection_error(
    silent_port, sql_registry, kind, extra
):
    conn = sql_registry(
        kind=kind,
        host="127.0.0.1",
        port=silent_port,
        connect_timeout=0.5,
        pool_timeout=0.5,
        **extra,
    )
    with pytest.raises(ApplicationError) as err:
        await sql_query({"connection": conn.name, "sql": "SELECT 1"})
    assert err.value.type == "SqlConnectionError"
    assert not err.value.non_retryable


@pytest.mark.postgres
async def test_exhausted_pool_is_a_transient_error(pg_url, sql_registry):
    url = pg_url
    small = sql_registry(kind="postgresql", url=url, pool_max_size=1, pool_timeout=0.3)
    monitor = sql_registry(kind="postgresql", url=url)

    async def sleeping() -> bool:
        got = await sql_query({"connection": monitor.name, "sql": SLEEPING})
        return got["rows"][0]["n"] > 0

    holder = asyncio.create_task(
        sql_query({"connection": small.name, "sql": "SELECT pg_sleep(1.5) AS s"})
    )
    await _wait_until(sleeping)
    with pytest.raises(ApplicationError) as err:
        await sql_query({"connection": small.name, "sql": "SELECT 1"})
    assert err.value.type == "SqlTransientError"
    assert not err.value.non_retryable
    assert err.value.details[0]["reason"] == "pool_exhausted"
    assert (await holder)["row_count"] == 1
