"""Clocks: the system clock, and a virtual clock for tests that skip time."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol


class Clock(Protocol):
    """Where the engine gets the time from, and how it sleeps."""

    def now_ms(self) -> int:
        """Milliseconds since the epoch."""
        ...

    async def sleep_until(self, deadline_ms: int, wake: asyncio.Event) -> None:
        """Return at ``deadline_ms`` or as soon as ``wake`` is set, whichever comes first."""
        ...


class SystemClock:
    """The machine's clock."""

    def now_ms(self) -> int:
        """Milliseconds since the epoch."""
        return int(time.time() * 1000)

    async def sleep_until(self, deadline_ms: int, wake: asyncio.Event) -> None:
        """Sleep on the event loop until the deadline or a wake-up."""
        delay = (deadline_ms - self.now_ms()) / 1000
        if delay <= 0 or wake.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=delay)


class VirtualClock:
    """A clock that only moves when told to (``advance_to``); sleeping on it costs nothing.

    Used by ``WorkflowEnvironment``: when nothing can run, the environment moves the clock to
    the next timer, so a workflow that sleeps 30 days completes in milliseconds.
    """

    def __init__(self, start_ms: int | None = None) -> None:
        self._now = int(time.time() * 1000) if start_ms is None else start_ms
        self._moved = asyncio.Event()

    def now_ms(self) -> int:
        """The virtual time."""
        return self._now

    def advance_to(self, target_ms: int) -> None:
        """Move time forward (never backward) and wake every sleeper."""
        if target_ms > self._now:
            self._now = target_ms
            moved, self._moved = self._moved, asyncio.Event()
            moved.set()

    async def sleep_until(self, deadline_ms: int, wake: asyncio.Event) -> None:
        """Wait until virtual time reaches the deadline or ``wake`` is set."""
        while self._now < deadline_ms and not wake.is_set():
            moved = asyncio.ensure_future(self._moved.wait())
            woken = asyncio.ensure_future(wake.wait())
            try:
                await asyncio.wait({moved, woken}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                moved.cancel()
                woken.cancel()
