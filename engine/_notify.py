"""In-process wake-ups: long-polls, result waiters and the transfer loop wait on these.

Two kinds of waiting:

* :meth:`Notifier.waiter` / :meth:`Notifier.notify`: broadcast. Everyone waiting on the key
  wakes (a run closed; new events for a run).
* :meth:`Notifier.ticket` / :meth:`Notifier.notify_one`: hand-off. One new task wakes one
  poller of its queue, not all of them: waking every poller for every task makes all but one
  run a claim that finds nothing, and on SQLite those claims queue for the one write lock.

A poller takes its ticket *before* it looks for work, so a task that arrives between the look
and the wait is never missed; if it found work and its ticket was used meanwhile, it passes
the wake-up on (:meth:`Notifier.release`).

* :meth:`Notifier.notify_tasks`: new tasks, counted. A poller may take many tasks in one
  claim (a worker asks for as many as it has free slots), so the tasks written in one loop
  iteration (one group commit's worth, or a burst of other servers' notices) wake only as many
  pollers as their capacities need: with one wake-up per task, five of six pollers woken by a
  commit of six tasks ran a claim that found nothing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Hashable


class Notifier:
    """Per-key events and tickets."""

    def __init__(self) -> None:
        self._events: dict[Hashable, asyncio.Event] = {}
        self._tickets: dict[Hashable, collections.deque[asyncio.Future[None]]] = {}
        self._capacity: dict[asyncio.Future[None], int] = {}
        self._new_tasks: dict[Hashable, int] = {}
        self._flush_scheduled = False

    def waiter(self, key: Hashable) -> asyncio.Event:
        """The event that the next :meth:`notify` of ``key`` sets."""
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = asyncio.Event()
        return event

    def notify(self, key: Hashable) -> None:
        """Wake everyone waiting on ``key`` (events and tickets)."""
        event = self._events.pop(key, None)
        if event is not None:
            event.set()
        tickets = self._tickets.pop(key, None)
        for ticket in tickets or ():
            self._capacity.pop(ticket, None)
            if not ticket.done():
                ticket.set_result(None)

    def ticket(self, key: Hashable, capacity: int = 1) -> asyncio.Future[None]:
        """Join the queue of pollers of ``key`` (one that takes up to ``capacity`` tasks per
        look); resolved by one :meth:`notify_one`, or by :meth:`notify_tasks`."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tickets.setdefault(key, collections.deque()).append(future)
        if capacity > 1:
            self._capacity[future] = capacity
        return future

    def poll_keys(self) -> list[Hashable]:
        """The keys that pollers wait on now."""
        return list(self._tickets)

    def notify_one(self, key: Hashable) -> None:
        """Wake the longest-waiting poller of ``key``."""
        self._wake(key, 1)

    def notify_tasks(self, key: Hashable, count: int = 1) -> None:
        """``count`` new tasks of ``key``: at the end of this loop iteration, wake the
        longest-waiting pollers whose capacities add up to the tasks counted by then."""
        self._new_tasks[key] = self._new_tasks.get(key, 0) + count
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_new_tasks)

    def _flush_new_tasks(self) -> None:
        self._flush_scheduled = False
        counts, self._new_tasks = self._new_tasks, {}
        for key, count in counts.items():
            self._wake(key, count)

    def _wake(self, key: Hashable, tasks: int) -> None:
        tickets = self._tickets.get(key)
        while tickets and tasks > 0:
            ticket = tickets.popleft()
            capacity = self._capacity.pop(ticket, 1)
            if not ticket.done():
                ticket.set_result(None)
                tasks -= capacity
        if tickets is not None and not tickets:
            del self._tickets[key]

    def discard(self, key: Hashable, ticket: asyncio.Future[None]) -> None:
        """Leave the queue without passing anything on (the ticket was used for something
        else than a wake-up of this notifier)."""
        self._capacity.pop(ticket, None)
        if not ticket.done():
            ticket.cancel()
        tickets = self._tickets.get(key)
        if tickets is not None:
            with contextlib.suppress(ValueError):
                tickets.remove(ticket)
            if not tickets:
                del self._tickets[key]

    def release(self, key: Hashable, ticket: asyncio.Future[None]) -> None:
        """Leave the queue; if the ticket was already used, pass the wake-up on."""
        if ticket.done():
            self._capacity.pop(ticket, None)
            if not ticket.cancelled():
                self.notify_one(key)
            return
        self.discard(key, ticket)

    def notify_all(self) -> None:
        """Wake every waiter (shutdown)."""
        events, self._events = self._events, {}
        for event in events.values():
            event.set()
        tickets, self._tickets = self._tickets, {}
        self._capacity.clear()
        for queue in tickets.values():
            for ticket in queue:
                if not ticket.done():
                    ticket.set_result(None)


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` up to ``timeout`` seconds; True if it was set."""
    if timeout <= 0:
        return event.is_set()
    try:
        await asyncio.wait_for(event.wait(), timeout)
        return True
    except TimeoutError:
        return False


async def wait_ticket(ticket: asyncio.Future[None], timeout: float) -> bool:
    """Wait for a ticket up to ``timeout`` seconds; True if it was used."""
    if timeout <= 0 or ticket.done():
        return ticket.done()
    done, _ = await asyncio.wait({ticket}, timeout=timeout)
    return bool(done)
