"""Error classification (retryable or not, Retry-After), timeouts, and the Idempotency-Key."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from aiohttp import web

from cadenza.activities._http import http_request
from cadenza.activities._http_errors import parse_retry_after
from cadenza.history import ApplicationError, failure_from_exception


def status_handler(code: int, headers: dict | None = None, text: str = "boom"):
    async def handler(request: web.Request, server) -> web.Response:
        return web.Response(status=code, text=text, headers=headers or {})

    return handler


async def fail(cfg: dict) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await http_request(cfg)
    return caught.value


async def test_5xx_is_retryable_with_status_and_truncated_body(serve) -> None:
    server = await serve([("GET", "/e", status_handler(500, text="x" * 10_000))])
    error = await fail({"url": server.url("/e")})
    assert error.type == "HttpServerError"
    assert not error.non_retryable
    assert error.next_retry_delay is None
    details = error.details[0]
    assert details["status"] == 500
    assert details["body"].startswith("x" * 100)
    assert len(details["body"]) < 2200
    assert "500" in error.message
    stored = failure_from_exception(error)  # as it goes into the history
    assert stored.type == "HttpServerError"
    assert stored.details[0]["status"] == 500


async def test_503_and_429_honour_retry_after_seconds(serve) -> None:
    server = await serve(
        [
            ("GET", "/busy", status_handler(503, {"Retry-After": "7"})),
            ("GET", "/slow-down", status_handler(429, {"Retry-After": "120"})),
            ("GET", "/plain-429", status_handler(429)),
            ("GET", "/502", status_handler(502, {"Retry-After": "7"})),
        ]
    )
    busy = await fail({"url": server.url("/busy")})
    assert (busy.type, busy.non_retryable) == ("HttpServerError", False)
    assert busy.next_retry_delay == timedelta(seconds=7)
    slow = await fail({"url": server.url("/slow-down")})
    assert (slow.type, slow.non_retryable) == ("HttpTooManyRequests", False)
    assert slow.next_retry_delay == timedelta(seconds=120)
    assert slow.details[0]["retry_after_s"] == 120
    plain = await fail({"url": server.url("/plain-429")})
    assert plain.next_retry_delay is None
    bad_gateway = await fail({"url": server.url("/502")})
    assert bad_gateway.next_retry_delay is None  # only 429 and 503 carry Retry-After


async def test_retry_after_http_date(serve) -> None:
    when = datetime.now(UTC) + timedelta(seconds=90)
    server = await serve(
        [("GET", "/d", status_handler(429, {"Retry-After": format_datetime(when, usegmt=True)}))]
    )
    error = await fail({"url": server.url("/d")})
    assert error.next_retry_delay is not None
    assert timedelta(seconds=80) <= error.next_retry_delay <= timedelta(seconds=90)


def test_parse_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, 8, 0, 0, tzinfo=UTC)
    assert parse_retry_after("0") == timedelta(0)
    assert parse_retry_after("Thu, 01 Jan 2026 08:00:30 GMT", now=now) == timedelta(seconds=30)
    assert parse_retry_after("Thu, 01 Jan 2026 07:00:00 GMT", now=now) == timedelta(0)
    assert parse_retry_after("99999999999") == timedelta(days=1)
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 422])
async def test_other_4xx_are_not_retryable(serve, code: int) -> None:
    server = await serve([("GET", "/x", status_handler(code, text='{"detail":"no"}'))])
    error = await fail({"url": server.url("/x")})
    assert error.type == "HttpClientError"
    assert error.non_retryable
    assert error.details[0]["status"] == code
    assert error.details[0]["body"] == '{"detail":"no"}'


async def test_connection_refused_is_retryable(closed_port) -> None:
    error = await fail({"url": f"http://127.0.0.1:{closed_port}/x"})
    assert error.type == "HttpConnectionError"
    assert not error.non_retryable


async def test_server_closing_the_connection_is_retryable(serve) -> None:
    async def hang_up(request: web.Request, server) -> web.Response:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    server = await serve([("GET", "/bye", hang_up)])
    error = await fail({"url": server.url("/bye")})
    assert error.type == "HttpConnectionError"
    assert not error.non_retryable


async def test_connect_timeout(unresponsive_port) -> None:
    error = await fail({"url": f"http://127.0.0.1:{unresponsive_port}/x", "connect_timeout": 0.3})
    assert error.type == "HttpTimeout"
    assert not error.non_retryable
    assert error.details[0]["timeout"] == "connect"


async def test_total_timeout(serve) -> None:
    async def stall(request: web.Request, server) -> web.Response:
        await server.release.wait()
        return web.Response(text="late")

    async def dribble(request: web.Request, server) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        await resp.write(b"first part")
        await server.release.wait()
        return resp

    server = await serve([("GET", "/stall", stall), ("GET", "/dribble", dribble)])
    for path in ("/stall", "/dribble"):  # no answer at all; headers then a stalled body
        error = await fail({"url": server.url(path), "total_timeout": 0.3})
        assert error.type == "HttpTimeout"
        assert not error.non_retryable
        assert error.details[0]["timeout"] == "total"


async def idem(request: web.Request, server) -> web.Response:
    return web.json_response({"key": request.headers.get("Idempotency-Key")})


async def test_idempotency_key_sent_inside_an_activity(serve, in_activity_context) -> None:
    server = await serve([("POST", "/pay", idem)])
    result = await http_request({"url": server.url("/pay"), "method": "POST", "json": {}})
    assert result["body"]["key"] == in_activity_context.idempotency_key == "wf-1/run-1/5"


async def test_idempotency_key_override_and_opt_out(serve, in_activity_context) -> None:
    server = await serve([("POST", "/pay", idem)])
    url = server.url("/pay")
    override = await http_request({"url": url, "method": "POST", "idempotency_key": "order-42"})
    assert override["body"]["key"] == "order-42"
    header = await http_request(
        {"url": url, "method": "POST", "headers": {"Idempotency-Key": "from-header"}}
    )
    assert header["body"]["key"] == "from-header"
    off = await http_request({"url": url, "method": "POST", "send_idempotency_key": False})
    assert off["body"]["key"] is None


async def test_no_idempotency_key_outside_an_activity(serve) -> None:
    server = await serve([("POST", "/pay", idem)])
    result = await http_request({"url": server.url("/pay"), "method": "POST"})
    assert result["body"]["key"] is None


async def test_cancellation_propagates(serve, wait_until) -> None:
    async def stall(request: web.Request, server) -> web.Response:
        await server.release.wait()
        return web.Response()

    server = await serve([("GET", "/stall", stall)])
    task = asyncio.create_task(http_request({"url": server.url("/stall")}))
    await wait_until(lambda: len(server.requests) > 0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
