"""Running a server process: engine, HTTP frontend, optional in-process worker; drains on
SIGTERM/SIGINT (no new tasks, running activities get their grace period, leases released)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from aiohttp import web

from cadenza.activities import close_builtin_resources
from cadenza.engine import Engine, Settings
from cadenza.frontend._app import create_app
from cadenza.frontend.cli._gc import freeze_startup_objects, tune_garbage_collector
from cadenza.sdk import Client, Worker

log = logging.getLogger("cadenza.server")


async def serve(
    settings: Settings,
    *,
    workflows: Sequence[type] = (),
    activities: Sequence[Callable[..., Any]] = (),
    task_queue: str = "default",
    http: bool = True,
    jobs: Sequence[str] = (),
    tune_gc: bool = False,
) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status. ``tune_gc``: this process is the
    server's own (the CLI's), so apply ``settings.gc_threshold`` and freeze what startup made
    (see :mod:`cadenza.frontend.cli._gc`)."""
    if tune_gc:
        tune_garbage_collector(settings.gc_threshold)
    if http and not settings.advertise_url:
        host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
        settings = replace(settings, advertise_url=f"http://{host}:{settings.http_port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    engine = Engine(settings)
    await engine.start()
    runner: web.AppRunner | None = None
    worker: Worker | None = None
    jobs_worker: Worker | None = None
    try:
        if http:
            runner = web.AppRunner(create_app(engine, settings), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, settings.http_host, settings.http_port)
            await site.start()
            log.info(
                "serving the console and API on http://%s:%d/",
                settings.http_host,
                settings.http_port,
            )
        if workflows or activities:
            worker = Worker(
                Client(engine, namespace=settings.namespace),
                task_queue=task_queue,
                workflows=workflows,
                activities=activities,
            )
            await worker.start()
            log.info(
                "worker on task queue %r: workflows [%s], activities [%s]",
                task_queue,
                ", ".join(w.__cadenza_workflow_definition__.name for w in workflows),  # type: ignore[attr-defined]
                ", ".join(a.__cadenza_activity_definition__.name for a in activities),  # type: ignore[attr-defined]
            )
        log.info("database %s, %d shards", _safe_url(settings.database_url), engine.shard_count)
        if jobs:
            from cadenza.sdk._job_interpreter import job_worker, load_jobs_into

            await load_jobs_into(engine, list(jobs), identity="dev")
            jobs_worker = job_worker(Client(engine, namespace=settings.namespace))
            await jobs_worker.start()
            log.info(
                "job files loaded from %s; job worker on queue 'cadenza-jobs'", ", ".join(jobs)
            )
        if tune_gc and settings.gc_threshold:
            freeze_startup_objects()
        stopper = asyncio.ensure_future(stop.wait())
        watchdog = asyncio.ensure_future(engine.wait_stopped())
        await asyncio.wait({stopper, watchdog}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        watchdog.cancel()
        if engine.failure is not None:
            log.critical("engine failed: %r", engine.failure)
            return 1
        log.info("shutting down: draining")
        return 0
    finally:
        for running in (worker, jobs_worker):
            if running is not None:
                await running.shutdown()
        await close_builtin_resources()
        if runner is not None:
            await runner.cleanup()
        await engine.stop()


def _safe_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
