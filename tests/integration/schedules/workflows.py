"""Workflows started by the schedule tests."""

from __future__ import annotations

from datetime import timedelta

from cadenza.sdk import workflow


@workflow.defn
class Tick:
    """Completes at once with what started it."""

    @workflow.run
    async def run(self) -> dict:
        return dict(workflow.info().trigger)


@workflow.defn
class Hold:
    """Runs until released by a signal (or canceled, or terminated)."""

    def __init__(self) -> None:
        self.released = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.released)
        return "released"

    @workflow.signal
    def release(self) -> None:
        self.released = True


@workflow.defn
class Nap:
    """Sleeps for the given minutes (durable timer)."""

    @workflow.run
    async def run(self, minutes: int) -> int:
        await workflow.sleep(timedelta(minutes=minutes))
        return minutes
