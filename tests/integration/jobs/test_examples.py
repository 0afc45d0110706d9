"""The example jobs of ``examples/`` end to end: applied as ``cadenza dev --jobs`` does, run
against the stand-ins of ``examples/standins.py`` on 127.0.0.1 and a fresh PostgreSQL database
(the ``sql`` steps), on a time-skipping engine (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from python_calamine import CalamineWorkbook

from cadenza.activities import configure_file_roots
from cadenza.engine._job_contract import JobTrigger
from cadenza.sdk._job_interpreter import load_jobs_into
from examples.standins import StandIns, settlement_rows, start_standins

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
HCM = ZoneInfo("Asia/Ho_Chi_Minh")


@pytest.fixture
async def standins() -> AsyncIterator[StandIns]:
    running = await start_standins(down=["kyc"])
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def examples(env, jobs, standins, pg_database_factory):
    """The examples applied, with their global variables set; returns the recon DSN."""
    recon = pg_database_factory("recon")
    globals_ = {
        "STANDIN": standins.http_url,
        "SMTP_PORT": standins.smtp_port,
        "RECON_DB_URL": recon,
    }
    for name, value in globals_.items():
        await jobs.vars.set_variable("default", name, value)
    await jobs.vars.set_variable("default", "LEDGER_TOKEN", "demo-ledger-token", secret=True)
    result = await load_jobs_into(env.engine, [str(EXAMPLES / "jobs")], identity="test")
    assert sorted(result.versions) == [
        "hourly-health-sweep",
        "month-end-report",
        "nightly-reconciliation",
    ]
    assert not result.schedule_errors
    return recon


async def _run_at(env, jobs, name: str, nominal: datetime) -> dict:
    job, version = await jobs.load_job("default", name)
    workflow_id = f"{name}/test/{nominal:%Y%m%dT%H%M}"
    request = jobs.start_request(
        "default",
        job,
        version,
        workflow_id=workflow_id,
        trigger=JobTrigger(source="scheduled", nominal_time=nominal),
    )
    await env.engine.start_workflow(request)
    return await env.client.get_workflow_handle(workflow_id).result()


@pytest.fixture
def file_roots(tmp_path: Path) -> Iterator[Path]:
    """The worker's file roots: the test's own folder (the month-end workbook lands there)."""
    configure_file_roots([tmp_path])
    yield tmp_path
    configure_file_roots(None)


async def test_nightly_reconciliation_and_month_end_report(
    env, jobs, examples, standins, worker_for, file_roots
):
    env.auto_time_skipping = False  # no schedule fires in the middle of these runs
    nominal = datetime(2025, 4, 1, 1, 30, tzinfo=HCM)  # processes 2025-03-31
    day = nominal.date() - timedelta(days=1)
    expected = settlement_rows(day)
    async with worker_for(env):
        nightly = await _run_at(env, jobs, "nightly-reconciliation", nominal)
        assert nightly["status"] == "completed", nightly
        assert nightly["steps"]["load"]["output"]["results"][3]["row_count"] == len(expected)
        # The ledger got every row once, in batches of BATCH_SIZE, with the secret token.
        booked = [row for b in standins.recorded.batches for row in b["request"]["rows"]]
        assert sorted(r["id"] for r in booked) == [r["id"] for r in expected]
        assert all(len(b["request"]["rows"]) <= 4 for b in standins.recorded.batches)
        assert len(nightly["steps"]["book"]["output"]) == len(standins.recorded.batches)
        mail = standins.recorded.mails[-1]
        assert mail["to"] == ["ops@example.vn"]
        assert mail["subject"] == f"Reconciliation {day}: {len(expected)} rows"
        with psycopg.connect(examples) as conn:
            stored = conn.execute("SELECT count(*), sum(amount) FROM settlement").fetchone()
        assert stored == (len(expected), sum(r["amount"] for r in expected))
        # Re-running the same night replaces the day (idempotent load).
        again = await _run_at(env, jobs, "nightly-reconciliation", nominal + timedelta(minutes=1))
        assert again["status"] == "completed"
        with psycopg.connect(examples) as conn:
            assert conn.execute("SELECT count(*) FROM settlement").fetchone() == (len(expected),)

        report = await _run_at(env, jobs, "month-end-report", datetime(2025, 3, 31, 18, tzinfo=HCM))
    assert report["status"] == "completed", report
    filed = standins.recorded.reports[-1]
    assert filed["month"] == "2025-03"
    counts = Counter(r["merchant"] for r in expected)
    assert {m["merchant"]: m["payments"] for m in filed["merchants"]} == dict(counts)
    mail = standins.recorded.mails[-1]
    assert mail["to"] == ["finance@example.vn"]
    assert mail["subject"] == f"Settlements 2025-03: {len(counts)} merchants"
    # The workbook, written under the file roots, read back, and attached to the mail.
    workbook = file_roots / "reports" / "settlements-2025-03.xlsx"
    sheet = CalamineWorkbook.from_path(str(workbook)).get_sheet_by_name("2025-03").to_python()
    assert sheet[0] == ["merchant", "payments", "total"]
    assert {row[0]: int(row[1]) for row in sheet[1:]} == dict(counts)
    assert mail["attachments"] == [
        {"filename": "settlements-2025-03.xlsx", "size": workbook.stat().st_size}
    ]


async def test_hourly_health_sweep_fires_on_its_schedule_and_alerts(
    env, jobs, examples, standins, worker_for, until
):
    env.auto_time_skipping = False
    async with worker_for(env):
        now = datetime.fromtimestamp(env.now_ms() / 1000, tz=UTC)
        next_hour = (now + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
        await env.sleep((next_hour - now).total_seconds() + 1)
        env.auto_time_skipping = True  # the retry of the service that is down waits 5 s

        async def sweep_done() -> bool:
            runs = await env.client.list_workflows(workflow_type="cadenza.job", status="completed")
            return any(r.workflow_id.startswith("hourly-health-sweep/hourly/") for r in runs)

        await until(sweep_done)
    assert sorted(set(standins.recorded.health_checks)) == sorted(
        ["payments", "ledger", "cards", "notify", "fx-rates", "kyc"]
    )
    assert standins.recorded.health_checks.count("kyc") >= 2  # retried, still down
    alert = next(m for m in standins.recorded.mails if m["to"] == ["oncall@example.vn"])
    # The subject carries the fire's nominal time (on the hour, Ho Chi Minh City time).
    stamp = alert["subject"].removeprefix("Health sweep ").removesuffix(": services down")
    fired = datetime.strptime(stamp, "%Y-%m-%d %H:%M").replace(tzinfo=HCM)
    assert fired.minute == 0 and fired >= next_hour
