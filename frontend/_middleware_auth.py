"""Who may call the API: a bearer token, or loopback callers when no token is configured.

With ``Settings.worker_token`` set, every request to ``/api/…`` and ``/metrics`` must carry
``Authorization: Bearer <token>`` (compared in constant time); a missing or wrong token is
answered 401 with ``WWW-Authenticate: Bearer``. With no token, the frontend serves only
loopback callers (127.0.0.0/8, ::1, a Unix socket) and answers 403 to anyone else: a dev server
that is reachable from the network by mistake does not hand out workflow control.

With a token, the console's files and ``/healthz`` are public: they reveal nothing, and the
console itself asks for the token when the API answers 401. Without one, they too are served to
loopback callers only.

The caller's address is the TCP peer. Behind a reverse proxy every caller looks like the proxy:
configure a token there.
"""

from __future__ import annotations

import hmac
import ipaddress

from aiohttp import web

from cadenza.frontend._state import SETTINGS

PUBLIC_PATHS = frozenset({"/", "/healthz", "/favicon.ico"})
PUBLIC_PREFIXES = ("/static/",)


def is_public(path: str) -> bool:
    """Paths served without a token: the console's files and the health check."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def is_loopback(remote: str | None) -> bool:
    """Whether a peer address is this host (an empty address is a Unix socket peer)."""
    if not remote:
        return True
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def token_matches(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries the bearer ``token``."""
    if not header:
        return False
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())


@web.middleware
async def auth_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Refuse requests without the token (or, with no token configured, from other hosts)."""
    token = request.app[SETTINGS].worker_token
    if not token:
        if not is_loopback(request.remote):
            raise web.HTTPForbidden(
                text="this server has no token configured and serves only loopback callers; "
                "set worker_token (CADENZA_WORKER_TOKEN) to accept other hosts"
            )
        return await handler(request)
    if is_public(request.path) or token_matches(request.headers.get("Authorization"), token):
        return await handler(request)
    raise web.HTTPUnauthorized(
        text="a valid bearer token is required (Authorization: Bearer <token>)",
        headers={"WWW-Authenticate": 'Bearer realm="cadenza"'},
    )
