"""The timer service: fires durable timers of the shards this process owns.

A timer is a row written in the same transaction as the event that started it (a user timer,
an activity timeout, a retry back-off, a workflow task timeout, a workflow run timeout). The
loop sleeps until the earliest due timer and is woken early by :meth:`TimerService.notify`
when a new, earlier timer is committed. Firing is the engine's job (a callback that appends
the event and deletes the row in one transaction), so a timer fires at most once; a timer whose
firing failed stays in the table and is retried, and after a crash everything overdue is
fired on the next start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from cadenza.history import HistoryStore, ShardOwnershipLostError, TimerRecord
from cadenza.timers._clock import Clock

log = logging.getLogger("cadenza.timers")

FireCallback = Callable[[TimerRecord], Awaitable[None]]


class TimerService:
    """Per-process timer loop over a set of shards.

    Args:
        store: The event log store.
        clock: Time source.
        fire: Appends the timer's event and deletes its row (one transaction).
        shards: Returns the shards this process owns right now.
        batch_size: Timers read per query.
        concurrency: Timers fired at once.
        idle_check_ms: Longest sleep with no known timer (re-reads the table after it).
        retry_ms: Delay before retrying a timer whose firing failed.
    """

    def __init__(
        self,
        store: HistoryStore,
        clock: Clock,
        fire: FireCallback,
        shards: Callable[[], Sequence[int]],
        *,
        batch_size: int = 500,
        concurrency: int = 64,
        idle_check_ms: int = 30_000,
        retry_ms: int = 1_000,
    ) -> None:
        self._store = store
        self._clock = clock
        self._fire = fire
        self._shards = shards
        self._batch_size = batch_size
        self._semaphore = asyncio.Semaphore(concurrency)
        self._idle_check_ms = idle_check_ms
        self._retry_ms = retry_ms
        self._wake = asyncio.Event()
        self._sleeping_until: int | None = None
        self._failed_until: dict[str, int] = {}
        self.fired_count = 0

    def notify(self, fire_at_ms: int) -> None:
        """A timer firing at ``fire_at_ms`` was committed: wake the loop if it is earlier."""
        if self._sleeping_until is None or fire_at_ms < self._sleeping_until:
            self._wake.set()

    def next_wake_ms(self) -> int | None:
        """When the loop intends to wake (None while it is working)."""
        return self._sleeping_until

    async def run(self, stop: asyncio.Event) -> None:
        """Fire timers until ``stop`` is set."""
        while not stop.is_set():
            self._wake.clear()
            self._sleeping_until = None
            shards = list(self._shards())
            now = self._clock.now_ms()
            due = await self._store.due_timers(shards, now, self._batch_size)
            ready = [t for t in due if self._failed_until.get(t.timer_key, 0) <= now]
            if ready:
                await asyncio.gather(*(self._fire_one(t) for t in ready))
            if len(due) == self._batch_size and len(ready) == len(due):
                continue
            nxt = await self._store.next_timer_ms(shards)
            if nxt is None:
                target = now + self._idle_check_ms
            elif nxt > now:
                target = nxt
            elif self._failed_until:
                # What is due is waiting out a failure back-off.
                target = min(self._failed_until.values())
            else:
                continue
            if target <= self._clock.now_ms():
                continue
            self._sleeping_until = target
            if stop.is_set():
                break
            stop_task = asyncio.ensure_future(stop.wait())
            sleep_task = asyncio.ensure_future(self._clock.sleep_until(target, self._wake))
            try:
                await asyncio.wait({stop_task, sleep_task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop_task.cancel()
                sleep_task.cancel()

    async def _fire_one(self, timer: TimerRecord) -> None:
        async with self._semaphore:
            try:
                await self._fire(timer)
                self._failed_until.pop(timer.timer_key, None)
                self.fired_count += 1
            except asyncio.CancelledError:
                raise
            except ShardOwnershipLostError:
                # The shard moved to another process, which fires its timers from now on.
                log.info("timer %s not fired here: its shard moved", timer.timer_key)
            except Exception:
                log.exception("firing timer %s failed; will retry", timer.timer_key)
                self._failed_until[timer.timer_key] = self._clock.now_ms() + self._retry_ms
