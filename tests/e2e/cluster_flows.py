"""Workflows run by the cluster tests' remote workers."""

from __future__ import annotations

from datetime import timedelta

from cadenza.sdk import RetryPolicy, activity, workflow


@activity.defn
async def add(index: int, value: int) -> int:
    return value + index * index


def expected(n: int, steps: int = 5) -> int:
    value = n
    for index in range(steps):
        value = value + index * index
    return value


@workflow.defn
class ClusterFlow:
    @workflow.run
    async def run(self, n: int, pause: float) -> int:
        value = n
        for index in range(5):
            value = await workflow.execute_activity(
                add,
                index,
                value,
                start_to_close_timeout=3,
                retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200)),
            )
            if index == 2:
                await workflow.sleep(pause)
        return value
