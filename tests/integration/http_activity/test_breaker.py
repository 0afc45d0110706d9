"""The per-host circuit breaker: opening, failing fast, half-opening, closing, and its gauge."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from cadenza.activities._http import http_request
from cadenza.activities._http_breaker import CircuitState, circuit_breakers
from cadenza.history import ApplicationError

BREAKER = {"failure_threshold": 3, "window": 60, "cool_down": 30}


class Flaky:
    """A handler whose answer the test switches; can hold requests at a gate."""

    def __init__(self) -> None:
        self.status = 500
        self.gate: asyncio.Event | None = None

    async def __call__(self, request: web.Request, server) -> web.Response:
        if self.gate is not None:
            await self.gate.wait()
        return web.Response(status=self.status, text=str(self.status))


@pytest.fixture
async def flaky(serve):
    handler = Flaky()
    server = await serve([("GET", "/f", handler)])
    return handler, server


def gauge(server) -> float | None:
    return REGISTRY.get_sample_value(
        "cadenza_http_circuit_state", {"host": f"127.0.0.1:{server.port}"}
    )


async def call(server, **extra) -> ApplicationError | dict:
    try:
        return await http_request({"url": server.url("/f"), "circuit_breaker": BREAKER, **extra})
    except ApplicationError as exc:
        return exc


async def test_opens_after_threshold_and_fails_fast(flaky, clock) -> None:
    _handler, server = flaky
    for _ in range(3):
        error = await call(server)
        assert error.type == "HttpServerError"
    assert gauge(server) == CircuitState.OPEN == 1
    fast = await call(server)
    assert fast.type == "HttpCircuitOpen"
    assert not fast.non_retryable
    assert fast.next_retry_delay == timedelta(seconds=30)
    assert fast.details[0]["host"] == f"127.0.0.1:{server.port}"
    assert server.hits("/f") == 3  # failing fast means not calling the host
    clock.advance(12)
    later = await call(server)
    assert later.next_retry_delay == timedelta(seconds=18)
    assert server.hits("/f") == 3


async def test_half_open_trial_success_closes(flaky, clock) -> None:
    handler, server = flaky
    for _ in range(3):
        await call(server)
    clock.advance(30)
    assert gauge(server) == CircuitState.HALF_OPEN == 2
    handler.status = 200
    result = await call(server)
    assert result["status"] == 200
    assert gauge(server) == CircuitState.CLOSED == 0
    handler.status = 500
    for _ in range(2):  # the old failures were forgotten: two new ones do not open it
        await call(server)
    assert gauge(server) == 0


async def test_half_open_trial_failure_reopens(flaky, clock) -> None:
    _handler, server = flaky
    for _ in range(3):
        await call(server)
    clock.advance(31)
    trial = await call(server)
    assert trial.type == "HttpServerError"
    assert gauge(server) == 1
    fast = await call(server)
    assert fast.type == "HttpCircuitOpen"
    assert fast.next_retry_delay == timedelta(seconds=30)
    assert server.hits("/f") == 4


async def test_half_open_lets_one_trial_through(flaky, clock, wait_until) -> None:
    handler, server = flaky
    for _ in range(3):
        await call(server)
    clock.advance(30)
    handler.status = 200
    handler.gate = asyncio.Event()
    trial = asyncio.create_task(call(server))
    await wait_until(lambda: server.hits("/f") == 4)
    other = await call(server)  # the trial is still running
    assert other.type == "HttpCircuitOpen"
    assert other.details[0]["state"] == "half_open"
    handler.gate.set()
    assert (await trial)["status"] == 200
    assert (await call(server))["status"] == 200
    assert server.hits("/f") == 5


async def test_failures_outside_the_window_do_not_open(flaky, clock) -> None:
    _handler, server = flaky
    for _ in range(2):
        await call(server)
    clock.advance(61)
    for _ in range(2):
        await call(server)
    assert gauge(server) == 0
    await call(server)
    assert gauge(server) == 1


async def test_connection_errors_open_and_4xx_429_do_not(serve, closed_port, clock) -> None:
    url = f"http://127.0.0.1:{closed_port}/x"
    for _ in range(3):
        error = await http_request_error(url)
        assert error.type == "HttpConnectionError"
    assert (await http_request_error(url)).type == "HttpCircuitOpen"

    async def limited(request, server):
        return web.Response(status=int(request.query["s"]))

    server = await serve([("GET", "/l", limited)])
    for status in (404, 429, 404, 429, 400, 429):
        error = await http_request_error(server.url(f"/l?s={status}"))
        assert error.details[0]["status"] == status
    assert circuit_breakers().state(f"127.0.0.1:{server.port}") is CircuitState.CLOSED


async def http_request_error(url: str) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await http_request({"url": url, "circuit_breaker": BREAKER})
    return caught.value


async def test_breaker_can_be_disabled_per_request(flaky) -> None:
    _handler, server = flaky
    for _ in range(5):
        error = await call(server, circuit_breaker={"enabled": False, "failure_threshold": 1})
        assert error.type == "HttpServerError"
    assert server.hits("/f") == 5
    assert gauge(server) is None  # never consulted
