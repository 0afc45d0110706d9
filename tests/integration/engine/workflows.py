"""Workflows and activities used by the engine tests."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta

from cadenza.sdk import ApplicationError, RetryPolicy, activity, workflow

ATTEMPTS: dict[str, int] = {}


@dataclass
class Order:
    order_id: str
    amount: int


@activity.defn
async def reserve(order: Order) -> str:
    return f"reserved:{order.order_id}"


@activity.defn
def charge(order: Order) -> int:
    return order.amount * 100


@activity.defn(name="ship")
async def ship_order(order_id: str) -> str:
    return f"shipped:{order_id}"


@activity.defn
async def flaky(key: str, failures: int) -> str:
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    if ATTEMPTS[key] <= failures:
        raise ApplicationError(f"attempt {ATTEMPTS[key]} failed", type="Flaky")
    return f"ok after {ATTEMPTS[key]}"


@activity.defn
async def always_fails(kind: str) -> None:
    raise ApplicationError("no luck", {"kind": kind}, type=kind)


@activity.defn
async def slow_once(key: str, seconds: float) -> str:
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    if ATTEMPTS[key] == 1:
        await asyncio.sleep(seconds)
    return f"attempt {ATTEMPTS[key]}"


@activity.defn
async def resumable(key: str, total: int) -> list:
    info = activity.info()
    start = info.heartbeat_details[0] if info.heartbeat_details else 0
    seen = []
    for step in range(start, total):
        activity.heartbeat(step + 1)
        seen.append(step)
        if step == 2 and info.attempt == 1:
            raise ApplicationError("crash after step 2")
    return [info.attempt, start, seen]


@activity.defn
async def wait_for_cancel(key: str) -> str:
    ATTEMPTS[key] = 0
    for _ in range(400):
        activity.heartbeat("waiting")
        await asyncio.sleep(0.02)
    return "never cancelled"


@activity.defn
async def who_am_i() -> dict:
    info = activity.info()
    return {"attempt": info.attempt, "key": info.idempotency_key, "workflow_id": info.workflow_id}


@workflow.defn
class OrderWorkflow:
    @workflow.run
    async def run(self, order: Order) -> dict:
        reserved = await workflow.execute_activity(
            reserve, order, start_to_close_timeout=timedelta(seconds=10)
        )
        cents = await workflow.execute_activity(charge, order, start_to_close_timeout=10)
        shipped = await workflow.execute_activity("ship", order.order_id, start_to_close_timeout=10)
        return {"reserved": reserved, "cents": cents, "shipped": shipped}


@workflow.defn
class ParallelWorkflow:
    @workflow.run
    async def run(self, count: int) -> list:
        return list(
            await asyncio.gather(
                *(
                    workflow.execute_activity(ship_order, f"o{i}", start_to_close_timeout=10)
                    for i in range(count)
                )
            )
        )


@workflow.defn
class SleepyWorkflow:
    @workflow.run
    async def run(self, days: int) -> dict:
        before = workflow.now()
        await workflow.sleep(timedelta(days=days))
        await asyncio.sleep(3600)  # asyncio.sleep is a durable timer too
        after = workflow.now()
        return {"slept_seconds": (after - before).total_seconds()}


@workflow.defn
class RetryWorkflow:
    @workflow.run
    async def run(self, key: str, failures: int, max_attempts: int) -> str:
        return await workflow.execute_activity(
            flaky,
            key,
            failures,
            start_to_close_timeout=10,
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=1), maximum_attempts=max_attempts
            ),
        )


def _activity_failure(err: Exception) -> dict:
    """What a workflow reports of an ``ActivityError``: retry state, attempt, and its cause."""
    cause = err.__cause__
    return {
        "retry_state": getattr(err, "retry_state", None),
        "attempt": getattr(err, "attempt", None),
        "cause_type": getattr(cause, "type", None),
        "details": list(getattr(cause, "details", [])),
    }


@workflow.defn
class FailureHandlingWorkflow:
    @workflow.run
    async def run(self, kind: str) -> dict:
        from cadenza.sdk import ActivityError

        try:
            await workflow.execute_activity(
                always_fails,
                kind,
                start_to_close_timeout=10,
                retry_policy=RetryPolicy(maximum_attempts=5, non_retryable_error_types=["Fatal"]),
            )
        except ActivityError as err:
            return _activity_failure(err)
        return {}


@workflow.defn
class BadArgumentsWorkflow:
    """Calls ``reserve`` (which takes an ``Order``) by name with a plain string."""

    @workflow.run
    async def run(self, local: bool) -> dict:
        from cadenza.sdk import ActivityError

        call = workflow.execute_local_activity if local else workflow.execute_activity
        try:
            await call("reserve", "not an order", start_to_close_timeout=5)
        except ActivityError as err:
            return {**_activity_failure(err), "message": str(err.__cause__)}
        return {}


@workflow.defn
class TimeoutWorkflow:
    @workflow.run
    async def run(self, key: str, first_attempt_seconds: float = 5.0) -> str:
        return await workflow.execute_activity(
            slow_once,
            key,
            first_attempt_seconds,
            start_to_close_timeout=0.5,
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100)),
        )


@workflow.defn
class HeartbeatWorkflow:
    @workflow.run
    async def run(self, key: str) -> list:
        return await workflow.execute_activity(
            resumable,
            key,
            5,
            start_to_close_timeout=10,
            heartbeat_timeout=5,
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100)),
        )


@workflow.defn
class SignalWorkflow:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.done = False

    @workflow.run
    async def run(self) -> list:
        await workflow.wait_condition(lambda: self.done)
        return self.items

    @workflow.signal
    def add(self, item: str) -> None:
        self.items.append(item)

    @workflow.signal
    async def finish(self) -> None:
        self.done = True

    @workflow.query
    def count(self) -> int:
        return len(self.items)


@workflow.defn
class CancellableWorkflow:
    @workflow.run
    async def run(self, key: str) -> str:
        try:
            return await workflow.execute_activity(
                wait_for_cancel, key, start_to_close_timeout=30, heartbeat_timeout=5
            )
        except asyncio.CancelledError:
            raise


@workflow.defn
class ChildWorkflow:
    @workflow.run
    async def run(self, n: int) -> int:
        if n < 0:
            raise ApplicationError("negative", type="BadNumber", non_retryable=True)
        await workflow.sleep(60)
        return n * n


@workflow.defn
class ParentWorkflow:
    @workflow.run
    async def run(self, numbers: list[int]) -> dict:
        from cadenza.sdk import ChildWorkflowError

        results = []
        for n in numbers:
            try:
                results.append(
                    await workflow.execute_child_workflow(
                        ChildWorkflow.run, n, id=f"{workflow.info().workflow_id}-child-{n}"
                    )
                )
            except ChildWorkflowError as err:
                results.append(f"failed:{getattr(err.__cause__, 'type', '?')}")
        return {"results": results}


@workflow.defn
class CounterWorkflow:
    @workflow.run
    async def run(self, count: int, limit: int) -> dict:
        await workflow.sleep(1)
        if count < limit:
            workflow.continue_as_new(count + 1, limit)
        return {"count": count, "run_id": workflow.info().run_id}


@workflow.defn
class DeterminismV1:
    def __init__(self) -> None:
        self.go = False

    @workflow.run
    async def run(self) -> str:
        first = await workflow.execute_activity(ship_order, "a", start_to_close_timeout=10)
        await workflow.wait_condition(lambda: self.go)
        second = await workflow.execute_activity(ship_order, "b", start_to_close_timeout=10)
        return f"{first},{second}"

    @workflow.signal
    def proceed(self) -> None:
        self.go = True


@workflow.defn(name="DeterminismV1")
class DeterminismBroken:
    """Same type name, but the first activity changed: not replay-safe."""

    def __init__(self) -> None:
        self.go = False

    @workflow.run
    async def run(self) -> str:
        first = await workflow.execute_activity(reserve, Order("x", 1), start_to_close_timeout=10)
        await workflow.wait_condition(lambda: self.go)
        return first

    @workflow.signal
    def proceed(self) -> None:
        self.go = True


@workflow.defn(name="DeterminismV1")
class DeterminismPatched:
    """The same change done safely with workflow.patched."""

    def __init__(self) -> None:
        self.go = False

    @workflow.run
    async def run(self) -> str:
        if workflow.patched("use-reserve"):
            first = await workflow.execute_activity(
                reserve, Order("x", 1), start_to_close_timeout=10
            )
        else:
            first = await workflow.execute_activity(ship_order, "a", start_to_close_timeout=10)
        await workflow.wait_condition(lambda: self.go)
        second = await workflow.execute_activity(ship_order, "b", start_to_close_timeout=10)
        return f"{first},{second}"

    @workflow.signal
    def proceed(self) -> None:
        self.go = True


@workflow.defn
class DeterministicValues:
    @workflow.run
    async def run(self) -> dict:
        values = {
            "random": workflow.random().randint(0, 10**9),
            "uuid": str(workflow.uuid4()),
            "now": workflow.now().isoformat(),
        }
        await workflow.sleep(10)
        values["later"] = workflow.now().isoformat()
        return values


@workflow.defn
class BlockingWorkflow:
    @workflow.run
    async def run(self) -> str:
        time.sleep(3)  # noqa: ASYNC251 - blocks the workflow task on purpose: must be detected
        return "unreachable"


@workflow.defn
class UnknownActivityWorkflow:
    @workflow.run
    async def run(self) -> str:
        from cadenza.sdk import ActivityError

        try:
            await workflow.execute_activity("no_such_activity", start_to_close_timeout=5)
        except ActivityError as err:
            return f"{getattr(err.__cause__, 'type', '')}"
        return "ran"


@workflow.defn
class IdentityWorkflow:
    @workflow.run
    async def run(self) -> dict:
        return await workflow.execute_activity(who_am_i, start_to_close_timeout=5)
