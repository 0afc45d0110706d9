"""The coalescer behind RemoteService's batched completions."""

from __future__ import annotations

import asyncio

import pytest

from cadenza.frontend._coalesce import Coalescer


class Recorder:
    """A ``send`` that records its batches and answers after a gate opens."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.fail_with: Exception | None = None

    async def send(self, items):
        self.batches.append(list(items))
        await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def test_an_idle_call_goes_out_alone_and_at_once() -> None:
    rec = Recorder()
    rec.gate.set()
    coalescer = Coalescer(rec.send, max_batch=8)
    assert await coalescer.call(2) == 20
    assert rec.batches == [[2]]


async def test_calls_made_while_requests_are_in_flight_share_the_next_request() -> None:
    rec = Recorder()
    coalescer = Coalescer(rec.send, max_batch=3, max_in_flight=1)
    calls = [asyncio.ensure_future(coalescer.call(0))]
    for _ in range(3):
        await asyncio.sleep(0)
    assert rec.batches == [[0]]  # out at once, alone
    calls += [asyncio.ensure_future(coalescer.call(i * 2)) for i in range(1, 7)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert rec.batches == [[0]]  # the others wait for the request in flight
    rec.gate.set()
    assert await asyncio.gather(*calls) == [0, 20, 40, 60, 80, 100, 120]
    assert rec.batches == [[0], [2, 4, 6], [8, 10, 12]]


async def test_each_call_gets_its_own_error() -> None:
    rec = Recorder()
    rec.gate.set()
    coalescer = Coalescer(rec.send, max_batch=8)
    results = await asyncio.gather(*(coalescer.call(i) for i in range(4)), return_exceptions=True)
    assert results[0] == 0 and results[2] == 20
    assert isinstance(results[1], ValueError) and str(results[1]) == "odd 1"
    assert isinstance(results[3], ValueError) and str(results[3]) == "odd 3"


async def test_a_failed_request_fails_its_calls_and_the_next_batch_still_goes() -> None:
    rec = Recorder()
    coalescer = Coalescer(rec.send, max_batch=8, max_in_flight=1)
    rec.fail_with = ConnectionError("server gone")
    first = asyncio.ensure_future(coalescer.call(0))
    for _ in range(3):
        await asyncio.sleep(0)
    second = asyncio.ensure_future(coalescer.call(2))
    for _ in range(3):
        await asyncio.sleep(0)
    assert rec.batches == [[0]]
    rec.gate.set()
    with pytest.raises(ConnectionError, match="server gone"):
        await first
    # ``second`` waited behind the failed request and went out in a request of its own.
    with pytest.raises(ConnectionError):
        await second
    assert rec.batches == [[0], [2]]
    rec.fail_with = None
    assert await coalescer.call(4) == 40


async def test_a_wrong_number_of_results_fails_the_batch() -> None:
    async def short(items):
        return [1]

    coalescer = Coalescer(short, max_batch=8, max_in_flight=1)
    calls = [asyncio.ensure_future(coalescer.call(i)) for i in range(3)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "1 results for 3" in str(r) for r in results)
    assert await coalescer.call(5) == 1


async def test_close_cancels_what_is_under_way() -> None:
    rec = Recorder()
    coalescer = Coalescer(rec.send, max_batch=8)
    call = asyncio.ensure_future(coalescer.call(2))
    await asyncio.sleep(0)
    await coalescer.close()
    with pytest.raises(asyncio.CancelledError):
        await call
