"""Fixtures of the file activity tests: ``tmp_path`` as the only file root, and an activity
context for tests that need an attempt number and an idempotency key."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cadenza.activities import ActivityContext, ActivityInfo, reset_context, set_context
from cadenza.activities._local_paths import configure_file_roots

SCHEDULED = datetime(2025, 6, 1, 17, 30, tzinfo=UTC)
"""The activity's ``scheduled_time``: the same for every attempt, as in a real worker."""


@pytest.fixture(autouse=True)
def root(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path/files``, the only directory the activity may touch in a test."""
    files = tmp_path / "files"
    files.mkdir()
    configure_file_roots([files])
    try:
        yield files
    finally:
        configure_file_roots(None)


@contextlib.contextmanager
def _activity(
    *, attempt: int = 1, key: str = "wf-1/run-1/7", heartbeats: list[Any] | None = None
) -> Iterator[None]:
    now = datetime.now(UTC)
    info = ActivityInfo(
        activity_id="1",
        activity_type="file",
        attempt=attempt,
        idempotency_key=key,
        workflow_id="wf-1",
        run_id="run-1",
        workflow_type="cadenza.job",
        namespace="default",
        task_queue="cadenza-jobs",
        scheduled_event_id=7,
        scheduled_time=SCHEDULED,
        started_time=now,
    )
    sink = heartbeats if heartbeats is not None else []
    token = set_context(ActivityContext(info=info, heartbeater=sink.append))
    try:
        yield
    finally:
        reset_context(token)


@pytest.fixture
def activity() -> Callable[..., contextlib.AbstractContextManager[None]]:
    """``with activity(attempt=2, key=..., heartbeats=[...]):`` runs the body as an attempt."""
    return _activity
