"""The threads that run workflow code for a worker's event loop.

Workflow code runs off the event loop so that one that blocks (a bug the deadlock deadline
reports) cannot stall the worker's polls, heartbeats and other workflows. A workflow task
hops into these threads several times (its activation, then once per batch of local
activities), so a hop must be cheap: a ``concurrent.futures.ThreadPoolExecutor`` costs a work
item, a future and a lock per submit, and ``call_soon_threadsafe`` writes to the loop's
self-pipe per result. Here a submit is one put on a ``SimpleQueue``, and results go back
through one outbox that the loop drains: one wake-up of the loop carries every result that
arrived since the last one.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("cadenza.sdk.worker")

_Job = tuple[contextvars.Context, Callable[[], Any], "asyncio.Future[Any]"]
_STOP: Any = None


class WorkflowThreads:
    """Up to ``max_threads`` threads (started as needed) running callables for one loop.

    :meth:`submit` returns at once; the callable's result or exception is set on the given
    future (unless it is already done: the deadline passed, or the caller gave up).
    """

    def __init__(self, max_threads: int, name: str = "cadenza-workflow") -> None:
        self._max = max(1, max_threads)
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._outbox: collections.deque[tuple[asyncio.Future[Any], Any, BaseException | None]]
        self._outbox = collections.deque()
        self._drain_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def submit(
        self, ctx: contextvars.Context, fn: Callable[[], Any], done: asyncio.Future[Any]
    ) -> None:
        """Run ``ctx.run(fn)`` in a thread; its outcome goes to ``done`` (on its loop)."""
        if self._closed:
            raise RuntimeError("the workflow threads are shut down")
        self._loop = done.get_loop()
        with self._lock:
            start = self._idle == 0 and len(self._threads) < self._max
            if start:
                thread = threading.Thread(
                    target=self._serve, name=f"{self._name}_{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
            elif self._idle > 0:
                self._idle -= 1  # this job will wake one of them
        if start:
            thread.start()
        self._jobs.put((ctx, fn, done))

    def shutdown(self) -> None:
        """Let the threads end once their current job returns (jobs not started are
        dropped: their futures are cancelled)."""
        self._closed = True
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP and self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(job[2].cancel)
        for _ in self._threads:
            self._jobs.put(_STOP)

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            ctx, fn, done = job
            try:
                outcome: tuple[Any, BaseException | None] = (ctx.run(fn), None)
            except BaseException as exc:  # handed to the awaiting task
                outcome = (None, exc)
            self._hand_back(done, *outcome)
            with self._lock:
                self._idle += 1

    def _hand_back(self, done: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
        loop = done.get_loop()
        with self._lock:
            self._outbox.append((done, result, exc))
            wake = not self._drain_scheduled
            self._drain_scheduled = True
        if wake:
            try:
                loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: nobody waits for the result
                log.debug("workflow thread result dropped: the loop is closed")

    def _drain(self) -> None:
        with self._lock:
            items = list(self._outbox)
            self._outbox.clear()
            self._drain_scheduled = False
        for done, result, exc in items:
            if done.done():
                continue
            if exc is not None:
                done.set_exception(exc)
            else:
                done.set_result(result)


class Deadlines:
    """Fails each watched future still waiting ``timeout`` seconds after it was watched.

    One loop timer serves every watched future, armed for the oldest one: a hop into the
    workflow threads costs a dict entry where a timer of its own cost a timer handle, a heap
    push and a cancellation. Every future gets the same timeout, so the order of watching is
    the order of the deadlines.
    """

    def __init__(self, timeout: float, expired: Callable[[asyncio.Future[Any]], None]) -> None:
        self._timeout = timeout
        self._expired = expired
        self._waiting: dict[asyncio.Future[Any], float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, done: asyncio.Future[Any]) -> None:
        """Start the clock of ``done``; :meth:`unwatch` it once it is settled."""
        loop = done.get_loop()
        self._waiting[done] = loop.time() + self._timeout
        if self._timer is None:
            self._timer = loop.call_later(self._timeout, self._check, loop)

    def unwatch(self, done: asyncio.Future[Any]) -> None:
        """Stop the clock of ``done`` (the timer, if armed for it, finds it gone)."""
        self._waiting.pop(done, None)

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        while self._waiting:
            done, deadline = next(iter(self._waiting.items()))
            if deadline > now:
                self._timer = loop.call_at(deadline, self._check, loop)
                return
            del self._waiting[done]
            self._expired(done)
