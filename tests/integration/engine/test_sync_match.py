"""A waiting poll is handed a new task by the commit that creates it, without a claim."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from cadenza.engine import Engine, Settings, StartWorkflowRequest
from cadenza.engine._commands import CompleteWorkflow
from cadenza.history import WorkflowAlreadyStartedError


class _CountingClaims:
    """The real store, with its claims counted."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.claims = 0

    async def claim_tasks(self, **kwargs: Any) -> Any:
        self.claims += 1
        return await self._store.claim_tasks(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.fixture
async def engine(db_url: str):  # type: ignore[no-untyped-def]
    engine = Engine(Settings(database_url=db_url, shard_count=2))
    await engine.start()
    counting = _CountingClaims(engine.store)
    engine.store = counting  # type: ignore[assignment]
    try:
        yield engine
    finally:
        engine.store = counting._store
        await engine.stop()


async def _waiting_poll(engine: Engine, queue: str, timeout: float = 5.0) -> asyncio.Task:
    poll = asyncio.ensure_future(
        engine.poll_workflow_tasks("default", queue, "worker-1", timeout=timeout, max_tasks=4)
    )
    for _ in range(200):  # until it looked in the database and waits
        if engine.sync_match.waiting():
            return poll
        await asyncio.sleep(0.01)
    raise AssertionError("the poll never started waiting")


async def test_a_start_hands_its_workflow_task_to_the_waiting_poll(engine: Engine) -> None:
    poll = await _waiting_poll(engine, "sync")
    claims_before = engine.store.claims  # type: ignore[attr-defined]
    started = await engine.start_workflow(
        StartWorkflowRequest(workflow_id="sync-1", workflow_type="Anything", task_queue="sync")
    )
    tasks = await asyncio.wait_for(poll, 5)
    assert [t.run_id for t in tasks] == [started.run_id]
    assert engine.store.claims == claims_before  # type: ignore[attr-defined]
    task = tasks[0]
    assert [e.event_type for e in task.history] == [
        "workflow_execution_started",
        "workflow_task_scheduled",
    ]
    assert task.seen_up_to == 2
    # The row was written leased to the poll's worker, with its timeout timer.
    row = await engine.store.get_task(task.token.shard_id, f"w:{started.run_id}")
    assert row is not None and row.lease_owner == "worker-1" and row.started_at_ms
    assert await engine.store.next_timer_ms([task.token.shard_id]) == row.started_at_ms + 10_000
    # And it completes like a claimed task.
    await engine.complete_workflow_task(
        task.token,
        [CompleteWorkflow(result=msgspec.Raw(b'"done"'))],
        identity="worker-1",
    )
    described = await engine.describe_workflow("default", "sync-1")
    assert described.status == "completed"


async def test_a_start_that_loses_hands_over_nothing(engine: Engine) -> None:
    request = StartWorkflowRequest(workflow_id="twice", workflow_type="Anything", task_queue="dup")
    first = await engine.start_workflow(request)
    taken = await engine.poll_workflow_tasks("default", "dup", "worker-1", timeout=2)
    assert [t.run_id for t in taken] == [first.run_id]
    poll = await _waiting_poll(engine, "dup", timeout=0.5)
    with pytest.raises(WorkflowAlreadyStartedError):
        await engine.start_workflow(request)  # its write is refused: no task exists
    assert await asyncio.wait_for(poll, 5) == []
    assert not engine.sync_match.waiting()
