"""Fixtures of the job tests: a time-skipping engine on SQLite and on PostgreSQL with a
secret keyring, a worker on the job queue, and a recording HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from aiohttp import web

from cadenza.engine._job_loader import load_job_text
from cadenza.engine._jobs import JobService, jobs_for
from cadenza.sdk import Worker
from cadenza.sdk._job_interpreter import job_worker as sdk_job_worker
from cadenza.sdk.testing import WorkflowEnvironment

KEY_ID = "k1"
KEY = base64.b64encode(os.urandom(32)).decode()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A database URL with no Cadenza data in it (PostgreSQL: every table emptied)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/cadenza.db"
    dsn = request.getfixturevalue("pg_dsn")
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'schema_migrations'"
        ).fetchall()
        if rows:
            conn.execute("TRUNCATE " + ", ".join(f'"{r[0]}"' for r in rows))
    return dsn


@pytest.fixture
async def env(db_url: str) -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping environment with a secret keyring."""
    environment = await WorkflowEnvironment.start_time_skipping(
        database_url=db_url, secret_keys=f"{KEY_ID}:{KEY}"
    )
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest.fixture
def jobs(env: WorkflowEnvironment) -> JobService:
    """The job service of the environment's engine."""
    return jobs_for(env.engine)


def job_worker(
    env: WorkflowEnvironment,
    *,
    extra: Sequence[Any] = (),
    workflows: Sequence[type] = (),
    **options: Any,
) -> Worker:
    """A worker on the job queue with the interpreter, the job activities, ``extra`` step
    activities and ``workflows`` (for ``workflow`` steps)."""
    return sdk_job_worker(env.client, extra=extra, workflows=workflows, **options)


@pytest.fixture
def worker_for() -> Callable[..., Worker]:
    """``worker_for(env, extra=[...])``: a job worker (test modules cannot import conftest)."""
    return job_worker


def parse_jobs(text: str, *, step_types: set[str] | None = None) -> list[Any]:
    """Jobs of a YAML text (asserting it is valid)."""
    loaded = load_job_text(text, filename="test.yaml", step_types=step_types)
    assert loaded.ok, [str(i) for i in loaded.issues]
    return loaded.jobs


async def wait_until(predicate: Callable[[], Any], *, timeout: float = 20.0) -> Any:
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
        await asyncio.sleep(0.01)


@pytest.fixture
def until() -> Callable[..., Awaitable[Any]]:
    """The :func:`wait_until` helper as a fixture."""
    return wait_until


@pytest.fixture
def parse() -> Callable[..., list[Any]]:
    """The :func:`parse_jobs` helper as a fixture."""
    return parse_jobs


@dataclass
class Recorder:
    """A tiny HTTP service on 127.0.0.1 that records requests and answers by script."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    handlers: dict[str, Callable[[web.Request, Any], Awaitable[web.StreamResponse]]] = field(
        default_factory=dict
    )
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    active: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)

    def calls(self, path: str) -> list[dict[str, Any]]:
        """The recorded requests to ``path``."""
        return [r for r in self.requests if r["path"] == path]


@pytest.fixture
async def service() -> AsyncIterator[Recorder]:
    """The recording HTTP service. Default answer: ``{"path": ..., "body": <request JSON>}``."""
    recorder = Recorder()

    async def handle(request: web.Request) -> web.StreamResponse:
        body: Any = None
        raw = await request.read()
        if raw:
            try:
                body = await request.json()
            except ValueError:
                body = raw.decode()
        path = request.path
        recorder.requests.append(
            {
                "path": path,
                "method": request.method,
                "body": body,
                "headers": dict(request.headers),
                "query": dict(request.query),
            }
        )
        recorder.active[path] = recorder.active.get(path, 0) + 1
        recorder.peak[path] = max(recorder.peak.get(path, 0), recorder.active[path])
        try:
            gate = recorder.gates.get(path)
            if gate is not None:
                await asyncio.wait_for(gate.wait(), 30)
            handler = recorder.handlers.get(path)
            if handler is not None:
                return await handler(request, body)
            return web.json_response({"path": path, "body": body})
        finally:
            recorder.active[path] -= 1

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    recorder.url = f"http://127.0.0.1:{port}"
    try:
        yield recorder
    finally:
        await runner.cleanup()


@pytest.fixture(autouse=True)
async def http_state() -> AsyncIterator[None]:
    """Fresh breakers and token caches; the HTTP sessions and SQL pools of the built-in
    activities closed after the test, on its own loop (a pool left to a later loop can only be
    dropped, and its connections would reach the garbage collector open)."""
    from cadenza.activities._http import close_http_sessions, reset_http_state
    from cadenza.activities._sql_pools import close_sql_pools

    reset_http_state()
    yield
    await close_http_sessions()
    await close_sql_pools()
    reset_http_state()
