"""The engine's cache of histories and closed runs it wrote (``engine/_run_cache.py``)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from cadenza.engine._run_cache import WrittenRuns
from cadenza.history import ExecutionRecord, HistoryEvent
from cadenza.history._events import WorkflowExecutionCompleted, WorkflowExecutionSignaled
from cadenza.history._state import ExecutionState


def _events(first: int, last: int) -> list[HistoryEvent]:
    now = datetime.now(UTC)
    return [
        HistoryEvent(
            event_id=i, event_time=now, attributes=WorkflowExecutionSignaled(signal_name=f"s{i}")
        )
        for i in range(first, last + 1)
    ]


def _closed_record(run_id: str, close_id: int) -> ExecutionRecord:
    return ExecutionRecord(
        shard_id=3,
        run_id=run_id,
        namespace="default",
        workflow_id="wf",
        workflow_type="T",
        task_queue="q",
        status="completed",
        start_time_ms=0,
        close_time_ms=1,
        next_event_id=close_id + 1,
        last_hash="h",
        state=ExecutionState(
            namespace="default",
            workflow_id="wf",
            run_id=run_id,
            status="completed",
            next_event_id=close_id + 1,
            close_event_id=close_id,
        ),
    )


def test_a_history_written_here_is_served_exactly_up_to_seen() -> None:
    cache = WrittenRuns()
    cache.record(3, "r", _events(1, 2), created=True)
    cache.record(3, "r", _events(3, 5), created=False)
    assert [e.event_id for e in cache.history("r", 0, 5) or []] == [1, 2, 3, 4, 5]
    assert [e.event_id for e in cache.history("r", 2, 4) or []] == [3, 4]
    # More than this process wrote (another server appended): the database must answer.
    assert cache.history("r", 0, 6) is None
    assert cache.history("other", 0, 1) is None


def test_a_gap_drops_the_history_instead_of_serving_a_wrong_one() -> None:
    cache = WrittenRuns()
    cache.record(3, "r", _events(1, 2), created=True)
    # Events 3..4 were written elsewhere; this process's next write starts at 5.
    cache.record(3, "r", _events(5, 6), created=False)
    assert cache.history("r", 0, 2) is None
    assert cache.history("r", 0, 6) is None
    # A run this process did not create is never cached from the middle.
    cache.record(3, "late", _events(7, 8), created=False)
    assert cache.history("late", 6, 8) is None


def test_long_histories_and_the_oldest_entries_are_not_kept() -> None:
    cache = WrittenRuns(histories=2, max_events=4)
    cache.record(1, "long", _events(1, 5), created=True)
    assert cache.history("long", 0, 5) is None
    for run in ("a", "b", "c"):
        cache.record(1, run, _events(1, 1), created=True)
    assert cache.history("a", 0, 1) is None
    assert cache.history("c", 0, 1) is not None


def test_a_close_keeps_the_closed_row_and_its_closing_event() -> None:
    cache = WrittenRuns()
    cache.record(3, "r", _events(1, 2), created=True)
    now = datetime.now(UTC)
    closing = HistoryEvent(
        event_id=3,
        event_time=now,
        attributes=WorkflowExecutionCompleted(result=msgspec.Raw(b"7")),
        hash="abc",
    )
    record = _closed_record("r", 3)
    cache.record(3, "r", [closing], created=False, closed_record=record)
    assert cache.closed("r") == (record, closing)
    assert cache.history("r", 0, 2) is None
    cache.forget_shard(3)
    assert cache.closed("r") == (record, closing)


def test_forgetting_a_shard_drops_its_histories_only() -> None:
    cache = WrittenRuns()
    cache.record(1, "one", _events(1, 2), created=True)
    cache.record(2, "two", _events(1, 2), created=True)
    cache.forget_shard(1)
    assert cache.history("one", 0, 2) is None
    assert cache.history("two", 0, 2) is not None
