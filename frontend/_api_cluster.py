"""The cluster routes under ``/api/v1/cluster``: what a client needs to talk to the servers
directly."""

from __future__ import annotations

from aiohttp import web

from cadenza.frontend._middleware_forward import DIRECTORY
from cadenza.frontend._state import SETTINGS, json_response
from cadenza.frontend._wire import API_PREFIX, ShardOwners

routes = web.RouteTableDef()


@routes.get(API_PREFIX + "/cluster/shards")
async def shard_owners(request: web.Request) -> web.Response:
    """Where each shard's owner listens (what :class:`~cadenza.frontend.remote.RemoteService`
    reads to send each start straight to its shard's owner)."""
    owners = await request.app[DIRECTORY].owners(request.app[SETTINGS].advertise_url)
    return json_response(ShardOwners(shard_count=len(owners), owners=owners))
