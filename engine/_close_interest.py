"""Which runs another server is waiting on, so that only their closes are announced.

A client may wait for a run's result on any server. The server that closes the run wakes
its own waiters directly; a waiter on another server needs a cluster notice. Announcing
every close would put a NOTIFY in nearly every group commit, and PostgreSQL takes one
cluster-wide lock for each notifying commit and wakes every listening connection. So a
server that waits on a run whose shard it does not own announces its interest instead
(a ``w`` notice, repeated at each re-check of the wait), every server keeps the interests
it hears of for a while, and a close is announced only for a run someone waits on.

An interest that arrives after the run closed is answered at once from the closing
server's cache of recent closes; one that misses even that is covered by the waiter's
periodic re-read.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

MAX_INTERESTS = 100_000
"""Interests kept at most (the oldest go first): a bound on memory, far above the number of
results waited on at once."""


class CloseInterest:
    """Runs other servers wait on, each for ``keep_s`` seconds after it was last announced."""

    def __init__(self, keep_s: float, now: Callable[[], float] = time.monotonic) -> None:
        self._keep_s = keep_s
        self._now = now
        self._until: OrderedDict[str, float] = OrderedDict()

    def note(self, run_id: str) -> None:
        """Another server waits on ``run_id``."""
        self._until[run_id] = self._now() + self._keep_s
        self._until.move_to_end(run_id)
        while len(self._until) > MAX_INTERESTS:
            self._until.popitem(last=False)
        self._expire()

    def wanted(self, run_id: str) -> bool:
        """Whether some server waits on ``run_id`` (its close must be announced)."""
        if not self._until:
            return False
        until = self._until.get(run_id)
        return until is not None and until >= self._now()

    def _expire(self) -> None:
        now = self._now()
        while self._until:
            run_id, until = next(iter(self._until.items()))
            if until >= now:
                return
            del self._until[run_id]

    def __len__(self) -> int:
        return len(self._until)


__all__ = ["MAX_INTERESTS", "CloseInterest"]
