"""Schedules through the SDK client (in process and over HTTP with RemoteService), the REST
routes, and the ``cadenza schedule`` command line."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from cadenza.engine import Engine, Settings
from cadenza.frontend import create_app
from cadenza.frontend.cli import main
from cadenza.frontend.remote import RemoteService
from cadenza.history import InvalidArgumentError
from cadenza.history._schedule_records import (
    ScheduleAlreadyExistsError,
    ScheduleNotFoundError,
)
from cadenza.sdk import Client

SPEC = {"kind": "cron", "cron": "0 0 9 * * ?", "calendar": "VN", "overlap": "allow_all"}


@pytest.fixture
async def engine(tmp_path) -> AsyncIterator[Engine]:
    eng = Engine(Settings(database_url=f"sqlite:///{tmp_path}/api.db", shard_count=4))
    await eng.start()
    try:
        yield eng
    finally:
        await eng.stop()


@pytest.fixture
async def remote(engine: Engine) -> AsyncIterator[RemoteService]:
    server = TestServer(create_app(engine), host="127.0.0.1")
    await server.start_server()
    service = RemoteService(str(server.make_url("")).rstrip("/"), request_timeout=10)
    try:
        yield service
    finally:
        await service.close()
        await server.close()


@pytest.mark.parametrize("over_http", [False, True])
async def test_client_operations(engine: Engine, remote: RemoteService, over_http: bool) -> None:
    service = remote if over_http else engine
    client = Client(service, identity="alice")
    handle = await client.create_schedule("team/nightly", SPEC, "Report", "daily", task_queue="q")
    description = await handle.describe()
    assert description.schedule_id == "team/nightly"
    assert description.action.workflow_type == "Report"
    assert len(description.next_fire_times) == 10
    assert all(t.nominal_time.hour == 2 for t in description.next_fire_times)  # 09:00 +07
    with pytest.raises(ScheduleAlreadyExistsError):
        await client.create_schedule("team/nightly", SPEC, "Report", task_queue="q")
    await handle.pause(note="freeze")
    assert (await handle.describe()).note == "freeze"
    await handle.unpause()
    triggered = await handle.trigger()
    assert triggered.outcome == "started"
    assert triggered.workflow_id.startswith("team/nightly/")
    end = datetime.now(UTC)
    backfill = await handle.backfill(end - timedelta(days=10), end)
    assert 1 <= backfill.fire_count <= 10
    updated = await handle.update(spec={**SPEC, "cron": "0 30 9 * * ?"})
    assert updated.spec["cron"] == "0 30 9 * * ?"
    listed = await client.list_schedules()
    assert [s.schedule_id for s in listed] == ["team/nightly"]
    preview = await client.preview_schedule({"kind": "fixed_rate", "every": "1h"}, count=3)
    assert len(preview) == 3
    with pytest.raises(InvalidArgumentError) as caught:
        await client.create_schedule(
            "bad", {"kind": "cron", "cron": "0 0 25 * * ?"}, "R", task_queue="q"
        )
    assert caught.value.field == "spec.cron"
    history = await handle.history()
    kinds = [(e.event_type, e.identity) for e in history if e.identity != "cadenza"]
    assert [k for k, _ in kinds] == [
        "created",
        "paused",
        "unpaused",
        "triggered",
        "backfill_requested",
        "updated",
    ]
    assert {who for _, who in kinds} == {"alice"}
    await handle.delete()
    with pytest.raises(ScheduleNotFoundError):
        await handle.describe()
    assert (await engine.verify_schedule_history("default", "team/nightly")).ok


async def test_rest_errors_are_problem_json(engine: Engine, remote: RemoteService) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        url = remote.base_url + "/api/v1/schedules"
        async with http.post(
            url,
            json={
                "schedule_id": "x",
                "spec": {"kind": "cron"},
                "action": {"workflow_type": "W", "task_queue": "q"},
            },
        ) as response:
            assert response.status == 400
            assert response.content_type == "application/problem+json"
            problem = await response.json()
            assert problem["field"] == "spec.cron"
        async with http.get(url + "/nothing") as response:
            assert response.status == 404
        async with http.post(url + "/preview", json={"spec": SPEC, "count": 2}) as response:
            assert response.status == 200
            assert len((await response.json())["fire_times"]) == 2


def _cli(*args: str) -> int:
    return main(list(args))


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path}/cli.db"
    spec = tmp_path / "nightly.yaml"
    spec.write_text('kind: cron\ncron: "0 30 1 * * ?"\ncalendar: VN\n', "utf-8")
    assert (
        _cli(
            "schedule",
            "preview",
            str(spec),
            "--count",
            "3",
            "--json",
            "--after",
            "2026-02-12T00:00:00",
        )
        == 0
    )
    times = json.loads(capsys.readouterr().out)
    assert [t["nominal"] for t in times] == [
        "2026-02-11T18:30:00Z",  # 12 Feb 01:30 local
        "2026-02-12T18:30:00Z",  # 13 Feb
        "2026-02-22T18:30:00Z",  # Tết from 14 to 22 Feb: the next business day is 23 Feb
    ]
    assert _cli("migrate", "--db", db) == 0
    assert (
        _cli(
            "schedule",
            "create",
            "nightly",
            str(spec),
            "--workflow",
            "Report",
            "--task-queue",
            "q",
            "--db",
            db,
            "--identity",
            "ops",
        )
        == 0
    )
    assert _cli("schedule", "pause", "nightly", "--note", "freeze", "--db", db) == 0
    capsys.readouterr()
    assert _cli("schedule", "describe", "nightly", "--json", "--events", "--db", db) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["paused"] and described["note"] == "freeze"
    assert [e["event_type"] for e in described["events"]] == ["created", "paused"]
    assert described["events"][0]["identity"] == "ops"
    assert _cli("schedule", "list", "--json", "--db", db) == 0
    assert [s["schedule_id"] for s in json.loads(capsys.readouterr().out)] == ["nightly"]
    assert _cli("schedule", "trigger", "nightly", "--db", db) == 0
    assert capsys.readouterr().out.startswith("started nightly/")
    assert _cli("schedule", "delete", "nightly", "--db", db) == 0
    capsys.readouterr()
    # bad input: exit 2 with the field named
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: fixed_rate\nevery: 0s\n", "utf-8")
    assert _cli("schedule", "preview", str(bad)) == 2
    assert "every" in capsys.readouterr().err
    assert _cli("schedule", "preview", str(spec), "--count", "0") == 2
    assert _cli("schedule", "create", "again", str(bad), "--workflow", "W", "--db", db) == 2
    assert (
        _cli("schedule", "backfill", "nightly2", "--start", "nope", "--end", "x", "--db", db) == 2
    )
