"""Host allowlists (per request and process-wide) and blocking of private addresses."""

from __future__ import annotations

import pytest
from aiohttp import web

from cadenza.activities._http import http_request
from cadenza.activities._http_hosts import configure_http_activity, host_matches
from cadenza.history import ApplicationError, InvalidArgumentError


async def ok(request: web.Request, server) -> web.Response:
    return web.Response(text="ok")


async def rejected(cfg: dict) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await http_request(cfg)
    error = caught.value
    assert error.type == "InvalidConfiguration"
    assert error.non_retryable
    return error


def test_pattern_matching() -> None:
    patterns = ["api.example.vn", "*.bank.vn", "10.0.0.5", "::1"]
    assert host_matches("api.example.vn", patterns)
    assert host_matches("API.Example.VN.", patterns)
    assert not host_matches("www.example.vn", patterns)
    assert host_matches("core.bank.vn", patterns)
    assert host_matches("a.b.bank.vn", patterns)
    assert not host_matches("bank.vn", patterns)
    assert not host_matches("evilbank.vn", patterns)
    assert host_matches("10.0.0.5", patterns)
    assert host_matches("[::1]", patterns)


async def test_request_allowlist(serve) -> None:
    server = await serve([("GET", "/ok", ok)])
    url = server.url("/ok")
    assert (await http_request({"url": url, "allowed_hosts": ["127.0.0.1"]}))["status"] == 200
    error = await rejected({"url": url, "allowed_hosts": ["api.example.vn", "*.example.vn"]})
    assert error.details[0]["field"] == "url"
    assert "127.0.0.1" in error.message
    assert len(server.requests) == 1  # the second was refused before connecting


async def test_process_allowlist_cannot_be_widened_by_a_job(serve) -> None:
    server = await serve([("GET", "/ok", ok)])
    configure_http_activity(allowed_hosts=["*.internal.vn", "127.0.0.1"])
    assert (await http_request({"url": server.url("/ok")}))["status"] == 200
    configure_http_activity(allowed_hosts=["*.internal.vn"])
    error = await rejected({"url": server.url("/ok"), "allowed_hosts": ["127.0.0.1"]})
    assert error.details[0]["field"] == "url"
    assert "process-wide" in error.message
    assert len(server.requests) == 1


async def test_redirect_outside_the_allowlist_is_refused(serve) -> None:
    other = await serve([("GET", "/ok", ok)])

    async def away(request, server):
        # Same address, other name: the allowlist compares names, so it must refuse.
        return web.Response(status=302, headers={"Location": f"http://localhost:{other.port}/ok"})

    server = await serve([("GET", "/away", away)])
    error = await rejected({"url": server.url("/away"), "allowed_hosts": ["127.0.0.1"]})
    assert "redirect" in error.message
    assert other.requests == []


async def test_token_url_must_be_allowed(serve) -> None:
    server = await serve([("GET", "/ok", ok)])
    error = await rejected(
        {
            "url": server.url("/ok"),
            "allowed_hosts": ["127.0.0.1"],
            "auth": {
                "type": "oauth2_client_credentials",
                "token_url": "https://login.example.vn/token",
                "client_id": "c",
                "client_secret": "s",
            },
        }
    )
    assert error.details[0]["field"] == "auth.token_url"


async def test_private_addresses_blocked_when_configured(serve) -> None:
    server = await serve([("GET", "/ok", ok)])
    configure_http_activity(block_private_addresses=True)
    literal = await rejected({"url": server.url("/ok")})
    assert "private or loopback" in literal.message
    by_name = await rejected({"url": f"http://localhost:{server.port}/ok"})
    assert by_name.details[0]["field"] == "url"
    assert server.requests == []
    configure_http_activity(block_private_addresses=True, allowed_networks=["127.0.0.0/8"])
    assert (await http_request({"url": server.url("/ok")}))["status"] == 200
    assert (await http_request({"url": f"http://localhost:{server.port}/ok"}))["status"] == 200


async def test_private_addresses_allowed_by_default(serve) -> None:
    server = await serve([("GET", "/ok", ok)])
    assert (await http_request({"url": f"http://localhost:{server.port}/ok"}))["status"] == 200


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"allowed_hosts": ["*"]}, "allowed_hosts[0]"),
        ({"allowed_hosts": ["ok.vn", "bad host"]}, "allowed_hosts[1]"),
        ({"allowed_networks": ["10.0.0.0/33"]}, "allowed_networks[0]"),
    ],
)
def test_process_settings_are_validated(kwargs, field) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        configure_http_activity(**kwargs)
    assert caught.value.field == field


async def test_legacy_numeric_ipv4_forms_are_refused(serve) -> None:
    server = await serve([("GET", "/ok", ok)])
    for host in ("2130706433", "127.1"):  # both mean 127.0.0.1 to inet_aton
        error = await rejected({"url": f"http://{host}:{server.port}/ok"})
        assert error.details[0]["field"] == "url"
    assert server.requests == []
