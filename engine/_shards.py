"""Shard ownership: leases with fencing tokens.

``workflow_id`` hashes to one of N shards. A process owns a shard through a lease row; taking
it increments ``range_id``, and every write of the shard checks that ``range_id`` in the same
transaction, so a process that lost a shard (paused, partitioned) cannot write to it even if it
still believes it owns it. Leases are renewed in the background; a shard whose renewal fails is
dropped at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
from collections.abc import Callable

from cadenza.history import HistoryStore, ShardOwnershipLostError, StoreError
from cadenza.timers import Clock

log = logging.getLogger("cadenza.engine.shards")


def shard_for(namespace: str, workflow_id: str, shard_count: int) -> int:
    """The shard of a workflow id (stable across processes and versions)."""
    digest = hashlib.sha256(f"{namespace}\x00{workflow_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % shard_count


class ShardController:
    """Takes, renews, rebalances and releases this process's shards.

    Every process heartbeats a row in ``cluster_members``. Each round (a third of the lease) it
    renews its leases, computes its fair share (``ceil(shards / live members)``), gives up
    shards above its share (so that a process that joins gets some) and takes free or expired
    shards up to it (so that a dead process's shards move within the lease time).

    Args:
        store: The event log store.
        owner: This process's unique owner id.
        shard_count: The cluster's shard count.
        lease_seconds: Lease length; renewed every third of it.
        clock: Time source (leases use wall time even under a virtual clock).
        address: Where this process's HTTP API listens (for forwarding), may be empty.
        on_acquired: Called with each shard taken (to start recovery work for it).
        on_released: Called with each shard given up or lost.
        max_shards: Most shards to hold (None: the fair share).
        polling: The task queues this process's workers poll, sent with each heartbeat.
        on_round: Called after each round of :meth:`acquire_available` (the view of
            :attr:`shard_owners` and :attr:`member_polling` is new).
    """

    def __init__(
        self,
        store: HistoryStore,
        owner: str,
        shard_count: int,
        lease_seconds: float,
        clock: Clock,
        *,
        address: str = "",
        on_acquired: Callable[[int], None] | None = None,
        on_released: Callable[[int], None] | None = None,
        max_shards: int | None = None,
        polling: Callable[[], list[str]] | None = None,
        on_round: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._polling = polling
        self._on_round = on_round
        self.owner = owner
        self.address = address
        self.shard_count = shard_count
        self._lease_ms = int(lease_seconds * 1000)
        self._clock = clock
        self._ranges: dict[int, int] = {}
        self._on_acquired = on_acquired
        self._on_released = on_released
        self.max_shards = max_shards
        self.members: dict[str, str] = {}
        self.member_polling: dict[str, frozenset[str]] = {}
        # Each shard's owner as of the last round, None where no live lease holds it.
        self.shard_owners: dict[int, str | None] = {}

    def owned(self) -> list[int]:
        """Shards held right now."""
        return sorted(self._ranges)

    def range_id(self, shard_id: int) -> int:
        """The fencing token of an owned shard; raises if the shard is not ours."""
        try:
            return self._ranges[shard_id]
        except KeyError:
            raise ShardOwnershipLostError(shard_id, -1) from None

    def drop(self, shard_id: int) -> None:
        """Forget a shard (its renewal failed, or a write found our token stale)."""
        if self._ranges.pop(shard_id, None) is not None:
            log.warning("shard %d lost by %s", shard_id, self.owner)
            if self._on_released is not None:
                self._on_released(shard_id)

    async def _share(self, now: int) -> int:
        polling = self._polling() if self._polling is not None else []
        await self._store.heartbeat_member(self.owner, self.address, now, polling)
        # A member counts while its heartbeat is within two leases: a process that is merely
        # slow for a moment does not make everyone reshuffle shards.
        live = await self._store.live_member_queues(now - 2 * self._lease_ms)
        self.members = {owner: address for owner, (address, _) in sorted(live.items())}
        self.member_polling = {owner: queues for owner, (_, queues) in live.items()}
        share = fair_share(self.shard_count, max(1, len(self.members)))
        if self.max_shards is not None:
            share = min(share, self.max_shards)
        return share

    async def rebalance(self) -> None:
        """One round: renew, heartbeat, give up the excess, take up to the fair share."""
        await self.renew()
        share = await self._share(self._clock.now_ms())
        excess = len(self._ranges) - share
        if excess > 0:
            give_up = sorted(self._ranges)[-excess:]
            for shard_id in give_up:
                self._ranges.pop(shard_id, None)
                if self._on_released is not None:
                    self._on_released(shard_id)
            await self._store.release_shards(self.owner, give_up)
            log.info(
                "%s gave up shards %s (fair share %d)", self.owner, _ranges_text(give_up), share
            )
        await self.acquire_available(limit=share)

    async def acquire_available(self, limit: int | None = None) -> list[int]:
        """Take free or expired shards up to ``limit`` (default: the fair share)."""
        now = self._clock.now_ms()
        if limit is None:
            limit = await self._share(now)
        taken: list[int] = []
        rows = await self._store.shard_table()
        self.shard_owners = {
            row["shard_id"]: row["owner"]
            if row["owner"] is not None and row["lease_until_ms"] >= now
            else None
            for row in rows
        }
        for row in rows:
            if len(self._ranges) >= limit:
                break
            shard_id = row["shard_id"]
            if shard_id in self._ranges:
                continue
            free = row["owner"] is None or row["lease_until_ms"] < now or row["owner"] == self.owner
            if not free:
                continue
            try:
                range_id = await self._store.acquire_shard(
                    shard_id, self.owner, now + self._lease_ms, now
                )
            except StoreError as exc:  # e.g. the old owner's transaction still holds the row
                log.info("shard %d not taken this round: %s", shard_id, exc)
                old = row["owner"]
                if old and old != self.owner and old not in self.members:
                    # Its lease expired and it no longer heartbeats: end its database sessions
                    # so that a frozen process cannot hold the shard's row locks any longer.
                    ended = await self._store.terminate_sessions(old)
                    if ended:
                        log.warning("ended %d database sessions of deposed owner %s", ended, old)
                continue
            if range_id is not None:
                self._ranges[shard_id] = range_id
                taken.append(shard_id)
                if self._on_acquired is not None:
                    self._on_acquired(shard_id)
        if taken:
            log.info("%s took shards %s", self.owner, _ranges_text(taken))
            for shard_id in taken:
                self.shard_owners[shard_id] = self.owner
        if self._on_round is not None:
            self._on_round()
        return taken

    async def renew(self) -> None:
        """Extend our leases; drop the shards whose token is no longer current."""
        if not self._ranges:
            return
        now = self._clock.now_ms()  # taken right before the statement: the lease is honest
        kept = await self._store.renew_shards(self.owner, dict(self._ranges), now + self._lease_ms)
        for shard_id in list(self._ranges):
            if shard_id not in kept:
                self.drop(shard_id)

    async def run(self, stop: asyncio.Event) -> None:
        """Rebalance every third of the lease until ``stop`` is set."""
        interval = self._lease_ms / 3000
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
            if stop.is_set():
                break
            try:
                await self.rebalance()
            except Exception:
                log.exception("shard lease maintenance failed")

    async def release_all(self) -> None:
        """Give every shard up and leave (clean shutdown): others take them at once."""
        owned = list(self._ranges)
        self._ranges.clear()
        await self._store.release_shards(self.owner, owned)
        await self._store.remove_member(self.owner)


def fair_share(shard_count: int, live_owners: int) -> int:
    """How many shards one of ``live_owners`` processes should hold."""
    return math.ceil(shard_count / max(1, live_owners))


def _ranges_text(ids: list[int]) -> str:
    ids = sorted(ids)
    if len(ids) > 6:
        return f"{ids[0]}..{ids[-1]} ({len(ids)} shards)"
    return ", ".join(map(str, ids))
