"""Fixtures of the frontend tests: a real engine on SQLite, the app served on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from cadenza.engine import Engine, Settings
from cadenza.frontend import create_app

TOKEN = "s3cret-token"


@pytest.fixture
async def engine(tmp_path) -> AsyncIterator[Engine]:
    """A started engine on a fresh SQLite file."""
    eng = Engine(Settings(database_url=f"sqlite:///{tmp_path}/t.db", shard_count=4))
    await eng.start()
    try:
        yield eng
    finally:
        await eng.stop()


@pytest.fixture
async def serve(engine: Engine) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """``await serve(**settings_overrides)`` serves the app on 127.0.0.1 and returns its URL."""
    servers: list[TestServer] = []

    async def start(**overrides: Any) -> str:
        settings = dataclasses.replace(engine.settings, **overrides)
        server = TestServer(create_app(engine, settings), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def base_url(serve) -> str:
    """The app without a token (loopback callers only)."""
    return await serve()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client (every request has a timeout)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def wait_until(
    predicate: Callable[[], Any], *, timeout: float = 15.0, interval: float = 0.02
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
