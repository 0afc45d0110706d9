"""Forward a write to the server that owns its shard.

Any server can read anything and hand out tasks, but only the owner of a shard may append to
it. When a request's write reaches a server that does not own the shard
(:class:`ShardOwnershipLostError`), this middleware sends the same request, with the same
credentials, to the owner's advertised address and returns the owner's answer. Workers and
clients can therefore talk to any server. A forwarded request carries ``X-Cadenza-Forwarded``
and is forwarded at most three times (ownership can move again while it travels); while a shard changes hands (no live owner yet) the middleware
waits briefly for one.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import web

from cadenza.frontend._state import ENGINE
from cadenza.history import ShardOwnershipLostError

log = logging.getLogger("cadenza.frontend.forward")

FORWARDED = "X-Cadenza-Forwarded"
_ATTEMPTS = 40
_MAX_HOPS = 3
_PAUSE = 0.25
_TIMEOUT = aiohttp.ClientTimeout(total=20, connect=5)
_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


async def _owner_address(request: web.Request, shard_id: int) -> str | None:
    engine = request.app[ENGINE]
    now = engine.clock.now_ms()
    for row in await engine.store.shard_table():
        if row["shard_id"] != shard_id:
            continue
        owner = row["owner"]
        if owner is None or row["lease_until_ms"] < now:
            return None
        if owner == engine.owner:
            return ""
        members = await engine.store.live_members(0)
        return members.get(owner) or None
    return None


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
    for _ in range(_ATTEMPTS):
        address = await _owner_address(request, shard_id)
        if address == "":
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


async def _proxy(request: web.Request, address: str, body: bytes) -> web.Response:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
    headers[FORWARDED] = str(int(request.headers.get(FORWARDED, "0") or 0) + 1)
    url = address.rstrip("/") + request.path_qs
    async with (
        aiohttp.ClientSession(timeout=_TIMEOUT) as session,
        session.request(request.method, url, data=body, headers=headers) as response,
    ):
        payload = await response.read()
        log.debug(
            "forwarded %s %s to %s: %d", request.method, request.path, address, response.status
        )
        out = web.Response(status=response.status, body=payload)
        content_type = response.headers.get("Content-Type")
        if content_type:
            out.headers["Content-Type"] = content_type
        return out
