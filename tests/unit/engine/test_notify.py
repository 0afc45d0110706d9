"""Wake-ups of pollers: hand-off tickets, and new tasks counted against pollers' capacities."""

from __future__ import annotations

import asyncio

from cadenza.engine._notify import Notifier

KEY = ("workflow", "default", "q")


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_the_tasks_of_one_loop_iteration_wake_only_the_pollers_their_count_needs() -> None:
    notifier = Notifier()
    big = [notifier.ticket(KEY, capacity=4) for _ in range(3)]
    for _ in range(6):  # six tasks committed together: two pollers of four cover them
        notifier.notify_tasks(KEY)
    assert not any(t.done() for t in big)  # woken at the end of the iteration, not at once
    await _settle()
    assert [t.done() for t in big] == [True, True, False]


async def test_one_task_per_iteration_wakes_one_poller_each_time() -> None:
    notifier = Notifier()
    tickets = [notifier.ticket(KEY) for _ in range(3)]
    notifier.notify_tasks(KEY)
    await _settle()
    notifier.notify_tasks(KEY, 1)
    await _settle()
    assert [t.done() for t in tickets] == [True, True, False]


async def test_a_poller_that_left_is_skipped_and_its_capacity_not_counted() -> None:
    notifier = Notifier()
    gone = notifier.ticket(KEY, capacity=10)
    stays = notifier.ticket(KEY, capacity=1)
    notifier.release(KEY, gone)
    notifier.notify_tasks(KEY, 1)
    await _settle()
    assert gone.cancelled()
    assert stays.done() and not stays.cancelled()
    assert notifier.poll_keys() == []


async def test_a_used_ticket_released_passes_the_wake_up_on() -> None:
    notifier = Notifier()
    first, second = notifier.ticket(KEY), notifier.ticket(KEY)
    notifier.notify_one(KEY)
    assert first.done() and not second.done()
    notifier.release(KEY, first)  # it found work without the wake-up: the next one gets it
    assert second.done()


async def test_tasks_of_other_keys_wake_their_own_pollers() -> None:
    notifier = Notifier()
    other = ("activity", "default", "q")
    mine, theirs = notifier.ticket(KEY), notifier.ticket(other)
    assert sorted(notifier.poll_keys()) == sorted([KEY, other])
    notifier.notify_tasks(other, 3)
    await _settle()
    assert theirs.done() and not mine.done()
