"""Forward a write to the server that owns its shard.

Any server can read anything and hand out tasks, but only the owner of a shard may append to
it. When a request's write reaches a server that does not own the shard
(:class:`ShardOwnershipLostError`), this middleware sends the same request, with the same
credentials, to the owner's advertised address and returns the owner's answer. Workers and
clients can therefore talk to any server. A forwarded request carries ``X-Cadenza-Forwarded``
and is forwarded at most three times (ownership can move again while it travels); while a
shard changes hands (no live owner yet) the middleware waits briefly for one.

With several servers about half of all writes are forwarded, so a forward must be cheap: the
owners' addresses come from :class:`OwnerDirectory` (the shard table and the members read at
most once a second, not per request) and requests go over one pooled keep-alive session per
app (not a new connection each).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import aiohttp
from aiohttp import web

from cadenza.engine import Engine
from cadenza.frontend._metrics import METRICS, route_of
from cadenza.frontend._state import ENGINE
from cadenza.frontend._wire import decode_body, encode
from cadenza.history import CadenzaError, ShardOwnershipLostError

log = logging.getLogger("cadenza.frontend.forward")

FORWARDED = "X-Cadenza-Forwarded"
_ATTEMPTS = 40
_MAX_HOPS = 3
_PAUSE = 0.25
_TIMEOUT = aiohttp.ClientTimeout(total=20, connect=5)
_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}
DIRECTORY_TTL_S = 1.0
"""How long the owners read from the database are trusted (a miss or a failed forward reads
them again at once)."""


class OwnerDirectory:
    """Where each shard's owner listens, read from the shard table and the live members and
    kept for :data:`DIRECTORY_TTL_S`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._addresses: dict[int, str | None] = {}
        self._read_at = -float("inf")
        self._refresh: asyncio.Lock = asyncio.Lock()

    def forget(self) -> None:
        """Read the owners again on the next look-up (a forward failed or found no owner)."""
        self._read_at = -float("inf")

    async def address(self, shard_id: int) -> str | None:
        """``""`` if this server owns the shard, the owner's URL, or None while the shard has
        no live owner."""
        await self._fresh()
        return self._addresses.get(shard_id)

    async def owners(self, own_address: str) -> list[str | None]:
        """Every shard's owner's URL in shard order (``own_address`` for this server's own,
        None for a shard without a live owner)."""
        await self._fresh()
        return [
            own_address or None if address == "" else address
            for address in (self._addresses.get(i) for i in range(self._engine.shard_count))
        ]

    async def _fresh(self) -> None:
        if time.monotonic() - self._read_at > DIRECTORY_TTL_S:
            async with self._refresh:
                if time.monotonic() - self._read_at > DIRECTORY_TTL_S:
                    await self._read()

    async def _read(self) -> None:
        engine = self._engine
        now = engine.clock.now_ms()
        members = await engine.store.live_members(0)
        addresses: dict[int, str | None] = {}
        for row in await engine.store.shard_table():
            owner = row["owner"]
            if owner is None or row["lease_until_ms"] < now:
                addresses[row["shard_id"]] = None
            elif owner == engine.owner:
                addresses[row["shard_id"]] = ""
            else:
                addresses[row["shard_id"]] = members.get(owner) or None
        self._addresses = addresses
        self._read_at = time.monotonic()


DIRECTORY = web.AppKey("cadenza_owner_directory", OwnerDirectory)
SESSION = web.AppKey("cadenza_forward_session", aiohttp.ClientSession)


async def forwarding_context(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` of the app: the owner directory and the session forwards go over."""
    app[DIRECTORY] = OwnerDirectory(app[ENGINE])
    session = aiohttp.ClientSession(
        timeout=_TIMEOUT, connector=aiohttp.TCPConnector(limit=64), auto_decompress=False
    )
    app[SESSION] = session
    try:
        yield
    finally:
        await session.close()


@web.middleware
async def forward_middleware(request: web.Request, handler) -> web.StreamResponse:  # type: ignore[no-untyped-def]
    """Run the handler; if its write belongs to another server's shard, proxy it there."""
    body = await request.read()
    try:
        return await handler(request)
    except ShardOwnershipLostError as lost:
        if int(request.headers.get(FORWARDED, "0") or 0) >= _MAX_HOPS:
            raise
        shard_id = lost.shard_id
    directory = request.app[DIRECTORY]
    for attempt in range(_ATTEMPTS):
        if attempt:
            directory.forget()
        address = await directory.address(shard_id)
        if address == "":
            if attempt == 0:
                # The cached view says ours, but the write was just refused: look again.
                continue
            # We own it now (taken while we looked): run it here.
            return await handler(request)
        if address:
            try:
                return await _proxy(request, address, body)
            except (aiohttp.ClientError, TimeoutError) as exc:
                # The owner died or hangs: its lease will expire and the shard move.
                log.info("forwarding to %s failed (%s); looking for the owner again", address, exc)
        await asyncio.sleep(_PAUSE)
    raise ShardOwnershipLostError(shard_id, -1)


async def post_to_owner(request: web.Request, address: str, path: str, body: bytes) -> bytes | None:
    """POST the JSON ``body`` to ``path`` on the server at ``address`` with the request's
    credentials, as one more hop of a forward: the answer's body if it was 200, else None
    (the caller keeps its own answer; the client can still use the single route, which the
    middleware forwards with its retries). Batch routes use it to send the items of another
    server's shards there as one request."""
    if int(request.headers.get(FORWARDED, "0") or 0) >= _MAX_HOPS:
        return None
    # The body is ours (not compressed), and the answer is read here (asked uncompressed).
    headers = _forward_headers(request, drop=("content-encoding", "accept-encoding"))
    headers["Content-Type"] = "application/json"
    request.app[METRICS].forwards.labels(route_of(request)).inc()
    try:
        async with request.app[SESSION].post(
            address.rstrip("/") + path, data=body, headers=headers
        ) as response:
            payload = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.info("forwarding a batch to %s failed (%s)", address, exc)
        request.app[DIRECTORY].forget()
        return None
    return payload if response.status == 200 else None


async def forward_misdirected(
    request: web.Request,
    field: str,
    items: Sequence[Any],
    results: list[Any],
    shard_of: Callable[[Any], int],
    body_type: Callable[..., Any],
    response_type: type[Any],
) -> None:
    """For a batch route (``start-many``, ``complete-many``): send the ``items`` whose result
    is a refusal because another server owns their shard to that server, one batch per owner
    (``body_type(**{field: [...]})``), and put its answers in ``results``.

    With N servers about (N - 1) / N of a client's items land on a server that does not own
    them; one forward per batch and owner costs far less than the client re-sending each on
    the single route. An item whose owner is unknown or could not be reached keeps its
    refusal (the client's single-route fallback is forwarded with the middleware's retries).
    """
    directory = request.app[DIRECTORY]
    by_owner: dict[str, list[int]] = {}
    for i, result in enumerate(results):
        problem = result.problem
        if problem is None or problem.cadenza_error != ShardOwnershipLostError.__name__:
            continue
        address = await directory.address(shard_of(items[i]))
        if address:
            by_owner.setdefault(address, []).append(i)

    async def send(address: str, indices: list[int]) -> None:
        body = encode(body_type(**{field: [items[i] for i in indices]}))
        payload = await post_to_owner(request, address, request.path, body)
        if payload is None:
            return
        try:
            answers = decode_body(payload, response_type).results
        except CadenzaError:
            log.warning("%s answered a forwarded %s unreadably", address, request.path)
            return
        if len(answers) == len(indices):
            for i, answer in zip(indices, answers, strict=True):
                results[i] = answer

    if by_owner:
        await asyncio.gather(*(send(a, idx) for a, idx in by_owner.items()))


def _forward_headers(request: web.Request, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The request's headers for the next hop: credentials kept, hop-by-hop ones (and
    ``drop``) left out, the hop count one more."""
    headers = {
        k: v
        for k, v in request.headers.items()
        if k.lower() not in _HOP_HEADERS and k.lower() not in drop
    }
    headers[FORWARDED] = str(int(request.headers.get(FORWARDED, "0") or 0) + 1)
    return headers


async def _proxy(request: web.Request, address: str, body: bytes) -> web.Response:
    headers = _forward_headers(request)
    request.app[METRICS].forwards.labels(route_of(request)).inc()
    url = address.rstrip("/") + request.path_qs
    async with request.app[SESSION].request(
        request.method, url, data=body, headers=headers
    ) as response:
        payload = await response.read()
        log.debug(
            "forwarded %s %s to %s: %d", request.method, request.path, address, response.status
        )
        out = web.Response(status=response.status, body=payload)
        for name in ("Content-Type", "Content-Encoding"):
            value = response.headers.get(name)
            if value:
                out.headers[name] = value
        return out
