"""Bad input: a clear, typed error naming the field; nothing written."""

from __future__ import annotations

import asyncio
import decimal

import pytest

from cadenza.history import (
    InvalidArgumentError,
    PayloadEncodingError,
    PayloadTooLargeError,
    UnknownTypeError,
    WorkflowAlreadyStartedError,
    WorkflowClosedError,
    WorkflowNotFoundError,
)
from cadenza.sdk import Worker
from cadenza.sdk.testing import WorkflowEnvironment
from tests.integration.engine import workflows as w


async def _nothing_written(env: WorkflowEnvironment) -> None:
    assert await env.client.list_workflows() == []


async def test_unknown_workflow_type_is_rejected(env: WorkflowEnvironment) -> None:
    async with Worker(
        env.client, task_queue="main", workflows=[w.OrderWorkflow], activities=[w.reserve]
    ):
        # The worker's poll registers its types on the queue.
        for _ in range(100):
            if await env.engine.store.registered_types("default", "main", "workflow"):
                break
            await asyncio.sleep(0.01)
        with pytest.raises(UnknownTypeError) as info:
            await env.client.start_workflow("NoSuchWorkflow", id="x", task_queue="main")
    assert info.value.field == "workflow_type"
    assert "NoSuchWorkflow" in info.value.reason and "OrderWorkflow" in info.value.reason
    await _nothing_written(env)


async def test_starts_before_any_worker_share_one_registrations_read(
    env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[tuple[str, ...]] = []
    read_registrations = env.engine.store.registered_types

    async def counted(namespace: str, task_queue: str, kind: str) -> set[str]:
        reads.append((namespace, task_queue, kind))
        return await read_registrations(namespace, task_queue, kind)

    monkeypatch.setattr(env.engine.store, "registered_types", counted)
    # No worker has registered on the queue yet: every type is accepted, and a burst of
    # starts reads the registrations once (then the answer is kept for a moment).
    await asyncio.gather(
        *(
            env.client.start_workflow("EarlyWorkflow", id=f"early-{i}", task_queue="main")
            for i in range(40)
        )
    )
    assert reads == [("default", "main", "workflow")]
    assert len(await env.client.list_workflows()) == 40
    async with Worker(
        env.client, task_queue="main", workflows=[w.OrderWorkflow], activities=[w.reserve]
    ):
        for _ in range(100):
            if await read_registrations("default", "main", "workflow"):
                break
            await asyncio.sleep(0.01)
        # This engine's worker registered: the queue is served now, and strict again.
        with pytest.raises(UnknownTypeError):
            await env.client.start_workflow("NoSuchWorkflow", id="late", task_queue="main")


async def test_argument_that_cannot_be_encoded(env: WorkflowEnvironment) -> None:
    with pytest.raises(PayloadEncodingError) as info:
        await env.client.start_workflow(w.OrderWorkflow.run, object(), id="enc", task_queue="main")
    assert info.value.field == "args[0]"
    await _nothing_written(env)


async def test_decimal_arguments_are_encoded(env: WorkflowEnvironment) -> None:
    handle = await env.client.start_workflow(
        "OrderWorkflow", decimal.Decimal("1.10"), id="dec", task_queue="q2"
    )
    history = await handle.fetch_history()
    assert bytes(history[0].attributes.input) == b'["1.10"]'


async def test_payload_over_the_limit(env: WorkflowEnvironment) -> None:
    big = "x" * (2 * 1024 * 1024 + 1)
    with pytest.raises(PayloadTooLargeError) as info:
        await env.client.start_workflow(w.OrderWorkflow.run, big, id="big", task_queue="main")
    assert info.value.field == "input"
    assert "limit is 2097152 bytes" in info.value.reason
    await _nothing_written(env)


@pytest.mark.parametrize("workflow_id", ["", "   ", "x" * 1001])
async def test_empty_or_overlong_workflow_id(env: WorkflowEnvironment, workflow_id: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        await env.client.start_workflow(w.OrderWorkflow.run, id=workflow_id, task_queue="main")
    assert info.value.field == "workflow_id"
    await _nothing_written(env)


async def test_bad_policy_and_timeout_values(env: WorkflowEnvironment) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        await env.client.start_workflow(
            w.OrderWorkflow.run, id="p", task_queue="main", id_reuse_policy="sometimes"
        )
    assert info.value.field == "id_reuse_policy"
    with pytest.raises(InvalidArgumentError) as info:
        await env.client.start_workflow(
            w.OrderWorkflow.run, id="p", task_queue="main", run_timeout=-1
        )
    assert info.value.field == "run_timeout"
    await _nothing_written(env)


async def test_signal_to_closed_workflow(env: WorkflowEnvironment) -> None:
    handle = await env.client.start_workflow(w.SignalWorkflow.run, id="closed", task_queue="main")
    await handle.terminate(reason="done")
    before = len(await handle.fetch_history())
    with pytest.raises(WorkflowClosedError) as info:
        await handle.signal("add", "late")
    assert info.value.workflow_status == "terminated"
    assert len(await handle.fetch_history()) == before


async def test_unknown_workflow_id(env: WorkflowEnvironment) -> None:
    with pytest.raises(WorkflowNotFoundError):
        await env.client.get_workflow_handle("nope").describe()


async def test_id_conflict_and_reuse_policies(env: WorkflowEnvironment) -> None:
    first = await env.client.start_workflow(w.SignalWorkflow.run, id="dup", task_queue="main")
    with pytest.raises(WorkflowAlreadyStartedError):
        await env.client.start_workflow(w.SignalWorkflow.run, id="dup", task_queue="main")
    same = await env.client.start_workflow(
        w.SignalWorkflow.run, id="dup", task_queue="main", id_conflict_policy="use_existing"
    )
    assert same.first_execution_run_id == first.first_execution_run_id
    replaced = await env.client.start_workflow(
        w.SignalWorkflow.run, id="dup", task_queue="main", id_conflict_policy="terminate_existing"
    )
    assert replaced.first_execution_run_id != first.first_execution_run_id
    assert (
        await env.client.get_workflow_handle("dup", run_id=first.first_execution_run_id).describe()
    ).status == "terminated"
    await replaced.terminate()
    with pytest.raises(WorkflowAlreadyStartedError):
        await env.client.start_workflow(
            w.SignalWorkflow.run, id="dup", task_queue="main", id_reuse_policy="reject_duplicate"
        )
    # The last run was terminated, not completed: failed-only reuse allows it.
    again = await env.client.start_workflow(
        w.SignalWorkflow.run,
        id="dup",
        task_queue="main",
        id_reuse_policy="allow_duplicate_failed_only",
    )
    assert again.first_execution_run_id not in (
        first.first_execution_run_id,
        replaced.first_execution_run_id,
    )


async def test_start_with_same_request_id_is_idempotent(env: WorkflowEnvironment) -> None:
    a = await env.client.start_workflow(
        w.SignalWorkflow.run, id="idem", task_queue="main", request_id="r1"
    )
    b = await env.client.start_workflow(
        w.SignalWorkflow.run, id="idem", task_queue="main", request_id="r1"
    )
    assert a.first_execution_run_id == b.first_execution_run_id
    assert len(await env.client.list_workflows()) == 1
