"""Coalescing of concurrent calls into batch requests (``RemoteService``'s completions).

A call that arrives while no batch request is in flight goes out at once, alone: an idle
worker pays no added latency, there is no timer. Calls that arrive while ``max_in_flight``
requests are already under way wait, and the next request takes all of them (up to
``max_batch``). So a busy worker sends one request per round trip instead of one per call —
the same rule as the store's group commit.

Each call gets its own result or its own exception; an error of the whole request (the server
unreachable, say) is raised in every call of that batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - item
R = TypeVar("R")

SendBatch = Callable[[Sequence[I]], Awaitable[Sequence[R | BaseException]]]


class Coalescer(Generic[I, R]):
    """Sends items through ``send`` in batches formed by arrival while requests are in flight.

    Args:
        send: Sends one batch; returns one result, or one exception to raise, per item, in
            order.
        max_batch: Most items in one request.
        max_in_flight: Most requests under way at once.
    """

    def __init__(self, send: SendBatch[I, R], *, max_batch: int, max_in_flight: int = 2) -> None:
        self._send = send
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._pending: list[tuple[I, asyncio.Future[R]]] = []
        self._senders: set[asyncio.Task[None]] = set()

    async def call(self, item: I) -> R:
        """Send ``item`` with whatever else is waiting; its result (or its exception)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._senders) < self._max_in_flight:
            sender = asyncio.create_task(self._drain(), name="cadenza-coalesce")
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        # The caller may give up (cancelled); the batch it joined still goes out, since the
        # server may already be recording it.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                results = await self._send([item for item, _ in batch])
            except asyncio.CancelledError:
                for _, future in batch:
                    if not future.done():
                        future.cancel()
                raise
            except Exception as exc:  # handed to every caller of this batch
                self._fail(batch, exc)
                continue
            if len(results) != len(batch):
                self._fail(batch, RuntimeError(f"{len(results)} results for {len(batch)} items"))
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    @staticmethod
    def _fail(batch: list[tuple[I, asyncio.Future[R]]], exc: BaseException) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(exc)

    async def close(self) -> None:
        """Cancel the requests under way (their callers get CancelledError)."""
        senders = list(self._senders)
        for sender in senders:
            sender.cancel()
        if senders:
            await asyncio.wait(senders)
        for _, future in self._pending:
            if not future.done():
                future.cancel()
        self._pending.clear()
