"""The Cadenza side of ``vs_dbos.py``: DBOS's "three no-op steps" workflow.

Loaded by ``cadenza worker --module ops/bench/_cadenza_side.py`` (and imported by the
benchmark for its embedded measurements): one workflow that runs three no-op activities one
after the other, like a ``@DBOS.workflow()`` calling three ``@DBOS.step()``s.
``ThreeNoopLocalSteps`` runs the same steps as local activities: all three in the one
workflow task, closest to DBOS's steps that run in the workflow's process (``latency.py``).
"""

from __future__ import annotations

from cadenza.sdk import activity, workflow


@activity.defn
async def noop_step(i: int) -> int:
    """A step that does nothing but return its input."""
    return i


@workflow.defn
class ThreeNoopSteps:
    """Three sequential no-op activities; the result is 0 + 1 + 2."""

    @workflow.run
    async def run(self) -> int:
        total = 0
        for i in range(3):
            total += await workflow.execute_activity(noop_step, i, start_to_close_timeout=30)
        return total


@workflow.defn
class ThreeNoopLocalSteps:
    """Three sequential no-op local activities: one workflow task in all; result 0 + 1 + 2."""

    @workflow.run
    async def run(self) -> int:
        total = 0
        for i in range(3):
            total += await workflow.execute_local_activity(noop_step, i, start_to_close_timeout=5)
        return total
