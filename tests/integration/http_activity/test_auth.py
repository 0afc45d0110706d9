"""Basic, Bearer and OAuth2 client-credentials authentication against a real server."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from cadenza.activities._http import http_request
from cadenza.activities._http_auth import token_cache
from cadenza.activities._http_config import HttpRequestConfig, OAuth2ClientCredentials
from cadenza.history import ApplicationError


async def whoami(request: web.Request, server) -> web.Response:
    return web.json_response({"authorization": request.headers.get("Authorization")})


async def test_basic_auth(serve) -> None:
    server = await serve([("GET", "/me", whoami)])
    result = await http_request(
        {
            "url": server.url("/me"),
            "auth": {"type": "basic", "username": "nguyen", "password": "mật-khẩu:1"},
        }
    )
    scheme, encoded = result["body"]["authorization"].split(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded).decode() == "nguyen:mật-khẩu:1"


async def test_bearer_auth(serve) -> None:
    server = await serve([("GET", "/me", whoami)])
    result = await http_request(
        {"url": server.url("/me"), "auth": {"type": "bearer", "token": "abc.def"}}
    )
    assert result["body"]["authorization"] == "Bearer abc.def"


@dataclass
class IdP:
    """A tiny OAuth2 server: a token endpoint and an API that accepts its live tokens."""

    expires_in: int | None = 3600
    issued: list[str] = field(default_factory=list)
    valid: set[str] = field(default_factory=set)
    token_requests: list[dict] = field(default_factory=list)
    gate: asyncio.Event | None = None
    fail_with: int | None = None

    async def token(self, request: web.Request, server) -> web.Response:
        form = await request.post()
        self.token_requests.append(
            {"form": dict(form), "authorization": request.headers.get("Authorization")}
        )
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            return web.json_response({"error": "nope"}, status=self.fail_with)
        client = self._client(request, form)
        if client != ("svc", "s3cr3t"):
            return web.json_response({"error": "invalid_client"}, status=401)
        token = f"tok-{len(self.issued) + 1}"
        self.issued.append(token)
        self.valid.add(token)
        body = {"access_token": token, "token_type": "bearer"}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return web.json_response(body)

    @staticmethod
    def _client(request: web.Request, form) -> tuple[str, str]:
        header = request.headers.get("Authorization")
        if header:
            user, _, password = base64.b64decode(header.split(" ")[1]).decode().partition(":")
            return user, password
        return form.get("client_id", ""), form.get("client_secret", "")

    async def api(self, request: web.Request, server) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.valid:
            return web.json_response({"error": "invalid_token"}, status=401)
        return web.json_response({"token": token})


@pytest.fixture
async def idp(serve):
    provider = IdP()

    async def never(request, server):
        return web.json_response({"error": "invalid_token"}, status=401)

    server = await serve(
        [
            ("POST", "/token", provider.token),
            ("GET", "/api", provider.api),
            ("GET", "/never", never),
        ]
    )
    provider.server = server  # type: ignore[attr-defined]
    return provider


def oauth_config(idp, **auth) -> dict:
    return {
        "url": idp.server.url("/api"),
        "auth": {
            "type": "oauth2_client_credentials",
            "token_url": idp.server.url("/token"),
            "client_id": "svc",
            "client_secret": "s3cr3t",
            "scope": "read write",
            "audience": "https://api.example.vn",
            **auth,
        },
    }


async def test_oauth2_token_fetched_once_and_reused(idp) -> None:
    first = await http_request(oauth_config(idp))
    second = await http_request(oauth_config(idp))
    assert first["body"]["token"] == second["body"]["token"] == "tok-1"
    assert len(idp.token_requests) == 1
    request = idp.token_requests[0]
    assert request["form"] == {
        "grant_type": "client_credentials",
        "scope": "read write",
        "audience": "https://api.example.vn",
    }
    assert base64.b64decode(request["authorization"].split(" ")[1]) == b"svc:s3cr3t"


async def test_oauth2_client_credentials_in_body(idp) -> None:
    result = await http_request(oauth_config(idp, client_auth="body"))
    assert result["body"]["token"] == "tok-1"
    request = idp.token_requests[0]
    assert request["authorization"] is None
    assert request["form"]["client_id"] == "svc"
    assert request["form"]["client_secret"] == "s3cr3t"


async def test_oauth2_token_refreshed_after_expiry(idp, clock) -> None:
    idp.expires_in = 100  # handed out until 10 s before it expires
    assert (await http_request(oauth_config(idp)))["body"]["token"] == "tok-1"
    clock.advance(89)
    assert (await http_request(oauth_config(idp)))["body"]["token"] == "tok-1"
    clock.advance(2)
    assert (await http_request(oauth_config(idp)))["body"]["token"] == "tok-2"
    assert len(idp.token_requests) == 2


async def test_oauth2_cache_is_keyed_by_scope_and_secret(idp) -> None:
    await http_request(oauth_config(idp))
    await http_request(oauth_config(idp, scope="read"))
    assert len(idp.token_requests) == 2
    with pytest.raises(ApplicationError) as caught:
        await http_request(oauth_config(idp, client_secret="wrong"))
    assert caught.value.type == "HttpAuthError"
    assert caught.value.non_retryable
    assert len(idp.token_requests) == 3  # the wrong secret did not get the cached token


async def test_oauth2_refreshes_once_on_401(idp) -> None:
    await http_request(oauth_config(idp))
    idp.valid.clear()  # the IdP revoked tok-1 before its expiry
    result = await http_request(oauth_config(idp))
    assert result["body"]["token"] == "tok-2"
    assert len(idp.token_requests) == 2
    assert idp.server.hits("/api") == 3


async def test_oauth2_second_401_is_not_retried_again(idp) -> None:
    cfg = oauth_config(idp)
    cfg["url"] = idp.server.url("/never")  # answers 401 to every token
    with pytest.raises(ApplicationError) as caught:
        await http_request(cfg)
    assert caught.value.type == "HttpClientError"
    assert caught.value.non_retryable
    assert caught.value.details[0]["status"] == 401
    assert len(idp.token_requests) == 2  # one refresh, then give up
    assert idp.server.hits("/never") == 2


async def test_oauth2_concurrent_callers_share_one_fetch(idp, wait_until) -> None:
    idp.gate = asyncio.Event()
    calls = [asyncio.create_task(http_request(oauth_config(idp))) for _ in range(8)]
    await wait_until(lambda: len(idp.token_requests) > 0)
    idp.gate.set()
    results = await asyncio.gather(*calls)
    assert {r["body"]["token"] for r in results} == {"tok-1"}
    assert len(idp.token_requests) == 1
    assert token_cache().fetches == 1


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (429, True), (400, False)])
async def test_oauth2_token_endpoint_failures(idp, status, retryable) -> None:
    idp.fail_with = status
    with pytest.raises(ApplicationError) as caught:
        await http_request(oauth_config(idp))
    assert caught.value.type == "HttpAuthError"
    assert caught.value.non_retryable is not retryable
    assert caught.value.details[0]["status"] == status
    assert idp.server.hits("/api") == 0


async def test_oauth2_token_endpoint_unreachable_is_retryable(idp, closed_port) -> None:
    cfg = oauth_config(idp, token_url=f"http://127.0.0.1:{closed_port}/token")
    with pytest.raises(ApplicationError) as caught:
        await http_request(cfg)
    assert caught.value.type == "HttpConnectionError"
    assert not caught.value.non_retryable


async def test_secrets_never_in_errors_logs_or_repr(idp, serve, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="cadenza")

    async def deny(request, server):
        return web.Response(status=403, text="forbidden")

    server = await serve([("GET", "/deny", deny)])
    secrets = ["pa55word-xyz", "bearer-xyz-123", "s3cr3t", "tok-1"]
    errors: list[ApplicationError] = []
    for auth in (
        {"type": "basic", "username": "u", "password": "pa55word-xyz"},
        {"type": "bearer", "token": "bearer-xyz-123"},
    ):
        with pytest.raises(ApplicationError) as caught:
            await http_request({"url": server.url("/deny?api_key=k-999"), "auth": auth})
        errors.append(caught.value)
    await http_request(oauth_config(idp))
    idp.fail_with = 401
    idp.valid.clear()
    with pytest.raises(ApplicationError) as caught:
        await http_request(oauth_config(idp))
    errors.append(caught.value)
    cfg = HttpRequestConfig(
        url=server.url("/x?token=t-777"),
        headers={"X-Api-Key": "hdr-555"},
        auth=OAuth2ClientCredentials(token_url="http://x/t", client_id="c", client_secret="s3cr3t"),
    )
    texts = [caplog.text, repr(cfg), repr(cfg.auth)]
    for error in errors:
        texts += [str(error), json.dumps(list(error.details))]
    blob = "\n".join(texts)
    for secret in [*secrets, "k-999", "t-777", "hdr-555"]:
        assert secret not in blob
    assert "GET" in caplog.text  # the requests were logged, without their secrets
