"""A new task handed straight to a waiting poll: reservations, delivery, withdrawal."""

from __future__ import annotations

import asyncio
import dataclasses

from cadenza.engine._notify import Notifier
from cadenza.engine._sync_match import SyncMatch
from cadenza.history import TaskRecord, TimerRecord

KEY = ("workflow", "default", "q")


def _task(n: int, **changes: object) -> TaskRecord:
    task = TaskRecord(
        shard_id=0,
        task_id=f"w:run-{n}",
        kind="workflow",
        task_queue="q",
        namespace="default",
        workflow_id=f"wf-{n}",
        run_id=f"run-{n}",
        ref_event_id=2,
        attempt=1,
        payload={},
        created_ms=1,
    )
    return dataclasses.replace(task, **changes)


def _lease(worker: str):  # type: ignore[no-untyped-def]
    def lease(task: TaskRecord, now: int, seen: int) -> tuple[TaskRecord, list[TimerRecord]]:
        return dataclasses.replace(task, lease_owner=worker, started_at_ms=now, seen_up_to=seen), []

    return lease


async def test_a_reserved_task_is_leased_to_the_poll_and_delivered_after_the_commit() -> None:
    sync = SyncMatch(Notifier())
    ticket = asyncio.get_running_loop().create_future()
    poller = sync.join(KEY, "worker-a", 2, _lease("worker-a"), ticket)
    first = sync.reserve(_task(1), now_ms=50, seen_up_to=3)
    second = sync.reserve(_task(2), now_ms=50, seen_up_to=4)
    assert first is not None and second is not None
    assert sync.reserve(_task(3), now_ms=50, seen_up_to=3) is None  # capacity 2 is taken
    assert (first.leased.lease_owner, first.leased.seen_up_to) == ("worker-a", 3)
    assert first.original.lease_owner is None  # the mutation's own row is untouched
    SyncMatch.deliver(first)
    assert ticket.done() and poller.woken_by_delivery
    SyncMatch.withdraw(second)  # its commit failed: nothing to hand over
    assert await poller.settle() == [first.leased]


async def test_a_woken_poll_waits_for_the_reservations_under_way() -> None:
    sync = SyncMatch(Notifier())
    ticket = asyncio.get_running_loop().create_future()
    poller = sync.join(KEY, "worker-a", 4, _lease("worker-a"), ticket)
    pending = sync.reserve(_task(1), now_ms=1, seen_up_to=2)
    assert pending is not None
    ticket.set_result(None)  # woken by something else meanwhile
    settled = asyncio.ensure_future(poller.settle())
    await asyncio.sleep(0)
    assert not settled.done()
    assert sync.reserve(_task(2), now_ms=1, seen_up_to=2) is None  # closed to new ones
    SyncMatch.deliver(pending)
    assert await settled == [pending.leased]


def test_only_tasks_a_poll_could_claim_are_reserved() -> None:
    sync = SyncMatch(Notifier())
    loop = asyncio.new_event_loop()
    try:
        sync.join(KEY, "worker-a", 8, _lease("worker-a"), loop.create_future())
        assert sync.reserve(_task(1, visible_at_ms=500), now_ms=100, seen_up_to=1) is None
        assert sync.reserve(_task(2, lease_owner="x"), now_ms=100, seen_up_to=1) is None
        held = _task(3, sticky_worker="worker-b", sticky_until_ms=200)
        assert sync.reserve(held, now_ms=100, seen_up_to=1) is None
        assert sync.reserve(held, now_ms=300, seen_up_to=1) is not None  # window over
        other_queue = dataclasses.replace(_task(4), task_queue="elsewhere")
        assert sync.reserve(other_queue, now_ms=100, seen_up_to=1) is None
        mine = _task(5, sticky_worker="worker-a", sticky_until_ms=200)
        assert sync.reserve(mine, now_ms=100, seen_up_to=1) is not None
    finally:
        loop.close()


async def test_wait_returns_what_a_commit_handed_over() -> None:
    notifier = Notifier()
    sync = SyncMatch(notifier)
    ticket = notifier.ticket(KEY, capacity=4)
    waiting = asyncio.ensure_future(
        sync.wait(KEY, ticket, worker_id="w", capacity=4, lease=_lease("w"), timeout=5)
    )
    await asyncio.sleep(0)
    assert sync.waiting()
    reservation = sync.reserve(_task(1), now_ms=1, seen_up_to=2)
    assert reservation is not None
    SyncMatch.deliver(reservation)
    assert await waiting == [reservation.leased]
    assert not sync.waiting()
    assert notifier.poll_keys() == []  # the ticket left the queue, nothing passed on


async def test_wait_times_out_empty_and_leaves_no_trace() -> None:
    notifier = Notifier()
    sync = SyncMatch(notifier)
    ticket = notifier.ticket(KEY)
    got = await sync.wait(KEY, ticket, worker_id="w", capacity=1, lease=_lease("w"), timeout=0.01)
    assert got == []
    assert not sync.waiting()
    assert notifier.poll_keys() == []
