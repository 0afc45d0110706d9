"""The threads that run workflow code for a worker's loop."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from cadenza.sdk._workflow_threads import Deadlines, WorkflowThreads

pytestmark = pytest.mark.asyncio

_who = contextvars.ContextVar("who", default="nobody")


def _submit(pool: WorkflowThreads, fn, ctx: contextvars.Context | None = None) -> asyncio.Future:
    """Hand ``fn`` to the pool; the future its outcome goes to."""
    done = asyncio.get_running_loop().create_future()
    pool.submit(ctx or contextvars.copy_context(), fn, done)
    return done


async def _run(pool: WorkflowThreads, fn, ctx: contextvars.Context | None = None):
    return await _submit(pool, fn, ctx)


async def test_results_and_exceptions_come_back_to_the_caller_in_its_context() -> None:
    pool = WorkflowThreads(2)
    try:
        _who.set("caller")
        seen = await _run(pool, lambda: (_who.get(), threading.current_thread().name))
        assert seen[0] == "caller"
        assert seen[1].startswith("cadenza-workflow_")
        assert seen[1] != threading.current_thread().name

        def boom() -> None:
            raise ValueError("workflow code failed")

        with pytest.raises(ValueError, match="workflow code failed"):
            await _run(pool, boom)
    finally:
        pool.shutdown()


async def test_many_concurrent_hops_each_get_their_own_result_on_at_most_max_threads() -> None:
    pool = WorkflowThreads(3)
    names: set[str] = set()
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            names.add(threading.current_thread().name)
        return i * i

    async def caller(base: int) -> list[int]:
        return [await _run(pool, lambda i=i: work(i)) for i in range(base, base + 50)]

    try:
        results = await asyncio.gather(*(caller(b * 50) for b in range(20)))
    finally:
        pool.shutdown()
    assert [r for batch in results for r in batch] == [i * i for i in range(1000)]
    assert 1 <= len(names) <= 3


async def test_a_blocked_thread_does_not_hold_up_the_others() -> None:
    pool = WorkflowThreads(2)
    release = threading.Event()
    try:
        blocked = _submit(pool, lambda: release.wait(10))
        await asyncio.sleep(0.05)  # the first thread is now stuck in the blocking call
        assert await asyncio.wait_for(_run(pool, lambda: "still served"), 2) == "still served"
        assert not blocked.done()
    finally:
        release.set()
    assert await asyncio.wait_for(blocked, 2) is True
    pool.shutdown()


async def test_a_late_outcome_is_dropped_when_the_caller_stopped_waiting() -> None:
    pool = WorkflowThreads(1)
    release = threading.Event()
    try:
        done = _submit(pool, lambda: release.wait(10) and "late")
        done.set_exception(TimeoutError("the deadline passed"))  # what the deadline does
        release.set()
        # The thread's result arrives after the deadline and is dropped; the pool goes on.
        assert await asyncio.wait_for(_run(pool, lambda: "next"), 2) == "next"
        with pytest.raises(TimeoutError, match="deadline"):
            done.result()
    finally:
        pool.shutdown()


async def test_shutdown_cancels_jobs_not_started_and_refuses_new_ones() -> None:
    pool = WorkflowThreads(1)
    loop = asyncio.get_running_loop()
    release = threading.Event()
    running = _submit(pool, lambda: release.wait(10))
    await asyncio.sleep(0.05)
    queued = _submit(pool, lambda: "never")
    pool.shutdown()
    release.set()
    assert await asyncio.wait_for(running, 2) is True
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(queued, 2)
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(contextvars.copy_context(), lambda: None, loop.create_future())


async def test_deadlines_fail_only_the_futures_still_waiting_at_their_deadline() -> None:
    loop = asyncio.get_running_loop()
    expired: list[tuple[asyncio.Future, float]] = []

    def fail(done: asyncio.Future) -> None:
        expired.append((done, loop.time()))
        done.set_exception(RuntimeError("deadline passed"))

    deadlines = Deadlines(0.2, fail)
    first, settled, later = loop.create_future(), loop.create_future(), loop.create_future()
    start = loop.time()
    deadlines.watch(first)
    deadlines.watch(settled)
    await asyncio.sleep(0.15)
    later_start = loop.time()
    deadlines.watch(later)  # its deadline is 150 ms after the others'
    settled.set_result("in time")
    deadlines.unwatch(settled)
    with pytest.raises(RuntimeError, match="deadline passed"):
        await asyncio.wait_for(first, 5)
    assert not later.done()
    with pytest.raises(RuntimeError, match="deadline passed"):
        await asyncio.wait_for(later, 5)
    assert [done for done, _ in expired] == [first, later]
    assert settled.result() == "in time"
    # each failed at its own deadline, not before
    assert expired[0][1] - start >= 0.2
    assert expired[1][1] - later_start >= 0.2


async def test_deadlines_rearm_after_an_idle_spell() -> None:
    loop = asyncio.get_running_loop()
    expired: list[asyncio.Future] = []
    deadlines = Deadlines(0.05, expired.append)
    quick = loop.create_future()
    deadlines.watch(quick)
    deadlines.unwatch(quick)
    await asyncio.sleep(0.1)  # the timer fired and found nothing
    assert expired == []
    slow = loop.create_future()
    deadlines.watch(slow)
    for _ in range(100):
        if expired:
            break
        await asyncio.sleep(0.02)
    assert expired == [slow]
