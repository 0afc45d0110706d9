"""A module for ``cadenza worker --module`` in ``test_process_gc.py``: one workflow."""

from __future__ import annotations

from cadenza.sdk import workflow


@workflow.defn
class Idle:
    @workflow.run
    async def run(self) -> int:
        return 0
