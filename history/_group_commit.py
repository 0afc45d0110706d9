"""Group commit: appends that arrive together are written in one transaction.

Writes join one queue. If no commit is running, a write starts one at once — an idle engine
adds no delay. While a commit runs, new writes queue up, and the next commit takes all of
them (up to ``max_batch``). One commit at a time makes the biggest batches, and a write in a
batch costs the server and the database far less than a write in a transaction of its own.
So a second commit (up to ``max_in_flight``) starts only when one cannot serve the queue:
when more writes wait than one batch takes, or when the running commit has taken longer than
``relief_after_s`` (a lock wait, a slow disk) while writes wait behind it.

A batch is one transaction: the fencing token of each shard in it is checked once, then each
write's compare-and-swap, events and outbox. If any write in a batch fails (a lost CAS, a
stale token), the transaction rolls back and the batch's writes are retried one by one, so
one loser never fails the others. Two writes of one run are never in flight together: the
engine holds the run's lock until its write lands, so concurrent commits never reorder them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from cadenza.history._records import ExecutionWrite

log = logging.getLogger("cadenza.history.group_commit")

BatchWriter = Callable[[Sequence[ExecutionWrite]], Awaitable[None]]


class GroupCommitter:
    """Batches :class:`ExecutionWrite` s into transactions.

    Args:
        write_batch: Writes a batch in one transaction (raises if any write fails).
        max_in_flight: Most transactions running at once (1 for SQLite).
        max_batch: Most writes in one transaction.
        relief_after_s: How long a commit may run, with writes waiting, before another
            starts beside it.
    """

    def __init__(
        self,
        write_batch: BatchWriter,
        *,
        max_in_flight: int = 1,
        max_batch: int = 128,
        relief_after_s: float = 0.02,
    ) -> None:
        self._write_batch = write_batch
        self._queue: deque[tuple[ExecutionWrite, asyncio.Future[None]]] = deque()
        self._running = 0
        self._max_in_flight = max(1, max_in_flight)
        self._max_batch = max_batch
        self._relief_after_s = relief_after_s
        self.batches = 0
        self.writes = 0

    async def write(self, change: ExecutionWrite) -> None:
        """Write ``change`` in the next batch; raises what its own write raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.append((change, future))
        if self._running == 0 or (
            self._running < self._max_in_flight and len(self._queue) > self._max_batch
        ):
            self._start(loop)
        await future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._running += 1
        loop.create_task(self._drain(loop))

    def _relieve(self, loop: asyncio.AbstractEventLoop) -> None:
        """A commit is taking long: let the writes waiting behind it go in another."""
        if self._queue and self._running < self._max_in_flight:
            self._start(loop)

    async def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while self._queue:
                queue = self._queue
                batch = [queue.popleft() for _ in range(min(self._max_batch, len(queue)))]
                relief = None
                if self._running < self._max_in_flight:
                    relief = loop.call_later(self._relief_after_s, self._relieve, loop)
                try:
                    await self._commit(batch)
                finally:
                    if relief is not None:
                        relief.cancel()
        finally:
            self._running -= 1

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
