"""Schedule spec structs: durations, kinds, policies, validation and error translation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cadenza.history import InvalidArgumentError
from cadenza.timers._spec import (
    DEFAULT_TIMEZONE,
    AnyScheduleSpec,
    CatchUpPolicy,
    CronSchedule,
    DstPolicy,
    FixedDelaySchedule,
    FixedRateSchedule,
    OneTimeSchedule,
    ScheduleSpec,
    SpecFieldError,
    decode_schedule_spec,
    format_duration,
    format_path,
    parse_duration,
)

# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("250ms", timedelta(milliseconds=250)),
        ("1.5h", timedelta(minutes=90)),
        ("PT5M", timedelta(minutes=5)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("pt0.5s", timedelta(milliseconds=500)),
        (90, timedelta(seconds=90)),
        ("90", timedelta(seconds=90)),
        (0, timedelta(0)),
        (timedelta(hours=3), timedelta(hours=3)),
    ],
)
def test_parse_duration_accepts_every_spelling(text: object, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("3x", "expected a duration"),
        ("", "empty string"),
        ("1h1h", "given twice"),
        ("P1M", "years and months have no fixed length"),
        ("P1Y", "years and months have no fixed length"),
        (-5, "must not be negative"),
        ("-5m", "must not be negative"),
        (True, "expected a duration"),
        ([1], "expected a duration"),
        ("P", "expected a duration"),
    ],
)
def test_parse_duration_rejects_with_reason(value: object, reason: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        parse_duration(value, field="every")
    assert info.value.field == "every"
    assert reason in info.value.reason


@given(st.integers(min_value=0, max_value=10**9))
def test_format_duration_round_trips(milliseconds: int) -> None:
    value = timedelta(milliseconds=milliseconds)
    assert parse_duration(format_duration(value)) == value


def test_format_path_quotes_keys_that_are_not_names() -> None:
    assert format_path(("jobs", 0, "steps", 2, "retry")) == "jobs[0].steps[2].retry"
    assert format_path(("config", "headers", "X Y")) == 'config.headers["X Y"]'
    assert format_path(()) == ""


# --------------------------------------------------------------------------- kinds


def test_each_kind_decodes_with_defaults() -> None:
    cron = decode_schedule_spec({"kind": "cron", "cron": "0 0 2 * * ?"})
    assert isinstance(cron, CronSchedule)
    assert cron.kind == "cron"
    assert cron.timezone == DEFAULT_TIMEZONE == "Asia/Ho_Chi_Minh"
    assert cron.overlap == "skip"
    assert cron.catch_up == CatchUpPolicy(window=timedelta(seconds=60), mode="latest")
    assert cron.dst == DstPolicy(nonexistent="quartz", ambiguous="quartz")

    rate = decode_schedule_spec(
        {"kind": "fixed_rate", "every": "15m", "start": "2025-01-01 00:00", "jitter": "10s"}
    )
    assert isinstance(rate, FixedRateSchedule)
    assert rate.every == timedelta(minutes=15)
    assert rate.jitter == timedelta(seconds=10)
    assert rate.start == datetime(2025, 1, 1)
    assert rate.localize(rate.start) == datetime(2025, 1, 1, tzinfo=ZoneInfo(DEFAULT_TIMEZONE))

    delay = decode_schedule_spec({"kind": "fixed_delay", "every": 30, "max_runs": 5})
    assert isinstance(delay, FixedDelaySchedule)
    assert delay.every == timedelta(seconds=30)
    assert delay.max_runs == 5

    once = decode_schedule_spec({"kind": "one_time", "at": "2025-02-01T09:00:00Z"})
    assert isinstance(once, OneTimeSchedule)
    assert once.at == datetime(2025, 2, 1, 9, tzinfo=UTC)


def test_policies_and_calendar_options_decode() -> None:
    spec = decode_schedule_spec(
        {
            "kind": "cron",
            "id": "month-close",
            "cron": "0 0 9 ? * *",
            "timezone": "Europe/Berlin",
            "calendar": "vn",
            "calendar_mode": "modified_following",
            "nth_business_day": "last",
            "dst": {"nonexistent": "shift_forward", "ambiguous": "both"},
            "catch_up": {"window": None, "mode": "all"},
            "overlap": "buffer_one",
            "paused": True,
            "note": "quarter close",
        }
    )
    assert spec.effective_calendar_mode == "modified_following"
    assert spec.nth_business_day == "last"
    assert spec.dst.ambiguous == "both"
    assert spec.catch_up.window is None
    assert spec.catch_up.mode == "all"
    assert spec.paused and spec.note == "quarter close"
    assert str(spec.tzinfo) == "Europe/Berlin"
    assert (
        decode_schedule_spec(
            {"kind": "cron", "cron": "@daily", "calendar": "vn"}
        ).effective_calendar_mode
        == "exclude"
    )


@pytest.mark.parametrize(
    "overlap", ["skip", "buffer_one", "buffer_all", "cancel_other", "terminate_other", "allow_all"]
)
def test_every_overlap_policy_is_accepted(overlap: str) -> None:
    assert (
        decode_schedule_spec({"kind": "fixed_delay", "every": "1m", "overlap": overlap}).overlap
        == overlap
    )


def test_json_round_trip_is_stable() -> None:
    spec = decode_schedule_spec(
        {"kind": "fixed_rate", "every": "1h30m", "catch_up": {"mode": "none"}, "max_runs": 3}
    )
    encoded = msgspec.json.encode(spec)
    assert msgspec.json.decode(encoded, type=AnyScheduleSpec) == spec
    # Defaults are omitted: the snapshot stays small and diffs stay readable.
    assert b"timezone" not in encoded
    assert msgspec.json.decode(encoded)["kind"] == "fixed_rate"


def test_python_construction_and_validate() -> None:
    spec = CronSchedule(cron="0 0 2 * * ?", jitter=timedelta(seconds=5))
    spec.validate()
    assert isinstance(spec, ScheduleSpec)
    with pytest.raises(InvalidArgumentError) as info:
        FixedRateSchedule(every=timedelta(0)).validate()
    assert (info.value.field, info.value.reason) == ("every", "must be a positive interval")


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        ({"kind": "fixed_rate", "every": 0}, "every", "must be a positive interval"),
        ({"kind": "fixed_delay", "every": "0s"}, "every", "must be a positive interval"),
        ({"kind": "fixed_rate", "every": -1}, "every", "must not be negative"),
        ({"kind": "fixed_rate", "every": "soon"}, "every", "expected a duration"),
        ({"kind": "cron", "cron": "  "}, "cron", "must not be empty"),
        (
            {"kind": "cron", "cron": "@daily", "timezone": "Mars/Olympus"},
            "timezone",
            "unknown time zone 'Mars/Olympus'",
        ),
        (
            {"kind": "cron", "cron": "@daily", "start": "2025-02-01", "end": "2025-01-01"},
            "end",
            "must be after start",
        ),
        (
            {"kind": "cron", "cron": "@daily", "max_runs": 0},
            "max_runs",
            "expected an integer >= 1, got 0",
        ),
        (
            {"kind": "cron", "cron": "@daily", "calendar_mode": "exclude"},
            "calendar_mode",
            "needs a calendar",
        ),
        (
            {"kind": "cron", "cron": "@daily", "nth_business_day": 2},
            "nth_business_day",
            "needs a calendar",
        ),
        (
            {"kind": "fixed_rate", "every": "1d", "calendar": "vn", "nth_business_day": 1},
            "nth_business_day",
            "only allowed on cron schedules",
        ),
        (
            {"kind": "cron", "cron": "0 0 9 15 * ?", "calendar": "vn", "nth_business_day": 1},
            "cron",
            "day-of-month and day-of-week fields must be '*' or '?'",
        ),
        ({"kind": "one_time", "at": "2025-01-01", "start": "2025-06-01"}, "at", "is before start"),
        ({"kind": "one_time", "at": "2025-13-01"}, "at", "expected an ISO-8601 date-time"),
        ({"kind": "cron", "cron": "@daily", "id": "bad id"}, "id", "not a valid schedule id"),
        (
            {"kind": "weekly"},
            "kind",
            'expected one of cron, fixed_rate, fixed_delay, one_time, got "weekly"',
        ),
        (
            {"cron": "@daily"},
            "kind",
            "missing required field (one of cron, fixed_rate, fixed_delay, one_time)",
        ),
        ({"kind": "fixed_rate"}, "every", "missing required field"),
        (
            {"kind": "cron", "cron": "@daily", "timezon": "UTC"},
            "timezon",
            "unknown field; did you mean 'timezone'?",
        ),
        ({"kind": "cron", "cron": "@daily", "every": "5m"}, "every", "unknown field"),
        ({"kind": "cron", "cron": 5}, "cron", "expected a string, got 5"),
        ({"kind": "cron", "cron": "@daily", "overlap": "queue"}, "overlap", 'got "queue"'),
        (
            {"kind": "cron", "cron": "@daily", "catch_up": {"mode": "some"}},
            "catch_up.mode",
            "expected one of all, latest, none",
        ),
        (
            {"kind": "cron", "cron": "@daily", "dst": {"ambiguous": "twice"}},
            "dst.ambiguous",
            "expected one of",
        ),
    ],
)
def test_bad_specs_name_field_and_reason(data: dict, field: str, reason: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        decode_schedule_spec(data)
    assert info.value.field == field
    assert reason in info.value.reason


def test_errors_lists_every_problem() -> None:
    spec = FixedRateSchedule(
        every=timedelta(0),
        timezone="Nowhere/Land",
        calendar_mode="roll_following",
    )
    fields = [problem.field for problem in spec.errors()]
    assert fields == ["timezone", "calendar_mode", "every"]


def test_spec_field_error_carries_the_path() -> None:
    with pytest.raises(SpecFieldError) as info:
        decode_schedule_spec({"kind": "cron", "cron": "@daily", "catch_up": {"window": "x"}})
    assert info.value.path == ("catch_up", "window")
    assert info.value.field == "catch_up.window"


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [("0 0 25 * * ?", "hour"), ("x", "fields"), ("0 0 2 * * ? 1999 9", "fields")],
)
def test_cron_syntax_is_checked_by_the_cron_module(expr: str, fragment: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        decode_schedule_spec({"kind": "cron", "cron": expr})
    assert info.value.field == "cron"
    assert fragment in info.value.reason


@pytest.mark.parametrize(
    "expr", ["0 0 2 * * ?", "0 30 9 ? * MON-FRI", "*/5 * * * *", "@hourly", "0 0 12 LW * ?"]
)
def test_valid_cron_expressions_pass(expr: str) -> None:
    assert decode_schedule_spec({"kind": "cron", "cron": expr}).errors() == []


def test_nth_business_day_counts_from_either_end() -> None:
    last = decode_schedule_spec(
        {"kind": "cron", "cron": "@daily", "calendar": "VN", "nth_business_day": "last"}
    )
    assert last.business_day_index == -1
    second_last = decode_schedule_spec(
        {"kind": "cron", "cron": "@daily", "calendar": "VN", "nth_business_day": -2}
    )
    assert second_last.business_day_index == -2
    with pytest.raises(InvalidArgumentError) as info:
        decode_schedule_spec(
            {"kind": "cron", "cron": "@daily", "calendar": "VN", "nth_business_day": 0}
        )
    assert (info.value.field, info.value.reason) == (
        "nth_business_day",
        "must not be 0 (1 is the first, -1 the last)",
    )
