"""Schedule math: every kind, bounds, jitter, DST policies across real transitions, calendars,
and bad input (timers/_schedule_eval.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cadenza.history import InvalidArgumentError
from cadenza.timers._calendars import get_calendar
from cadenza.timers._schedule_eval import (
    ScheduleEvaluator,
    format_nominal,
    preview_fire_times,
)
from cadenza.timers._spec import decode_schedule_spec


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def nominal(spec: dict, after: str, count: int = 5, schedule_id: str = "") -> list[str]:
    fires = preview_fire_times(
        decode_schedule_spec(spec), after=utc(after), count=count, schedule_id=schedule_id
    )
    return [format_nominal(ms(f.nominal)) for f in fires]


def local(spec: dict, after: str, count: int = 5) -> list[str]:
    parsed = decode_schedule_spec(spec)
    zone = ZoneInfo(parsed.timezone)
    fires = preview_fire_times(parsed, after=utc(after), count=count)
    return [f.nominal.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %z") for f in fires]


# --------------------------------------------------------------------------- kinds


def test_cron_in_the_default_zone() -> None:
    spec = {"kind": "cron", "cron": "0 30 9 ? * MON-FRI"}
    assert nominal(spec, "2026-01-02T03:00:00Z", 3) == [
        "2026-01-05T02:30:00Z",
        "2026-01-06T02:30:00Z",
        "2026-01-07T02:30:00Z",
    ]


def test_fixed_rate_aligned_to_start() -> None:
    spec = {"kind": "fixed_rate", "every": "25m", "start": "2026-03-01T10:07:00Z"}
    assert nominal(spec, "2026-02-01T00:00:00Z", 3) == [
        "2026-03-01T10:07:00Z",
        "2026-03-01T10:32:00Z",
        "2026-03-01T10:57:00Z",
    ]
    assert nominal(spec, "2026-03-01T11:00:00Z", 1) == ["2026-03-01T11:22:00Z"]


def test_fixed_rate_without_start_is_aligned_to_local_midnight() -> None:
    # Asia/Ho_Chi_Minh was UTC+8 in 1970; the grid uses the zone's standard offset of today.
    daily = {"kind": "fixed_rate", "every": "1d"}
    assert local(daily, "2026-05-05T09:00:00Z", 2) == [
        "Wed 2026-05-06 00:00 +0700",
        "Thu 2026-05-07 00:00 +0700",
    ]
    quarter = {"kind": "fixed_rate", "every": "15m"}
    assert nominal(quarter, "2026-05-05T09:01:00Z", 2) == [
        "2026-05-05T09:15:00Z",
        "2026-05-05T09:30:00Z",
    ]


def test_one_time_fires_once_in_the_schedule_zone() -> None:
    spec = {"kind": "one_time", "at": "2026-04-01T09:00:00"}
    assert nominal(spec, "2026-03-01T00:00:00Z", 5) == ["2026-04-01T02:00:00Z"]
    assert nominal(spec, "2026-04-01T02:00:00Z", 5) == []


def test_fixed_delay_counts_from_a_base_and_previews_runs_of_no_length() -> None:
    spec = decode_schedule_spec(
        {"kind": "fixed_delay", "every": "30s", "start": "2026-03-28T00:00:00Z"}
    )
    evaluator = ScheduleEvaluator(spec)
    start = ms(utc("2026-03-28T00:00:00Z"))
    assert evaluator.first_fire(start - 60_000) == start
    assert evaluator.first_fire(start + 5_000) == start + 5_000
    assert evaluator.delay_due(start + 91_000) == start + 91_000
    assert nominal(
        {"kind": "fixed_delay", "every": "30s", "start": "2026-03-28T00:00:00Z"},
        "2026-03-27T00:00:00Z",
        3,
    ) == ["2026-03-28T00:00:00Z", "2026-03-28T00:00:30Z", "2026-03-28T00:01:00Z"]


def test_start_and_end_bound_every_kind() -> None:
    bounds = {"start": "2026-03-02T00:00:00Z", "end": "2026-03-04T00:00:00Z"}
    cron = nominal({"kind": "cron", "cron": "0 0 12 * * ?", **bounds}, "2026-01-01T00:00:00Z")
    assert cron == ["2026-03-02T05:00:00Z", "2026-03-03T05:00:00Z"]
    rate = nominal({"kind": "fixed_rate", "every": "1d", **bounds}, "2026-01-01T00:00:00Z")
    assert rate == ["2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z", "2026-03-04T00:00:00Z"]


def test_max_runs_limits_the_preview() -> None:
    spec = {"kind": "cron", "cron": "0 * * * * ?", "max_runs": 2}
    assert len(nominal(spec, "2026-01-01T00:00:00Z", 10)) == 2


def test_jitter_is_deterministic_per_schedule_and_nominal_time() -> None:
    spec = decode_schedule_spec({"kind": "cron", "cron": "0 * * * * ?", "jitter": "30s"})
    a = ScheduleEvaluator(spec, schedule_id="a")
    again = ScheduleEvaluator(spec, schedule_id="a")
    b = ScheduleEvaluator(spec, schedule_id="b")
    base = ms(utc("2026-01-01T00:00:00Z"))
    offsets = [a.jitter_ms(base + i * 60_000) for i in range(200)]
    assert offsets == [again.jitter_ms(base + i * 60_000) for i in range(200)]
    assert offsets != [b.jitter_ms(base + i * 60_000) for i in range(200)]
    assert all(0 <= o < 30_000 for o in offsets)
    assert len(set(offsets)) > 150  # spread, not constant
    fire = preview_fire_times(spec, after=utc("2026-01-01T00:00:00Z"), count=1, schedule_id="a")[0]
    assert fire.nominal == utc("2026-01-01T00:01:00Z")
    assert fire.actual == fire.nominal + timedelta(milliseconds=a.jitter_ms(ms(fire.nominal)))


def test_format_nominal() -> None:
    assert format_nominal(ms(utc("2026-03-28T01:30:00Z"))) == "2026-03-28T01:30:00Z"
    assert format_nominal(ms(utc("2026-03-28T01:30:00Z")) + 250) == "2026-03-28T01:30:00.250Z"


# --------------------------------------------------------------------------- DST


BERLIN_SPRING = "2026-03-28T12:00:00Z"  # clocks jump 02:00 -> 03:00 on the 29th
BERLIN_FALL = "2026-10-24T12:00:00Z"  # clocks fall back 03:00 -> 02:00 on the 25th


@pytest.mark.parametrize(
    ("dst", "expected"),
    [
        ({}, ["Mon 2026-03-30 02:30 +0200", "Tue 2026-03-31 02:30 +0200"]),
        ({"nonexistent": "skip"}, ["Mon 2026-03-30 02:30 +0200", "Tue 2026-03-31 02:30 +0200"]),
        (
            {"nonexistent": "shift_forward"},
            ["Sun 2026-03-29 03:30 +0200", "Mon 2026-03-30 02:30 +0200"],
        ),
    ],
)
def test_dst_gap_policies(dst: dict, expected: list[str]) -> None:
    spec = {"kind": "cron", "cron": "0 30 2 * * ?", "timezone": "Europe/Berlin", "dst": dst}
    assert local(spec, BERLIN_SPRING, 2) == expected


@pytest.mark.parametrize(
    ("dst", "expected"),
    [
        ({}, ["2026-10-25T01:30:00Z", "2026-10-26T01:30:00Z"]),
        ({"ambiguous": "first"}, ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]),
        ({"ambiguous": "last"}, ["2026-10-25T01:30:00Z", "2026-10-26T01:30:00Z"]),
        ({"ambiguous": "both"}, ["2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"]),
    ],
)
def test_dst_repeated_hour_policies(dst: dict, expected: list[str]) -> None:
    spec = {"kind": "cron", "cron": "0 30 2 * * ?", "timezone": "Europe/Berlin", "dst": dst}
    assert nominal(spec, BERLIN_FALL, 2) == expected


# --------------------------------------------------------------------------- calendars

TET = "2026-02-12T00:00:00Z"  # VN: Tết holidays Sat 14 to Sun 22 February 2026


def test_exclude_drops_fires_on_holidays_and_weekends() -> None:
    spec = {"kind": "cron", "cron": "0 0 9 * * ?", "calendar": "VN"}
    assert local(spec, TET, 3) == [
        "Thu 2026-02-12 09:00 +0700",
        "Fri 2026-02-13 09:00 +0700",
        "Mon 2026-02-23 09:00 +0700",
    ]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("exclude", ["Tue 2026-04-14 09:00 +0700"]),
        ("roll_following", ["Mon 2026-02-23 09:00 +0700", "Mon 2026-03-16 09:00 +0700"]),
        ("roll_preceding", ["Fri 2026-02-13 09:00 +0700", "Fri 2026-03-13 09:00 +0700"]),
        ("modified_following", ["Mon 2026-02-23 09:00 +0700", "Mon 2026-03-16 09:00 +0700"]),
    ],
)
def test_calendar_modes_on_the_14th(mode: str, expected: list[str]) -> None:
    # 14 Feb 2026 is in Tết, 14 Mar is a Saturday, 14 Apr a Tuesday.
    spec = {"kind": "cron", "cron": "0 0 9 14 * ?", "calendar": "VN", "calendar_mode": mode}
    assert local(spec, "2026-01-20T00:00:00Z", len(expected)) == expected


def test_modified_following_stays_in_the_month() -> None:
    # 31 May 2026 is a Sunday: following would be 1 June, so it rolls back to Friday 29 May.
    spec = {
        "kind": "cron",
        "cron": "0 0 9 L * ?",
        "calendar": "VN",
        "calendar_mode": "modified_following",
    }
    assert local(spec, "2026-05-20T00:00:00Z", 1) == ["Fri 2026-05-29 09:00 +0700"]
    following = {**spec, "calendar_mode": "roll_following"}
    assert local(following, "2026-05-20T00:00:00Z", 1) == ["Mon 2026-06-01 09:00 +0700"]


def test_fires_that_roll_to_the_same_instant_fire_once() -> None:
    spec = {
        "kind": "cron",
        "cron": "0 0 9 * * ?",
        "calendar": "VN",
        "calendar_mode": "roll_following",
    }
    fires = local(spec, TET, 3)
    assert fires == [
        "Thu 2026-02-12 09:00 +0700",
        "Fri 2026-02-13 09:00 +0700",
        "Mon 2026-02-23 09:00 +0700",
    ]


def test_nth_and_last_business_day_of_the_month() -> None:
    last = {"kind": "cron", "cron": "0 0 18 * * ?", "calendar": "VN", "nth_business_day": "last"}
    assert local(last, "2026-01-01T00:00:00Z", 4) == [
        "Fri 2026-01-30 18:00 +0700",
        "Fri 2026-02-27 18:00 +0700",
        "Tue 2026-03-31 18:00 +0700",
        "Wed 2026-04-29 18:00 +0700",  # 30/4 and 1/5 are holidays
    ]
    second = {**last, "nth_business_day": 2}
    calendar = get_calendar("VN")
    expected = [calendar.nth_business_day(2026, m, 2) for m in (2, 3, 4)]
    got = [
        datetime.strptime(text[4:14], "%Y-%m-%d").date()
        for text in local(second, "2026-01-31T00:00:00Z", 3)
    ]
    assert got == expected


def test_last_at_or_before_matches_enumeration() -> None:
    spec = decode_schedule_spec({"kind": "cron", "cron": "0 0/7 * * * ?", "calendar": "VN"})
    evaluator = ScheduleEvaluator(spec)
    lo = ms(utc("2026-02-10T00:00:00Z"))
    for days in (1, 3, 12):
        hi = lo + days * 86_400_000 + 12_345
        fires, more = evaluator.fires_between(lo, hi, 100_000)
        assert not more
        expected = fires[-1] if fires else None
        assert evaluator.last_at_or_before(lo, hi) == expected


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"kind": "cron", "cron": "0 0 25 * * ?"}, "cron"),
        ({"kind": "cron", "cron": "0 0 2 * * ?", "timezone": "Mars/Olympus"}, "timezone"),
        (
            {
                "kind": "cron",
                "cron": "0 0 2 * * ?",
                "start": "2026-02-01T00:00:00Z",
                "end": "2026-01-01T00:00:00Z",
            },
            "end",
        ),
        ({"kind": "fixed_rate", "every": "0s"}, "every"),
        ({"kind": "fixed_delay", "every": "-5m"}, "every"),
        ({"kind": "cron", "cron": "0 0 9 ? * SAT,SUN", "calendar": "weekends-only"}, "calendar"),
        ({"kind": "cron", "cron": "0 0 9 * * ?", "calendar": "nowhere"}, "calendar"),
    ],
)
def test_bad_specs_name_the_field(spec: dict, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        preview_fire_times(decode_schedule_spec(spec), after=utc("2026-01-01T00:00:00Z"))
    assert caught.value.field == field


def test_fixed_delay_cannot_roll_backwards() -> None:
    spec = decode_schedule_spec(
        {"kind": "fixed_delay", "every": "1h", "calendar": "VN", "calendar_mode": "roll_preceding"}
    )
    with pytest.raises(InvalidArgumentError) as caught:
        ScheduleEvaluator(spec)
    assert caught.value.field == "calendar_mode"


def test_a_schedule_without_fires_left_is_rejected_when_required() -> None:
    spec = decode_schedule_spec({"kind": "one_time", "at": "2020-01-01T00:00:00Z"})
    now = ms(utc("2026-01-01T00:00:00Z"))
    evaluator = ScheduleEvaluator(spec)
    evaluator.check_fires(now, require_fire=False)
    with pytest.raises(InvalidArgumentError) as caught:
        evaluator.check_fires(now)
    assert caught.value.field == "at"
    ended = decode_schedule_spec(
        {"kind": "cron", "cron": "0 0 9 * * ?", "end": "2025-01-01T00:00:00Z"}
    )
    with pytest.raises(InvalidArgumentError) as caught:
        ScheduleEvaluator(ended).check_fires(now)
    assert caught.value.field == "end"


def test_preview_rejects_bad_count_and_naive_after() -> None:
    spec = decode_schedule_spec({"kind": "cron", "cron": "0 0 9 * * ?"})
    with pytest.raises(InvalidArgumentError) as caught:
        preview_fire_times(spec, count=0)
    assert caught.value.field == "count"
    with pytest.raises(InvalidArgumentError) as caught:
        preview_fire_times(spec, after=datetime(2026, 1, 1))
    assert caught.value.field == "after"


def test_dates_beyond_the_calendar_years_end_the_schedule() -> None:
    spec = decode_schedule_spec({"kind": "cron", "cron": "0 0 9 * * ?", "calendar": "VN"})
    evaluator = ScheduleEvaluator(spec)
    late = ms(datetime(2198, 12, 30, tzinfo=UTC))
    found = evaluator.next_after(late)
    assert found is None or datetime.fromtimestamp(found / 1000, UTC).date() <= date(2198, 12, 31)
