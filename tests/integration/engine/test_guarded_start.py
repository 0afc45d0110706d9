"""Starts that skip looking the workflow id up: their insert is guarded, so they lose to any
existing execution of the id and fall back to the read and the id policies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cadenza.engine import Engine, Settings, StartWorkflowRequest
from cadenza.history import WorkflowAlreadyStartedError


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[Engine]:
    engine = Engine(Settings(database_url=db_url, shard_count=2))
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


def _start(wid: str, **more) -> StartWorkflowRequest:
    return StartWorkflowRequest(workflow_id=wid, workflow_type="Idle", task_queue="gq", **more)


def _count_reads(engine: Engine) -> list[str]:
    reads: list[str] = []
    latest_run = engine.store.latest_run

    async def counting(shard_id, namespace, workflow_id):
        reads.append(workflow_id)
        return await latest_run(shard_id, namespace, workflow_id)

    engine.store.latest_run = counting  # type: ignore[method-assign]
    return reads


async def _runs_of(engine: Engine, wid: str) -> list[str]:
    return [s.status for s in await engine.list_workflows("default", workflow_id=wid)]


async def test_a_new_id_starts_without_a_read(engine: Engine) -> None:
    reads = _count_reads(engine)
    started = await engine.start_workflow(_start("g-new"))
    assert started.started
    assert reads == []
    assert await _runs_of(engine, "g-new") == ["running"]


async def test_a_running_id_loses_and_the_conflict_policy_decides(engine: Engine) -> None:
    first = await engine.start_workflow(_start("g-run"))
    reads = _count_reads(engine)
    with pytest.raises(WorkflowAlreadyStartedError) as info:
        await engine.start_workflow(_start("g-run"))
    assert info.value.run_id == first.run_id
    again = await engine.start_workflow(_start("g-run", id_conflict_policy="use_existing"))
    assert again.run_id == first.run_id and not again.started
    assert reads == ["g-run", "g-run"]  # each lost its guarded insert, then read
    assert await _runs_of(engine, "g-run") == ["running"]


async def test_a_closed_id_loses_and_the_reuse_policy_decides(engine: Engine) -> None:
    first = await engine.start_workflow(_start("g-closed", request_id="req-1"))
    await engine.terminate_workflow("default", "g-closed", first.run_id, reason="test")
    with pytest.raises(WorkflowAlreadyStartedError):
        await engine.start_workflow(_start("g-closed", id_reuse_policy="reject_duplicate"))
    # The same request again (a client retry) is the same run, even though it closed.
    retried = await engine.start_workflow(_start("g-closed", request_id="req-1"))
    assert retried.run_id == first.run_id and not retried.started
    second = await engine.start_workflow(_start("g-closed"))
    assert second.started and second.run_id != first.run_id
    assert sorted(await _runs_of(engine, "g-closed")) == ["running", "terminated"]


async def test_concurrent_starts_of_one_id_start_it_once_and_others_still_land(
    engine: Engine,
) -> None:
    results = await asyncio.gather(
        *(engine.start_workflow(_start("g-race")) for _ in range(5)),
        *(engine.start_workflow(_start(f"g-other-{i}")) for i in range(10)),
        return_exceptions=True,
    )
    race, others = results[:5], results[5:]
    won = [r for r in race if not isinstance(r, BaseException)]
    assert len(won) == 1 and won[0].started
    assert all(isinstance(r, WorkflowAlreadyStartedError) for r in race if r not in won)
    assert all(not isinstance(r, BaseException) and r.started for r in others)
    assert await _runs_of(engine, "g-race") == ["running"]
    for i in range(10):
        assert await _runs_of(engine, f"g-other-{i}") == ["running"]
