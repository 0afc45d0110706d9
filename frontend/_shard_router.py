"""Client-side routing of writes to the server that owns their shard.

Any server takes any write and forwards what belongs to another server's shard (see
:mod:`cadenza.frontend._middleware_forward`). With N servers, (N - 1) / N of a client's starts
land on the wrong one, and each of those costs a second HTTP hop and the work of two servers:
with 2 servers + 2 workers on the three-step benchmark the servers spent 0.89 ms of CPU per
workflow, against 0.59 when every start went straight to its owner (939 → 1,316 workflows/s).

A :class:`ShardRouter` keeps the owners a server reported (``GET /api/v1/cluster/shards``),
for :data:`OWNERS_TTL_S`, and groups a batch's items by owner. It never decides correctness:
a stale map only sends an item to a server that forwards it, an owner that cannot be reached
is skipped (its items go to the client's own server) for :data:`UNREACHABLE_S`, and a server
without the route (older) turns routing off. An owner whose address has another scheme than
the client's own server is never used: a client that was given ``https://`` does not send its
token to a plain ``http://`` address.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from cadenza.engine._shards import shard_for
from cadenza.frontend._wire import ShardOwners
from cadenza.history import CadenzaError, NotFoundError

log = logging.getLogger("cadenza.frontend.remote")

I = TypeVar("I")  # noqa: E741 - item

OWNERS_TTL_S = 2.0
"""How long a client trusts the owners it read (ownership moves only when servers come or go)."""
UNREACHABLE_S = 30.0
"""How long an owner that could not be reached is left out."""


class ShardRouter:
    """Groups items by the URL of their shard's owner.

    Args:
        home: The URL the client was given; items whose owner is unknown go there.
        read_owners: Fetches the owners from ``home`` (``GET /api/v1/cluster/shards``).
        enabled: False: every item goes home (and the owners are never read).
    """

    def __init__(
        self,
        home: str,
        read_owners: Callable[[], Awaitable[ShardOwners]],
        *,
        enabled: bool = True,
    ) -> None:
        self._home = home.rstrip("/")
        self._scheme = self._home.split("://", 1)[0].lower()
        self._read_owners = read_owners
        self._owners: list[str | None] = []
        self._read_at = -float("inf")
        self._refresh = asyncio.Lock()
        self._unreachable: dict[str, float] = {}
        self.enabled = enabled

    def forget(self) -> None:
        """Read the owners again before the next batch (an item reached a non-owner)."""
        self._read_at = -float("inf")

    def unreachable(self, url: str) -> None:
        """``url`` did not answer: send its items home for a while."""
        self._unreachable[url] = time.monotonic() + UNREACHABLE_S
        log.info("shard owner %s unreachable; its writes go through %s", url, self._home)

    async def groups(
        self, items: Sequence[I], key: Callable[[I], tuple[str, str]]
    ) -> dict[str, list[int]]:
        """Indices of ``items`` by owner URL (``home`` for the unknown ones); ``key`` gives an
        item's ``(namespace, workflow_id)``."""
        owners = await self._current()
        if not owners:
            return {self._home: list(range(len(items)))}
        now = time.monotonic()
        by_url: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            namespace, workflow_id = key(item)
            url = owners[shard_for(namespace, workflow_id, len(owners))] or self._home
            if url != self._home and self._unreachable.get(url, 0.0) > now:
                url = self._home
            by_url.setdefault(url, []).append(i)
        return by_url

    async def _current(self) -> list[str | None]:
        if not self.enabled:
            return []
        if time.monotonic() - self._read_at > OWNERS_TTL_S:
            async with self._refresh:
                if time.monotonic() - self._read_at > OWNERS_TTL_S:
                    await self._read()
        return self._owners

    async def _read(self) -> None:
        self._read_at = time.monotonic()  # a failed read is not retried before the TTL
        try:
            answer = await self._read_owners()
        except NotFoundError:
            log.info("%s does not list its shard owners; writes go through it", self._home)
            self.enabled = False
            self._owners = []
            return
        except CadenzaError as exc:
            log.info("reading the shard owners from %s failed: %s", self._home, exc)
            self._owners = []
            return
        self._owners = [
            o.rstrip("/") if o and o.split("://", 1)[0].lower() == self._scheme else None
            for o in answer.owners
        ]
