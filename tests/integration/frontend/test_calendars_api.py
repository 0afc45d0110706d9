"""Calendars over HTTP: apply through ``POST /api/v1/jobs/apply``, the read-only
``GET /api/v1/calendars`` routes, and ``cadenza plan|apply|calendar --server``."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from cadenza.frontend import create_app
from cadenza.frontend.cli import main
from cadenza.frontend.remote import RemoteService
from cadenza.history import NotFoundError
from cadenza.timers._calendars import get_calendar

PROBLEM = "application/problem+json"


def _holiday() -> date:
    day = date.today() + timedelta(days=20)
    while day.weekday() > 3:
        day += timedelta(days=1)
    return day


async def _get(http, url: str) -> tuple[int, str, Any]:
    async with http.get(url) as response:
        return response.status, response.content_type, await response.json(content_type=None)


async def test_calendar_routes_show_builtin_and_stored_calendars(engine, base_url, http):
    name = f"acme-{uuid.uuid4().hex[:6]}"
    holiday = _holiday()
    remote = RemoteService(base_url)
    try:
        calendars = [
            {
                "name": name,
                "description": "ACME bank",
                "weekend": ["fri", "sat"],
                "holidays": [{"date": holiday.isoformat(), "name": "Founders day"}],
            }
        ]
        plan = await remote.plan_jobs("default", [], calendars=calendars)
        assert [(c.name, c.action) for c in plan.calendars] == [(name, "create")]
        result = await remote.apply_jobs("default", [], calendars=calendars, identity="ci@x")
        assert result.calendar_versions == {name: 1}
        listed = {c.name: c for c in await remote.list_calendars()}
        year = await remote.describe_calendar(name.upper(), holiday.year)
    finally:
        await remote.close()
    assert listed["VN"].source == "builtin" and listed["VN"].aliases == ["vietnam"]
    assert listed["weekends-only"].source == "builtin"
    stored = listed[name]
    assert (stored.source, stored.version, stored.updated_by) == ("stored", 1, "ci@x")
    assert stored.weekend == ["fri", "sat"] and stored.description == "ACME bank"
    assert stored.content_hash.startswith("sha256:")
    assert year.calendar.name == name and year.year == holiday.year
    assert [(e.date, e.kind, e.name) for e in year.entries] == [
        (holiday, "holiday", "Founders day")
    ]
    assert year.definition is not None and year.definition["weekend"] == ["fri", "sat"]

    status, kind, body = await _get(http, f"{base_url}/api/v1/calendars/vietnam?year=2025")
    assert status == 200 and kind == "application/json"
    assert body["calendar"]["name"] == "VN" and body["definition"] is None
    assert body["entries"] == [
        {"date": e.date.isoformat(), "kind": e.kind, "name": e.name, "source": e.source}
        for e in get_calendar("VN").entries(2025)
    ]
    assert any(e["date"] == "2025-09-02" for e in body["entries"])  # National Day
    status, kind, body = await _get(http, f"{base_url}/api/v1/calendars/atlantis?year=2025")
    assert (status, kind, body["cadenza_error"]) == (404, PROBLEM, "NotFoundError")
    assert "atlantis" in body["detail"]
    status, kind, body = await _get(http, f"{base_url}/api/v1/calendars/VN?year=99999")
    assert (status, kind, body["field"]) == (400, PROBLEM, "year")
    status, _, body = await _get(http, f"{base_url}/api/v1/calendars/VN")
    assert status == 200 and body["year"] == date.today().year


async def test_apply_rejects_a_bad_calendar_with_its_field(engine, base_url, http):
    body = {"jobs": [], "calendars": [{"name": "ok-1", "colour": "red"}]}
    async with http.post(f"{base_url}/api/v1/jobs/apply", json=body) as response:
        problem = await response.json(content_type=None)
        assert response.status == 400 and response.content_type == PROBLEM
    assert problem["field"] == "ok-1:1: calendars[0].colour"
    assert problem["reason"].startswith("unknown field")
    body = {"jobs": [], "calendars": [{"name": "VN"}]}
    async with http.post(f"{base_url}/api/v1/jobs/plan", json=body) as response:
        problem = await response.json(content_type=None)
        assert response.status == 400
    assert problem["field"].endswith("calendars[0].name") and "built-in" in problem["reason"]
    remote = RemoteService(base_url)
    try:
        assert all(c.source != "stored" for c in await remote.list_calendars())
        with pytest.raises(NotFoundError):
            await remote.describe_calendar("ok-1", 2030)
    finally:
        await remote.close()


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the ``cadenza`` command in a thread (it runs its own event loop)."""
    status = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return status, out, err


async def test_cli_plans_applies_and_shows_calendars_of_a_server(
    engine, base_url, tmp_path: Path, capsys
):
    name = f"acme-{uuid.uuid4().hex[:6]}"
    holiday = _holiday()
    later = holiday + timedelta(days=1)
    folder = tmp_path / "jobs"
    folder.mkdir()
    text = f"""
jobs:
  - name: payroll
    schedules:
      - {{kind: cron, id: pay, cron: "0 0 9 {holiday.day} {holiday.month} ?", calendar: {name}}}
    steps:
      - {{id: a, type: http, config: {{url: "http://127.0.0.1:9/a"}}}}
calendars:
  - name: {name}
    holidays:
      - {{date: {holiday.isoformat()}, name: Founders day}}
"""
    (folder / "payroll.yaml").write_text(text)
    server = ["--server", base_url]
    status, out, err = await cli(capsys, "plan", str(folder), *server)
    assert status == 0, err
    assert f"+ calendar {name}: create" in out and "+ job payroll: create" in out
    assert "calendars: 1 to create, 0 to change, 0 to delete, 0 unchanged" in out
    status, out, err = await cli(capsys, "apply", str(folder), *server, "--identity", "ci")
    assert status == 0, err
    assert f"applied calendar {name} version 1" in out and "applied payroll version 1" in out
    status, out, _ = await cli(capsys, "apply", str(folder), *server)
    assert status == 0 and "no changes (1 job, 1 calendar up to date)" in out

    (folder / "payroll.yaml").write_text(
        text.replace(f"date: {holiday.isoformat()}", f"date: {later.isoformat()}")
    )
    status, out, _ = await cli(capsys, "plan", str(folder), *server)
    assert f"~ calendar {name}: update (version 1 -> 2)" in out
    assert f'~ holidays[0].date: "{holiday.isoformat()}" -> "{later.isoformat()}"' in out
    status, out, err = await cli(capsys, "apply", str(folder), *server)
    assert status == 0, err
    assert f"applied calendar {name} version 2" in out
    assert "~ schedule payroll/pay: next fire" in out  # the excluded day moved

    status, out, _ = await cli(
        capsys, "calendar", "show", name, "--year", str(later.year), "--json", *server
    )
    assert status == 0
    assert json.loads(out) == [
        {"date": later.isoformat(), "kind": "holiday", "name": "Founders day"}
    ]
    status, out, _ = await cli(capsys, "calendar", "show", name, "--year", str(later.year), *server)
    assert out.splitlines()[0] == f"{name} {later.year}: 1 entries"
    status, out, _ = await cli(capsys, "calendar", "list", *server)
    assert f"{name}\tstored v2" in out.splitlines()
    assert any(line.startswith("VN\tbuiltin\t") for line in out.splitlines())
    status, _, err = await cli(capsys, "calendar", "show", "atlantis", "--year", "2030", *server)
    assert status == 2 and "no calendar 'atlantis'" in err

    # Removing the calendar from the files while the job still names it: a clear refusal.
    (folder / "payroll.yaml").write_text(text.split("calendars:")[0])
    status, _, err = await cli(capsys, "apply", str(folder), *server, "--prune")
    assert status == 2  # bad input: nothing changed
    assert f"calendar {name!r} is not in the files but cannot be pruned" in err
    assert "still used by job 'payroll' (schedules[0]) in the files" in err
    status, out, _ = await cli(capsys, "calendar", "list", *server)
    assert f"{name}\tstored v2" in out.splitlines()


def _documented_routes() -> set[tuple[str, str]]:
    """(method, path) of every row of the route table of docs/api.md; ``/a``, ``/b`` after a
    path replace its last segment."""
    text = (Path(__file__).resolve().parents[3] / "docs" / "api.md").read_text("utf-8")
    table = text.split("## Every route", 1)[1].split("\n## ", 1)[0]
    found: set[tuple[str, str]] = set()
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[1].startswith("`/"):
            continue
        methods = re.findall(r"`([A-Z]+)`", cells[0])
        first, *more = re.findall(r"`(/[^`]*)`", cells[1])
        paths = [first] + [first.rsplit("/", 1)[0] + other for other in more]
        found |= {(m, p) for m in methods for p in paths}
    return found


async def test_the_api_reference_lists_every_route(engine):
    app = create_app(engine, engine.settings)
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert ("GET", "/api/v1/calendars/{name}") in served
    assert _documented_routes() == served
