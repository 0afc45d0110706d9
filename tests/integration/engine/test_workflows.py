"""End-to-end behaviour of workflows on the engine (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from cadenza.history import rebuild_state
from cadenza.sdk import Worker
from cadenza.sdk.testing import WorkflowEnvironment
from tests.integration.engine import workflows as w

ALL_WORKFLOWS = [
    w.OrderWorkflow,
    w.ParallelWorkflow,
    w.SleepyWorkflow,
    w.RetryWorkflow,
    w.FailureHandlingWorkflow,
    w.BadArgumentsWorkflow,
    w.SignalWorkflow,
    w.ChildWorkflow,
    w.ParentWorkflow,
    w.CounterWorkflow,
    w.DeterministicValues,
    w.UnknownActivityWorkflow,
    w.IdentityWorkflow,
    w.CancellableWorkflow,
]
ALL_ACTIVITIES = [
    w.reserve,
    w.charge,
    w.ship_order,
    w.flaky,
    w.always_fails,
    w.who_am_i,
    w.wait_for_cancel,
]


def worker(env: WorkflowEnvironment, **kwargs) -> Worker:
    return Worker(
        env.client,
        task_queue="main",
        workflows=ALL_WORKFLOWS,
        activities=ALL_ACTIVITIES,
        **kwargs,
    )


def event_types(history) -> list[str]:
    return [e.event_type for e in history]


async def test_three_activities_complete_with_chained_history(env: WorkflowEnvironment) -> None:
    async with worker(env):
        handle = await env.client.start_workflow(
            w.OrderWorkflow.run, w.Order("o-1", 42), id="order-1", task_queue="main"
        )
        result = await handle.result()
    assert result == {"reserved": "reserved:o-1", "cents": 4200, "shipped": "shipped:o-1"}
    history = await handle.fetch_history()
    types = event_types(history)
    assert types[0] == "workflow_execution_started"
    assert types[-1] == "workflow_execution_completed"
    assert types.count("activity_task_scheduled") == 3
    assert types.count("activity_task_completed") == 3
    assert [e.event_id for e in history] == list(range(1, len(history) + 1))
    verdict = await env.engine.verify_history("default", "order-1")
    assert verdict.ok, verdict.reason
    # The stored state is exactly what the history rebuilds.
    record = await env.engine.load_run("default", "order-1")
    rebuilt = rebuild_state("default", "order-1", record.run_id, history)
    assert rebuilt == record.state
    description = await handle.describe()
    assert description.status == "completed"
    assert description.history_length == len(history)


async def test_parallel_activities(env: WorkflowEnvironment) -> None:
    async with worker(env):
        result = await env.client.execute_workflow(
            w.ParallelWorkflow.run, 5, id="par", task_queue="main"
        )
    assert result == [f"shipped:o{i}" for i in range(5)]
    history = await env.client.get_workflow_handle("par").fetch_history()
    scheduled = [e for e in history if e.event_type == "activity_task_scheduled"]
    # All five were scheduled by the first workflow task, in one batch.
    assert len({e.attributes.workflow_task_completed_event_id for e in scheduled}) == 1


async def test_thirty_day_sleep_runs_in_virtual_time(env: WorkflowEnvironment) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with worker(env):
        result = await env.client.execute_workflow(
            w.SleepyWorkflow.run, 30, id="sleepy", task_queue="main"
        )
    assert result["slept_seconds"] >= 30 * 86400 + 3600
    assert loop.time() - started < 20
    history = await env.client.get_workflow_handle("sleepy").fetch_history()
    assert event_types(history).count("timer_fired") == 2


async def test_every_retry_attempt_is_in_history(env: WorkflowEnvironment) -> None:
    key = uuid.uuid4().hex
    async with worker(env):
        result = await env.client.execute_workflow(
            w.RetryWorkflow.run, key, 2, 0, id="retry", task_queue="main"
        )
    assert result == "ok after 3"
    history = await env.client.get_workflow_handle("retry").fetch_history()
    failed = [e.attributes for e in history if e.event_type == "activity_task_failed"]
    started = [e.attributes for e in history if e.event_type == "activity_task_started"]
    assert [f.attempt for f in failed] == [1, 2]
    assert all(f.retry_state == "in_progress" and f.next_attempt_time for f in failed)
    assert [s.attempt for s in started] == [1, 2, 3]
    completed = [e.attributes for e in history if e.event_type == "activity_task_completed"]
    assert len(completed) == 1 and completed[0].attempt == 3


async def test_maximum_attempts_and_non_retryable_types(env: WorkflowEnvironment) -> None:
    async with worker(env):
        exhausted = await env.client.execute_workflow(
            w.FailureHandlingWorkflow.run, "Transient", id="exhaust", task_queue="main"
        )
        fatal = await env.client.execute_workflow(
            w.FailureHandlingWorkflow.run, "Fatal", id="fatal", task_queue="main"
        )
    assert exhausted == {
        "retry_state": "maximum_attempts_reached",
        "attempt": 5,
        "cause_type": "Transient",
        "details": [{"kind": "Transient"}],
    }
    assert fatal["retry_state"] == "non_retryable_failure"
    assert fatal["attempt"] == 1


@pytest.mark.parametrize("local", [False, True], ids=["activity", "local-activity"])
async def test_arguments_that_do_not_fit_the_signature_fail_the_activity_for_good(
    env: WorkflowEnvironment, local: bool
) -> None:
    async with worker(env):
        outcome = await env.client.execute_workflow(
            w.BadArgumentsWorkflow.run, local, id=f"bad-args-{local}", task_queue="main"
        )
    assert outcome["retry_state"] == "non_retryable_failure"
    assert outcome["attempt"] == 1
    assert outcome["cause_type"] == "InvalidInput"
    assert outcome["message"] == (
        "arguments do not match activity 'reserve': argument 1 (order: Order): "
        "Expected `object`, got `str`"
    )


async def test_signals_queries_and_wait_condition(env: WorkflowEnvironment) -> None:
    async with worker(env):
        handle = await env.client.start_workflow(w.SignalWorkflow.run, id="sig", task_queue="main")
        await handle.signal(w.SignalWorkflow.add, "apple")
        await handle.signal("add", "pear")
        for _ in range(100):
            if await handle.query(w.SignalWorkflow.count) == 2:
                break
            await asyncio.sleep(0.02)
        assert await handle.query("count") == 2
        await handle.signal(w.SignalWorkflow.finish)
        assert await handle.result() == ["apple", "pear"]


async def test_signal_with_request_id_is_applied_once(env: WorkflowEnvironment) -> None:
    async with worker(env):
        handle = await env.client.start_workflow(
            w.SignalWorkflow.run, id="dedupe", task_queue="main"
        )
        await handle.signal("add", "x", request_id="req-1")
        await handle.signal("add", "x", request_id="req-1")
        await handle.signal("finish")
        assert await handle.result() == ["x"]


async def test_child_workflows_results_and_failures(env: WorkflowEnvironment) -> None:
    async with worker(env):
        result = await env.client.execute_workflow(
            w.ParentWorkflow.run, [2, -1, 3], id="parent", task_queue="main"
        )
    assert result == {"results": [4, "failed:BadNumber", 9]}
    child = await env.client.get_workflow_handle("parent-child-2").describe()
    assert child.parent_workflow_id == "parent"
    history = await env.client.get_workflow_handle("parent").fetch_history()
    types = event_types(history)
    assert types.count("start_child_workflow_execution_initiated") == 3
    assert types.count("child_workflow_execution_completed") == 2
    assert types.count("child_workflow_execution_failed") == 1


async def test_continue_as_new_follows_runs(env: WorkflowEnvironment) -> None:
    async with worker(env):
        handle = await env.client.start_workflow(
            w.CounterWorkflow.run, 0, 3, id="counter", task_queue="main"
        )
        result = await handle.result()
    assert result["count"] == 3
    assert result["run_id"] != handle.first_execution_run_id
    runs = await env.client.list_workflows(workflow_type="CounterWorkflow")
    assert sorted(r.status for r in runs) == ["completed"] + ["continued_as_new"] * 3
    for run in runs:
        assert (await env.engine.verify_history("default", "counter", run.run_id)).ok


async def test_workflow_values_are_deterministic_across_replay(env: WorkflowEnvironment) -> None:
    async with worker(env, max_cached_workflows=0):  # no cache: every task replays
        result = await env.client.execute_workflow(
            w.DeterministicValues.run, id="values", task_queue="main"
        )
    assert result["now"] < result["later"]
    uuid.UUID(result["uuid"])
    history = await env.client.get_workflow_handle("values").fetch_history()
    assert "workflow_task_failed" not in event_types(history)


async def test_unknown_activity_type_is_a_typed_error(env: WorkflowEnvironment) -> None:
    async with worker(env):
        result = await env.client.execute_workflow(
            w.UnknownActivityWorkflow.run, id="unknown-act", task_queue="main"
        )
    assert result == "ActivityTypeNotRegistered"


async def test_activity_receives_derived_idempotency_key(env: WorkflowEnvironment) -> None:
    async with worker(env):
        handle = await env.client.start_workflow(
            w.IdentityWorkflow.run, id="ident", task_queue="main"
        )
        result = await handle.result()
    history = await handle.fetch_history()
    scheduled = next(e for e in history if e.event_type == "activity_task_scheduled")
    assert result == {
        "attempt": 1,
        "key": f"ident/{handle.first_execution_run_id}/{scheduled.event_id}",
        "workflow_id": "ident",
    }


async def test_cancellation_reaches_running_activity(env: WorkflowEnvironment) -> None:
    from cadenza.sdk import CancelledError, WorkflowFailureError

    key = uuid.uuid4().hex
    async with worker(env):
        handle = await env.client.start_workflow(
            w.CancellableWorkflow.run, key, id="cancel-me", task_queue="main"
        )
        for _ in range(200):
            if key in w.ATTEMPTS:
                break
            await asyncio.sleep(0.01)
        await handle.cancel(reason="operator")
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        assert isinstance(info.value.__cause__, CancelledError)
        # The activity itself is told, and stops; its cancellation is recorded.
        for _ in range(300):
            history = await handle.fetch_history()
            if "activity_task_canceled" in event_types(history):
                break
            await asyncio.sleep(0.02)
    types = event_types(history)
    assert "workflow_execution_cancel_requested" in types
    assert "activity_task_cancel_requested" in types
    assert types[-1] in ("workflow_execution_canceled", "activity_task_canceled")
    assert (await handle.describe()).status == "canceled"


async def test_terminate_closes_at_once(env: WorkflowEnvironment) -> None:
    from cadenza.sdk import TerminatedError, WorkflowFailureError

    async with worker(env):
        handle = await env.client.start_workflow(w.SignalWorkflow.run, id="term", task_queue="main")
        await handle.terminate(reason="bad data")
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    assert isinstance(info.value.__cause__, TerminatedError)
    history = await handle.fetch_history()
    assert history[-1].event_type == "workflow_execution_terminated"
    assert history[-1].attributes.reason == "bad data"
