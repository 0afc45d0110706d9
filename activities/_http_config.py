"""Configuration of the HTTP activity and its validation before any I/O.

:class:`HttpRequestConfig` is the one boundary struct: SDK workflows pass it (or the same keys as
a plain dict) to ``workflow.execute_activity("http", ...)``, and job files put the same keys under
a step's ``config:``. :func:`prepare_request` validates every field and turns the config into a
:class:`PreparedRequest` (encoded body, parsed status matcher, checked URL), raising
:class:`~cadenza.history.InvalidArgumentError` that names the field. Nothing touches the network
before it returns.

Process-wide limits on where requests may go live in :mod:`cadenza.activities._http_hosts`.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from multidict import CIMultiDict
from yarl import URL

from cadenza.activities._http_errors import (
    REDACTED,
    invalid_argument_from_msgspec,
    is_sensitive_header,
    redact_url,
)
from cadenza.activities._http_hosts import check_url_allowed, normalize_host_pattern
from cadenza.history import InvalidArgumentError

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
MiB = 1024 * 1024
MAX_RESPONSE_BYTES_LIMIT = 256 * MiB
"""Upper bound for ``max_response_bytes``: results go into histories and must stay bounded."""


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of the config structs: frozen, keyword-only, unknown keys rejected."""


class BasicAuth(_Strict, tag="basic", tag_field="type"):
    """HTTP Basic authentication (``{"type": "basic", "username": ..., "password": ...}``).

    Attributes:
        username: User name (must not contain ``:``).
        password: Password; never logged, masked in ``repr``.
    """

    username: str
    password: str

    def __repr__(self) -> str:
        return f"BasicAuth(username={self.username!r}, password={REDACTED!r})"


class BearerAuth(_Strict, tag="bearer", tag_field="type"):
    """A static bearer token (``{"type": "bearer", "token": ...}``).

    Attributes:
        token: The token sent as ``Authorization: Bearer <token>``; never logged.
    """

    token: str

    def __repr__(self) -> str:
        return f"BearerAuth(token={REDACTED!r})"


class OAuth2ClientCredentials(_Strict, tag="oauth2_client_credentials", tag_field="type"):
    """OAuth2 client-credentials grant (RFC 6749 §4.4); the token is cached process-wide.

    Attributes:
        token_url: The token endpoint (http or https; subject to the same allowlists).
        client_id: The client id.
        client_secret: The client secret; never logged, masked in ``repr``.
        scope: Space-separated scopes to request, if any.
        audience: ``audience`` parameter (Auth0, Okta and others), if any.
        client_auth: How the client authenticates to the token endpoint: ``basic`` (default,
            HTTP Basic with form-encoded id and secret, as RFC 6749 §2.3.1 says) or ``body``
            (``client_id`` and ``client_secret`` as form fields).
    """

    token_url: str
    client_id: str
    client_secret: str
    scope: str | None = None
    audience: str | None = None
    client_auth: Literal["basic", "body"] = "basic"

    def __repr__(self) -> str:
        return (
            f"OAuth2ClientCredentials(token_url={redact_url(self.token_url)!r}, "
            f"client_id={self.client_id!r}, client_secret={REDACTED!r}, scope={self.scope!r}, "
            f"audience={self.audience!r}, client_auth={self.client_auth!r})"
        )


Auth = BasicAuth | BearerAuth | OAuth2ClientCredentials


class CircuitBreakerConfig(_Strict):
    """Circuit breaker settings for the request's host (the breaker itself is per host).

    Attributes:
        enabled: Whether this request consults and feeds the host's breaker. Default true.
        failure_threshold: Failures within ``window`` that open the breaker. Default 5.
        window: Seconds over which failures are counted. Default 60.
        cool_down: Seconds the breaker stays open before letting one trial through. Default 30.
    """

    enabled: bool = True
    failure_threshold: int = 5
    window: float = 60.0
    cool_down: float = 30.0


class HttpRequestConfig(_Strict):
    """Configuration of one HTTP request made by the built-in ``http`` activity.

    Exactly one body kind (``json``, ``form``, ``text``, ``body_base64``) may be given, and none
    for GET and HEAD. Every field is validated before any I/O.

    Attributes:
        url: Absolute ``http://`` or ``https://`` URL, without user info (use ``auth``).
        method: GET, POST, PUT, PATCH, DELETE or HEAD (case-insensitive). Default GET.
        headers: Request headers (string values; numbers and booleans are converted). Values
            of credential headers are never logged.
        query: Query parameters added to those already in ``url``: strings, numbers or booleans
            (``true``/``false``); a list value repeats the key.
        json: A JSON body (any JSON value, including ``null``); sets
            ``Content-Type: application/json``.
        form: A form body (``application/x-www-form-urlencoded``); a list value repeats the key.
        text: A raw text body, sent as UTF-8 (``text/plain; charset=utf-8`` unless ``headers``
            say otherwise).
        body_base64: A raw binary body, base64-encoded (``application/octet-stream`` unless
            ``headers`` say otherwise).
        auth: ``basic``, ``bearer`` or ``oauth2_client_credentials`` (see those structs).
        connect_timeout: Seconds to establish a connection (TCP and TLS). Default 10.
        total_timeout: Seconds for the whole call: token fetch, redirects, reading the body.
            Default 60.
        verify_tls: Verify the server's certificate and host name. Default true.
        ca_bundle: PEM file of CA certificates to trust instead of the system store.
        client_cert: PEM file with the client certificate (mutual TLS).
        client_key: PEM file with the client's private key, when not in ``client_cert``.
        client_key_password: Password of an encrypted ``client_key``; never logged.
        max_response_bytes: Largest accepted response body (after decompression); a larger one
            fails the activity, non-retryably. Default 10 MiB.
        expected_status: Statuses that mean success: codes (``204``, ``"404"``), classes
            (``"2xx"``) or ranges (``"200-299"``). Default ``["2xx"]``.
        follow_redirects: Follow 301, 302, 303, 307 and 308. Default true.
        max_redirects: Most redirects followed before failing. Default 10.
        allowed_hosts: Hosts this request may reach (exact names or ``*.suffix``), checked
            before connecting and on every redirect; the process-wide allowlist applies too.
        idempotency_key: Value of the ``Idempotency-Key`` header; defaults to the activity's
            idempotency key when running in an activity.
        send_idempotency_key: Send ``Idempotency-Key`` at all. Default true.
        circuit_breaker: Settings of the per-host circuit breaker.
    """

    url: str
    method: str = "GET"
    headers: dict[str, Any] = {}
    query: dict[str, Any] = {}
    json: Any | msgspec.UnsetType = msgspec.UNSET
    form: dict[str, Any] | None = None
    text: str | None = None
    body_base64: str | None = None
    auth: Auth | None = None
    connect_timeout: float = 10.0
    total_timeout: float = 60.0
    verify_tls: bool = True
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    client_key_password: str | None = None
    max_response_bytes: int = 10 * MiB
    expected_status: list[int | str] = msgspec.field(default_factory=lambda: ["2xx"])
    follow_redirects: bool = True
    max_redirects: int = 10
    allowed_hosts: list[str] | None = None
    idempotency_key: str | None = None
    send_idempotency_key: bool = True
    circuit_breaker: CircuitBreakerConfig = msgspec.field(default_factory=CircuitBreakerConfig)

    def __repr__(self) -> str:
        shown = {
            "method": self.method,
            "url": redact_url(self.url),
            "headers": {
                k: (REDACTED if is_sensitive_header(k) else v) for k, v in self.headers.items()
            },
            "auth": self.auth,
        }
        inner = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"HttpRequestConfig({inner}, ...)"


def decode_config(config: HttpRequestConfig | Mapping[str, Any]) -> HttpRequestConfig:
    """Accept a config struct or a plain dict (as decoded from JSON or a job file), type-checked.

    Raises:
        InvalidArgumentError: naming the offending field when the dict does not match.
    """
    if isinstance(config, HttpRequestConfig):
        # Struct constructors do not check types: round-trip to get the same checks as a dict.
        try:
            config = msgspec.to_builtins(config)
        except (TypeError, msgspec.EncodeError) as exc:
            raise InvalidArgumentError("config", f"not encodable: {exc}") from None
    if not isinstance(config, Mapping):
        raise InvalidArgumentError(
            "config", f"expected an object of HTTP request settings, got {type(config).__name__}"
        )
    try:
        return msgspec.convert(dict(config), HttpRequestConfig)
    except msgspec.ValidationError as exc:
        raise invalid_argument_from_msgspec(exc) from None


# --------------------------------------------------------------------------- status matcher


@dataclass(frozen=True)
class StatusMatcher:
    """The set of expected statuses, as inclusive ranges."""

    ranges: tuple[tuple[int, int], ...]

    def __contains__(self, status: object) -> bool:
        return isinstance(status, int) and any(lo <= status <= hi for lo, hi in self.ranges)


_STATUS_CLASS = re.compile(r"^([1-5])xx$", re.IGNORECASE)
_STATUS_RANGE = re.compile(r"^(\d{3})\s*-\s*(\d{3})$")


def parse_expected_status(values: Sequence[int | str]) -> StatusMatcher:
    """Parse ``expected_status`` entries: ``204``, ``"404"``, ``"2xx"``, ``"200-299"``.

    Raises:
        InvalidArgumentError: naming ``expected_status[i]``.
    """
    if not values:
        raise InvalidArgumentError("expected_status", "must list at least one status")
    ranges: list[tuple[int, int]] = []
    for i, value in enumerate(values):
        name = f"expected_status[{i}]"
        if isinstance(value, bool):
            raise InvalidArgumentError(name, "expected a status code, class or range")
        if isinstance(value, int):
            lo = hi = value
        else:
            text = value.strip()
            if m := _STATUS_CLASS.match(text):
                lo, hi = int(m.group(1)) * 100, int(m.group(1)) * 100 + 99
            elif m := _STATUS_RANGE.match(text):
                lo, hi = int(m.group(1)), int(m.group(2))
            elif text.isdigit():
                lo = hi = int(text)
            else:
                raise InvalidArgumentError(
                    name, f"{value!r} is not a status code, a class like '2xx' or a range"
                )
        if not (100 <= lo <= hi <= 599):
            raise InvalidArgumentError(name, f"{value!r} is outside 100-599 or reversed")
        ranges.append((lo, hi))
    return StatusMatcher(tuple(ranges))


# --------------------------------------------------------------------------- prepared request

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


@dataclass(frozen=True, kw_only=True)
class PreparedRequest:
    """A validated request: everything derived from the config that needs no I/O."""

    config: HttpRequestConfig
    method: str
    url: URL
    headers: CIMultiDict[str]
    body: bytes | None
    expected: StatusMatcher
    job_allowed_hosts: tuple[str, ...] | None
    token_url: URL | None


def _check_positive(value: float, name: str, *, maximum: float | None = None) -> None:
    if isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise InvalidArgumentError(name, f"must be a positive number of seconds, got {value!r}")
    if maximum is not None and value > maximum:
        raise InvalidArgumentError(name, f"must be at most {maximum:g}, got {value!r}")


def _check_url(text: str, name: str) -> URL:
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgumentError(name, "must be a non-empty absolute http(s) URL")
    try:
        url = URL(text.strip())
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(name, f"not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise InvalidArgumentError(name, f"scheme must be http or https, got {url.scheme!r}")
    if not url.raw_host:
        raise InvalidArgumentError(name, "the URL has no host")
    if url.raw_user or url.raw_password:
        raise InvalidArgumentError(name, "credentials in the URL are not allowed; use auth")
    if url.fragment:
        url = url.with_fragment(None)
    try:
        _ = url.port
    except ValueError as exc:
        raise InvalidArgumentError(name, f"invalid port: {exc}") from None
    return url


def _scalar_text(value: Any, name: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgumentError(name, "must be a finite number")
        return repr(value)
    raise InvalidArgumentError(
        name, f"expected a string, number or boolean, got {type(value).__name__}"
    )


def _param_pairs(values: Mapping[str, Any], name: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in values.items():
        if not key:
            raise InvalidArgumentError(name, "parameter names must not be empty")
        for item in value if isinstance(value, list) else [value]:
            pairs.append((key, _scalar_text(item, f"{name}.{key}")))
    return pairs


def _check_file(path: str | None, name: str) -> None:
    if path is None:
        return
    if not path or not os.path.isfile(path):
        raise InvalidArgumentError(name, f"file not found: {path!r}")


def _encode_body(cfg: HttpRequestConfig, headers: CIMultiDict[str]) -> bytes | None:
    given = [
        name
        for name, present in (
            ("json", cfg.json is not msgspec.UNSET),
            ("form", cfg.form is not None),
            ("text", cfg.text is not None),
            ("body_base64", cfg.body_base64 is not None),
        )
        if present
    ]
    if len(given) > 1:
        raise InvalidArgumentError(given[1], f"only one body kind may be given, got {given}")
    if not given:
        return None
    kind = given[0]
    if cfg.method.upper() in ("GET", "HEAD"):
        raise InvalidArgumentError(kind, f"a {cfg.method.upper()} request cannot have a body")
    if kind == "json":
        try:
            body = msgspec.json.encode(cfg.json)
        except (TypeError, msgspec.EncodeError) as exc:
            raise InvalidArgumentError("json", f"not JSON-encodable: {exc}") from None
        headers.setdefault("Content-Type", "application/json")
        return body
    if kind == "form":
        pairs = _param_pairs(cfg.form or {}, "form")
        body = URL.build(query=pairs).raw_query_string.encode("ascii")
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return body
    if kind == "text":
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        return (cfg.text or "").encode("utf-8")
    try:
        body = base64.b64decode(cfg.body_base64 or "", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgumentError("body_base64", f"not valid base64: {exc}") from None
    headers.setdefault("Content-Type", "application/octet-stream")
    return body


def _check_auth(auth: Auth | None, headers: CIMultiDict[str]) -> URL | None:
    if auth is None:
        return None
    if "Authorization" in headers:
        raise InvalidArgumentError(
            "headers.Authorization", "set either auth or an Authorization header, not both"
        )
    if isinstance(auth, BasicAuth):
        if ":" in auth.username:
            raise InvalidArgumentError("auth.username", "must not contain ':'")
        if not auth.username:
            raise InvalidArgumentError("auth.username", "must not be empty")
        return None
    if isinstance(auth, BearerAuth):
        if not auth.token or any(c in auth.token for c in "\r\n"):
            raise InvalidArgumentError("auth.token", "must be a non-empty single-line string")
        return None
    if not auth.client_id:
        raise InvalidArgumentError("auth.client_id", "must not be empty")
    if not auth.client_secret:
        raise InvalidArgumentError("auth.client_secret", "must not be empty")
    return _check_url(auth.token_url, "auth.token_url")


def prepare_request(cfg: HttpRequestConfig) -> PreparedRequest:
    """Validate ``cfg`` completely and derive what the request needs. No network I/O.

    Raises:
        InvalidArgumentError: naming the first offending field.
    """
    method = cfg.method.upper() if isinstance(cfg.method, str) else ""
    if method not in METHODS:
        raise InvalidArgumentError("method", f"must be one of {', '.join(METHODS)}")
    url = _check_url(cfg.url, "url")
    headers: CIMultiDict[str] = CIMultiDict()
    for key, raw_value in cfg.headers.items():
        if not _TOKEN.match(key):
            raise InvalidArgumentError(f"headers.{key}", "not a valid header name")
        value = _scalar_text(raw_value, f"headers.{key}")
        if any(c in value for c in "\r\n\0"):
            raise InvalidArgumentError(f"headers.{key}", "header values must be a single line")
        headers[key] = value
    url = url.extend_query(_param_pairs(cfg.query, "query")) if cfg.query else url
    _check_positive(cfg.connect_timeout, "connect_timeout", maximum=3600)
    _check_positive(cfg.total_timeout, "total_timeout", maximum=86400)
    if isinstance(cfg.max_response_bytes, bool) or not (
        0 < cfg.max_response_bytes <= MAX_RESPONSE_BYTES_LIMIT
    ):
        raise InvalidArgumentError(
            "max_response_bytes", f"must be between 1 and {MAX_RESPONSE_BYTES_LIMIT}"
        )
    if not 0 <= cfg.max_redirects <= 50:
        raise InvalidArgumentError("max_redirects", "must be between 0 and 50")
    expected = parse_expected_status(cfg.expected_status)
    breaker = cfg.circuit_breaker
    if breaker.failure_threshold < 1:
        raise InvalidArgumentError("circuit_breaker.failure_threshold", "must be at least 1")
    _check_positive(breaker.window, "circuit_breaker.window")
    _check_positive(breaker.cool_down, "circuit_breaker.cool_down")
    if not cfg.verify_tls and cfg.ca_bundle is not None:
        raise InvalidArgumentError("ca_bundle", "a CA bundle needs verify_tls: true")
    _check_file(cfg.ca_bundle, "ca_bundle")
    _check_file(cfg.client_cert, "client_cert")
    _check_file(cfg.client_key, "client_key")
    if cfg.client_key is not None and cfg.client_cert is None:
        raise InvalidArgumentError("client_key", "client_key needs client_cert")
    if cfg.client_key_password is not None and cfg.client_cert is None:
        raise InvalidArgumentError("client_key_password", "client_key_password needs client_cert")
    if cfg.idempotency_key is not None and (
        not cfg.idempotency_key or any(c in cfg.idempotency_key for c in "\r\n\0")
    ):
        raise InvalidArgumentError("idempotency_key", "must be a non-empty single-line string")
    job_hosts = None
    if cfg.allowed_hosts is not None:
        job_hosts = tuple(
            normalize_host_pattern(p, f"allowed_hosts[{i}]")
            for i, p in enumerate(cfg.allowed_hosts)
        )
    body = _encode_body(cfg, headers)
    token_url = _check_auth(cfg.auth, headers)
    check_url_allowed(url, job_hosts)
    if token_url is not None:
        check_url_allowed(token_url, job_hosts, field_name="auth.token_url", what="token URL")
    return PreparedRequest(
        config=cfg,
        method=method,
        url=url,
        headers=headers,
        body=body,
        expected=expected,
        job_allowed_hosts=job_hosts,
        token_url=token_url,
    )
