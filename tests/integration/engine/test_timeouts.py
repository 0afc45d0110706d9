"""Timeouts and heartbeats on the real clock."""

from __future__ import annotations

import uuid

from cadenza.sdk import Worker
from cadenza.sdk.testing import WorkflowEnvironment
from tests.integration.engine import workflows as w


async def test_start_to_close_timeout_retries_the_attempt(real_env: WorkflowEnvironment) -> None:
    env = real_env
    key = uuid.uuid4().hex
    async with Worker(
        env.client, task_queue="t", workflows=[w.TimeoutWorkflow], activities=[w.slow_once]
    ):
        result = await env.client.execute_workflow(
            w.TimeoutWorkflow.run, key, id="stc", task_queue="t"
        )
    assert result == "attempt 2"
    history = await env.client.get_workflow_handle("stc").fetch_history()
    timed_out = [e.attributes for e in history if e.event_type == "activity_task_timed_out"]
    assert len(timed_out) == 1
    assert timed_out[0].timeout_type == "start_to_close"
    assert timed_out[0].retry_state == "in_progress"
    assert timed_out[0].attempt == 1
    # The late completion of attempt 1 (after it slept) was ignored: one completion only.
    assert [e.event_type for e in history].count("activity_task_completed") == 1


async def test_heartbeat_details_reach_the_next_attempt(real_env: WorkflowEnvironment) -> None:
    env = real_env
    key = uuid.uuid4().hex
    async with Worker(
        env.client, task_queue="t", workflows=[w.HeartbeatWorkflow], activities=[w.resumable]
    ):
        attempt, start, seen = await env.client.execute_workflow(
            w.HeartbeatWorkflow.run, key, id="hb", task_queue="t"
        )
    # Attempt 1 heartbeated 1, 2, 3 then failed; attempt 2 resumed from the last details.
    assert attempt == 2
    assert start == 3
    assert seen == [3, 4]
