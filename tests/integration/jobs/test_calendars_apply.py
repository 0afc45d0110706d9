"""Business calendars of job files on the server (SQLite and PostgreSQL): plan, apply, field
diffs, versions, schedules that roll on a stored calendar, all or nothing, prune rules, and a
second engine on the same PostgreSQL database picking the calendar up."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from cadenza.engine import Engine, Settings
from cadenza.engine._job_calendars import describe_calendar
from cadenza.engine._job_loader import JobFileError, load_job_text
from cadenza.engine._job_plan import JobPlan
from cadenza.engine._jobs import ApplyResult, JobService, jobs_for
from cadenza.engine._schedule_api import ScheduleAction
from cadenza.engine._schedule_logic import EvaluatorCache
from cadenza.frontend.cli import main
from cadenza.timers import decode_schedule_spec
from cadenza.timers._calendar_spec import calendar_from_dict
from cadenza.timers._calendars import (
    calendar_overlay,
    get_calendar,
    register_calendar,
    unregister_calendar,
)

VN_TIME = timezone(timedelta(hours=7))


def _today(env: Any) -> date:
    return datetime.fromtimestamp(env.engine.clock.now_ms() / 1000, VN_TIME).date()


def _now(env: Any) -> datetime:
    return datetime.fromtimestamp(env.engine.clock.now_ms() / 1000, UTC)


def _holiday_after(today: date, days: int = 10) -> date:
    """A Monday..Thursday at least ``days`` ahead (so the day after it is a business day)."""
    day = today + timedelta(days=days)
    while day.weekday() > 3:
        day += timedelta(days=1)
    return day


def _at_nine(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 9, tzinfo=VN_TIME).astimezone(UTC)


def _zulu(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:6]
    return f"payroll-{suffix}", f"acme-{suffix}"


def _job(job: str, calendar: str, holiday: date) -> str:
    return f"""
  - name: {job}
    schedules:
      - kind: cron
        id: pay
        cron: "0 0 9 {holiday.day} {holiday.month} ?"
        calendar: {calendar}
        calendar_mode: roll_following
    steps:
      - {{id: a, type: http, config: {{url: "http://127.0.0.1:9/a"}}}}
"""


def _calendar(calendar: str, *holidays: date) -> str:
    lines = "".join(f"      - {{date: {d.isoformat()}, name: Day off}}\n" for d in holidays)
    return f"  - name: {calendar}\n    description: ACME bank days off\n    holidays:\n{lines}"


def _files(jobs: str = "", calendars: str = "") -> tuple[list[Any], list[Any]]:
    text = (f"jobs:\n{jobs}" if jobs else "") + (f"\ncalendars:\n{calendars}" if calendars else "")
    loaded = load_job_text(text, filename="test.yaml")
    assert loaded.ok, [str(i) for i in loaded.issues]
    return loaded.jobs, loaded.calendars


async def _plan(service: JobService, files: tuple[list[Any], list[Any]], **kw: Any) -> JobPlan:
    return await service.plan(kw.pop("namespace", "default"), files[0], calendars=files[1], **kw)


async def _apply(service: JobService, files: tuple[list[Any], list[Any]], **kw: Any) -> ApplyResult:
    return await service.apply(
        kw.pop("namespace", "default"), files[0], calendars=files[1], identity="ci@bank", **kw
    )


async def test_a_schedule_rolls_on_a_calendar_applied_with_it(env, jobs):
    env.auto_time_skipping = False  # the clock moves only when the test says so
    job, calendar = _names()
    holiday = _holiday_after(_today(env))
    files = _files(_job(job, calendar, holiday), _calendar(calendar, holiday))

    plan = await _plan(jobs, files)
    assert [(c.name, c.action) for c in plan.calendars] == [(calendar, "create")]
    assert f"+ calendar {calendar}: create" in plan.render()
    assert await jobs.store.list_calendars() == []  # plan changes nothing

    result = await _apply(jobs, files)
    assert result.calendar_versions == {calendar: 1}
    assert result.schedules == [f"+ schedule {job}/pay"] and not result.schedule_errors
    stored = await jobs.store.get_calendar(calendar.upper())
    assert stored is not None and stored.version == 1 and stored.updated_by == "ci@bank"
    assert stored.namespace == "default" and stored.display_name == calendar
    assert get_calendar(calendar).is_holiday(holiday)
    described = await env.engine.describe_schedule("default", f"{job}/pay")
    # The fire on the holiday rolls to the next business day.
    assert described.next_fire_times[0].nominal_time == _at_nine(holiday + timedelta(days=1))

    again = await _plan(jobs, files)
    assert not again.has_changes
    assert again.render() == "no changes (1 job, 1 calendar up to date)"
    second = await jobs.apply("default", files[0], calendars=files[1], identity="someone")
    assert second.calendar_versions == {} and not second.plan.has_changes
    assert (await jobs.store.get_calendar(calendar)).updated_by == "ci@bank"

    # The holiday moves one day later: a field-level diff, a new version, new fire times.
    later = holiday + timedelta(days=1)
    moved = _files(_job(job, calendar, holiday), _calendar(calendar, later))
    plan = await _plan(jobs, moved)
    change = plan.calendars[0]
    assert (change.action, change.version) == ("update", 1)
    assert [(f.path, f.old, f.new) for f in change.fields] == [
        ("holidays[0].date", holiday.isoformat(), later.isoformat())
    ]
    rendered = plan.render()
    assert f"~ calendar {calendar}: update (version 1 -> 2)" in rendered
    assert f'~ holidays[0].date: "{holiday.isoformat()}" -> "{later.isoformat()}"' in rendered
    assert not plan.schedules  # the schedule's spec is the same
    result = await _apply(jobs, moved)
    assert result.calendar_versions == {calendar: 2}
    assert result.schedules == [
        f"~ schedule {job}/pay: next fire {_at_nine(holiday).isoformat()} "
        f"(calendar '{calendar}' changed)"
    ]
    assert (await jobs.store.get_calendar(calendar)).version == 2
    described = await env.engine.describe_schedule("default", f"{job}/pay")
    assert described.next_fire_times[0].nominal_time == _at_nine(holiday)
    audit = await env.engine.get_schedule_history("default", f"{job}/pay")
    moved_fire = audit[-1].attributes.changes[0]
    assert (moved_fire.field, moved_fire.new) == ("next_fire_time", _zulu(_at_nine(holiday)))
    # A repeated apply finds the schedule in line and writes nothing.
    assert (await _apply(jobs, moved)).schedules == []

    # Time passes: the run starts on the day that is a business day again.
    await env.sleep((_at_nine(holiday) - _now(env)).total_seconds() + 1)
    run_id = f"{job}/pay/{_zulu(_at_nine(holiday))}"
    runs = await env.engine.list_workflows("default", workflow_id=run_id)
    assert [r.workflow_id for r in runs] == [run_id]


async def test_an_invalid_calendar_changes_nothing(env, jobs):
    env.auto_time_skipping = False
    job, calendar = _names()
    holiday = _holiday_after(_today(env))
    good = _files(_job(job, calendar, holiday), _calendar(calendar, holiday))
    bad_date = {"name": calendar, "holidays": [{"date": "2031-02-30", "name": "Nope"}]}
    with pytest.raises(JobFileError) as caught:
        await jobs.apply("default", good[0], calendars=[bad_date], identity="ci")
    assert [i.field for i in caught.value.issues] == ["calendars[0].holidays[0].date"]
    assert "must be a date YYYY-MM-DD" in caught.value.issues[0].message

    with pytest.raises(JobFileError) as caught:
        await jobs.plan("default", [], calendars=[{"name": "vietnam"}, {"name": "Weekends-Only"}])
    assert [i.field for i in caught.value.issues] == ["calendars[0].name", "calendars[1].name"]
    assert "built-in calendar" in str(caught.value)

    twins = [{"name": calendar}, {"name": calendar.upper()}]
    with pytest.raises(JobFileError, match=r"calendars\[1\]\.name: duplicate calendar name"):
        await jobs.plan("default", [], calendars=twins)

    cycle = [
        {"name": f"{calendar}-a", "include": [f"{calendar}-b"]},
        {"name": f"{calendar}-b", "include": ["VN", f"{calendar}-a"]},
    ]
    with pytest.raises(JobFileError) as caught:
        await jobs.plan("default", [], calendars=cycle)
    assert [i.field for i in caught.value.issues] == [
        "calendars[0].include[0]",
        "calendars[1].include[1]",
    ]

    # A schedule naming a calendar that neither the files nor the server define.
    with pytest.raises(JobFileError) as caught:
        await jobs.apply("default", good[0], calendars=[], identity="ci")
    assert caught.value.issues[0].field == "jobs[0].schedules[0].calendar"

    assert await jobs.list_jobs("default") == []
    assert await jobs.store.list_calendars() == []
    assert await env.engine.list_schedules("default") == []

    # Calendars of the files may include each other, in any order.
    chained = [
        {"name": f"{calendar}-b", "include": [f"{calendar}-a"]},
        {"name": f"{calendar}-a", "holidays": [{"fixed": "12-24", "name": "Christmas Eve"}]},
    ]
    result = await jobs.apply("default", [], calendars=chained, identity="ci")
    assert result.calendar_versions == {f"{calendar}-a": 1, f"{calendar}-b": 1}
    assert get_calendar(f"{calendar}-b").is_holiday(date(2030, 12, 24))


async def test_prune_deletes_only_unused_calendars_of_the_namespace(env, jobs):
    env.auto_time_skipping = False
    job, used = _names()
    spare, foreign = f"{used}-spare", f"{used}-foreign"
    holiday = _holiday_after(_today(env))
    both = _files(_job(job, used, holiday), _calendar(used, holiday) + _calendar(spare, holiday))
    await _apply(jobs, both)
    await _apply(jobs, _files(calendars=_calendar(foreign, holiday)), namespace="other")

    only_used = _files(_job(job, used, holiday), _calendar(used, holiday))
    kept = await _plan(jobs, only_used)
    assert kept.unmanaged_calendars == [spare] and not kept.has_changes
    assert f"  calendar {spare}: not in the files (kept; --prune deletes it)" in kept.render()
    pruned = await _plan(jobs, only_used, prune=True)
    assert [(c.name, c.action, c.version) for c in pruned.calendars] == [
        (used, "unchanged", 1),
        (spare, "delete", 1),
    ]
    assert f"- calendar {spare}: delete (version 1)" in pruned.render()
    result = await _apply(jobs, only_used, prune=True)
    assert result.calendar_versions == {spare: 1}
    assert {c.name for c in await jobs.store.list_calendars()} == {used, foreign}
    with pytest.raises(Exception, match="unknown calendar"):
        get_calendar(spare)

    # A calendar that a job of the files names cannot be pruned.
    no_calendars = _files(_job(job, used, holiday))
    with pytest.raises(JobFileError) as caught:
        await _apply(jobs, no_calendars, prune=True)
    message = str(caught.value)
    assert f"calendar {used!r} is not in the files but cannot be pruned" in message
    assert f"job {job!r} (schedules[0]) in the files" in message

    # Nor one that a job of another namespace or a schedule made through the API names.
    await _apply(jobs, _files(_job(f"{job}-x", used, holiday)), namespace="other")
    await env.engine.create_schedule(
        "default",
        "manual/calendar",
        {"kind": "cron", "cron": "0 0 9 * * ?", "calendar": used},
        ScheduleAction(workflow_type="Anything", task_queue="q"),
    )
    with pytest.raises(JobFileError) as caught:
        await jobs.apply("default", [], calendars=[], prune=True, identity="ci")
    message = str(caught.value)
    assert f"job '{job}-x' in namespace 'other'" in message
    assert "schedule 'manual/calendar' in namespace 'default'" in message
    assert f"job {job!r} in namespace 'default'" not in message  # it would be pruned too
    assert {c.name for c in await jobs.store.list_calendars()} == {used, foreign}
    assert [j.name for j in await jobs.list_jobs("default")] == [job]

    # Without calendars in the request, stored calendars are left alone, even with prune.
    result = await jobs.apply("default", [], prune=True, identity="ci")
    assert result.plan.calendars == [] and result.calendar_versions == {}
    assert {c.name for c in await jobs.store.list_calendars()} == {used, foreign}
    # A prune in another namespace never deletes this one's calendars.
    other = await jobs.plan("other", no_calendars[0], calendars=[], prune=True)
    assert foreign in [c.name for c in other.calendars if c.action == "delete"]
    assert used not in [c.name for c in other.calendars]


@pytest.fixture
def pg_url(pg_database_factory) -> str:
    return pg_database_factory("calendars")


def _listeners(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query = 'LISTEN cadenza'"
        ).fetchone()
    return int(row[0]) if row else 0


async def test_a_second_engine_on_the_same_database_loads_applied_calendars(pg_url, until):
    first = Engine(Settings(database_url=pg_url, shard_count=4))
    second = Engine(Settings(database_url=pg_url, shard_count=4))
    await first.start()
    await second.start()
    try:
        # Both engines listen for cluster notices before the apply (a notice sent before a
        # listener connects is only caught by the periodic reload).
        await until(lambda: _listeners(pg_url) >= 2, timeout=10)
        _, calendar = _names()
        loads = second.calendar_sync.loads
        service = jobs_for(first)
        version_one = [{"name": calendar, "holidays": [{"date": "2031-05-06", "name": "A"}]}]
        await service.apply("default", [], calendars=version_one, identity="ci")
        # The notice reaches the other engine at once (its timer would wait 60 s).
        await until(lambda: second.calendar_sync.versions.get(calendar) == 1, timeout=10)
        assert second.calendar_sync.loads > loads
        version_two = [{"name": calendar, "holidays": [{"date": "2031-05-07", "name": "B"}]}]
        await service.apply("default", [], calendars=version_two, identity="ci")
        await until(lambda: second.calendar_sync.versions.get(calendar) == 2, timeout=10)
        seen = await describe_calendar(second, calendar, 2031)
        assert seen.calendar.version == 2 and seen.calendar.source == "stored"
        assert [(e.date, e.name) for e in seen.entries] == [(date(2031, 5, 7), "B")]
        # A third engine starting later loads it at start.
        third = Engine(Settings(database_url=pg_url, shard_count=4))
        await third.start(take_shards=False)
        try:
            assert third.calendar_sync.versions == {calendar: 2}
        finally:
            await third.stop()
    finally:
        await second.stop()
        await first.stop()


async def test_cli_applies_and_prunes_calendars_on_a_database(tmp_path, capsys):
    _, calendar = _names()
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "calendars.yaml").write_text(f"calendars:\n{_calendar(calendar, date(2031, 5, 6))}")
    db = ["--db", f"sqlite:///{tmp_path}/cli.db"]

    async def cli(*argv: str) -> tuple[int, str, str]:
        status = await asyncio.to_thread(main, list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    status, out, err = await cli("apply", str(folder), *db, "--identity", "ci")
    assert status == 0, err
    assert f"+ calendar {calendar}: create" in out
    assert f"applied calendar {calendar} version 1" in out
    (folder / "calendars.yaml").write_text(
        f"calendars:\n{_calendar(f'{calendar}-new', date(2031, 1, 2))}"
    )
    status, out, _ = await cli("plan", str(folder), *db)
    assert f"  calendar {calendar}: not in the files (kept; --prune deletes it)" in out
    status, out, _ = await cli("plan", str(folder), *db, "--prune")
    assert f"- calendar {calendar}: delete (version 1)" in out
    assert "calendars: 1 to create, 0 to change, 1 to delete, 0 unchanged" in out
    status, out, err = await cli("apply", str(folder), *db, "--prune")
    assert status == 0, err
    assert f"deleted calendar {calendar} (was version 1)" in out
    assert f"applied calendar {calendar}-new version 1" in out


def test_compiled_schedules_follow_calendar_changes():
    _, calendar = _names()
    spec = decode_schedule_spec({"kind": "cron", "cron": "0 0 9 * * ?", "calendar": calendar})
    other = decode_schedule_spec({"kind": "cron", "cron": "0 0 9 * * ?"})
    register_calendar(calendar_from_dict({"name": calendar}), replace=True)
    try:
        cache = EvaluatorCache()
        first = cache.get("s", "spec", spec)
        plain = cache.get("p", "plain", other)
        assert cache.get("s", "spec", spec) is first
        holiday = {"name": calendar, "holidays": [{"date": "2031-05-06", "name": "X"}]}
        with calendar_overlay({calendar: calendar_from_dict(holiday)}):
            planned = cache.get("s", "spec", spec)  # compiled against the overlay, not kept
            assert planned.calendar is not None and planned.calendar.is_holiday(date(2031, 5, 6))
            assert cache.get("p", "plain", other) is plain
        assert cache.get("s", "spec", spec) is first
        register_calendar(calendar_from_dict(holiday), replace=True)
        fresh = cache.get("s", "spec", spec)
        assert fresh is not first and fresh.calendar.is_holiday(date(2031, 5, 6))
        assert cache.get("p", "plain", other) is plain  # no calendar: kept
    finally:
        unregister_calendar(calendar)


async def test_dev_jobs_loads_the_calendars_of_the_files(env, tmp_path) -> None:
    from cadenza.sdk._job_interpreter import load_jobs_into

    job, calendar = _names()
    holiday = _holiday_after(_today(env))
    (tmp_path / "jobs.yaml").write_text(
        f"jobs:\n{_job(job, calendar, holiday)}\ncalendars:\n{_calendar(calendar, holiday)}"
    )
    try:
        result = await load_jobs_into(env.engine, [str(tmp_path)], identity="dev")
        assert result.calendar_versions == {calendar: 1}
        assert not result.schedule_errors
        assert get_calendar(calendar).is_holiday(holiday)
    finally:
        unregister_calendar(calendar)
