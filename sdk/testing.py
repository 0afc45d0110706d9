"""Testing support: an in-memory engine with a clock that skips idle time.

``WorkflowEnvironment.start_time_skipping()`` runs a real engine on in-memory SQLite with a
virtual clock. Whenever no task is running or waiting, the environment moves the clock to the
next timer, so a workflow that sleeps 30 days completes in milliseconds — and every timeout,
retry back-off and durable sleep takes the same path as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from cadenza.engine import Engine, Settings
from cadenza.history import HistoryEvent, NonDeterminismError
from cadenza.sdk._client import Client
from cadenza.sdk._definitions import WorkflowDefinition
from cadenza.sdk._instance import WorkflowCodeError, WorkflowInstance
from cadenza.timers import SystemClock, VirtualClock

log = logging.getLogger("cadenza.sdk.testing")


def replay_history(
    workflow: Any,
    history: Sequence[HistoryEvent],
    *,
    workflow_id: str = "replay",
    run_id: str = "replay",
    workflow_type: str | None = None,
) -> None:
    """Replay a recorded history against workflow code, as a worker would after a restart.

    Use it in CI with histories exported from production (``cadenza history export``) to prove
    that new code can still run old executions.

    Raises:
        NonDeterminismError: the code does not produce what the history recorded.
    """
    definition = WorkflowDefinition.of(workflow)
    if workflow_type is not None and workflow_type != definition.name:
        from dataclasses import replace as _replace

        definition = _replace(definition, name=workflow_type)
    instance = WorkflowInstance(
        definition, namespace="default", workflow_id=workflow_id, run_id=run_id, task_queue="replay"
    )
    try:
        instance.process(
            list(history),
            seen_up_to=history[-1].event_id if history else 0,
            started_time_ms=0,
            final=False,
        )
    except WorkflowCodeError as exc:
        raise NonDeterminismError(f"replay raised in workflow code: {exc.__cause__!r}") from exc
    leftover = instance.unmatched_commands()
    if leftover:
        raise NonDeterminismError(
            f"the code produced commands the history does not have: {leftover}"
        )


class WorkflowEnvironment:
    """An engine plus a client for tests. Use ``async with`` or call :meth:`shutdown`.

    Attributes:
        engine: The engine.
        client: A client of it.
    """

    def __init__(self, engine: Engine, client: Client, clock: VirtualClock | None) -> None:
        self.engine = engine
        self.client = client
        self._clock = clock
        self._skipper: asyncio.Task[None] | None = None
        self.auto_time_skipping = clock is not None

    @classmethod
    async def start_time_skipping(
        cls,
        *,
        database_url: str = "sqlite:///:memory:",
        settings: Settings | None = None,
        **overrides: Any,
    ) -> WorkflowEnvironment:
        """An environment with a virtual clock that skips idle time."""
        base = settings or Settings(database_url=database_url, shard_count=4)
        base = replace(base, database_url=database_url, **overrides)
        clock = VirtualClock()
        engine = Engine(base, clock=clock)
        await engine.start()
        env = cls(engine, Client(engine), clock)
        env._skipper = asyncio.create_task(env._skip_idle_time(), name="cadenza-time-skipper")
        return env

    @classmethod
    async def start_local(
        cls,
        *,
        database_url: str = "sqlite:///:memory:",
        settings: Settings | None = None,
        **overrides: Any,
    ) -> WorkflowEnvironment:
        """An environment on the real clock (for tests of real timing)."""
        base = settings or Settings(database_url=database_url, shard_count=4)
        base = replace(base, database_url=database_url, **overrides)
        engine = Engine(base, clock=SystemClock())
        await engine.start()
        return cls(engine, Client(engine), None)

    def now_ms(self) -> int:
        """The engine's current time."""
        return self.engine.clock.now_ms()

    async def sleep(self, duration: timedelta | float) -> None:
        """Let time pass: jumps the virtual clock, or really sleeps on the system clock."""
        secs = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
        if self._clock is None:
            await asyncio.sleep(secs)
            return
        target = self._clock.now_ms() + int(secs * 1000)
        while self._clock.now_ms() < target:
            nxt = await self.engine.next_due_ms()
            step = target if nxt is None or nxt > target else max(nxt, self._clock.now_ms() + 1)
            self._clock.advance_to(step)
            await asyncio.sleep(0.01)

    async def _skip_idle_time(self) -> None:
        clock = self._clock
        if clock is None:
            return
        idle_rounds = 0
        while True:
            await asyncio.sleep(0.002)
            if not self.auto_time_skipping:
                idle_rounds = 0
                continue
            try:
                idle = await self.engine.is_idle()
            except Exception:
                log.exception("idle check failed")
                idle = False
            if not idle:
                idle_rounds = 0
                continue
            idle_rounds += 1
            if idle_rounds < 3:  # idle across three checks: nothing is about to be dispatched
                continue
            nxt = await self.engine.next_due_ms()
            # Something may have started while we read the next timer: only jump if still idle.
            if nxt is not None and nxt > clock.now_ms() and await self.engine.is_idle():
                clock.advance_to(nxt)
                idle_rounds = 0

    async def shutdown(self) -> None:
        """Stop the skipper, the client and the engine."""
        if self._skipper is not None:
            self._skipper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._skipper
        await self.client.close()
        await self.engine.stop()

    async def __aenter__(self) -> WorkflowEnvironment:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()
