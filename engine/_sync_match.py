"""Handing a new task straight to a waiting poller, in the transaction that creates it.

Without this, a task is inserted by one transaction (a start, an activity's completion) and
leased by another (the poller's claim: an ``UPDATE … RETURNING`` and the task's timeout timer),
so every task costs a second write transaction, a second fsync, and a claim that a woken poller
may lose. When this server has a poller of the task's queue waiting, the commit that creates the
task writes it already leased to that poller's worker, with its timeout timer, and hands the row
to the poller once the commit is done: no claim at all. (Temporal calls this a sync match.)

A waiting poller takes at most ``capacity`` tasks this way. A reservation is made just before the
commit and settled right after it: delivered if the commit went through, taken back if it did
not (the task was not written either). A poller that wakes stops taking reservations and waits
for the ones under way to settle (one commit at most), so a task written as leased to a poll
reaches it. A poll cancelled meanwhile (its HTTP request went away) leaves its tasks leased, as
a claimed task whose answer never reached the worker is: its timeout hands it to another worker.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from cadenza.engine._notify import Notifier, wait_ticket
from cadenza.engine._task_dispatch import QueueKey
from cadenza.history import TaskRecord, TimerRecord

Lease = Callable[[TaskRecord, int, int], tuple[TaskRecord, list[TimerRecord]]]
"""``(task, now_ms, seen_up_to) -> (the task leased, its timeout timers)``."""


def claim_lease(
    worker_id: str,
    lease_ms: int,
    timers_for: Callable[[TaskRecord], list[TimerRecord]],
    *,
    records_seen: bool,
) -> Lease:
    """A :data:`Lease` that writes what a poll's claim would: the lease to ``worker_id`` for
    ``lease_ms``, the start time, ``seen_up_to`` for a workflow task (``records_seen``), and
    the timeout timers ``timers_for`` gives for the leased row."""

    def lease(task: TaskRecord, now: int, seen_up_to: int) -> tuple[TaskRecord, list[TimerRecord]]:
        leased = dataclasses.replace(
            task,
            lease_owner=worker_id,
            lease_until_ms=now + lease_ms,
            started_at_ms=now,
            seen_up_to=seen_up_to if records_seen else task.seen_up_to,
        )
        return leased, timers_for(leased)

    return lease


@dataclass(eq=False)
class WaitingPoller:
    """One poll waiting for tasks of ``key`` for ``worker_id``."""

    key: QueueKey
    worker_id: str
    capacity: int
    lease: Lease
    woken: asyncio.Future[None]
    tasks: list[TaskRecord] = field(default_factory=list)
    reserved: int = 0
    open: bool = True
    woken_by_delivery: bool = False
    _settled: asyncio.Event = field(default_factory=asyncio.Event)

    def free(self) -> int:
        """How many more tasks it may be handed."""
        return self.capacity - len(self.tasks) - self.reserved

    async def settle(self) -> list[TaskRecord]:
        """Stop taking reservations; wait for those under way; the tasks delivered."""
        self.open = False
        while self.reserved:
            self._settled.clear()
            await self._settled.wait()
        return self.tasks


@dataclass
class Reservation:
    """A task of a mutation about to commit, written as leased to ``poller`` (``leased``,
    with its timeout ``timers``) in place of ``original``."""

    poller: WaitingPoller
    original: TaskRecord
    leased: TaskRecord
    timers: list[TimerRecord]


class SyncMatch:
    """The polls of this process waiting for tasks, by queue."""

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier
        self._waiting: dict[QueueKey, collections.deque[WaitingPoller]] = {}

    def waiting(self) -> bool:
        """Whether any poll waits (the commit path's quick check)."""
        return bool(self._waiting)

    def join(
        self,
        key: QueueKey,
        worker_id: str,
        capacity: int,
        lease: Lease,
        woken: asyncio.Future[None],
    ) -> WaitingPoller:
        """A poll starts waiting on ``woken`` (its notifier ticket, resolved by a delivery
        too): commits may hand it up to ``capacity`` tasks."""
        poller = WaitingPoller(key, worker_id, capacity, lease, woken)
        self._waiting.setdefault(key, collections.deque()).append(poller)
        return poller

    def leave(self, poller: WaitingPoller) -> None:
        """The poll stops waiting (woken, timed out or cancelled)."""
        poller.open = False
        waiting = self._waiting.get(poller.key)
        if waiting is not None:
            with contextlib.suppress(ValueError):
                waiting.remove(poller)
            if not waiting:
                del self._waiting[poller.key]

    def reserve(self, task: TaskRecord, now_ms: int, seen_up_to: int) -> Reservation | None:
        """Lease ``task`` (about to be inserted) to the longest-waiting poll that can take it."""
        waiting = self._waiting.get((task.kind, task.namespace, task.task_queue))
        if not waiting or task.lease_owner is not None:
            return None
        if task.visible_at_ms is not None and task.visible_at_ms > now_ms:
            return None
        for poller in waiting:
            if not poller.open or poller.free() <= 0:
                continue
            if (
                task.sticky_worker is not None
                and task.sticky_worker != poller.worker_id
                and (task.sticky_until_ms or 0) > now_ms
            ):
                continue
            leased, timers = poller.lease(task, now_ms, seen_up_to)
            poller.reserved += 1
            return Reservation(poller, task, leased, timers)
        return None

    async def wait(
        self,
        key: QueueKey,
        ticket: asyncio.Future[None],
        *,
        worker_id: str,
        capacity: int,
        lease: Lease,
        timeout: float,
    ) -> list[TaskRecord]:
        """Wait up to ``timeout`` seconds on a poll's notifier ``ticket``, letting commits
        hand it up to ``capacity`` tasks meanwhile. Returns the tasks handed over (empty:
        woken by a notice, or the time ran out; the caller looks in the database again).
        The ticket is settled either way."""
        notifier = self._notifier
        poller = self.join(key, worker_id, capacity, lease, ticket)
        try:
            await wait_ticket(ticket, timeout)
        except BaseException:
            self.leave(poller)
            if not ticket.done():
                notifier.release(key, ticket)
            raise
        self.leave(poller)
        delivered = await poller.settle()
        if delivered and poller.woken_by_delivery:
            notifier.discard(key, ticket)
        elif not ticket.done() or delivered:
            # Not used yet: leave the queue; used by a wake-up meant for others: pass it on.
            notifier.release(key, ticket)
        return delivered

    @staticmethod
    def deliver(reservation: Reservation) -> None:
        """The commit went through: hand the task over."""
        poller = reservation.poller
        poller.reserved -= 1
        poller._settled.set()
        poller.tasks.append(reservation.leased)
        if not poller.woken.done():
            poller.woken.set_result(None)
            poller.woken_by_delivery = True

    @staticmethod
    def withdraw(reservation: Reservation) -> None:
        """The commit failed: the task was not written; the poll keeps waiting."""
        poller = reservation.poller
        poller.reserved -= 1
        poller._settled.set()


__all__ = [
    "Lease",
    "Reservation",
    "SyncMatch",
    "WaitingPoller",
    "claim_lease",
]
