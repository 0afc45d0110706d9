"""The built-in ``http`` activity: one HTTP request, classified for retries.

``http_request`` validates its :class:`~cadenza.activities._http_config.HttpRequestConfig`
before any I/O, then sends the request through a process-wide aiohttp session (one per TLS
configuration), following redirects itself so that every hop is checked against the host
allowlists and counted by the host's circuit breaker. It returns a bounded, JSON-safe dict::

    {"status": 200, "headers": {...}, "body": ..., "body_type": "json", "elapsed_ms": 12.5,
     "url": "https://api.example.com/v1/items"}

``body_type`` says how ``body`` was captured: ``json`` (parsed, for JSON content types),
``text`` (decoded with the response's charset, UTF-8 by default), ``base64`` (anything else) or
``empty``.

Failures are :class:`~cadenza.history.ApplicationError` with the types listed in
:mod:`cadenza.activities._http_errors`: 5xx, 429, connection errors and timeouts are retryable
(429 and 503 with ``next_retry_delay`` from ``Retry-After``); other 4xx, TLS failures, oversized
bodies and configuration errors are not.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from cadenza.activities._context import defn, in_activity, info
from cadenza.activities._http_auth import (
    basic_header,
    bearer_header,
    reset_token_cache,
    token_cache,
)
from cadenza.activities._http_breaker import Permit, circuit_breakers, reset_circuit_breakers
from cadenza.activities._http_config import (
    BasicAuth,
    BearerAuth,
    HttpRequestConfig,
    PreparedRequest,
    decode_config,
    prepare_request,
)
from cadenza.activities._http_errors import (
    HTTP_CLIENT_ERROR,
    HTTP_CONNECTION_ERROR,
    HTTP_RESPONSE_TOO_LARGE,
    HTTP_SERVER_ERROR,
    HTTP_TIMEOUT,
    HTTP_TLS_ERROR,
    HTTP_TOO_MANY_REDIRECTS,
    HTTP_TOO_MANY_REQUESTS,
    HTTP_UNEXPECTED_STATUS,
    REDACTED,
    http_error,
    invalid_config_error,
    parse_retry_after,
    redact_url,
    truncate,
)
from cadenza.activities._http_hosts import (
    HttpActivitySettings,
    check_url_allowed,
    is_blocked_address,
    restore_http_activity_settings,
)
from cadenza.history import ApplicationError, InvalidArgumentError

logger = logging.getLogger("cadenza.activities.http")

USER_AGENT = "cadenza-http/1"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ERROR_BODY_READ_LIMIT = 64 * 1024
"""Bytes of a non-success response read for the error details (they keep fewer characters)."""
_CHUNK = 64 * 1024
_TEXT_TYPES = (
    "application/xml",
    "application/javascript",
    "application/x-www-form-urlencoded",
    "application/x-ndjson",
    "application/yaml",
)
_CROSS_ORIGIN_DROP = ("Authorization", "Proxy-Authorization", "Cookie")


# --------------------------------------------------------------------------- sessions


class _BlockedAddressError(Exception):
    """The resolver refused every address of a host (``block_private_addresses``)."""

    def __init__(self, host: str) -> None:
        super().__init__(host)
        self.host = host


class _GuardedResolver(AbstractResolver):
    """DNS resolver that drops blocked addresses, so a name cannot smuggle in an internal IP."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if not is_blocked_address(r["host"])]
        if not allowed:
            raise _BlockedAddressError(host)
        return allowed

    async def close(self) -> None:
        await self._inner.close()


@dataclass
class _Shared:
    stamp: tuple[int, ...]  # modification times of the TLS files the session was built from
    session: aiohttp.ClientSession


_sessions: dict[tuple[Any, ...], _Shared] = {}
_retired: list[tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession]] = []


def _mtime(path: str | None) -> int:
    if path is None:
        return 0
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def _tls_key(cfg: HttpRequestConfig) -> tuple[Any, ...]:
    password = cfg.client_key_password
    return (
        cfg.verify_tls,
        cfg.ca_bundle,
        cfg.client_cert,
        cfg.client_key,
        hashlib.sha256(password.encode()).hexdigest() if password is not None else None,
    )


def _ssl_context(cfg: HttpRequestConfig) -> ssl.SSLContext | bool:
    if not cfg.verify_tls and cfg.client_cert is None:
        return False
    try:
        ctx = ssl.create_default_context(cafile=cfg.ca_bundle)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise InvalidArgumentError("ca_bundle", f"cannot load CA certificates: {exc}") from None
    if not cfg.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cfg.client_cert is not None:
        try:
            ctx.load_cert_chain(cfg.client_cert, cfg.client_key, cfg.client_key_password)
        except (ssl.SSLError, OSError, ValueError) as exc:
            field = "client_key" if cfg.client_key else "client_cert"
            raise InvalidArgumentError(
                field, f"cannot load the client certificate and key: {type(exc).__name__}"
            ) from None
    return ctx


def _session_for(cfg: HttpRequestConfig) -> aiohttp.ClientSession:
    """The shared session for this TLS configuration on the running loop (created lazily).

    When a CA bundle, certificate or key file was replaced since the session was built (a
    rotation), a new session is built from the new files; the old one finishes its requests and
    is closed by :func:`close_http_sessions`.

    Raises:
        InvalidArgumentError: when the CA bundle or the client certificate cannot be loaded.
    """
    loop = asyncio.get_running_loop()
    key = (loop, *_tls_key(cfg))
    stamp = (_mtime(cfg.ca_bundle), _mtime(cfg.client_cert), _mtime(cfg.client_key))
    shared = _sessions.get(key)
    if shared is not None and not shared.session.closed:
        if shared.stamp == stamp:
            return shared.session
        _retired.append((loop, shared.session))
    connector = aiohttp.TCPConnector(
        ssl=_ssl_context(cfg), resolver=_GuardedResolver(), limit=100, ttl_dns_cache=30
    )
    session = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),  # never carry one job's cookies into another
        trust_env=False,  # no proxies or .netrc credentials picked up from the environment
        headers={"User-Agent": USER_AGENT},
    )
    _sessions[key] = _Shared(stamp, session)
    return session


async def close_http_sessions() -> None:
    """Close the shared sessions of the running loop (the worker calls this at shutdown).

    Sessions of event loops that are already closed are forgotten.
    """
    loop = asyncio.get_running_loop()
    owned = [s for owner, s in _retired if owner is loop]
    _retired[:] = [(o, s) for o, s in _retired if o is not loop and not o.is_closed()]
    for key in list(_sessions):
        owner = key[0]
        if owner is loop:
            owned.append(_sessions.pop(key).session)
        elif owner.is_closed():
            _sessions.pop(key, None)
    for session in owned:
        await session.close()


def reset_http_state(clock: Callable[[], float] | None = None) -> None:
    """Forget breakers and cached tokens and restore default process settings (for tests).

    Args:
        clock: Monotonic seconds for the breakers and the token cache (``time.monotonic`` if
            None), so tests can move time instead of sleeping.
    """
    reset_circuit_breakers(clock)
    reset_token_cache(clock)
    restore_http_activity_settings(HttpActivitySettings())


# --------------------------------------------------------------------------- one hop


@dataclass(frozen=True, kw_only=True)
class _Response:
    status: int
    reason: str
    headers: CIMultiDictProxy[str]
    body: bytes
    url: URL
    content_type: str
    charset: str | None
    has_content_type: bool


def _scrub(text: str, url: URL) -> str:
    """``text`` (an aiohttp message) with the full URL, which may hold secrets, redacted."""
    for form in {str(url), url.human_repr()}:
        text = text.replace(form, redact_url(url))
    return text


class _Call:
    """The state of one activity call across redirects, token refreshes and hops."""

    def __init__(self, prep: PreparedRequest, session: aiohttp.ClientSession) -> None:
        self.prep = prep
        self.cfg = prep.config
        self.session = session
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()
        self.deadline = self.started + self.cfg.total_timeout

    def timeout(self) -> aiohttp.ClientTimeout:
        remaining = self.deadline - self.loop.time()
        if remaining <= 0:
            raise self.timeout_error(connect=False)
        connect = min(self.cfg.connect_timeout, remaining)
        return aiohttp.ClientTimeout(total=remaining, connect=connect, sock_connect=connect)

    def timeout_error(self, *, connect: bool, url: URL | None = None) -> ApplicationError:
        where = redact_url(url or self.prep.url)
        if connect:
            message = f"connecting to {where} timed out after {self.cfg.connect_timeout:g} s"
        else:
            message = f"{self.prep.method} {where} timed out after {self.cfg.total_timeout:g} s"
        return http_error(
            message,
            type=HTTP_TIMEOUT,
            non_retryable=False,
            url=where,
            timeout="connect" if connect else "total",
        )

    async def send(
        self, method: str, url: URL, headers: CIMultiDict[str], body: bytes | None
    ) -> _Response:
        """Send one request and read its body, feeding the host's breaker with the outcome."""
        timeout = self.timeout()  # out of time already: not the host's fault
        breakers = circuit_breakers()
        permit: Permit | None = None
        if self.cfg.circuit_breaker.enabled:
            permit = breakers.acquire(f"{url.raw_host}:{url.port}", self.cfg.circuit_breaker)
        outcome = "release"
        try:
            response = await self._exchange(method, url, headers, body, timeout)
            if response.status >= 500 and response.status not in self.prep.expected:
                outcome = "failure"
            elif response.status != 429:
                outcome = "success"
            return response
        except ApplicationError as exc:
            if exc.type in (HTTP_CONNECTION_ERROR, HTTP_TIMEOUT):
                outcome = "failure"
            elif exc.type == HTTP_RESPONSE_TOO_LARGE:
                outcome = "success"
            raise
        finally:
            if permit is not None:
                if outcome == "success":
                    breakers.record_success(permit)
                elif outcome == "failure":
                    breakers.record_failure(permit)
                else:
                    breakers.release(permit)

    async def _exchange(
        self,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        body: bytes | None,
        timeout: aiohttp.ClientTimeout,
    ) -> _Response:
        where = redact_url(url)
        try:
            async with self.session.request(
                method,
                url,
                headers=headers,
                data=body,
                timeout=timeout,
                allow_redirects=False,
            ) as resp:
                redirect = self.cfg.follow_redirects and resp.status in REDIRECT_STATUSES
                if redirect and "Location" in resp.headers:
                    raw = b""  # followed: its body is of no interest
                elif method == "HEAD" or resp.status in (204, 304):
                    raw = b""  # no body, whatever Content-Length announces
                elif resp.status in self.prep.expected:
                    raw = await self._read(resp, self.cfg.max_response_bytes, strict=True)
                else:
                    raw = await self._read(resp, ERROR_BODY_READ_LIMIT, strict=False)
                return _Response(
                    status=resp.status,
                    reason=resp.reason or "",
                    headers=resp.headers,
                    body=raw,
                    url=url,
                    content_type=resp.content_type,
                    charset=resp.charset,
                    has_content_type="Content-Type" in resp.headers,
                )
        except _BlockedAddressError as exc:
            raise InvalidArgumentError(
                "url",
                f"host {exc.host!r} resolves only to private or loopback addresses, "
                "which are blocked",
            ) from None
        except aiohttp.InvalidURL as exc:  # e.g. a legacy numeric IPv4 form like 2130706433
            reason = _scrub(str(exc), url)
            raise InvalidArgumentError("url", f"invalid URL {where!r}: {reason}") from None
        except aiohttp.ConnectionTimeoutError as exc:
            raise self.timeout_error(connect=True, url=url) from exc
        except TimeoutError as exc:
            raise self.timeout_error(connect=False, url=url) from exc
        except aiohttp.ClientSSLError as exc:
            raise http_error(
                f"TLS failed for {where}: {_scrub(str(exc), url)}",
                type=HTTP_TLS_ERROR,
                non_retryable=True,
                url=where,
            ) from exc
        except aiohttp.ClientError as exc:
            raise http_error(
                f"{method} {where} failed: {type(exc).__name__}: {_scrub(str(exc), url)}",
                type=HTTP_CONNECTION_ERROR,
                non_retryable=False,
                url=where,
            ) from exc

    async def _read(self, resp: aiohttp.ClientResponse, limit: int, *, strict: bool) -> bytes:
        """Read the body, at most ``limit`` bytes; ``strict`` fails when there is more."""
        length = resp.content_length
        if strict and length is not None and length > limit:
            raise self._too_large(resp, f"Content-Length {length}")
        buf = bytearray()
        while True:
            chunk = await resp.content.read(_CHUNK)
            if not chunk:
                return bytes(buf)
            buf += chunk
            if len(buf) > limit:
                if strict:
                    raise self._too_large(resp, f"more than {limit} bytes")
                return bytes(buf[:limit])

    def _too_large(self, resp: aiohttp.ClientResponse, size: str) -> ApplicationError:
        where = redact_url(resp.url)
        return http_error(
            f"response from {where} is too large ({size}; max_response_bytes is "
            f"{self.cfg.max_response_bytes})",
            type=HTTP_RESPONSE_TOO_LARGE,
            non_retryable=True,
            status=resp.status,
            url=where,
            max_response_bytes=self.cfg.max_response_bytes,
        )


# --------------------------------------------------------------------------- the request


def _base_headers(prep: PreparedRequest) -> CIMultiDict[str]:
    headers = CIMultiDict(prep.headers)
    cfg = prep.config
    if cfg.send_idempotency_key and "Idempotency-Key" not in headers:
        key = cfg.idempotency_key
        if key is None and in_activity():
            key = info().idempotency_key
        if key:
            headers["Idempotency-Key"] = key
    return headers


async def _authorization(call: _Call, rejected: str | None) -> tuple[str | None, str | None]:
    """The ``Authorization`` value for the request's origin, and the OAuth2 token in it."""
    auth = call.cfg.auth
    if auth is None:
        return None, None
    if isinstance(auth, BasicAuth):
        return basic_header(auth), None
    if isinstance(auth, BearerAuth):
        return bearer_header(auth), None
    token = await token_cache().get(
        auth, call.session, client_timeout=call.timeout(), rejected=rejected
    )
    return f"Bearer {token}", token


def _next_hop(
    call: _Call, resp: _Response, method: str, body: bytes | None
) -> tuple[str, URL, bytes | None]:
    location = resp.headers["Location"]
    try:
        target = resp.url.join(URL(location)).with_fragment(None)
    except (TypeError, ValueError):
        raise http_error(
            f"redirect from {redact_url(resp.url)} to an invalid location",
            type=HTTP_CLIENT_ERROR,
            non_retryable=True,
            status=resp.status,
            url=redact_url(resp.url),
        ) from None
    if target.scheme not in ("http", "https") or not target.raw_host:
        raise InvalidArgumentError(
            "url", f"redirect to {redact_url(target)!r}: only http(s) URLs can be followed"
        )
    check_url_allowed(target, call.prep.job_allowed_hosts, what="redirect")
    if (resp.status == 303 and method != "HEAD") or (
        resp.status in (301, 302) and method == "POST"
    ):
        return "GET", target, None
    return method, target, body


async def _perform(call: _Call) -> _Response:
    prep = call.prep
    base = _base_headers(prep)
    origin = prep.url.origin()
    method, url, body = prep.method, prep.url, prep.body
    redirects = 0
    token: str | None = None  # the OAuth2 token last sent
    rejected: str | None = None  # a token the API answered 401 to
    while True:
        same_origin = url.origin() == origin
        headers = CIMultiDict(base)
        if not same_origin:  # credentials go to the configured origin only
            for name in _CROSS_ORIGIN_DROP:
                headers.popall(name, None)
        else:
            authorization, token = await _authorization(call, rejected)
            if authorization is not None:
                headers["Authorization"] = authorization
        resp = await call.send(method, url, headers, body)
        if resp.status == 401 and token is not None and rejected is None:
            rejected = token  # revoked before its expiry: fetch a new token, once
            continue
        if not (
            call.cfg.follow_redirects
            and resp.status in REDIRECT_STATUSES
            and "Location" in resp.headers
        ):
            return resp
        if redirects >= call.cfg.max_redirects:
            raise http_error(
                f"{prep.method} {redact_url(prep.url)}: more than {call.cfg.max_redirects} "
                "redirects",
                type=HTTP_TOO_MANY_REDIRECTS,
                non_retryable=True,
                url=redact_url(url),
                max_redirects=call.cfg.max_redirects,
            )
        redirects += 1
        had_body = body is not None
        method, url, body = _next_hop(call, resp, method, body)
        if had_body and body is None:
            base.popall("Content-Type", None)


def _decode_body(resp: _Response) -> tuple[Any, str]:
    raw = resp.body
    if not raw:
        return None, "empty"
    mime = resp.content_type.lower()
    if mime == "application/json" or mime.endswith("+json"):
        try:
            return msgspec.json.decode(raw), "json"
        except msgspec.DecodeError:
            pass  # declared JSON but is not: keep it as text below
    texty = (
        mime.startswith("text/")
        or mime in _TEXT_TYPES
        or mime.endswith(("+xml", "+json"))
        or mime == "application/json"
        or resp.charset is not None
        or not resp.has_content_type
    )
    if texty:
        try:
            return raw.decode(resp.charset or "utf-8"), "text"
        except (UnicodeDecodeError, LookupError):
            pass
    return base64.b64encode(raw).decode("ascii"), "base64"


def _result_headers(headers: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key == "set-cookie":
            value = REDACTED
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _status_error(call: _Call, resp: _Response) -> ApplicationError:
    status = resp.status
    where = redact_url(resp.url)
    message = f"{call.prep.method} {where} answered {status} {resp.reason}".rstrip()
    try:
        text = resp.body.decode(resp.charset or "utf-8", "replace")
    except LookupError:  # unknown charset name
        text = resp.body.decode("utf-8", "replace")
    details: dict[str, Any] = {"status": status, "url": where, "body": truncate(text)}
    retry_after = resp.headers.get("Retry-After")
    if status == 429:
        delay = parse_retry_after(retry_after)
        return http_error(
            message,
            type=HTTP_TOO_MANY_REQUESTS,
            non_retryable=False,
            next_retry_delay=delay,
            retry_after_s=None if delay is None else delay.total_seconds(),
            **details,
        )
    if status >= 500:
        delay = parse_retry_after(retry_after) if status == 503 else None
        return http_error(
            message,
            type=HTTP_SERVER_ERROR,
            non_retryable=False,
            next_retry_delay=delay,
            retry_after_s=None if delay is None else delay.total_seconds(),
            **details,
        )
    if status >= 400:
        return http_error(message, type=HTTP_CLIENT_ERROR, non_retryable=True, **details)
    return http_error(
        f"{message}, which is not in expected_status",
        type=HTTP_UNEXPECTED_STATUS,
        non_retryable=True,
        **details,
    )


async def execute_http_request(config: HttpRequestConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``config``, send the request and capture the response (no activity needed).

    See :func:`http_request` for the result and the errors.
    """
    try:
        prep = prepare_request(decode_config(config))
        session = _session_for(prep.config)
    except InvalidArgumentError as exc:
        raise invalid_config_error(exc) from exc
    call = _Call(prep, session)
    try:
        resp = await _perform(call)
    except InvalidArgumentError as exc:  # a redirect or a resolved address left the allowlist
        raise invalid_config_error(exc) from exc
    elapsed_ms = round((call.loop.time() - call.started) * 1000, 1)
    logger.debug(
        "%s %s -> %d in %.1f ms", prep.method, redact_url(resp.url), resp.status, elapsed_ms
    )
    if resp.status not in prep.expected:
        raise _status_error(call, resp)
    body, body_type = _decode_body(resp)
    return {
        "status": resp.status,
        "headers": _result_headers(resp.headers),
        "body": body,
        "body_type": body_type,
        "elapsed_ms": elapsed_ms,
        "url": redact_url(resp.url),
    }


@defn(name="http")
async def http_request(config: Any) -> dict[str, Any]:
    """The built-in ``http`` activity: send one HTTP request described by ``config``.

    Args:
        config: An :class:`HttpRequestConfig`, or a dict with the same keys (as passed by
            ``workflow.execute_activity("http", {...})`` or a job step's ``config:``).

    Returns:
        ``{"status", "headers", "body", "body_type", "elapsed_ms", "url"}``: header names in
        lower case (``set-cookie`` values masked), ``body`` parsed JSON / text / base64 per
        ``body_type``, ``url`` the final URL after redirects (secret query values masked).

    Raises:
        ApplicationError: typed ``HttpServerError``, ``HttpTooManyRequests``,
            ``HttpConnectionError``, ``HttpTimeout``, ``HttpCircuitOpen`` (retryable) or
            ``HttpClientError``, ``HttpUnexpectedStatus``, ``HttpTlsError``,
            ``HttpResponseTooLarge``, ``HttpTooManyRedirects``, ``InvalidConfiguration``
            (non-retryable); ``HttpAuthError`` for the OAuth2 token endpoint.
    """
    return await execute_http_request(config)
