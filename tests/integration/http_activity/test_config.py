"""Configuration validation: every bad field is named, and nothing is sent."""

from __future__ import annotations

import pytest
from aiohttp import web

from cadenza.activities._http import http_request
from cadenza.activities._http_config import (
    HttpRequestConfig,
    decode_config,
    parse_expected_status,
    prepare_request,
)
from cadenza.activities._http_errors import invalid_config_error
from cadenza.history import ApplicationError, InvalidArgumentError

URL = "http://127.0.0.1:9/x"  # never contacted: validation fails first

CASES = [
    ({"url": "ftp://example.vn/f"}, "url"),
    ({"url": "not a url"}, "url"),
    ({"url": "http://user:pw@example.vn/"}, "url"),
    ({"url": ""}, "url"),
    ({"url": None}, "url"),
    ({"url": 5}, "url"),
    ({"method": "TRACE"}, "method"),
    ({"unknown_option": 1}, "unknown_option"),
    ({"headers": {"Bad Header": "x"}}, "headers.Bad Header"),
    ({"headers": {"X-A": "line\r\nInjected: 1"}}, "headers.X-A"),
    ({"headers": {"X-A": [1]}}, "headers.X-A"),
    ({"query": {"a": [1, None]}}, "query.a"),
    ({"method": "POST", "form": {"f": float("nan")}}, "form.f"),
    ({"query": {"a": {"nested": 1}}}, "query.a"),
    ({"method": "POST", "json": {}, "form": {"a": "b"}}, "form"),
    ({"method": "POST", "text": "a", "body_base64": "AA=="}, "body_base64"),
    ({"json": {"a": 1}}, "json"),
    ({"method": "POST", "body_base64": "***"}, "body_base64"),
    ({"auth": {"type": "digest"}}, "auth.type"),
    ({"auth": {"type": "basic", "username": "a"}}, "auth.password"),
    ({"auth": {"type": "basic", "username": "a:b", "password": "p"}}, "auth.username"),
    ({"auth": {"type": "bearer", "token": ""}}, "auth.token"),
    (
        {"auth": {"type": "bearer", "token": "t"}, "headers": {"authorization": "x"}},
        "headers.Authorization",
    ),
    (
        {
            "auth": {
                "type": "oauth2_client_credentials",
                "token_url": "file:///etc/passwd",
                "client_id": "c",
                "client_secret": "s",
            }
        },
        "auth.token_url",
    ),
    (
        {
            "auth": {
                "type": "oauth2_client_credentials",
                "token_url": "https://idp.vn/t",
                "client_id": "c",
                "client_secret": "s",
                "client_auth": "jwt",
            }
        },
        "auth.client_auth",
    ),
    ({"connect_timeout": 0}, "connect_timeout"),
    ({"total_timeout": -1}, "total_timeout"),
    ({"total_timeout": "fast"}, "total_timeout"),
    ({"max_response_bytes": 0}, "max_response_bytes"),
    ({"max_response_bytes": 10**12}, "max_response_bytes"),
    ({"max_redirects": -1}, "max_redirects"),
    ({"expected_status": []}, "expected_status"),
    ({"expected_status": [200, "2xx", "abc"]}, "expected_status[2]"),
    ({"expected_status": [99]}, "expected_status[0]"),
    ({"expected_status": ["300-200"]}, "expected_status[0]"),
    ({"allowed_hosts": ["ok.vn", "*"]}, "allowed_hosts[1]"),
    ({"circuit_breaker": {"failure_threshold": 0}}, "circuit_breaker.failure_threshold"),
    ({"circuit_breaker": {"cool_down": 0}}, "circuit_breaker.cool_down"),
    ({"circuit_breaker": {"colldown": 1}}, "circuit_breaker.colldown"),
    ({"idempotency_key": ""}, "idempotency_key"),
    ({"client_key_password": "p"}, "client_key_password"),
]


@pytest.mark.parametrize(("extra", "field"), CASES, ids=[c[1] for c in CASES])
async def test_invalid_config_names_the_field(extra: dict, field: str) -> None:
    cfg = {"url": URL, **extra}
    with pytest.raises(ApplicationError) as caught:
        await http_request(cfg)
    error = caught.value
    assert error.type == "InvalidConfiguration"
    assert error.non_retryable
    assert error.details[0]["field"] == field
    assert error.message.startswith(f"invalid configuration: {field}: ")


async def test_validation_happens_before_any_io(serve) -> None:
    async def handler(request, server):
        return web.Response()

    server = await serve([("POST", "/x", handler)])
    with pytest.raises(ApplicationError):
        await http_request(
            {"url": server.url("/x"), "method": "POST", "json": {}, "expected_status": ["7xx"]}
        )
    assert server.requests == []


def test_config_accepts_a_struct_or_a_dict() -> None:
    struct = HttpRequestConfig(url="https://api.example.vn/v1", method="post", json={"a": 1})
    assert decode_config(struct) == struct
    decoded = decode_config(
        {"url": "https://api.example.vn/v1", "method": "post", "json": {"a": 1}}
    )
    assert decoded == struct
    prepared = prepare_request(decoded)
    assert prepared.method == "POST"
    assert prepared.body == b'{"a":1}'
    with pytest.raises(InvalidArgumentError) as caught:
        decode_config(["not", "a", "mapping"])
    assert caught.value.field == "config"
    # Struct constructors do not check types; decoding does, naming the field.
    with pytest.raises(InvalidArgumentError) as caught:
        decode_config(HttpRequestConfig(url="https://api.example.vn", total_timeout="5"))
    assert caught.value.field == "total_timeout"


async def test_missing_url_is_named() -> None:
    with pytest.raises(ApplicationError) as caught:
        await http_request({"method": "GET"})
    assert caught.value.details[0]["field"] == "url"
    assert "missing" in caught.value.message


def test_defaults() -> None:
    cfg = HttpRequestConfig(url="https://api.example.vn")
    assert (cfg.method, cfg.connect_timeout, cfg.total_timeout) == ("GET", 10.0, 60.0)
    assert cfg.verify_tls and cfg.follow_redirects and cfg.send_idempotency_key
    assert cfg.max_response_bytes == 10 * 1024 * 1024
    assert cfg.expected_status == ["2xx"]
    assert (
        cfg.circuit_breaker.failure_threshold,
        cfg.circuit_breaker.window,
        cfg.circuit_breaker.cool_down,
    ) == (5, 60.0, 30.0)


def test_expected_status_parsing() -> None:
    matcher = parse_expected_status([201, "404", "2xx", "300-302"])
    assert all(s in matcher for s in (200, 201, 250, 299, 300, 302, 404))
    assert not any(s in matcher for s in (199, 303, 400, 500))


def test_invalid_config_error_helper() -> None:
    error = invalid_config_error(InvalidArgumentError("url", "scheme must be http or https"))
    assert isinstance(error, ApplicationError)
    assert error.non_retryable
    assert error.message == "invalid configuration: url: scheme must be http or https"
    assert error.details[0] == {"field": "url", "reason": "scheme must be http or https"}
