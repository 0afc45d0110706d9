"""Timeouts and heartbeats on the real clock."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from cadenza.engine import TaskToken
from cadenza.history import ShardOwnershipLostError, StoreUnavailableError
from cadenza.sdk import Client, Worker
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


class _LosesFirstCompletion:
    """The engine, except that the first activity completion finds the shard gone (as when
    another server took it between the poll and the completion)."""

    def __init__(self, engine: Any, error: Exception | None = None) -> None:
        self._engine = engine
        self._refused = False
        self._error = error
        self.failed = 0
        self.completions = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    async def complete_activity(self, token: TaskToken, result: Any, **kwargs: Any) -> Any:
        self.completions += 1
        if not self._refused:
            self._refused = True
            raise self._error or ShardOwnershipLostError(token.shard_id, 7)
        return await self._engine.complete_activity(token, result, **kwargs)

    async def fail_activity(self, token: TaskToken, failure: Any, **kwargs: Any) -> Any:
        self.failed += 1
        return await self._engine.fail_activity(token, failure, **kwargs)


async def _run_slow_once(env: WorkflowEnvironment, service: Any, workflow_id: str) -> str:
    """``TimeoutWorkflow`` (its first attempt not slow) on a worker that talks to ``service``."""
    async with Worker(
        Client(service),
        task_queue="t",
        workflows=[w.TimeoutWorkflow],
        activities=[w.slow_once],
    ):
        return await env.client.execute_workflow(
            w.TimeoutWorkflow.run, uuid.uuid4().hex, 0.0, id=workflow_id, task_queue="t"
        )


async def test_a_completion_the_engine_refuses_is_retried_by_the_timeout_not_failed(
    real_env: WorkflowEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    env = real_env
    service = _LosesFirstCompletion(env.client.service)
    caplog.set_level(logging.WARNING, logger="cadenza.sdk.worker")
    result = await _run_slow_once(env, service, "refused")
    # Attempt 1 ran and succeeded, its completion was refused; it was not reported as failed,
    # and the start-to-close timeout ran attempt 2.
    assert result == "attempt 2"
    assert service.failed == 0
    history = await env.client.get_workflow_handle("refused").fetch_history()
    types = [e.event_type for e in history]
    assert "activity_task_failed" not in types
    assert types.count("activity_task_timed_out") == 1
    refused = [r for r in caplog.records if "reporting activity" in r.getMessage()]
    assert len(refused) == 1
    assert "ownership lost" in refused[0].getMessage()


async def test_a_completion_refused_for_a_moment_is_sent_again(
    real_env: WorkflowEnvironment,
) -> None:
    """A transient refusal (SQLite's "database is locked", a server away for a moment) is
    retried by the worker at once: the result is kept, no second attempt runs."""
    env = real_env
    service = _LosesFirstCompletion(
        env.client.service, StoreUnavailableError("database unavailable: database is locked")
    )
    result = await _run_slow_once(env, service, "transient")
    assert result == "attempt 1"
    assert service.completions == 2 and service.failed == 0
    history = await env.client.get_workflow_handle("transient").fetch_history()
    types = [e.event_type for e in history]
    assert "activity_task_timed_out" not in types and "activity_task_failed" not in types
