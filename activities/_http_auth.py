"""Authentication of the HTTP activity: Basic, Bearer and OAuth2 client credentials.

OAuth2 tokens are cached process-wide, keyed by ``(token_url, client_id, scope, audience)`` and a
hash of the client secret (so that a caller holding a wrong secret never receives a token fetched
with the right one). A token is reused by every attempt and every concurrent caller until shortly
before its ``expires_in``; only one caller fetches at a time per key (single flight), the others
wait for its result. A 401 from the API makes the caller refresh the token once.

Token values and client secrets never appear in logs, messages or error details.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote_plus

import aiohttp
import msgspec
from yarl import URL

from cadenza.activities._http_config import BasicAuth, BearerAuth, OAuth2ClientCredentials
from cadenza.activities._http_errors import (
    HTTP_AUTH_ERROR,
    HTTP_CONNECTION_ERROR,
    HTTP_TIMEOUT,
    http_error,
    parse_retry_after,
    redact_url,
    truncate,
)

logger = logging.getLogger("cadenza.activities.http")

DEFAULT_TOKEN_LIFETIME = 300.0
"""Seconds a token without ``expires_in`` is reused (a 401 refreshes it earlier)."""
MAX_TOKEN_RESPONSE_BYTES = 64 * 1024


def basic_header(auth: BasicAuth) -> str:
    """``Authorization`` value for HTTP Basic (UTF-8 user and password, RFC 7617)."""
    raw = f"{auth.username}:{auth.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def bearer_header(auth: BearerAuth) -> str:
    """``Authorization`` value for a static bearer token."""
    return f"Bearer {auth.token}"


def refresh_margin(lifetime: float) -> float:
    """Seconds before expiry at which a cached token is no longer handed out.

    30 s for ordinary lifetimes, a tenth of the lifetime for very short ones (so that a token
    that lives 10 s is still reused for 9 s).
    """
    return min(30.0, lifetime / 10)


@dataclass
class _Entry:
    token: str | None = None
    expires_at: float = 0.0
    lock: asyncio.Lock | None = None
    loop: asyncio.AbstractEventLoop | None = None


class _TokenResponse(msgspec.Struct, kw_only=True):
    access_token: str
    token_type: str = "Bearer"
    expires_in: float | None = None


class TokenCache:
    """Process-wide cache of OAuth2 client-credentials tokens.

    Args:
        clock: Monotonic seconds; replaceable for tests.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._entries: dict[tuple[str, str, str, str, str], _Entry] = {}
        self.fetches = 0
        """How many token requests were sent (for tests and debugging)."""

    @staticmethod
    def _key(auth: OAuth2ClientCredentials) -> tuple[str, str, str, str, str]:
        secret_hash = hashlib.sha256(auth.client_secret.encode()).hexdigest()
        return (auth.token_url, auth.client_id, auth.scope or "", auth.audience or "", secret_hash)

    def _entry(self, auth: OAuth2ClientCredentials) -> _Entry:
        loop = asyncio.get_running_loop()
        entry = self._entries.setdefault(self._key(auth), _Entry())
        if entry.lock is None or entry.loop is not loop:
            entry.lock, entry.loop = asyncio.Lock(), loop
        return entry

    async def get(
        self,
        auth: OAuth2ClientCredentials,
        session: aiohttp.ClientSession,
        *,
        client_timeout: aiohttp.ClientTimeout,
        rejected: str | None = None,
    ) -> str:
        """A valid access token, from the cache or freshly fetched.

        Args:
            auth: The client-credentials settings.
            session: The session to reach the token endpoint with.
            client_timeout: Timeouts for the token request.
            rejected: A token the API just answered 401 to; it is not handed out again (unless
                another caller already replaced it, in which case the replacement is returned).

        Raises:
            ApplicationError: ``HttpAuthError`` when the endpoint refuses (non-retryable for
                4xx), or ``HttpConnectionError``/``HttpTimeout``/``HttpAuthError`` (retryable)
                when it cannot be reached or fails with 5xx/429.
        """
        entry = self._entry(auth)
        if self._usable(entry, rejected):
            return entry.token  # type: ignore[return-value]
        lock = entry.lock
        if lock is None:  # pragma: no cover - set by _entry
            raise RuntimeError("token cache entry without lock")
        async with lock:
            if self._usable(entry, rejected):
                return entry.token  # type: ignore[return-value]
            token, lifetime = await self._fetch(auth, session, client_timeout)
            entry.token = token
            entry.expires_at = self.clock() + lifetime - refresh_margin(lifetime)
            return token

    def _usable(self, entry: _Entry, rejected: str | None) -> bool:
        return (
            entry.token is not None and entry.token != rejected and self.clock() < entry.expires_at
        )

    async def _fetch(
        self,
        auth: OAuth2ClientCredentials,
        session: aiohttp.ClientSession,
        client_timeout: aiohttp.ClientTimeout,
    ) -> tuple[str, float]:
        form: list[tuple[str, str]] = [("grant_type", "client_credentials")]
        if auth.scope:
            form.append(("scope", auth.scope))
        if auth.audience:
            form.append(("audience", auth.audience))
        headers = {"Accept": "application/json"}
        if auth.client_auth == "basic":
            pair = f"{quote_plus(auth.client_id)}:{quote_plus(auth.client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        else:
            form += [("client_id", auth.client_id), ("client_secret", auth.client_secret)]
        where = redact_url(auth.token_url)
        self.fetches += 1
        try:
            async with session.post(
                URL(auth.token_url),
                data=form,
                headers=headers,
                timeout=client_timeout,
                allow_redirects=False,
            ) as resp:
                raw = await resp.content.read(MAX_TOKEN_RESPONSE_BYTES)
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
        except TimeoutError as exc:
            raise http_error(
                f"timed out fetching an OAuth2 token from {where}",
                type=HTTP_TIMEOUT,
                non_retryable=False,
                url=where,
            ) from exc
        except aiohttp.ClientError as exc:
            raise http_error(
                f"cannot reach the OAuth2 token endpoint {where}: {type(exc).__name__}",
                type=HTTP_CONNECTION_ERROR,
                non_retryable=False,
                url=where,
            ) from exc
        text = raw.decode("utf-8", "replace")
        if status != 200:
            retryable = status >= 500 or status == 429
            raise http_error(
                f"OAuth2 token endpoint {where} answered {status}",
                type=HTTP_AUTH_ERROR,
                non_retryable=not retryable,
                next_retry_delay=parse_retry_after(retry_after) if retryable else None,
                status=status,
                url=where,
                body=truncate(text),
            )
        try:
            parsed = msgspec.json.decode(raw, type=_TokenResponse, strict=False)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise http_error(
                f"OAuth2 token endpoint {where} sent an unusable response: {exc}",
                type=HTTP_AUTH_ERROR,
                non_retryable=True,
                status=status,
                url=where,
            ) from None
        if parsed.token_type.lower() != "bearer":
            raise http_error(
                f"OAuth2 token endpoint {where} issued a {parsed.token_type!r} token; only bearer "
                "tokens are supported",
                type=HTTP_AUTH_ERROR,
                non_retryable=True,
                url=where,
            )
        lifetime = parsed.expires_in if parsed.expires_in and parsed.expires_in > 0 else None
        logger.debug(
            "fetched OAuth2 token from %s for client %s (expires in %s s)",
            where,
            auth.client_id,
            lifetime,
        )
        return parsed.access_token, lifetime or DEFAULT_TOKEN_LIFETIME

    def clear(self) -> None:
        """Forget every cached token."""
        self._entries.clear()
        self.fetches = 0


_cache = TokenCache()


def token_cache() -> TokenCache:
    """The process-wide OAuth2 token cache."""
    return _cache


def reset_token_cache(clock: Callable[[], float] | None = None) -> TokenCache:
    """Forget all cached tokens; optionally install a test clock (``time.monotonic`` if None)."""
    _cache.clear()
    _cache.clock = clock or time.monotonic
    return _cache
