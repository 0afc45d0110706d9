"""Which shards' tasks a server hands to the workers polling it.

A task lives in the shard of its run. Any server could lease any task, but a task of another
server's shard costs more everywhere: the run's history is not in this server's cache (it is
read from the database), the completion has to be forwarded to the owner, and the pollers of
every server race for the same rows, so each claim finds fewer tasks and each batch (of tasks,
of completions, of commits) is smaller. On two servers that made every workflow cost about
four times the server CPU of one server.

So a server hands out the tasks of the shards it owns, and also those of the shards of a queue
that nobody else would serve: shards without a live owner, and shards whose owner has no worker
polling that queue (the workers all connect to other servers, or left). Each server says which
queues it has pollers for in its membership heartbeat (``cluster_members.polling``); a queue
counts as polled for :data:`PRESENCE_LINGER_S` after the last poll began, so a server whose
workers left is served by the others within that time plus a heartbeat round or two.

A server that does not know (it has not read the membership yet, or the owner is not a live
member) serves the shard: a task is never left without a server that hands it out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

QueueKey = tuple[str, str, str]
"""``(kind, namespace, task_queue)``: the wake-up key of a queue's pollers."""

PRESENCE_LINGER_S = 3.0
"""Seconds a queue counts as polled after a poll of it began. A busy worker polls many times a
second; an idle one holds a long poll for up to ``poll_timeout`` and may drop out of the list
meanwhile, which only lets other servers serve its queue too until it polls again."""


def queue_name(key: QueueKey) -> str:
    """The text form of a queue key, as stored in ``cluster_members.polling``."""
    return "|".join(key)


class PollerPresence:
    """The task queues that workers have polled on this server lately."""

    def __init__(
        self, linger_s: float = PRESENCE_LINGER_S, now: Callable[[], float] = time.monotonic
    ) -> None:
        self._linger_s = linger_s
        self._now = now
        self._seen: dict[QueueKey, float] = {}

    def seen(self, key: QueueKey) -> None:
        """A poll of ``key`` began."""
        self._seen[key] = self._now()

    def polls(self, key: QueueKey) -> bool:
        """Whether a poll of ``key`` began within the linger time."""
        at = self._seen.get(key)
        return at is not None and at >= self._now() - self._linger_s

    def queues(self) -> list[str]:
        """The queues polled within the linger time, by :func:`queue_name`."""
        cutoff = self._now() - self._linger_s
        for key in [k for k, at in self._seen.items() if at < cutoff]:
            del self._seen[key]
        return sorted(queue_name(key) for key in self._seen)


class TaskDispatch:
    """This server's view of who serves which shard's tasks, per queue.

    Args:
        owner: This server's owner id.
    """

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.shard_count = 0  # 0 until the first view (the shard table lists every shard)
        self._owned: frozenset[int] = frozenset()
        self._shard_owners: dict[int, str | None] = {}
        self._polling: dict[str, frozenset[str]] = {}
        self._cache: dict[QueueKey, list[int] | None] = {}

    def set_owned(self, owned: Iterable[int]) -> None:
        """The shards this server holds changed."""
        owned = frozenset(owned)
        if owned != self._owned:
            self._owned = owned
            self._cache.clear()

    def update(
        self,
        owned: Iterable[int],
        shard_owners: Mapping[int, str | None],
        polling: Mapping[str, frozenset[str]],
    ) -> bool:
        """A new view of the cluster (after a lease round): the shards held by this server,
        the live owner of each shard (None: no live lease) and the queues each live member
        polls. True if some queue asked about before may now be served from shards it was not
        served from (the caller wakes its pollers so that they look at once)."""
        before = dict(self._cache)
        self._owned = frozenset(owned)
        self._shard_owners = dict(shard_owners)
        self.shard_count = len(self._shard_owners)
        self._polling = dict(polling)
        self._cache.clear()
        for key, shards in before.items():
            if shards is None:
                continue
            now = self.shards_for(key)
            if now is None or not set(now) <= set(shards):
                return True
        return False

    def shards_for(self, key: QueueKey) -> list[int] | None:
        """The shards whose tasks of queue ``key`` this server hands out; None for all."""
        if key in self._cache:
            return self._cache[key]
        shards: list[int] | None
        if not self.shard_count or len(self._owned) == self.shard_count:
            shards = None
        else:
            name = queue_name(key)
            shards = [
                shard
                for shard in range(self.shard_count)
                if shard in self._owned or self._orphaned(shard, name)
            ]
            if len(shards) == self.shard_count:
                shards = None
        self._cache[key] = shards
        return shards

    def _orphaned(self, shard: int, name: str) -> bool:
        owner = self._shard_owners.get(shard)
        if owner is None or owner == self.owner:
            # No live lease, or a shard we are losing or taking: serve it until we know.
            return True
        queues = self._polling.get(owner)
        return queues is None or name not in queues

    def peer_serves(self, peer: str, key: QueueKey) -> bool:
        """Whether ``peer`` hands out its own tasks of ``key`` (its workers poll it): its task
        notices then concern its own pollers, not ours."""
        if not self.shard_count:
            return False
        queues = self._polling.get(peer)
        return queues is not None and queue_name(key) in queues


__all__ = ["PRESENCE_LINGER_S", "PollerPresence", "QueueKey", "TaskDispatch", "queue_name"]
