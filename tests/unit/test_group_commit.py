"""How the group committer forms batches and when it runs a second transaction."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from cadenza.history._group_commit import GroupCommitter

pytestmark = pytest.mark.asyncio


class SlowWriter:
    """Records each batch and how many ran at once; each commit takes ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.batches: list[list[int]] = []
        self.running = 0
        self.most_at_once = 0

    async def __call__(self, batch) -> None:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        self.batches.append([w.n for w in batch])
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.running -= 1


def _write(n: int) -> SimpleNamespace:
    return SimpleNamespace(n=n, shard_id=n % 4, run_id=f"r{n}", also=())


async def test_fast_commits_run_one_at_a_time_and_take_everything_that_waited() -> None:
    writer = SlowWriter(0.002)
    committer = GroupCommitter(writer, max_in_flight=2, relief_after_s=1.0)
    first = asyncio.ensure_future(committer.write(_write(0)))
    await asyncio.sleep(0)  # its commit starts
    await asyncio.gather(first, *(committer.write(_write(n)) for n in range(1, 50)))
    assert writer.most_at_once == 1
    assert writer.batches[0] == [0]  # the first write did not wait for company
    assert writer.batches[1] == list(range(1, 50))  # the rest queued behind it: one batch
    assert committer.writes == 50 and committer.batches == 2


async def test_a_slow_commit_lets_the_writes_behind_it_go_in_a_second_one() -> None:
    writer = SlowWriter(0.5)
    committer = GroupCommitter(writer, max_in_flight=2, relief_after_s=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    first = asyncio.ensure_future(committer.write(_write(0)))
    await asyncio.sleep(0.01)
    await committer.write(_write(1))
    # it went after the relief delay, beside the slow commit (about 0.56 s from the start),
    # not after it (1.0 s)
    assert loop.time() - started < 0.85
    await first
    assert writer.most_at_once == 2
    assert writer.batches == [[0], [1]]


async def test_never_more_than_max_in_flight_and_a_backlog_beyond_one_batch_splits() -> None:
    writer = SlowWriter(0.05)
    committer = GroupCommitter(writer, max_in_flight=2, max_batch=10, relief_after_s=10.0)
    await asyncio.gather(*(committer.write(_write(n)) for n in range(60)))
    assert writer.most_at_once == 2  # the backlog passed one batch: a second commit
    assert all(len(batch) <= 10 for batch in writer.batches)
    assert sorted(n for batch in writer.batches for n in batch) == list(range(60))


async def test_one_in_flight_means_one_in_flight() -> None:
    writer = SlowWriter(0.05)
    committer = GroupCommitter(writer, max_in_flight=1, max_batch=5, relief_after_s=0.0)
    await asyncio.gather(*(committer.write(_write(n)) for n in range(30)))
    assert writer.most_at_once == 1
    assert sorted(n for batch in writer.batches for n in batch) == list(range(30))
