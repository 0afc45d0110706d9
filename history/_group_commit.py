"""Group commit: appends that arrive together are written in one transaction.

Each *lane* (one on SQLite, which has a single writer anyway; on PostgreSQL one per shard
modulo a small number, so that shards commit in parallel on several connections) has a queue.
A write joins its lane's queue; if no commit is running, it starts one at once — an idle engine
adds no delay. While a commit runs, new writes queue up, and the next commit takes all of them
(up to ``max_batch``). A batch is one transaction: the fencing token of each shard in it is
checked once, then each write's compare-and-swap, events and outbox. If any write in a batch
fails (a lost CAS, a stale token), the transaction rolls back and the batch's writes are
retried one by one, so one loser never fails the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from cadenza.history._records import ExecutionWrite

log = logging.getLogger("cadenza.history.group_commit")

BatchWriter = Callable[[Sequence[ExecutionWrite]], Awaitable[None]]


class _Lane:
    __slots__ = ("queue", "running")

    def __init__(self) -> None:
        self.queue: deque[tuple[ExecutionWrite, asyncio.Future[None]]] = deque()
        self.running = False


class GroupCommitter:
    """Batches :class:`ExecutionWrite` s per lane.

    Args:
        write_batch: Writes a batch in one transaction (raises if any write fails).
        lanes: Number of lanes (1 for SQLite).
        max_batch: Most writes in one transaction.
    """

    def __init__(self, write_batch: BatchWriter, *, lanes: int = 1, max_batch: int = 128) -> None:
        self._write_batch = write_batch
        self._lanes = [_Lane() for _ in range(max(1, lanes))]
        self._max_batch = max_batch
        self.batches = 0
        self.writes = 0

    async def write(self, change: ExecutionWrite) -> None:
        """Write ``change`` in the next batch of its lane; raises what its own write raised."""
        lane = self._lanes[change.shard_id % len(self._lanes)]
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane.queue.append((change, future))
        if not lane.running:
            lane.running = True
            asyncio.get_running_loop().create_task(self._drain(lane))
        await future

    async def _drain(self, lane: _Lane) -> None:
        try:
            while lane.queue:
                batch = [lane.queue.popleft() for _ in range(min(self._max_batch, len(lane.queue)))]
                await self._commit(batch)
        finally:
            lane.running = False

    async def _commit(self, batch: list[tuple[ExecutionWrite, asyncio.Future[None]]]) -> None:
        live = [(change, future) for change, future in batch if not future.cancelled()]
        if not live:
            return
        try:
            await self._write_batch([change for change, _ in live])
        except BaseException as exc:
            if len(live) == 1 or isinstance(exc, asyncio.CancelledError):
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
            lost = getattr(exc, "lost_runs", frozenset())
            if lost:
                # The batch knows who lost: they fail, the others go again together.
                losers = [(c, f) for c, f in live if _runs(c) & lost]
                if losers:
                    for _, future in losers:
                        if not future.done():
                            future.set_exception(exc)
                    await self._commit([x for x in live if not (_runs(x[0]) & lost)])
                    return
            # Someone in the batch lost: write each on its own so only the loser fails.
            for change, future in live:
                try:
                    await self._write_batch([change])
                except Exception as single:
                    if not future.done():
                        future.set_exception(single)
                else:
                    if not future.done():
                        future.set_result(None)
            return
        self.batches += 1
        self.writes += len(live)
        for _, future in live:
            if not future.done():
                future.set_result(None)


def _runs(change: ExecutionWrite) -> set[tuple[int, str]]:
    """The runs a write changes (its own and those it must commit with)."""
    return {(w.shard_id, w.run_id) for w in (change, *change.also)}
