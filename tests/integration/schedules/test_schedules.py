"""Schedules on a real engine (SQLite and PostgreSQL) with a virtual clock: every kind, the
derived workflow ids and recorded triggers, catch-up after downtime, every overlap policy,
every operation with its audit event and actor, DST across a real transition, bad input."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from sqlalchemy import text

from cadenza.engine import Engine
from cadenza.engine._schedule_api import ScheduleAction
from cadenza.history import InvalidArgumentError
from cadenza.history._events import WorkflowExecutionStarted
from cadenza.history._schedule_records import (
    ScheduleAlreadyExistsError,
    ScheduleNotFoundError,
)
from cadenza.sdk import Client, Worker
from cadenza.timers import VirtualClock
from tests.integration.schedules import workflows as w

NS = "default"
T0 = datetime(2026, 3, 2, 0, 0, 30, tzinfo=UTC)
MIN = 60_000


def ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def at_minute(n: int) -> int:
    """Nominal time of the n-th whole minute after T0 (T0 is 30 s into minute 0)."""
    return ms(T0) - 30_000 + n * MIN


def action(workflow: str = "Tick", args: list[Any] | None = None) -> ScheduleAction:
    return ScheduleAction(
        workflow_type=workflow, task_queue="q", input=msgspec.Raw(msgspec.json.encode(args or []))
    )


def worker(engine: Engine) -> Worker:
    return Worker(Client(engine), task_queue="q", workflows=[w.Tick, w.Hold, w.Nap])


async def settle(engine: Engine, until: Any, *, idle: bool) -> None:
    """Wait until nothing is due at the current virtual time (and, with ``idle``, no task is
    running or ready: the workers have caught up)."""
    now = engine.clock.now_ms()

    quiet = 0

    async def done() -> bool:
        nonlocal quiet
        quiet = quiet + 1 if await still() else 0
        return quiet >= 3  # three checks in a row: nothing is about to be dispatched

    async def still() -> bool:
        owned = engine.shards.owned() if engine.shards else []
        nxt = await engine.store.next_timer_ms(owned)
        if nxt is not None and nxt <= now:
            return False
        if await transfers_left(engine):
            return False
        return await engine.is_idle() if idle else True

    await until(done)


async def transfers_left(engine: Engine) -> int:
    """Transfer tasks not carried out yet, leased ones included (a notification in flight)."""
    async with engine.store._read() as conn:  # type: ignore[attr-defined]
        result = await conn.execute(text("SELECT count(*) FROM tasks WHERE kind = 'transfer'"))
        return int(result.scalar() or 0)


async def run_to(
    engine: Engine, clock: VirtualClock, target: int, until: Any, *, idle: bool
) -> None:
    """Move the virtual clock to ``target`` timer by timer, letting each step finish."""
    await settle(engine, until, idle=idle)
    while clock.now_ms() < target:
        nxt = await engine.next_due_ms()
        step = target if nxt is None or nxt > target else max(nxt, clock.now_ms() + 1)
        clock.advance_to(step)
        await settle(engine, until, idle=idle)


async def runs(engine: Engine) -> dict[str, str]:
    """workflow id -> status of every execution."""
    found = await engine.list_workflows(NS, limit=1000)
    return {r.workflow_id: r.status for r in found}


async def event_types(engine: Engine, schedule_id: str) -> list[str]:
    return [e.event_type for e in await engine.get_schedule_history(NS, schedule_id)]


async def fired(engine: Engine, schedule_id: str) -> list[Any]:
    return [
        e.attributes
        for e in await engine.get_schedule_history(NS, schedule_id)
        if e.event_type == "fired"
    ]


# --------------------------------------------------------------------------- firing


async def test_fires_start_derived_workflows_that_record_their_trigger(make_engine, until) -> None:
    engine, clock = await make_engine()
    spec = {"kind": "cron", "cron": "0 * * * * ?", "jitter": "20s"}
    created = await engine.create_schedule(NS, "tick", spec, action(), identity="alice")
    assert len(created.next_fire_times) == 10
    async with worker(engine):
        await run_to(engine, clock, at_minute(3) + 30_000, until, idle=True)
    expected = [f"tick/2026-03-02T00:0{n}:00Z" for n in (1, 2, 3)]
    assert await runs(engine) == dict.fromkeys(expected, "completed")
    events = (await engine.get_history(NS, expected[1]))[1]
    trigger = events[0].attributes.trigger
    assert trigger.source == "schedule" and trigger.schedule_id == "tick"
    assert ms(trigger.nominal_time) == at_minute(2)
    jitter = ms(trigger.actual_time) - at_minute(2)
    assert jitter == created.next_fire_times[1].actual_time.timestamp() * 1000 - at_minute(2)
    assert 0 <= jitter < 20_000
    # Written one second ahead (schedule_fire_ahead, default 1 s), its first workflow task
    # held until nominal + jitter: the worker ran it at that time, not before.
    assert ms(trigger.actual_time) - ms(events[0].event_time) == 1000
    task_started = next(e for e in events if e.event_type == "workflow_task_started")
    assert ms(task_started.event_time) >= ms(trigger.actual_time)
    description = await engine.describe_schedule(NS, "tick")
    assert description.run_count == 3
    assert [r.status for r in description.recent_runs] == ["completed"] * 3
    assert ms(description.next_fire_times[0].nominal_time) == at_minute(4)
    verdict = await engine.verify_schedule_history(NS, "tick")
    assert verdict.ok, verdict.reason
    history = await engine.get_schedule_history(NS, "tick")
    assert history[0].event_type == "created" and history[0].identity == "alice"
    assert {e.identity for e in history[1:]} == {"cadenza"}
    assert [e.event_type for e in history].count("run_closed") == 3


async def test_fixed_rate_one_time_and_max_runs(make_engine, until) -> None:
    engine, clock = await make_engine()
    await engine.create_schedule(
        NS,
        "rate",
        {"kind": "fixed_rate", "every": "10m", "start": T0.isoformat(), "max_runs": 2},
        action(),
    )
    once_at = T0 + timedelta(minutes=7)
    await engine.create_schedule(
        NS, "once", {"kind": "one_time", "at": once_at.isoformat()}, action()
    )
    async with worker(engine):
        await run_to(engine, clock, ms(T0) + 45 * MIN, until, idle=True)
    found = await runs(engine)
    assert sorted(k for k in found if k.startswith("rate/")) == [
        "rate/2026-03-02T00:00:30Z",
        "rate/2026-03-02T00:10:30Z",
    ]
    assert [k for k in found if k.startswith("once/")] == ["once/2026-03-02T00:07:30Z"]
    for schedule_id in ("rate", "once"):
        description = await engine.describe_schedule(NS, schedule_id)
        assert description.next_fire_times == []


async def test_fixed_delay_counts_from_the_previous_close(make_engine, until) -> None:
    engine, clock = await make_engine()
    await engine.create_schedule(
        NS, "delay", {"kind": "fixed_delay", "every": "10m"}, action("Nap", [5])
    )
    async with worker(engine):
        await run_to(engine, clock, ms(T0) + 40 * MIN, until, idle=True)
    description = await engine.describe_schedule(NS, "delay")
    done = sorted(description.recent_runs, key=lambda r: r.nominal_time)
    assert len(done) >= 2 and done[0].nominal_time == T0  # the first fire at once
    for previous, following in itertools.pairwise(done):
        # Each run naps 5 minutes; the next starts 10 minutes after the previous one closed.
        assert previous.close_time is not None
        assert previous.close_time - previous.nominal_time >= timedelta(minutes=5)
        assert following.nominal_time == previous.close_time + timedelta(minutes=10)
        assert following.actual_time == following.nominal_time


async def test_dst_shift_forward_across_a_real_transition(make_engine, until) -> None:
    engine, clock = await make_engine(start=datetime(2026, 3, 28, 12, 0, tzinfo=UTC))
    spec = {
        "kind": "cron",
        "cron": "0 30 2 * * ?",
        "timezone": "Europe/Berlin",
        "dst": {"nonexistent": "shift_forward"},
    }
    await engine.create_schedule(NS, "berlin", spec, action())
    quartz = {k: v for k, v in spec.items() if k != "dst"}
    await engine.create_schedule(NS, "quartz", quartz, action())
    async with worker(engine):
        await run_to(engine, clock, ms(datetime(2026, 3, 31, 6, 0, tzinfo=UTC)), until, idle=True)
    found = await runs(engine)
    assert sorted(k for k in found if k.startswith("berlin/")) == [
        "berlin/2026-03-29T01:30:00Z",  # 02:30 does not exist: 03:30 CEST
        "berlin/2026-03-30T00:30:00Z",
        "berlin/2026-03-31T00:30:00Z",
    ]
    assert sorted(k for k in found if k.startswith("quartz/")) == [
        "quartz/2026-03-30T00:30:00Z",  # Quartz skips the day of the gap
        "quartz/2026-03-31T00:30:00Z",
    ]


async def test_calendar_roll_following_over_tet(make_engine, until) -> None:
    engine, clock = await make_engine(start=datetime(2026, 2, 12, 0, 0, tzinfo=UTC))
    spec = {
        "kind": "cron",
        "cron": "0 0 9 * * ?",
        "calendar": "VN",
        "calendar_mode": "roll_following",
    }
    await engine.create_schedule(NS, "vn", spec, action())
    async with worker(engine):
        await run_to(engine, clock, ms(datetime(2026, 2, 24, 0, 0, tzinfo=UTC)), until, idle=True)
    assert sorted(await runs(engine)) == [
        "vn/2026-02-12T02:00:00Z",
        "vn/2026-02-13T02:00:00Z",
        "vn/2026-02-23T02:00:00Z",  # the Tết days roll to Monday 23, once
    ]


# --------------------------------------------------------------------------- catch-up


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("all", list(range(1, 11))), ("latest", [9, 10]), ("none", [9, 10])],
)
async def test_catch_up_after_downtime(make_engine, until, mode: str, expected: list[int]) -> None:
    engine, _ = await make_engine()
    spec = {
        "kind": "cron",
        "cron": "0 * * * * ?",
        "overlap": "allow_all",
        "catch_up": {"window": "90s", "mode": mode},
    }
    await engine.create_schedule(NS, "batch", spec, action("Hold"))
    await engine.stop()  # down from 00:00:30 to 00:10:10
    engine, _ = await make_engine(start=T0 + timedelta(minutes=9, seconds=40))
    await until(lambda: _next_nominal(engine, "batch", at_minute(11)))
    started = sorted(k for k in await runs(engine))
    assert started == [f"batch/2026-03-02T00:{n:02d}:00Z" for n in expected]
    missed = [f for f in await fired(engine, "batch") if f.skipped == "missed"]
    assert sum(f.skipped_count for f in missed) == 10 - len(expected)


async def _next_nominal(engine: Engine, schedule_id: str, expected: int) -> bool:
    description = await engine.describe_schedule(NS, schedule_id)
    times = description.next_fire_times
    return bool(times) and ms(times[0].nominal_time) == expected


async def test_unpause_catches_up_what_was_missed(make_engine, until) -> None:
    engine, clock = await make_engine()
    spec = {"kind": "cron", "cron": "0 * * * * ?", "overlap": "allow_all"}
    await engine.create_schedule(NS, "p", spec, action("Hold"))
    await engine.pause_schedule(NS, "p", note="maintenance", identity="ops")
    description = await engine.describe_schedule(NS, "p")
    assert description.paused and description.note == "maintenance"
    await run_to(engine, clock, at_minute(5) + 10_000, until, idle=False)
    assert await runs(engine) == {}
    await engine.unpause_schedule(NS, "p", identity="ops")
    await until(lambda: _next_nominal(engine, "p", at_minute(6)))
    # default catch-up: window 60 s, latest: only minute 5 is on time
    assert sorted(await runs(engine)) == ["p/2026-03-02T00:05:00Z"]


# --------------------------------------------------------------------------- overlap


async def _three_fires_while_holding(
    policy: str, make_engine, until
) -> tuple[Engine, VirtualClock]:
    engine, clock = await make_engine()
    await engine.create_schedule(
        NS, "o", {"kind": "cron", "cron": "0 * * * * ?", "overlap": policy}, action("Hold")
    )
    await run_to(engine, clock, at_minute(3), until, idle=False)
    return engine, clock


async def _release(engine: Engine, workflow_id: str) -> None:
    await engine.signal_workflow(NS, workflow_id, None, "release", msgspec.Raw(b"[]"))


def wid(minute: int) -> str:
    return f"o/2026-03-02T00:0{minute}:00Z"


async def test_overlap_skip(make_engine, until) -> None:
    engine, _ = await _three_fires_while_holding("skip", make_engine, until)
    assert await runs(engine) == {wid(1): "running"}
    assert [f.skipped for f in await fired(engine, "o")] == ["", "overlap", "overlap"]
    assert (await engine.describe_schedule(NS, "o")).skipped_count == 2


async def test_overlap_allow_all(make_engine, until) -> None:
    engine, _ = await _three_fires_while_holding("allow_all", make_engine, until)
    assert await runs(engine) == {wid(1): "running", wid(2): "running", wid(3): "running"}


async def test_overlap_buffer_one(make_engine, until) -> None:
    engine, _ = await _three_fires_while_holding("buffer_one", make_engine, until)
    assert await runs(engine) == {wid(1): "running"}
    assert [f.skipped for f in await fired(engine, "o")] == ["", "buffer_full"]
    async with worker(engine):
        await _release(engine, wid(1))
        await until(lambda: _status(engine, wid(2), "running"))
    assert (await runs(engine))[wid(1)] == "completed"
    assert wid(3) not in await runs(engine)


async def test_overlap_buffer_all(make_engine, until) -> None:
    engine, _ = await _three_fires_while_holding("buffer_all", make_engine, until)
    assert (await engine.describe_schedule(NS, "o")).buffered == 2
    async with worker(engine):
        await _release(engine, wid(1))
        await until(lambda: _status(engine, wid(2), "running"))
        assert wid(3) not in await runs(engine)
        await _release(engine, wid(2))
        await until(lambda: _status(engine, wid(3), "running"))
    assert (await engine.describe_schedule(NS, "o")).buffered == 0


@pytest.mark.parametrize(
    ("policy", "closed"), [("cancel_other", "canceled"), ("terminate_other", "terminated")]
)
async def test_overlap_cancel_or_terminate_the_other(
    make_engine, until, policy: str, closed: str
) -> None:
    engine, clock = await make_engine()
    await engine.create_schedule(
        NS, "o", {"kind": "cron", "cron": "0 * * * * ?", "overlap": policy}, action("Hold")
    )
    async with worker(engine):
        await run_to(engine, clock, at_minute(3), until, idle=True)
        await until(lambda: _status(engine, wid(3), "running"))
    found = await runs(engine)
    assert found == {wid(1): closed, wid(2): closed, wid(3): "running"}
    actions = [
        e.attributes.action
        for e in await engine.get_schedule_history(NS, "o")
        if e.event_type == "overlap_action"
    ]
    verb = policy.split("_")[0]
    assert actions.count(f"{verb}_requested") == 2
    _, history = await engine.get_history(NS, wid(1))
    kind = (
        "workflow_execution_cancel_requested"
        if closed == "canceled"
        else "workflow_execution_terminated"
    )
    asked = next(e for e in history if e.event_type == kind)
    assert asked.attributes.identity == "schedule:o"  # who asked it to stop


async def _status(engine: Engine, workflow_id: str, status: str) -> bool:
    return (await runs(engine)).get(workflow_id) == status


# --------------------------------------------------------------------------- operations


async def test_operations_are_recorded_with_their_actor(make_engine, until) -> None:
    engine, clock = await make_engine()
    spec = {"kind": "cron", "cron": "0 0 9 * * ?", "overlap": "allow_all"}
    await engine.create_schedule(NS, "ops", spec, action("Hold"), identity="alice")
    with pytest.raises(ScheduleAlreadyExistsError):
        await engine.create_schedule(NS, "ops", spec, action(), identity="mallory")
    await engine.update_schedule(NS, "ops", spec={**spec, "cron": "0 0 10 * * ?"}, identity="bob")
    await engine.pause_schedule(NS, "ops", note="audit", identity="carol")
    result = await engine.trigger_schedule(NS, "ops", identity="dave")
    assert result.outcome == "started" and result.workflow_id == "ops/2026-03-02T00:00:30Z"
    clock.advance_to(ms(T0) + 3 * 86_400_000)
    backfill = await engine.backfill_schedule(
        NS, "ops", T0, T0 + timedelta(days=2), identity="erin"
    )
    assert backfill.fire_count == 2
    await until(lambda: _backfilled(engine, 3))
    await engine.unpause_schedule(NS, "ops", identity="frank")
    # Unpaused three days later: the catch-up policy (latest) runs the last missed fire.
    await until(lambda: _backfilled(engine, 4))
    listed = await engine.list_schedules(NS)
    assert [s.schedule_id for s in listed] == ["ops"]
    await engine.delete_schedule(NS, "ops", identity="grace", reason="retired")
    with pytest.raises(ScheduleNotFoundError):
        await engine.describe_schedule(NS, "ops")
    assert await engine.list_schedules(NS) == []
    history = await engine.get_schedule_history(NS, "ops")
    changes = [(e.event_type, e.identity) for e in history if e.identity != "cadenza"]
    assert changes == [
        ("created", "alice"),
        ("updated", "bob"),
        ("paused", "carol"),
        ("triggered", "dave"),
        ("backfill_requested", "erin"),
        ("unpaused", "frank"),
        ("deleted", "grace"),
    ]
    update = next(e for e in history if e.event_type == "updated").attributes
    assert [(c.field, c.old, c.new) for c in update.changes] == [
        ("spec.cron", "0 0 9 * * ?", "0 0 10 * * ?")
    ]
    started = sorted(await runs(engine))
    assert started == [
        "ops/2026-03-02T00:00:30Z",  # the trigger
        "ops/2026-03-02T03:00:00Z",  # backfill: 10:00 in Ho Chi Minh City, 2 and 3 March
        "ops/2026-03-03T03:00:00Z",
        "ops/2026-03-04T03:00:00Z",  # caught up on unpause
    ]
    # Deleting keeps the audit log; creating the id again continues its chain.
    await engine.create_schedule(NS, "ops", spec, action(), identity="heidi")
    assert (await engine.verify_schedule_history(NS, "ops")).ok
    assert (await event_types(engine, "ops"))[-1] == "created"


async def _backfilled(engine: Engine, count: int) -> bool:
    description = await engine.describe_schedule(NS, "ops")
    return not description.backfill_pending and len(await runs(engine)) == count


async def test_preview_needs_no_schedule(make_engine) -> None:
    engine, _ = await make_engine()
    times = await engine.preview_schedule(
        {"kind": "cron", "cron": "0 0 18 * * ?", "calendar": "VN", "nth_business_day": "last"},
        count=2,
        after=datetime(2026, 4, 1, tzinfo=UTC),
    )
    assert [t.nominal_time for t in times] == [
        datetime(2026, 4, 29, 11, 0, tzinfo=UTC),
        datetime(2026, 5, 29, 11, 0, tzinfo=UTC),
    ]
    assert await engine.list_schedules(NS) == []


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"kind": "cron", "cron": "0 0 25 * * ?"}, "spec.cron"),
        ({"kind": "cron", "cron": "0 0 9 * * ?", "timezone": "Asia/Saigonn"}, "spec.timezone"),
        (
            {
                "kind": "cron",
                "cron": "0 0 9 * * ?",
                "start": "2026-05-01T00:00:00Z",
                "end": "2026-04-01T00:00:00Z",
            },
            "spec.end",
        ),
        ({"kind": "fixed_rate", "every": "0s"}, "spec.every"),
        ({"kind": "fixed_delay", "every": -30}, "spec.every"),
        ({"kind": "cron", "cron": "0 0 9 ? * SUN", "calendar": "weekends-only"}, "calendar"),
        ({"kind": "one_time", "at": "2020-01-01T00:00:00Z"}, "at"),
    ],
)
async def test_bad_specs_create_nothing(make_engine, spec: dict, field: str) -> None:
    engine, _ = await make_engine()
    with pytest.raises(InvalidArgumentError) as caught:
        await engine.create_schedule(NS, "bad", spec, action(), identity="x")
    assert caught.value.field == field
    with pytest.raises(ScheduleNotFoundError):
        await engine.get_schedule_history(NS, "bad")
    assert await engine.list_schedules(NS) == []


async def test_bad_changes_leave_the_schedule_unchanged(make_engine) -> None:
    engine, clock = await make_engine()
    spec = {"kind": "cron", "cron": "0 * * * * ?"}
    await engine.create_schedule(NS, "keep", spec, action())
    await engine.pause_schedule(NS, "keep")
    clock.advance_to(ms(T0) + 30 * 86_400_000)
    before = await engine.describe_schedule(NS, "keep")
    bad_calls = [
        engine.update_schedule(NS, "keep", spec={"kind": "cron", "cron": "nope"}),
        engine.update_schedule(NS, "keep", action=ScheduleAction(workflow_type="", task_queue="q")),
        engine.backfill_schedule(NS, "keep", T0 + timedelta(days=2), T0 + timedelta(days=1)),
        engine.backfill_schedule(NS, "keep", T0, T0 + timedelta(days=20)),  # > 10,000 fires
        engine.backfill_schedule(NS, "keep", T0, datetime(2030, 1, 1, tzinfo=UTC)),
        engine.trigger_schedule(NS, "keep", overlap="sometimes"),
        engine.create_schedule(NS, "", spec, action()),
    ]
    for call in bad_calls:
        with pytest.raises(InvalidArgumentError):
            await call
    after = await engine.describe_schedule(NS, "keep")
    assert after.version == before.version and after.history_length == before.history_length
    assert await runs(engine) == {}


# --------------------------------------------------------------------------- fire ahead


async def _first_task(engine: Engine, workflow_id: str) -> tuple[int, str | None]:
    """(visible_at_ms, lease_owner) of a run's pending workflow task."""
    async with engine.store._read() as conn:  # type: ignore[attr-defined]
        row = (
            await conn.execute(
                text(
                    "SELECT visible_at_ms, lease_owner FROM tasks "
                    "WHERE kind = 'workflow' AND workflow_id = :wid"
                ),
                {"wid": workflow_id},
            )
        ).one()
        return int(row[0]), row[1]


async def test_a_fire_written_ahead_is_held_until_its_time(make_engine, until) -> None:
    engine, clock = await make_engine()
    spec = {"kind": "cron", "cron": "0 * * * * ?", "overlap": "allow_all"}
    await engine.create_schedule(NS, "ahead", spec, action())
    wid = "ahead/2026-03-02T00:01:00Z"
    async with worker(engine):
        # One second (schedule_fire_ahead) before minute 1 the run is written ...
        clock.advance_to(at_minute(1) - 1000)
        await until(lambda: _has_run(engine, wid))
        assert await _first_task(engine, wid) == (at_minute(1), None)
        # ... and no worker gets it while its time has not come.
        clock.advance_to(at_minute(1) - 1)
        await settle(engine, until, idle=True)
        assert (await runs(engine))[wid] == "running"
        # At minute 1 the held task becomes visible and a waiting worker is woken for it.
        clock.advance_to(at_minute(1))
        await until(lambda: _status_is(engine, wid, "completed"))
    events = (await engine.get_history(NS, wid))[1]
    assert ms(events[0].event_time) == at_minute(1) - 1000
    assert ms(events[0].attributes.trigger.actual_time) == at_minute(1)
    started = next(e for e in events if e.event_type == "workflow_task_started")
    assert ms(started.event_time) >= at_minute(1)
    [fire] = await fired(engine, "ahead")
    assert ms(fire.actual_time) == at_minute(1)


async def test_a_pause_before_the_time_of_a_run_written_ahead_terminates_it(
    make_engine, until
) -> None:
    engine, clock = await make_engine()
    spec = {"kind": "cron", "cron": "0 * * * * ?"}
    await engine.create_schedule(NS, "recall", spec, action())
    wid = "recall/2026-03-02T00:01:00Z"
    async with worker(engine):
        clock.advance_to(at_minute(1) - 1000)
        await until(lambda: _has_run(engine, wid))
        await engine.pause_schedule(NS, "recall", note="freeze", identity="ops")
        await until(lambda: _status_is(engine, wid, "terminated"))
        clock.advance_to(at_minute(1) + 5000)
        await settle(engine, until, idle=True)
    events = (await engine.get_history(NS, wid))[1]
    assert [e.event_type for e in events if e.event_type.startswith("workflow_task")] == [
        "workflow_task_scheduled"
    ]  # the workflow never ran
    assert "paused, changed or deleted before this run's time" in events[-1].attributes.reason
    history = await event_types(engine, "recall")
    assert history[-1] == "run_closed"
    assert (await engine.describe_schedule(NS, "recall")).recent_runs[0].status == "terminated"


async def test_without_fire_ahead_a_fire_is_written_at_its_time(make_engine, until) -> None:
    engine, clock = await make_engine(schedule_fire_ahead=0)
    spec = {"kind": "cron", "cron": "0 * * * * ?", "overlap": "allow_all"}
    await engine.create_schedule(NS, "exact", spec, action())
    clock.advance_to(at_minute(1) - 1)
    await settle(engine, until, idle=False)
    assert await runs(engine) == {}
    clock.advance_to(at_minute(1))
    wid = "exact/2026-03-02T00:01:00Z"
    await until(lambda: _has_run(engine, wid))
    events = (await engine.get_history(NS, wid))[1]
    assert ms(events[0].event_time) == at_minute(1)


async def test_a_held_task_notice_from_another_server_wakes_a_poller_at_its_time(
    make_engine,
) -> None:
    engine, clock = await make_engine()
    key = ("workflow", NS, "q")
    ticket = engine.notifier.ticket(key)
    engine.on_cluster_notice(f"other-server|t|workflow|{NS}|q|{clock.now_ms() + 500}")
    await asyncio.sleep(0.05)
    assert not ticket.done()
    clock.advance_to(clock.now_ms() + 500)
    await asyncio.wait_for(ticket, 5)


async def _has_run(engine: Engine, workflow_id: str) -> bool:
    return workflow_id in await runs(engine)


async def _status_is(engine: Engine, workflow_id: str, status: str) -> bool:
    return (await runs(engine)).get(workflow_id) == status


async def test_a_held_task_is_announced_to_other_servers_for_its_release_time(
    make_engine,
) -> None:
    engine, clock = await make_engine()
    release = clock.now_ms() + 800

    def mutation(release_ms: int | None) -> Any:
        return engine.new_run_mutation(
            shard_id=0,
            namespace=NS,
            workflow_id="held",
            run_id="r1",
            started=WorkflowExecutionStarted(
                workflow_type="Tick", task_queue="q", first_run_id="r1", random_seed=1
            ),
            release_ms=release_ms,
        )

    held = mutation(release)
    engine._cluster_notices(held)
    # Only the release-time notice: pollers elsewhere are not woken for nothing now.
    assert held.notify == [f"{engine.owner}|t|workflow|{NS}|q|{release}"]
    now = mutation(None)
    engine._cluster_notices(now)
    assert now.notify == [f"{engine.owner}|t|workflow|{NS}|q"]


@pytest.mark.parametrize("paused", [True, False])
async def test_a_start_written_ahead_for_another_server_is_dropped_if_the_schedule_paused(
    make_engine, until, paused: bool
) -> None:
    # The message another server's fire leaves in the run's shard, carried out here before
    # the run's time: started (and held) unless the schedule was paused meanwhile.
    from cadenza.engine._schedule_logic import START_KIND
    from cadenza.history import TimerRecord

    engine, clock = await make_engine(schedule_fire_ahead=0)
    spec = {"kind": "cron", "cron": "0 * * * * ?", "overlap": "allow_all"}
    await engine.create_schedule(NS, "remote", spec, action())
    if paused:
        await engine.pause_schedule(NS, "remote", note="freeze", identity="ops")
    wid = "remote/2026-03-02T00:01:00Z"
    clock.advance_to(at_minute(1) - 800)
    message = TimerRecord(
        shard_id=engine.shard_of(NS, wid),
        timer_key=f"{START_KIND}:{NS}:{wid}:",
        fire_at_ms=clock.now_ms(),
        namespace=NS,
        workflow_id=wid,
        run_id="",
        kind=START_KIND,
        ref_event_id=0,
        attempt=0,
    )
    await engine._start_for_schedule(message)
    if paused:
        assert await runs(engine) == {}
    else:
        assert (await runs(engine))[wid] == "running"
        assert await _first_task(engine, wid) == (at_minute(1), None)
