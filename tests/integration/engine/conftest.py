"""Engine test fixtures: every engine test runs on SQLite and on PostgreSQL.

PostgreSQL tests share one fresh database per test run (created by ``pg_dsn`` in the top-level
conftest) and start from empty tables: the tables are truncated before each test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

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
