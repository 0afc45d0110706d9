"""The schedule state machine without a database (engine/_schedule_logic.py): catch-up and
overlap policies, backfill validation, the audit chain, and that a refused operation changes
nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cadenza.engine._schedule_api import ScheduleAction
from cadenza.engine._schedule_logic import ScheduleChange
from cadenza.history import InvalidArgumentError
from cadenza.history._schedule_records import (
    ScheduleAlreadyExistsError,
    ScheduleNotFoundError,
    ScheduleRecord,
    verify_schedule_chain,
)
from cadenza.timers._spec import decode_schedule_spec

ACTION = ScheduleAction(workflow_type="Report", task_queue="q")
T0 = int(datetime(2026, 3, 2, 0, 0, 30, tzinfo=UTC).timestamp() * 1000)
MINUTE = 60_000


class Sim:
    """Applies changes in memory the way the store would (version, chain head, events)."""

    def __init__(self, spec: dict[str, Any], now: int = T0) -> None:
        self.record: ScheduleRecord | None = None
        self.events: list = []
        self.apply(now, lambda c: c.create(decode_schedule_spec(spec), ACTION, "alice"))

    def change(self, now: int, **kw: Any) -> ScheduleChange:
        return ScheduleChange(
            shard_id=0,
            namespace="default",
            schedule_id="s",
            record=self.record,
            now_ms=now,
            **kw,
        )

    def apply(self, now: int, operate: Any, **kw: Any) -> ScheduleChange:
        change = self.change(now, **kw)
        operate(change)
        if change.changed:
            write = change.to_write()
            self.record = write.record
            self.events.extend(write.events)
        return change

    def fire(self, now: int, **kw: Any) -> ScheduleChange:
        return self.apply(now, lambda c: c.fire_due(), **kw)

    def types(self) -> list[str]:
        return [e.event_type for e in self.events]

    def fired(self) -> list[Any]:
        return [e.attributes for e in self.events if e.event_type == "fired"]


def minute(n: int) -> int:
    """The nominal time of the n-th whole minute after T0's minute."""
    return T0 - 30_000 + n * MINUTE


def test_create_records_the_actor_and_the_first_fire() -> None:
    sim = Sim({"kind": "cron", "cron": "0 * * * * ?"})
    change = sim.change(T0)
    assert change.state.next_nominal_ms == minute(1)
    assert change.timer_ms == minute(1)
    assert sim.types() == ["created"]
    assert sim.events[0].identity == "alice"
    with pytest.raises(ScheduleAlreadyExistsError):
        sim.change(T0).create(
            decode_schedule_spec({"kind": "cron", "cron": "0 * * * * ?"}), ACTION, "x"
        )


def test_a_due_fire_starts_a_run_with_the_derived_id_and_arms_the_next() -> None:
    sim = Sim({"kind": "cron", "cron": "0 * * * * ?"})
    change = sim.fire(minute(1) + 5)
    assert [s.workflow_id for s in change.starts] == ["s/2026-03-02T00:01:00Z"]
    assert change.starts[0].nominal_ms == minute(1)
    assert change.timer_ms == minute(2)
    fired = sim.fired()[0]
    assert fired.workflow_id == "s/2026-03-02T00:01:00Z" and fired.run_id
    assert sim.events[-1].identity == "cadenza"
    assert verify_schedule_chain("default", "s", sim.events).ok


def test_nothing_due_changes_nothing() -> None:
    sim = Sim({"kind": "cron", "cron": "0 * * * * ?"})
    change = sim.fire(minute(1) - 1)
    assert not change.changed and not change.starts


@pytest.mark.parametrize(
    ("mode", "started", "missed"),
    [
        ("all", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0),
        ("latest", [9, 10], 8),
        ("none", [9, 10], 8),
    ],
)
def test_catch_up_after_downtime(mode: str, started: list[int], missed: int) -> None:
    spec = {
        "kind": "cron",
        "cron": "0 * * * * ?",
        "catch_up": {"window": "90s", "mode": mode},
        "overlap": "allow_all",
    }
    sim = Sim(spec)
    change = sim.fire(minute(10) + 10_000)  # down for ten minutes
    assert [s.nominal_ms for s in change.starts] == [minute(n) for n in started]
    skipped = [f for f in sim.fired() if f.skipped == "missed"]
    assert sum(f.skipped_count for f in skipped) == missed
    assert change.state.next_nominal_ms == minute(11)


def test_latest_runs_only_the_most_recent_when_none_is_on_time() -> None:
    spec = {"kind": "cron", "cron": "0 * * * * ?", "catch_up": {"window": "10s", "mode": "latest"}}
    sim = Sim(spec)
    change = sim.fire(minute(10) + 30_000)
    assert [s.nominal_ms for s in change.starts] == [minute(10)]
    skipped = [f for f in sim.fired() if f.skipped == "missed"]
    assert skipped[0].skipped_count == 9
    none = Sim({**spec, "catch_up": {"window": "10s", "mode": "none"}})
    assert not none.fire(minute(10) + 30_000).starts


def test_a_long_backlog_is_processed_in_chunks() -> None:
    spec = {
        "kind": "cron",
        "cron": "* * * * * ?",
        "catch_up": {"window": None, "mode": "all"},
        "overlap": "allow_all",
    }
    sim = Sim(spec)
    now = T0 + 250_000
    first = sim.fire(now)
    assert len(first.starts) == 100 and first.timer_ms == now  # continue at once
    second = sim.fire(now)
    assert second.starts[0].nominal_ms == first.starts[-1].nominal_ms + 1000


def _overlapping(policy: str) -> tuple[Sim, ScheduleChange]:
    sim = Sim({"kind": "cron", "cron": "0 * * * * ?", "overlap": policy})
    sim.fire(minute(1))
    return sim, sim.fire(minute(2))


def test_overlap_skip_and_allow_all() -> None:
    sim, second = _overlapping("skip")
    assert not second.starts and sim.fired()[-1].skipped == "overlap"
    sim, second = _overlapping("allow_all")
    assert len(second.starts) == 1
    # allow_all decides nothing on runs in progress: only the last runs are kept
    assert second.state.running == [] and len(second.state.recent) == 2


def test_overlap_buffer_one_keeps_one_and_starts_it_on_close() -> None:
    sim, second = _overlapping("buffer_one")
    assert not second.starts and len(second.state.buffer) == 1
    third = sim.fire(minute(3))
    assert sim.fired()[-1].skipped == "buffer_full" and len(third.state.buffer) == 1
    run = third.state.running[0]
    closed = sim.apply(
        minute(3) + 100,
        lambda c: c.run_closed(run.workflow_id, run.run_id, "completed", minute(3) + 100),
    )
    assert [s.nominal_ms for s in closed.starts] == [minute(2)]
    assert closed.state.recent[0].status == "completed"


def test_overlap_buffer_all_starts_them_one_after_another() -> None:
    sim, _ = _overlapping("buffer_all")
    sim.fire(minute(3))
    for expected in (minute(2), minute(3)):
        run = sim.change(minute(4)).state.running[0]
        closed = sim.apply(
            minute(4), lambda c, r=run: c.run_closed(r.workflow_id, r.run_id, "failed", None)
        )
        assert [s.nominal_ms for s in closed.starts] == [expected]


@pytest.mark.parametrize(
    ("policy", "action"), [("cancel_other", "cancel"), ("terminate_other", "terminate")]
)
def test_overlap_cancel_or_terminate_the_other(policy: str, action: str) -> None:
    sim, second = _overlapping(policy)
    assert not second.starts
    write = second.to_write()
    assert [(m.kind, m.workflow_id, m.attempt) for m in write.messages] == [
        ("schedule_stop", "s/2026-03-02T00:01:00Z", 1 if action == "cancel" else 2)
    ]
    assert write.messages[0].run_id == second.state.running[0].run_id
    assert write.messages[0].fire_at_ms == minute(2)  # due now
    assert "overlap_action" in sim.types()


def test_a_run_in_a_shard_owned_elsewhere_is_started_by_its_owner() -> None:
    sim = Sim({"kind": "cron", "cron": "0 * * * * ?"})
    remote = {"shard_of": lambda _wid: 3, "owned": lambda shard: shard != 3}
    fire = sim.fire(minute(1), **remote)
    assert not fire.starts and fire.state.running[0].pending
    message = fire.to_write().messages[0]
    assert (message.kind, message.shard_id, message.workflow_id) == (
        "schedule_start",
        3,
        "s/2026-03-02T00:01:00Z",
    )
    assert sim.types() == ["created"]  # the fire is recorded when the owner reports
    overlap = sim.fire(minute(2), **remote)  # still counts as running: skipped
    assert not overlap.messages and sim.fired()[-1].skipped == "overlap"
    report = sim.apply(
        minute(2) + 50,
        lambda c: c.start_reported("s/2026-03-02T00:01:00Z", "run-7", "started", minute(1) + 40),
    )
    assert report.state.running[0].run_id == "run-7" and not report.state.running[0].pending
    fired = sim.fired()[-1]
    assert (fired.run_id, fired.skipped, fired.nominal_time.timestamp() * 1000) == (
        "run-7",
        "",
        minute(1),
    )
    again = sim.apply(
        minute(2) + 60,
        lambda c: c.start_reported("s/2026-03-02T00:01:00Z", "run-7", "started", minute(1)),
    )
    assert not again.changed  # a report delivered twice is recorded once


def test_run_status_reconciles_a_close_that_was_not_notified() -> None:
    sim, _ = _overlapping("skip")
    run = sim.change(minute(3)).state.running[0]
    change = sim.fire(minute(3), run_status={run.run_id: ("completed", minute(2) + 5)})
    assert [s.nominal_ms for s in change.starts] == [minute(3)]
    assert "run_closed" in sim.types()


def test_existing_derived_id_is_recorded_not_started_twice() -> None:
    sim = Sim({"kind": "cron", "cron": "0 * * * * ?"})
    wid = "s/2026-03-02T00:01:00Z"
    change = sim.fire(minute(1), existing={wid: ("run-1", "completed")})
    assert not change.starts
    assert sim.fired()[-1].skipped == "already_started" and sim.fired()[-1].run_id == "run-1"


def test_max_runs_stops_the_schedule() -> None:
    sim = Sim({"kind": "cron", "cron": "0 * * * * ?", "max_runs": 2, "overlap": "allow_all"})
    sim.fire(minute(1))
    last = sim.fire(minute(2))
    assert last.state.run_count == 2 and last.state.next_nominal_ms is None
    assert last.timer_ms is None


def test_fixed_delay_waits_for_the_close() -> None:
    sim = Sim({"kind": "fixed_delay", "every": "5m"})
    first = sim.fire(T0)
    assert len(first.starts) == 1 and first.timer_ms is None
    run = first.state.running[0]
    closed = sim.apply(
        T0 + 2 * MINUTE,
        lambda c: c.run_closed(run.workflow_id, run.run_id, "completed", T0 + 2 * MINUTE),
    )
    assert closed.state.next_nominal_ms == T0 + 7 * MINUTE


def test_pause_unpause_trigger_and_delete() -> None:
    sim = Sim({"kind": "cron", "cron": "0 0 9 * * ?"})
    paused = sim.apply(T0, lambda c: c.pause("freeze", "bob"))
    assert paused.timer_ms is None and sim.events[-1].identity == "bob"
    assert not sim.apply(T0, lambda c: c.pause("freeze", "bob")).changed
    triggered = sim.apply(T0 + 1, lambda c: c.trigger("carol"))
    assert triggered.starts[0].source == "trigger"
    assert triggered.starts[0].workflow_id == "s/2026-03-02T00:00:30.001Z"
    sim.apply(T0 + 2, lambda c: c.unpause("", "bob"))
    sim.apply(T0 + 3, lambda c: c.delete("dave"))
    assert sim.types() == ["created", "paused", "triggered", "fired", "unpaused", "deleted"]
    assert [e.identity for e in sim.events] == ["alice", "bob", "carol", "cadenza", "bob", "dave"]
    with pytest.raises(ScheduleNotFoundError):
        sim.change(T0 + 4).pause("", "x")
    assert verify_schedule_chain("default", "s", sim.events).ok


def test_update_records_a_field_diff_and_restarts_from_now() -> None:
    sim = Sim({"kind": "cron", "cron": "0 0 9 * * ?"})
    new = decode_schedule_spec({"kind": "cron", "cron": "0 0 10 * * ?", "jitter": "1m"})
    changed = sim.apply(T0, lambda c: c.update(new, None, "erin"))
    changes = sim.events[-1].attributes.changes
    assert {c.field for c in changes} == {"spec.cron", "spec.jitter"}
    assert next(c for c in changes if c.field == "spec.cron").old == "0 0 9 * * ?"
    assert changed.state.next_nominal_ms == int(
        datetime(2026, 3, 2, 3, 0, tzinfo=UTC).timestamp() * 1000
    )
    same = sim.apply(T0, lambda c: c.update(new, ACTION, "erin"))
    assert not same.changed


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        (minute(5), minute(1), "end"),  # reversed
        (minute(1), T0 + 10**9, "end"),  # in the future
        (minute(1) - 100 * 86_400_000, minute(1), "end"),  # more than 10,000 fires
        (minute(1) + 1, minute(1) + 2, "start"),  # no fire in the range
    ],
)
def test_bad_backfill_ranges_change_nothing(start: int, end: int, field: str) -> None:
    sim = Sim({"kind": "cron", "cron": "0 * * * * ?"}, now=minute(1) - 100 * 86_400_000)
    before = sim.record
    change = sim.change(minute(20))
    with pytest.raises(InvalidArgumentError) as caught:
        change.backfill(start, end, "frank")
    assert caught.value.field == field
    assert not change.head.events and sim.record is before


def test_backfill_runs_each_fire_with_its_nominal_time() -> None:
    sim = Sim({"kind": "cron", "cron": "0 * * * * ?", "overlap": "allow_all"})
    change = sim.apply(minute(30), lambda c: c.backfill(minute(2), minute(4), "grace", "allow_all"))
    assert [s.source for s in change.starts] == ["backfill"] * 3
    assert [s.nominal_ms for s in change.starts] == [minute(2), minute(3), minute(4)]
    assert sim.types()[1] == "backfill_requested" and sim.events[1].identity == "grace"


def test_bad_overlap_override_is_rejected() -> None:
    sim = Sim({"kind": "cron", "cron": "0 * * * * ?"})
    with pytest.raises(InvalidArgumentError) as caught:
        sim.change(T0).trigger("x", overlap="sometimes")
    assert caught.value.field == "overlap"


# --------------------------------------------------------------------------- fire ahead

LEAD = 1000


def test_fire_ahead_writes_the_run_early_and_holds_it_until_its_time() -> None:
    sim = Sim({"kind": "cron", "cron": "0 * * * * ?", "overlap": "allow_all"})
    assert sim.change(T0, lead_ms=LEAD).timer_ms == minute(1) - LEAD
    early = sim.fire(minute(1) - LEAD, lead_ms=LEAD)
    [start] = early.starts
    assert start.workflow_id == "s/2026-03-02T00:01:00Z"
    assert (start.actual_ms, start.release_ms) == (minute(1) - LEAD, minute(1))
    fired = sim.fired()[-1]
    assert fired.actual_time == datetime.fromtimestamp(minute(1) / 1000, UTC)
    [run] = [*early.state.running, *early.state.recent]
    assert run.actual_ms == minute(1)
    # allow_all: the next fire does not depend on the run, so it is armed one lead early.
    assert early.timer_ms == minute(2) - LEAD
    # What lists show as the next fire is its due time, not the timer's.
    assert early.to_write().record.next_fire_ms == minute(2)


def test_fire_ahead_is_not_taken_before_the_lead() -> None:
    sim = Sim({"kind": "cron", "cron": "0 * * * * ?"})
    change = sim.fire(minute(1) - LEAD - 1, lead_ms=LEAD)
    assert not change.starts and not change.changed


def test_no_fire_ahead_while_a_run_is_running_under_a_policy_that_depends_on_it() -> None:
    sim = Sim({"kind": "cron", "cron": "0 * * * * ?", "overlap": "skip"})
    first = sim.fire(minute(1) - LEAD, lead_ms=LEAD)
    assert len(first.starts) == 1
    # Run 1 still runs: whether the next fire is skipped is decided at its own time.
    assert first.timer_ms == minute(2)
    early = sim.fire(minute(2) - LEAD, lead_ms=LEAD)
    assert not early.starts and sim.fired()[-1].nominal_time.minute == 1
    run = early.state.running[0]
    sim.apply(
        minute(2) - 500,
        lambda c: c.run_closed(run.workflow_id, run.run_id, "completed", minute(2) - 500),
        lead_ms=LEAD,
    )
    on_time = sim.fire(minute(2), lead_ms=LEAD)
    assert [s.nominal_ms for s in on_time.starts] == [minute(2)]
    assert on_time.starts[0].release_ms == minute(2)


def test_an_every_second_schedule_writes_only_its_next_fire_ahead() -> None:
    sim = Sim({"kind": "cron", "cron": "* * * * * ?", "overlap": "skip"})
    first = sim.fire(T0, lead_ms=LEAD * 3)
    # Four fires fall within a 3 s lead, but the first one's run decides the others.
    assert [s.nominal_ms for s in first.starts] == [T0]
    assert first.state.next_nominal_ms == T0 + 1000
    assert first.timer_ms == T0 + 1000


def test_fixed_delay_never_fires_ahead() -> None:
    sim = Sim({"kind": "fixed_delay", "every": "PT1M"})
    nominal = sim.change(T0, lead_ms=LEAD).state.next_nominal_ms
    assert nominal is not None
    assert sim.change(T0, lead_ms=LEAD).timer_ms == nominal
    assert not sim.fire(nominal - LEAD, lead_ms=LEAD).starts


@pytest.mark.parametrize("operation", ["pause", "delete", "update"])
def test_a_run_written_ahead_is_terminated_by_a_change_before_its_time(operation: str) -> None:
    sim = Sim({"kind": "cron", "cron": "0 * * * * ?"})
    early = sim.fire(minute(1) - LEAD, lead_ms=LEAD)
    [start] = early.starts
    new_spec = decode_schedule_spec({"kind": "cron", "cron": "30 * * * * ?"})
    operate = {
        "pause": lambda c: c.pause("maintenance", "bob"),
        "delete": lambda c: c.delete("bob"),
        "update": lambda c: c.update(new_spec, None, "bob"),
    }[operation]
    change = sim.apply(minute(1) - 300, operate, lead_ms=LEAD)
    [message] = change.messages
    assert (message.kind, message.workflow_id, message.run_id, message.attempt) == (
        "schedule_stop",
        start.workflow_id,
        start.run_id,
        3,
    )
    # Once its time has come the run is the schedule's like any other: a pause leaves it.
    sim2 = Sim({"kind": "cron", "cron": "0 * * * * ?"})
    sim2.fire(minute(1) - LEAD, lead_ms=LEAD)
    assert not sim2.apply(minute(1) + 1, operate, lead_ms=LEAD).messages


def test_fire_ahead_on_time_fires_count_with_the_catch_up_window() -> None:
    spec = {"kind": "cron", "cron": "0 * * * * ?", "catch_up": {"mode": "none", "window": "PT5S"}}
    sim = Sim(spec)
    # After downtime: minute 1 and 2 are long missed, minute 3 is due within the lead.
    change = sim.fire(minute(3) - LEAD, lead_ms=LEAD)
    assert [s.nominal_ms for s in change.starts] == [minute(3)]
    assert sim.fired()[0].skipped == "missed"
