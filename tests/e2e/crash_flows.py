"""Workflows run by the crash test's engine process (loaded with --module)."""

from __future__ import annotations

from datetime import timedelta

from cadenza.sdk import RetryPolicy, activity, workflow


@activity.defn
async def step(index: int, value: int) -> int:
    return value * 2 + index


def expected(n: int) -> int:
    value = n
    for index in range(3):
        value = value * 2 + index
    return value


@workflow.defn
class CrashFlow:
    @workflow.run
    async def run(self, n: int) -> int:
        value = n
        for index in range(3):
            value = await workflow.execute_activity(
                step,
                index,
                value,
                start_to_close_timeout=2,
                retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100)),
            )
            if index == 1:
                await workflow.sleep(0.3)
        return value
