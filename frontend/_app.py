"""The aiohttp application factory of the frontend.

:func:`create_app` assembles the REST API, the worker protocol, the console, ``/metrics`` and
``/healthz`` around an engine. The app does not own the engine: whoever created the engine
starts it before serving and stops it after the app's runner is cleaned up (``cadenza dev``,
``cadenza server``, tests). Serve it with :class:`aiohttp.web.AppRunner` and a ``TCPSite`` on
``settings.http_host:settings.http_port``.

Middlewares run outermost first: metrics (sees every final status) → errors (the one place that
renders problem+json) → auth (token or loopback).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from cadenza.engine import Engine, Settings
from cadenza.frontend import (
    _api_calendars,
    _api_cluster,
    _api_jobs,
    _api_schedules,
    _api_worker,
    _api_workflows,
    _console,
    _metrics,
)
from cadenza.frontend._metrics import METRICS, Metrics, metrics_middleware
from cadenza.frontend._middleware_auth import auth_middleware
from cadenza.frontend._middleware_errors import errors_middleware
from cadenza.frontend._middleware_forward import forward_middleware, forwarding_context
from cadenza.frontend._state import CLOSING, ENGINE, SETTINGS

log = logging.getLogger("cadenza.frontend")

MIN_BODY_LIMIT = 16 * 1024 * 1024


def body_limit(settings: Settings) -> int:
    """Largest request body accepted: room for several payloads at the configured limit (a
    workflow task completion may carry many commands), at least 16 MiB. The engine still
    checks each payload against ``payload_limit_bytes``."""
    return max(MIN_BODY_LIMIT, 8 * settings.payload_limit_bytes)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if not settings.worker_token:
        log.warning(
            "no worker_token configured: the HTTP API accepts requests from loopback addresses "
            "only; set CADENZA_WORKER_TOKEN to serve remote workers and API callers"
        )
    log.info(
        "frontend ready: console /, REST API /api/v1, worker protocol /api/v1/worker, "
        "metrics /metrics, health /healthz"
    )
    yield
    app[CLOSING].set()


async def _on_shutdown(app: web.Application) -> None:
    # Runs before the server waits for handlers: long polls return now, not at their timeout.
    app[CLOSING].set()


async def _harden(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")


def create_app(engine: Engine, settings: Settings | None = None) -> web.Application:
    """Build the HTTP frontend of an engine.

    Args:
        engine: The engine the routes call (started and stopped by the caller).
        settings: Frontend settings (``worker_token``, ``namespace``, ``poll_timeout``,
            ``timezone``, ``payload_limit_bytes``); default: the engine's settings.

    Returns:
        The application, ready for :class:`aiohttp.web.AppRunner`.
    """
    settings = settings or engine.settings
    app = web.Application(
        middlewares=[metrics_middleware, errors_middleware, auth_middleware, forward_middleware],
        client_max_size=body_limit(settings),
    )
    app[ENGINE] = engine
    app[SETTINGS] = settings
    app[CLOSING] = asyncio.Event()
    app[METRICS] = Metrics(engine)
    app.cleanup_ctx.append(_lifecycle)
    app.cleanup_ctx.append(forwarding_context)
    app.on_shutdown.append(_on_shutdown)
    app.on_response_prepare.append(_harden)
    app.add_routes(_api_workflows.routes)
    app.add_routes(_api_cluster.routes)
    app.add_routes(_api_worker.routes)
    app.add_routes(_api_schedules.routes)
    app.add_routes(_api_jobs.routes)
    app.add_routes(_api_calendars.routes)
    app.add_routes(_metrics.routes)
    app.add_routes(_console.routes)
    return app
