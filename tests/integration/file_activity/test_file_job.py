"""``type: file`` steps in a job run by the job interpreter on a real engine (SQLite)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cadenza.activities._file import file_step
from cadenza.engine._job_loader import load_job_text
from cadenza.engine._jobs import jobs_for
from cadenza.history import WorkflowFailureError
from cadenza.history import events as ev
from cadenza.sdk._job_interpreter import job_worker
from cadenza.sdk.testing import WorkflowEnvironment

JOB = """
name: settlement-import
retry: {maximum_attempts: 3, initial_interval: 1s}
steps:
  - id: list
    type: file
    config: {operation: list, path: inbox, pattern: "settle_*.csv"}
  - id: read
    type: file
    depends_on: [list]
    for_each: {items: "{{ steps.list.output.files }}", as: f}
    config: {operation: read, path: "{{ f.path }}", columns: [account, amount]}
  - id: report
    type: file
    depends_on: [read]
    config:
      operation: write
      path: reports/settlement.xlsx
      sheet: Đối soát
      rows: "{{ steps.read.output[0].rows }}"
      types: {amount: int}
  - id: archive
    type: file
    depends_on: [report]
    for_each: {items: "{{ steps.list.output.files }}", as: f}
    config: {operation: move, path: "{{ f.path }}", to: "archive/{{ f.name }}"}
"""

MISSING = """
name: missing-input
retry: {maximum_attempts: 5, initial_interval: 1s}
steps:
  - id: read
    type: file
    config: {operation: read, path: inbox/nothing.csv}
"""


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        database_url=f"sqlite:///{tmp_path}/cadenza.db"
    )
    try:
        yield environment
    finally:
        await environment.shutdown()


async def run_job(
    env: WorkflowEnvironment, text: str, name: str
) -> tuple[dict[str, Any], bool, list[Any]]:
    loaded = load_job_text(text, filename="job.yaml")
    assert loaded.ok, [str(i) for i in loaded.issues]
    jobs = jobs_for(env.engine)
    await jobs.apply("default", loaded.jobs, identity="test")
    async with job_worker(env.client):
        started = await jobs.run_job("default", name, identity="tester")
        handle = env.client.get_workflow_handle(started.workflow_id)
        try:
            summary, ok = await handle.result(), True
        except WorkflowFailureError as exc:
            summary, ok = exc.__cause__.details[0], False  # type: ignore[union-attr]
        return summary, ok, await handle.fetch_history()


async def test_job_lists_reads_reports_and_archives(env: WorkflowEnvironment, root: Path) -> None:
    (root / "inbox").mkdir()
    (root / "inbox/settle_20250601.csv").write_text(
        "account,name,amount\n0012345678,Nguyễn Văn Ánh,1500000\n0098765432,Trần Bích,250000\n"
    )
    (root / "inbox/other.txt").write_text("not listed")

    summary, ok, _ = await run_job(env, JOB, "settlement-import")

    assert ok, summary
    steps = summary["steps"]
    assert steps["read"]["output"][0]["rows"] == [
        {"account": "0012345678", "amount": "1500000"},
        {"account": "0098765432", "amount": "250000"},
    ]
    assert steps["report"]["output"]["row_count"] == 2
    assert steps["archive"]["output"][0]["to"] == str(root / "archive/settle_20250601.csv")
    assert sorted(p.name for p in (root / "inbox").iterdir()) == ["other.txt"]
    assert (root / "archive/settle_20250601.csv").is_file()
    report = await file_step({"operation": "read", "path": "reports/settlement.xlsx"})
    assert report["sheet"] == "Đối soát"
    assert report["rows"][0] == {"account": "0012345678", "amount": 1500000}


async def test_missing_input_fails_the_step_without_retrying(
    env: WorkflowEnvironment, root: Path
) -> None:
    summary, ok, history = await run_job(env, MISSING, "missing-input")
    assert not ok
    failed = [e.attributes for e in history if isinstance(e.attributes, ev.ActivityTaskFailed)]
    assert [(f.attempt, f.failure.type, f.failure.non_retryable) for f in failed] == [
        (1, "FileNotFound", True)
    ]
    read = summary["steps"]["read"]
    assert read["status"] == "failed" and read["error_type"] == "FileNotFound"
    assert str(root / "inbox/nothing.csv") in read["error"]
