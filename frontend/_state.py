"""Typed application state of the HTTP frontend, and helpers its handlers share.

The state lives under :class:`aiohttp.web.AppKey` keys (never string keys), set by
:func:`cadenza.frontend.create_app`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from cadenza.engine import Engine, Settings
from cadenza.frontend._wire import JSON, encode
from cadenza.history import InvalidArgumentError

T = TypeVar("T")
R = TypeVar("R")

ENGINE = web.AppKey("cadenza_engine", Engine)
"""The engine the routes call (the app does not start or stop it)."""

SETTINGS = web.AppKey("cadenza_settings", Settings)
"""Settings of the frontend (token, namespace, poll timeout, time zone)."""

CLOSING = web.AppKey("cadenza_closing", asyncio.Event)
"""Set when the app shuts down: long polls answer at once instead of holding the shutdown."""


def json_response(value: object, *, status: int = 200) -> web.Response:
    """A JSON response of a Struct, dataclass or plain value."""
    return web.Response(body=encode(value), status=status, content_type=JSON)


def namespace_of(request: web.Request) -> str:
    """``?namespace=`` or the configured default namespace."""
    return request.query.get("namespace") or request.app[SETTINGS].namespace


def run_id_of(request: web.Request) -> str | None:
    """``?run_id=`` (None: the latest run)."""
    return request.query.get("run_id") or None


def int_param(request: web.Request, name: str, default: int, *, low: int, high: int) -> int:
    """An integer query parameter within ``[low, high]``.

    Raises:
        InvalidArgumentError: naming the parameter.
    """
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgumentError(name, f"expected an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise InvalidArgumentError(name, f"must be between {low} and {high}")
    return value


def float_param(request: web.Request, name: str, default: float, *, high: float) -> float:
    """A non-negative number query parameter, capped at ``high``."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidArgumentError(name, f"expected a number of seconds, got {raw!r}") from None
    if not value >= 0:  # also rejects NaN
        raise InvalidArgumentError(name, "must not be negative")
    return min(value, high)


def time_param(request: web.Request, name: str) -> int | None:
    """An ISO-8601 time query parameter as epoch milliseconds.

    A time without an offset is read in the configured time zone (``Asia/Ho_Chi_Minh`` by
    default), which is what an operator typing a local time means.
    """
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace(" ", "T"))
    except ValueError:
        raise InvalidArgumentError(
            name, f"expected an ISO-8601 time such as 2025-01-31T08:00:00+07:00, got {raw!r}"
        ) from None
    if value.tzinfo is None:
        try:
            zone = ZoneInfo(request.app[SETTINGS].timezone)
        except (ZoneInfoNotFoundError, ValueError):
            zone = UTC  # type: ignore[assignment]
        value = value.replace(tzinfo=zone)
    return round(value.timestamp() * 1000)


DISCONNECT_CHECK_SECONDS = 1.0
"""How often a held long poll checks that its caller is still connected."""


async def _caller_gone(request: web.Request) -> None:
    while True:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(DISCONNECT_CHECK_SECONDS)


async def long_poll(request: web.Request, work: Awaitable[T], default: T) -> T:
    """Await ``work`` unless the app shuts down or the caller disconnects first (then
    ``default``; ``work`` is cancelled).

    Without this, a worker that went away (shut down, timed out its request) would still be
    handed the next task, which then waits for its lease to expire; and a shutdown would wait
    for every held poll to time out.
    """
    closing = request.app[CLOSING]
    task = asyncio.ensure_future(work)
    if closing.is_set():
        task.cancel()
    stop = asyncio.ensure_future(closing.wait())
    gone = asyncio.ensure_future(_caller_gone(request))
    try:
        await asyncio.wait({task, stop, gone}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        stop.cancel()
        gone.cancel()
    if not task.done():
        task.cancel()
        await asyncio.wait({task})
    # A poll that got a task just before the cancel still hands it out.
    return default if task.cancelled() else task.result()


async def each_on_its_own(
    field: str, items: Sequence[T], limit: int, one: Callable[[T], Awaitable[R]]
) -> list[R]:
    """The results of ``one`` for each of a batch request's ``items``, run concurrently (those
    that reach the store together share a group-commit transaction); a batch that is empty or
    over ``limit`` is refused, naming ``field``."""
    count = len(items)
    if not 1 <= count <= limit:
        raise InvalidArgumentError(field, f"must hold 1 to {limit} {field}, got {count}")
    return list(await asyncio.gather(*(one(item) for item in items)))
