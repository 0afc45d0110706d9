"""Errors of the HTTP activity: type names, conversions, ``Retry-After`` and redaction.

Every failure of the HTTP activity is an :class:`~cadenza.history.ApplicationError` whose
``type`` is one of the names below, so that a retry policy can list them in
``non_retryable_error_types`` and an operator can search histories by them. The first detail of
each error is a JSON-safe dict (status, URL with secrets redacted, a truncated body, ...).

Nothing in this module ever puts a secret into a message: URLs pass through
:func:`redact_url`, header values through :func:`redact_headers`.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from yarl import URL

from cadenza.history import ApplicationError, InvalidArgumentError

# Error type names (ApplicationError.type).
HTTP_SERVER_ERROR = "HttpServerError"
"""5xx response (retryable; 503 honours ``Retry-After``)."""
HTTP_TOO_MANY_REQUESTS = "HttpTooManyRequests"
"""429 response (retryable, honours ``Retry-After``)."""
HTTP_CLIENT_ERROR = "HttpClientError"
"""4xx response other than 429 (non-retryable)."""
HTTP_UNEXPECTED_STATUS = "HttpUnexpectedStatus"
"""1xx/2xx/3xx response outside ``expected_status`` (non-retryable)."""
HTTP_CONNECTION_ERROR = "HttpConnectionError"
"""Connection refused, reset, DNS failure, broken response (retryable)."""
HTTP_TIMEOUT = "HttpTimeout"
"""Connect or total timeout elapsed (retryable)."""
HTTP_TLS_ERROR = "HttpTlsError"
"""TLS handshake or certificate verification failed (non-retryable: a configuration problem)."""
HTTP_RESPONSE_TOO_LARGE = "HttpResponseTooLarge"
"""Response body larger than ``max_response_bytes`` (non-retryable)."""
HTTP_TOO_MANY_REDIRECTS = "HttpTooManyRedirects"
"""More than ``max_redirects`` redirects (non-retryable)."""
HTTP_CIRCUIT_OPEN = "HttpCircuitOpen"
"""The host's circuit breaker is open (retryable, ``next_retry_delay`` = remaining cool-down)."""
HTTP_AUTH_ERROR = "HttpAuthError"
"""The OAuth2 token endpoint refused or failed (retryable only for 5xx/429/connection)."""
INVALID_CONFIGURATION = "InvalidConfiguration"
"""The activity's configuration was rejected before any I/O (non-retryable)."""

MAX_RETRY_AFTER = timedelta(days=1)
"""``Retry-After`` values above this are clamped (a broken server must not park a job forever)."""

ERROR_BODY_CHARS = 2048
"""How much of a response body an error's details carry."""

_SENSITIVE_HEADER = re.compile(
    r"^(authorization|proxy-authorization|cookie|set-cookie|x-api-key|api-key|apikey)$"
    r"|token|secret|password|passwd|session|credential|signature",
    re.IGNORECASE,
)
_SENSITIVE_PARAM = re.compile(
    r"token|secret|password|passwd|api[-_]?key|apikey|signature|^sig$|^key$|credential|session"
    r"|^auth",
    re.IGNORECASE,
)
REDACTED = "***"


def invalid_config_error(exc: InvalidArgumentError) -> ApplicationError:
    """Convert a configuration validation error into a non-retryable activity failure.

    Activities validate their configuration before any I/O and raise
    :class:`~cadenza.history.InvalidArgumentError`; inside an activity that must become an
    :class:`~cadenza.history.ApplicationError` (the form failures take in a history) that no retry
    policy retries, whose message names the field. Use as
    ``raise invalid_config_error(exc) from exc``.

    Args:
        exc: The validation error (its ``field`` and ``reason`` are kept in the details).

    Returns:
        An ``ApplicationError`` of type ``InvalidConfiguration`` with ``non_retryable=True`` and
        the message ``"invalid configuration: <field>: <reason>"``.
    """
    return ApplicationError(
        f"invalid configuration: {exc.field}: {exc.reason}",
        {"field": exc.field, "reason": exc.reason},
        type=INVALID_CONFIGURATION,
        non_retryable=True,
    )


_MSGSPEC_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MSGSPEC_FIELD = re.compile(r"field `(?P<name>[^`]+)`")


def invalid_argument_from_msgspec(
    exc: msgspec.ValidationError, *, prefix: str = ""
) -> InvalidArgumentError:
    """Turn a msgspec decoding error into an :class:`InvalidArgumentError` naming the field.

    msgspec reports ``Expected `str`, got `int` - at `$.auth.token``` or
    ``Object missing required field `url```; the field becomes ``auth.token`` or ``url``.

    Args:
        exc: The msgspec error.
        prefix: Dotted path to prepend (for configs nested in a larger document).
    """
    message = str(exc)
    path = ""
    match = _MSGSPEC_PATH.search(message)
    if match:
        path = match.group("path")
        message = message[: match.start()]
    # "$.auth.token" -> "auth.token"; "$.headers[...]" stays readable.
    path = path.lstrip(".")
    named = _MSGSPEC_FIELD.search(message)
    if named and ("missing required field" in message or "unknown field" in message):
        path = f"{path}.{named.group('name')}" if path else named.group("name")
    field = ".".join(p for p in (prefix, path) if p) or (prefix or "config")
    return InvalidArgumentError(field, message)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> timedelta | None:
    """Parse a ``Retry-After`` header: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).

    Args:
        value: The header value, or None.
        now: The current time, for HTTP-dates (defaults to the wall clock).

    Returns:
        The delay (never negative, at most :data:`MAX_RETRY_AFTER`), or None when the header is
        absent or malformed.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        seconds = int(value)
        if seconds > MAX_RETRY_AFTER.total_seconds():
            return MAX_RETRY_AFTER
        return timedelta(seconds=seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC in RFC 5322 dates
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    delay = when - current
    if delay < timedelta(0):
        return timedelta(0)
    return min(delay, MAX_RETRY_AFTER)


def redact_url(url: URL | str) -> str:
    """The URL as text with user info and sensitive query values replaced by ``***``."""
    try:
        parsed = url if isinstance(url, URL) else URL(url)
    except (TypeError, ValueError):
        return "<unparseable url>"
    if parsed.user is not None or parsed.password is not None:
        parsed = parsed.with_user(None)
    if parsed.query_string and any(_SENSITIVE_PARAM.search(key) for key in parsed.query):
        pairs = [
            (key, REDACTED if _SENSITIVE_PARAM.search(key) else value)
            for key, value in parsed.query.items()
        ]
        parsed = parsed.with_query(pairs)
    return str(parsed)


def is_sensitive_header(name: str) -> bool:
    """Whether a header's value must never be logged or stored (credentials, cookies, ...)."""
    return bool(_SENSITIVE_HEADER.search(name))


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``headers`` with the values of sensitive headers replaced by ``***``."""
    return {k: (REDACTED if is_sensitive_header(k) else v) for k, v in headers.items()}


def truncate(text: str, limit: int = ERROR_BODY_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with a marker saying how much was dropped."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


def http_error(
    message: str,
    *,
    type: str,
    non_retryable: bool,
    next_retry_delay: timedelta | None = None,
    **details: Any,
) -> ApplicationError:
    """Build an HTTP activity failure with one JSON-safe details dict (None values dropped)."""
    return ApplicationError(
        message,
        {k: v for k, v in details.items() if v is not None},
        type=type,
        non_retryable=non_retryable,
        next_retry_delay=next_retry_delay,
    )
