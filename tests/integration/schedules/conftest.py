"""Schedule test fixtures: every engine-backed test runs on SQLite and on PostgreSQL.

PostgreSQL tests share the run's database (``pg_dsn``) and start from empty tables: every
table of the schema is truncated before each test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from cadenza.engine import Engine, Settings
from cadenza.history import _tables
from cadenza.timers import VirtualClock

T0 = datetime(2026, 3, 2, 0, 0, 30, tzinfo=UTC)
"""Where the virtual clocks of these tests start (a Monday, 07:00:30 in Ho Chi Minh City)."""


def _truncate(dsn: str) -> None:
    tables = [name for name in _tables.metadata.tables if name != "schema_migrations"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('public.schedules') IS NOT NULL").fetchone()
        if exists and exists[0]:
            present = {
                row[0]
                for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                ).fetchall()
            }
            names = ", ".join(t for t in tables if t in present)
            conn.execute(f"TRUNCATE {names}")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A database URL with no Cadenza data in it."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/cadenza.db"
    dsn = request.getfixturevalue("pg_dsn")
    _truncate(dsn)
    return dsn


@pytest.fixture
def pg_url(pg_dsn: str) -> str:
    """The run's PostgreSQL database, emptied."""
    _truncate(pg_dsn)
    return pg_dsn


EngineFactory = Callable[..., Awaitable[tuple[Engine, VirtualClock]]]


@pytest.fixture
async def make_engine(db_url: str) -> AsyncIterator[EngineFactory]:
    """``await make_engine(start=T0, **settings)``: a started engine on ``db_url`` with a
    virtual clock; stopped at the end of the test (or earlier by the test)."""
    engines: list[Engine] = []

    async def make(start: datetime = T0, **overrides: Any) -> tuple[Engine, VirtualClock]:
        clock = VirtualClock(int(start.timestamp() * 1000))
        settings = Settings(database_url=db_url, shard_count=4, **overrides)
        engine = Engine(settings, clock=clock)
        await engine.start()
        engines.append(engine)
        return engine, clock

    yield make
    for engine in engines:
        if engine.started:
            await engine.stop()


async def wait_until(
    predicate: Callable[[], Any], *, timeout: float = 20.0, interval: float = 0.02
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns a truthy value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


@pytest.fixture
def until() -> Callable[..., Awaitable[Any]]:
    """The :func:`wait_until` helper as a fixture (test modules cannot import conftest)."""
    return wait_until
