"""Local activities: run in the worker inside the workflow task, recorded as markers, replayed
from the markers without running again (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest

from cadenza.history import InvalidArgumentError, StoreUnavailableError
from cadenza.sdk import ActivityError, ApplicationError, RetryPolicy, Worker, activity, workflow
from cadenza.sdk.testing import WorkflowEnvironment, replay_history

CALLS: Counter[str] = Counter()
INFOS: list[dict] = []


@activity.defn
async def add_one(key: str, value: int) -> int:
    CALLS[key] += 1
    info = activity.info()
    INFOS.append(
        {
            "is_local": info.is_local,
            "attempt": info.attempt,
            "activity_id": info.activity_id,
            "key": info.idempotency_key,
        }
    )
    activity.heartbeat("ignored")  # a no-op for local activities
    return value + 1


@activity.defn
def double(value: int) -> int:
    """A sync activity: it runs in the worker's thread pool."""
    return value * 2


@activity.defn
async def flaky_local(key: str, failures: int) -> str:
    CALLS[key] += 1
    attempt = activity.info().attempt
    if attempt <= failures:
        raise ApplicationError(f"attempt {attempt} failed", type="Flaky")
    return f"ok on attempt {attempt}"


@activity.defn
async def slow_local(key: str, seconds: float) -> str:
    CALLS[key] += 1
    await asyncio.sleep(seconds)
    return key


@activity.defn
async def stuck_local(key: str, mode: str) -> str:
    """``hang``: sleeps past any timeout (and notes whether it saw the cancellation);
    ``own_timeout``: fails at once with its own TimeoutError."""
    CALLS[key] += 1
    if mode == "own_timeout":
        raise TimeoutError("the upstream service timed out")
    try:
        await asyncio.sleep(30)
    finally:
        CALLS[f"{key}-cancelled"] += activity.is_cancelled()
    return "never"


@activity.defn
async def remote_step(value: int) -> int:
    return value + 100


@pytest.fixture(autouse=True)
def _fresh_counts() -> None:
    CALLS.clear()
    INFOS.clear()


@workflow.defn
class ThreeLocal:
    @workflow.run
    async def run(self, key: str) -> int:
        value = 0
        for _ in range(3):
            value = await workflow.execute_local_activity(
                add_one, key, value, start_to_close_timeout=0.5
            )
        return value


@workflow.defn
class LocalRetries:
    @workflow.run
    async def run(self, key: str, failures: int, attempts: int) -> dict:
        try:
            result = await workflow.execute_local_activity(
                flaky_local,
                key,
                failures,
                start_to_close_timeout=2,
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(milliseconds=20),
                    maximum_attempts=attempts,
                    jitter=0,
                ),
            )
        except ActivityError as exc:
            cause = exc.__cause__
            return {
                "error": str(exc),
                "attempt": exc.attempt,
                "retry_state": exc.retry_state,
                "cause_type": getattr(cause, "type", type(cause).__name__),
                "cause": str(cause),
            }
        return {"result": result}


@workflow.defn
class LocalTimeouts:
    @workflow.run
    async def run(self, key: str, mode: str) -> dict:
        try:
            await workflow.execute_local_activity(
                stuck_local,
                key,
                mode,
                start_to_close_timeout=0.2,
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(milliseconds=20), maximum_attempts=2, jitter=0
                ),
            )
        except ActivityError as exc:
            cause = exc.__cause__
            return {
                "attempt": exc.attempt,
                "retry_state": exc.retry_state,
                "cause_class": type(cause).__name__,
                "cause": str(cause),
            }
        return {}


@workflow.defn
class LocalThenSignal:
    def __init__(self) -> None:
        self.go = False

    @workflow.run
    async def run(self, key: str) -> int:
        first = await workflow.execute_local_activity(add_one, key, 1, start_to_close_timeout=5)
        await workflow.wait_condition(lambda: self.go)
        return await workflow.execute_local_activity(add_one, key, first, start_to_close_timeout=5)

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.query
    def state(self) -> bool:
        return self.go


@workflow.defn(name="LocalThenSignal")
class LocalThenSignalChanged:
    """Same type, but the first local activity changed: not replay-safe."""

    def __init__(self) -> None:
        self.go = False

    @workflow.run
    async def run(self, key: str) -> int:
        first = await workflow.execute_local_activity(double, 1, start_to_close_timeout=5)
        await workflow.wait_condition(lambda: self.go)
        return first

    @workflow.signal
    def proceed(self) -> None:
        self.go = True


@workflow.defn
class UnknownLocal:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_local_activity("not_registered", start_to_close_timeout=1)


@workflow.defn
class BadLocalOptions:
    @workflow.run
    async def run(self) -> list[str]:
        errors: list[str] = []
        bad: list[dict] = [
            {"schedule_to_close_timeout": 60},
            {"start_to_close_timeout": 9},
            {"start_to_close_timeout": -1},
            {"schedule_to_close_timeout": timedelta(0)},
            {"retry_policy": {"maximum_attempts": 3}},
            {"activity_id": ""},
        ]
        for options in bad:
            try:
                workflow.start_local_activity(double, 1, **options)
            except InvalidArgumentError as exc:
                errors.append(f"{exc.field}: {exc}")
        return errors


@workflow.defn
class MixedSteps:
    @workflow.run
    async def run(self, key: str) -> list:
        a = await workflow.execute_local_activity(add_one, key, 0, start_to_close_timeout=5)
        b = await workflow.execute_activity(remote_step, a, start_to_close_timeout=10)
        await workflow.sleep(30)
        c, d = await asyncio.gather(
            workflow.execute_local_activity(double, b),
            workflow.execute_local_activity(add_one, key, b, schedule_to_close_timeout=5),
        )
        return [a, b, c, d]


@workflow.defn
class SlowLocals:
    @workflow.run
    async def run(self, key: str) -> list[str]:
        return [
            await workflow.execute_local_activity(slow_local, f"{key}-{i}", 0.45) for i in range(3)
        ]


def _types(history) -> list[str]:
    return [e.event_type for e in history]


async def _wait_for(predicate, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_three_local_activities_run_in_one_workflow_task(env: WorkflowEnvironment) -> None:
    INFOS.clear()
    async with Worker(env.client, task_queue="la", workflows=[ThreeLocal], activities=[add_one]):
        handle = await env.client.start_workflow(
            ThreeLocal.run, "three", id="la-3", task_queue="la"
        )
        assert await handle.result(timeout=20) == 3
    history = await handle.fetch_history()
    assert _types(history) == [
        "workflow_execution_started",
        "workflow_task_scheduled",
        "workflow_task_started",
        "workflow_task_completed",
        "marker_recorded",
        "marker_recorded",
        "marker_recorded",
        "workflow_execution_completed",
    ]
    markers = [e.attributes for e in history if e.event_type == "marker_recorded"]
    completed_id = next(e.event_id for e in history if e.event_type == "workflow_task_completed")
    for seq, marker in enumerate(markers, start=1):
        assert marker.marker_name == "local_activity"
        assert marker.workflow_task_completed_event_id == completed_id
        local = marker.local_activity
        assert local is not None
        assert (local.seq, local.activity_id, local.activity_type) == (seq, str(seq), "add_one")
        assert local.attempt == 1 and local.failure is None and local.retry_state == ""
        assert bytes(local.result) == str(seq).encode()
        assert local.started_time is not None and local.completed_time is not None
        assert local.completed_time >= local.started_time
    assert CALLS["three"] == 3
    run_id = (await handle.describe()).run_id
    assert [
        {"is_local": True, "attempt": 1, "activity_id": str(i), "key": f"la-3/{run_id}/local-{i}"}
        for i in (1, 2, 3)
    ] == INFOS
    assert (await env.engine.verify_history("default", "la-3")).ok
    replay_history(ThreeLocal, history)  # the markers replay without the function
    assert CALLS["three"] == 3


async def test_retry_then_success_records_the_attempt_count(env: WorkflowEnvironment) -> None:
    async with Worker(
        env.client, task_queue="la", workflows=[LocalRetries], activities=[flaky_local]
    ):
        result = await env.client.execute_workflow(
            LocalRetries.run, "retry-ok", 2, 0, id="la-retry", task_queue="la"
        )
    assert result == {"result": "ok on attempt 3"}
    history = await env.client.get_workflow_handle("la-retry").fetch_history()
    markers = [e.attributes.local_activity for e in history if e.event_type == "marker_recorded"]
    assert len(markers) == 1 and markers[0].attempt == 3 and markers[0].failure is None
    assert _types(history).count("workflow_task_completed") == 1
    assert CALLS["retry-ok"] == 3


async def test_retries_exhausted_raise_activity_error_the_workflow_can_catch(
    env: WorkflowEnvironment,
) -> None:
    async with Worker(
        env.client, task_queue="la", workflows=[LocalRetries], activities=[flaky_local]
    ):
        result = await env.client.execute_workflow(
            LocalRetries.run, "retry-out", 10, 2, id="la-exhausted", task_queue="la"
        )
    assert result["attempt"] == 2
    assert result["retry_state"] == "maximum_attempts_reached"
    assert result["cause_type"] == "Flaky"
    assert "attempt 2 failed" in result["cause"]
    assert "flaky_local" in result["error"]
    assert CALLS["retry-out"] == 2
    history = await env.client.get_workflow_handle("la-exhausted").fetch_history()
    local = next(e.attributes.local_activity for e in history if e.event_type == "marker_recorded")
    assert local.failure is not None and local.failure.type == "Flaky"
    assert (local.attempt, local.retry_state) == (2, "maximum_attempts_reached")


async def test_an_attempt_past_start_to_close_is_cancelled_and_retried(
    env: WorkflowEnvironment,
) -> None:
    async with Worker(
        env.client, task_queue="la", workflows=[LocalTimeouts], activities=[stuck_local]
    ):
        hung = await env.client.execute_workflow(
            LocalTimeouts.run, "hang", "hang", id="la-hang", task_queue="la"
        )
        own = await env.client.execute_workflow(
            LocalTimeouts.run, "own", "own_timeout", id="la-own-timeout", task_queue="la"
        )
    # each attempt was cancelled at 0.2 s, saw its cancellation, and was retried once
    assert (hung["attempt"], hung["retry_state"]) == (2, "maximum_attempts_reached")
    assert hung["cause_class"] == "TimeoutError"
    assert "start_to_close" in hung["cause"] and "attempt 2 timed out" in hung["cause"]
    assert CALLS["hang"] == 2 and CALLS["hang-cancelled"] == 2
    # the activity's own TimeoutError is its failure, not a start-to-close timeout
    assert (own["attempt"], own["retry_state"]) == (2, "maximum_attempts_reached")
    assert "the upstream service timed out" in own["cause"]
    assert "start_to_close" not in own["cause"]
    assert CALLS["own"] == 2


async def test_replay_uses_markers_across_worker_restart_and_queries(
    real_env: WorkflowEnvironment,
) -> None:
    env = real_env
    key = "replay"
    async with Worker(
        env.client, task_queue="la", workflows=[LocalThenSignal], activities=[add_one]
    ):
        handle = await env.client.start_workflow(
            LocalThenSignal.run, key, id="la-replay", task_queue="la"
        )

        async def first_recorded() -> bool:
            return "marker_recorded" in _types(await handle.fetch_history())

        await _wait_for(first_recorded)
        assert CALLS[key] == 1
        # A query replays the history on a fresh instance: the function must not run.
        assert await handle.query(LocalThenSignal.state) is False
        assert CALLS[key] == 1
    # A new worker (empty cache) replays from event 1, then runs only the second one.
    async with Worker(
        env.client,
        task_queue="la",
        workflows=[LocalThenSignal],
        activities=[add_one],
        sticky=False,
    ):
        await handle.signal(LocalThenSignal.proceed)
        assert await handle.result(timeout=20) == 3
    assert CALLS[key] == 2
    history = await handle.fetch_history()
    assert _types(history).count("marker_recorded") == 2
    assert _types(history).count("workflow_task_completed") == 2


async def test_changed_local_activity_is_non_determinism(real_env: WorkflowEnvironment) -> None:
    env = real_env
    async with Worker(
        env.client, task_queue="la-det", workflows=[LocalThenSignal], activities=[add_one]
    ):
        handle = await env.client.start_workflow(
            LocalThenSignal.run, "det", id="la-det", task_queue="la-det"
        )

        async def first_recorded() -> bool:
            return "marker_recorded" in _types(await handle.fetch_history())

        await _wait_for(first_recorded)
    async with Worker(
        env.client,
        task_queue="la-det",
        workflows=[LocalThenSignalChanged],
        activities=[add_one, double],
        sticky=False,
    ):
        await handle.signal("proceed")

        async def failed() -> bool:
            return any(
                e.event_type == "workflow_task_failed" and e.attributes.cause == "non_determinism"
                for e in await handle.fetch_history()
            )

        await _wait_for(failed)
    history = await handle.fetch_history()
    failure = next(e.attributes.failure for e in history if e.event_type == "workflow_task_failed")
    assert failure.type == "NonDeterminismError"
    assert "'add_one'" in failure.message and "'double'" in failure.message
    assert (await handle.describe()).status == "running"
    # The original code resumes it, from the recorded marker.
    async with Worker(
        env.client, task_queue="la-det", workflows=[LocalThenSignal], activities=[add_one]
    ):
        assert await handle.result(timeout=20) == 3
    assert CALLS["det"] == 2


async def test_unknown_local_activity_fails_the_workflow_task(
    real_env: WorkflowEnvironment,
) -> None:
    env = real_env
    async with Worker(
        env.client, task_queue="la-unknown", workflows=[UnknownLocal], activities=[double]
    ):
        handle = await env.client.start_workflow(
            UnknownLocal.run, id="la-unknown", task_queue="la-unknown"
        )

        async def failed() -> bool:
            return "workflow_task_failed" in _types(await handle.fetch_history())

        await _wait_for(failed)
    history = await handle.fetch_history()
    failed_event = next(e.attributes for e in history if e.event_type == "workflow_task_failed")
    assert failed_event.cause == "unknown_activity_type"
    assert failed_event.failure.type == "ActivityTypeNotRegistered"
    assert "'not_registered'" in failed_event.failure.message
    assert "double" in failed_event.failure.message
    assert "marker_recorded" not in _types(history)
    await handle.terminate(reason="test over")


async def test_bad_options_are_rejected_naming_the_field(env: WorkflowEnvironment) -> None:
    async with Worker(
        env.client, task_queue="la", workflows=[BadLocalOptions], activities=[double]
    ):
        errors = await env.client.execute_workflow(
            BadLocalOptions.run, id="la-bad", task_queue="la"
        )
    assert len(errors) == 6
    assert errors[0].startswith("schedule_to_close_timeout:")
    assert "80 % of the workflow task timeout (8 s of 10 s)" in errors[0]
    assert "execute_activity" in errors[0]
    assert errors[1].startswith("start_to_close_timeout:") and "9 s" in errors[1]
    assert errors[2].startswith("start_to_close_timeout:") and "positive" in errors[2]
    assert errors[3].startswith("schedule_to_close_timeout:") and "positive" in errors[3]
    assert errors[4].startswith("retry_policy:")
    assert errors[5].startswith("activity_id:")
    history = await env.client.get_workflow_handle("la-bad").fetch_history()
    assert "marker_recorded" not in _types(history)


async def test_local_normal_activity_and_timer_mixed(env: WorkflowEnvironment) -> None:
    async with Worker(
        env.client,
        task_queue="la",
        workflows=[MixedSteps],
        activities=[add_one, double, remote_step],
    ):
        result = await env.client.execute_workflow(
            MixedSteps.run, "mixed", id="la-mixed", task_queue="la"
        )
    assert result == [1, 101, 202, 102]
    history = await env.client.get_workflow_handle("la-mixed").fetch_history()
    commands = [
        e.event_type
        for e in history
        if e.event_type
        in {"marker_recorded", "activity_task_scheduled", "timer_started", "timer_fired"}
    ]
    assert commands == [
        "marker_recorded",
        "activity_task_scheduled",
        "timer_started",
        "timer_fired",
        "marker_recorded",
        "marker_recorded",
    ]
    markers = [e.attributes.local_activity for e in history if e.event_type == "marker_recorded"]
    assert [(m.seq, m.activity_type) for m in markers] == [
        (1, "add_one"),
        (2, "double"),
        (3, "add_one"),
    ]
    assert _types(history).count("workflow_task_completed") == 3
    replay_history(MixedSteps, history)


async def test_local_activities_longer_than_the_task_continue_in_a_new_task(
    real_env: WorkflowEnvironment,
) -> None:
    env = real_env
    async with Worker(
        env.client, task_queue="la-slow", workflows=[SlowLocals], activities=[slow_local]
    ) as worker:
        result = await env.client.execute_workflow(
            SlowLocals.run, "slow", id="la-slow", task_queue="la-slow", task_timeout=1
        )
        handovers = worker.stats["workflow_task_handovers"]
    assert result == ["slow-0", "slow-1", "slow-2"]
    # 0.8 s of a 1 s task: at most one 0.45 s local activity fits after the first one started.
    assert handovers >= 1
    history = await env.client.get_workflow_handle("la-slow").fetch_history()
    assert _types(history).count("marker_recorded") == 3
    assert _types(history).count("workflow_task_completed") == handovers + 1
    assert "workflow_task_timed_out" not in _types(history)
    assert "workflow_task_failed" not in _types(history)
    assert [CALLS[f"slow-{i}"] for i in range(3)] == [1, 1, 1]
    replay_history(SlowLocals, history)


class _DiesBeforeCompleting:
    """The worker's service, except that completing a workflow task never reaches the server:
    as if the worker died after running the local activities."""

    def __init__(self, service) -> None:
        self._service = service

    def __getattr__(self, name: str):
        return getattr(self._service, name)

    async def complete_workflow_task(self, *args, **kwargs) -> str:
        raise StoreUnavailableError("simulated crash before the completion was written")


async def test_worker_dying_before_completion_reruns_local_activities(
    real_env: WorkflowEnvironment,
) -> None:
    env = real_env
    doomed = Worker(env.client, task_queue="la-crash", workflows=[ThreeLocal], activities=[add_one])
    doomed.service = _DiesBeforeCompleting(doomed.service)
    async with doomed:
        handle = await env.client.start_workflow(
            ThreeLocal.run, "crash", id="la-crash", task_queue="la-crash", task_timeout=1
        )

        async def ran_all_three() -> bool:
            return CALLS["crash"] == 3

        await _wait_for(ran_all_three)
    assert "marker_recorded" not in _types(await handle.fetch_history())
    # The task times out (1 s); another worker runs it, local activities included, again.
    async with Worker(
        env.client, task_queue="la-crash", workflows=[ThreeLocal], activities=[add_one]
    ):
        assert await handle.result(timeout=20) == 3
    assert CALLS["crash"] == 6
    history = await handle.fetch_history()
    assert "workflow_task_timed_out" in _types(history)
    assert _types(history).count("marker_recorded") == 3
    assert _types(history).count("workflow_task_completed") == 1
