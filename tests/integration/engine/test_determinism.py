"""Non-determinism is detected, recorded and recoverable; workflow.patched makes changes safe."""

from __future__ import annotations

import asyncio

import pytest

from cadenza.sdk import Worker
from cadenza.sdk.testing import WorkflowEnvironment
from tests.integration.engine import workflows as w

ACTIVITIES = [w.ship_order, w.reserve]


async def _wait_for(predicate, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def _first_activity_done(env: WorkflowEnvironment, workflow_id: str) -> bool:
    history = await env.client.get_workflow_handle(workflow_id).fetch_history()
    return any(e.event_type == "activity_task_completed" for e in history)


async def _start_v1_and_park(env: WorkflowEnvironment, workflow_id: str) -> None:
    async with Worker(
        env.client, task_queue="det", workflows=[w.DeterminismV1], activities=ACTIVITIES
    ):
        await env.client.start_workflow(w.DeterminismV1.run, id=workflow_id, task_queue="det")
        await _wait_for(lambda: _first_activity_done(env, workflow_id))
        # Let the task that follows the activity complete, so the workflow waits on the signal.
        await _wait_for(lambda: _workflow_task_count(env, workflow_id, 2))


async def _workflow_task_count(env: WorkflowEnvironment, workflow_id: str, count: int) -> bool:
    history = await env.client.get_workflow_handle(workflow_id).fetch_history()
    return sum(e.event_type == "workflow_task_completed" for e in history) >= count


async def test_changed_code_fails_the_task_with_a_readable_error_then_recovers(
    real_env: WorkflowEnvironment,
) -> None:
    env = real_env
    await _start_v1_and_park(env, "det-1")
    handle = env.client.get_workflow_handle("det-1")
    # Deploy broken code (first activity changed) and send the signal: replay must fail.
    async with Worker(
        env.client,
        task_queue="det",
        workflows=[w.DeterminismBroken],
        activities=ACTIVITIES,
        sticky=False,
    ):
        await handle.signal("proceed")

        async def failed_for_nondeterminism() -> bool:
            history = await handle.fetch_history()
            return any(
                e.event_type == "workflow_task_failed" and e.attributes.cause == "non_determinism"
                for e in history
            )

        await _wait_for(failed_for_nondeterminism)
    history = await handle.fetch_history()
    failure = next(e.attributes for e in history if e.event_type == "workflow_task_failed")
    assert "activity 'ship' (id 1) scheduled" in failure.failure.message
    assert "reserve" in failure.failure.message
    assert failure.failure.type == "NonDeterminismError"
    assert (await handle.describe()).status == "running"
    # Fix the code (back to v1): the workflow resumes and completes.
    async with Worker(
        env.client, task_queue="det", workflows=[w.DeterminismV1], activities=ACTIVITIES
    ):
        assert await handle.result(timeout=20) == "shipped:a,shipped:b"
    assert (await env.engine.verify_history("default", "det-1")).ok


async def test_patched_change_replays_old_histories_and_runs_new_ones(
    real_env: WorkflowEnvironment,
) -> None:
    env = real_env
    await _start_v1_and_park(env, "det-old")
    async with Worker(
        env.client,
        task_queue="det",
        workflows=[w.DeterminismPatched],
        activities=ACTIVITIES,
        sticky=False,
    ):
        old = env.client.get_workflow_handle("det-old")
        await old.signal("proceed")
        assert await old.result(timeout=20) == "shipped:a,shipped:b"
        new = await env.client.start_workflow(
            w.DeterminismPatched.run, id="det-new", task_queue="det"
        )
        await _wait_for(lambda: _workflow_task_count(env, "det-new", 2))
        await new.signal("proceed")
        assert await new.result(timeout=20) == "reserved:x,shipped:b"
    old_history = await old.fetch_history()
    assert "workflow_task_failed" not in [e.event_type for e in old_history]
    new_history = await new.fetch_history()
    markers = [e.attributes for e in new_history if e.event_type == "marker_recorded"]
    assert [m.details for m in markers] == [{"patch_id": "use-reserve"}]


async def test_blocking_workflow_code_is_reported_as_deadlock(
    real_env: WorkflowEnvironment,
) -> None:
    env = real_env
    async with Worker(
        env.client, task_queue="block", workflows=[w.BlockingWorkflow], deadlock_timeout=0.5
    ):
        handle = await env.client.start_workflow(
            w.BlockingWorkflow.run, id="block", task_queue="block"
        )

        async def deadlock_recorded() -> bool:
            history = await handle.fetch_history()
            return any(
                e.event_type == "workflow_task_failed" and e.attributes.cause == "deadlock"
                for e in history
            )

        await _wait_for(deadlock_recorded)
        await handle.terminate(reason="test over")
    failure = next(
        e.attributes.failure
        for e in await handle.fetch_history()
        if e.event_type == "workflow_task_failed"
    )
    assert "blocked the workflow task" in failure.message


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_replayer_detects_changed_code_on_a_golden_history(db_url, tmp_path) -> None:
    """Replaying a recorded history with compatible code passes; with changed code it fails."""
    from cadenza.history import NonDeterminismError
    from cadenza.sdk.testing import replay_history

    env = await WorkflowEnvironment.start_time_skipping(database_url=db_url)
    try:
        async with Worker(
            env.client,
            task_queue="main",
            workflows=[w.OrderWorkflow],
            activities=[w.reserve, w.charge, w.ship_order],
        ):
            await env.client.execute_workflow(
                w.OrderWorkflow.run, w.Order("g", 1), id="golden", task_queue="main"
            )
        history = await env.client.get_workflow_handle("golden").fetch_history()
    finally:
        await env.shutdown()
    replay_history(w.OrderWorkflow, history)
    with pytest.raises(NonDeterminismError):
        replay_history(w.ParallelWorkflow, history, workflow_type="OrderWorkflow")
