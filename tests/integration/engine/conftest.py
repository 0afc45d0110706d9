"""Engine test fixtures: every engine test runs on SQLite and on PostgreSQL.

PostgreSQL tests share one fresh database per test run (created by ``pg_dsn`` in the top-level
conftest) and start from empty tables: the tables are truncated before each test.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import psycopg
import pytest
from aiohttp.test_utils import TestServer

from cadenza.engine import Engine, Settings
from cadenza.frontend import create_app
from cadenza.sdk.testing import WorkflowEnvironment

TABLES = "events, executions, tasks, timers, shards, cluster_metadata, worker_registrations"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A database URL with no Cadenza data in it."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/cadenza.db"
    dsn = request.getfixturevalue("pg_dsn")
    with psycopg.connect(dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('public.events') IS NOT NULL").fetchone()
        if exists and exists[0]:
            conn.execute(f"TRUNCATE {TABLES}")
    return dsn


@pytest.fixture
async def env(db_url: str) -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping environment on the parametrized database."""
    environment = await WorkflowEnvironment.start_time_skipping(database_url=db_url)
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest.fixture
async def real_env(db_url: str) -> AsyncIterator[WorkflowEnvironment]:
    """An environment on the real clock (for timeouts measured in real time)."""
    environment = await WorkflowEnvironment.start_local(
        database_url=db_url, workflow_task_retry_max=0.5
    )
    try:
        yield environment
    finally:
        await environment.shutdown()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def cluster(pg_database_factory) -> AsyncIterator[list[tuple[Engine, str]]]:
    """Two servers (engine + HTTP API on loopback) sharing one fresh PostgreSQL database."""
    dsn = pg_database_factory("query")
    members: list[tuple[Engine, str]] = []
    servers: list[TestServer] = []
    try:
        for _ in range(2):
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            settings = Settings(
                database_url=dsn, shard_count=4, shard_lease_seconds=3, advertise_url=url
            )
            engine = Engine(settings)
            await engine.start()
            server = TestServer(create_app(engine, settings), host="127.0.0.1", port=port)
            await server.start_server()
            members.append((engine, url))
            servers.append(server)
        # Until each has seen the other's heartbeat and the shards are split evenly (a test
        # that picks workflow ids by owner must not see a shard move afterwards).
        for _ in range(150):
            if all(e.clustered and e.shards and len(e.shards.owned()) == 2 for e, _ in members):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the two servers never formed a cluster")
        yield members
    finally:
        for server in servers:
            await server.close()
        for engine, _ in members:
            await engine.stop()
