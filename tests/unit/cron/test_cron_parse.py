"""Parsing: value sets, special characters, Unix mapping, macros and error messages."""

from __future__ import annotations

import heapq
import time
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from cadenza.history import InvalidArgumentError
from cadenza.timers._cron import CronExpression, parse_cron
from cadenza.timers._cron_parse import MACROS

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
START = datetime(2026, 1, 15, 10, 20, 30, tzinfo=UTC)


def only(expression: str):
    cron = parse_cron(expression)
    assert len(cron.alternatives) == 1
    return cron.alternatives[0]


@pytest.mark.parametrize(
    ("expression", "attribute", "values"),
    [
        ("*/15 * * * * ?", "seconds", (0, 15, 30, 45)),
        ("5/20 * * * * ?", "seconds", (5, 25, 45)),
        ("/20 * * * * ?", "seconds", (0, 20, 40)),
        ("10-40/7 * * * * ?", "seconds", (10, 17, 24, 31, 38)),
        ("50-5/5 * * * * ?", "seconds", (0, 5, 50, 55)),
        ("0 58-2 * * * ?", "minutes", (0, 1, 2, 58, 59)),
        ("0 0 22-2 * * ?", "hours", (0, 1, 2, 22, 23)),
        ("0 0 22-2/2 * * ?", "hours", (0, 2, 22)),
        ("0 0 7/6 * * ?", "hours", (7, 13, 19)),
        ("0 0 0 29-2 * ?", "days_of_month", (1, 2, 29, 30, 31)),
        ("0 0 0 */10 * ?", "days_of_month", (1, 11, 21, 31)),
        ("0 0 0 1 NOV-FEB ?", "months", (1, 2, 11, 12)),
        ("0 0 0 1 nov-feb ?", "months", (1, 2, 11, 12)),
        ("0 0 0 1 2/5 ?", "months", (2, 7, 12)),
        ("0 0 0 ? * FRI-MON", "days_of_week", (1, 2, 6, 7)),
        ("0 0 0 ? * MON-SUN", "days_of_week", (1, 2, 3, 4, 5, 6, 7)),
        ("0 0 0 ? * */3", "days_of_week", (1, 4, 7)),
        ("0 0 0 ? * L", "days_of_week", (7,)),
        ("0 0 0 ? * 1,SAT", "days_of_week", (1, 7)),
        ("0 0 0 1 * ? 2026/5", "years", tuple(range(2026, 2200, 5))),
        ("0 0 0 1 * ? 2027,2026-2028", "years", (2026, 2027, 2028)),
    ],
)
def test_value_sets_follow_quartz(expression: str, attribute: str, values: tuple) -> None:
    assert getattr(only(expression), attribute) == values


def test_special_characters_set_quartz_flags() -> None:
    last = only("0 0 0 L * ?")
    assert last.last_day_of_month and last.last_day_offset == 0 and not last.nearest_weekday
    offset = only("0 0 0 L-3W * ?")
    assert offset.last_day_of_month and offset.last_day_offset == 3 and offset.nearest_weekday
    weekday = only("0 0 0 15W * ?")
    assert weekday.nearest_weekday and weekday.days_of_month == (15,)
    nth = only("0 0 0 ? * FRI#3")
    assert nth.nth_day_of_week == 3 and nth.days_of_week == (6,)
    last_friday = only("0 0 0 ? * 6L")
    assert last_friday.last_day_of_week and last_friday.days_of_week == (6,)
    assert only("0 0 0 ? * friL") == last_friday


def test_names_and_case_do_not_matter() -> None:
    assert parse_cron("0 0 12 ? jan,Jul mon-fri") == parse_cron("0 0 12 ? 1,7 2-6")
    assert parse_cron("0 0\t12 ?  * MON") == parse_cron("0 0 12 ? * 2")


@pytest.mark.parametrize(
    ("expression", "field", "reason"),
    [
        ("", "cron", "empty"),
        ("0 0 12 * *  * ? 2026", "cron", "expected 6 or 7 fields"),
        ("0 0 12 * * *", "cron.day_of_week", "exactly one of day-of-month and day-of-week"),
        ("0 0 12 ? * ?", "cron.day_of_week", "exactly one"),
        ("60 * * * * ?", "cron.second", "value 60 is out of range 0-59"),
        ("0 60 * * * ?", "cron.minute", "out of range 0-59"),
        ("0 0 24 * * ?", "cron.hour", "out of range 0-23"),
        ("0 0 0 32 * ?", "cron.day_of_month", "out of range 1-31"),
        ("0 0 0 1 13 ?", "cron.month", "out of range 1-12"),
        ("0 0 0 1 JANUARY ?", "cron.month", "unknown month name 'JANUARY'"),
        ("0 0 0 ? * FUN", "cron.day_of_week", "unknown day name 'FUN'"),
        ("0 0 0 ? * 0", "cron.day_of_week", "out of range 1-7"),
        ("0 0 0 1 * ? 1969", "cron.year", "out of range 1970-2199"),
        ("0 0 0 1 * ? 2030-2020", "cron.year", "ends before it starts"),
        ("*/0 * * * * ?", "cron.second", "bad step 0"),
        ("0 */60 * * * ?", "cron.minute", "bad step 60"),
        ("0 0 */x * * ?", "cron.hour", "bad step 'X': a step must be a whole number (in '*/x')"),
        ("0 0 0 ? * MON-FRI/2", "cron.day_of_week", "step after a name"),
        ("0 0 0 ? * 6#6", "cron.day_of_week", "between 1 and 5"),
        ("0 0 0 ? * 2#1,3", "cron.day_of_week", "whole day-of-week field"),
        ("0 0 0 1,15W * ?", "cron.day_of_month", "whole day-of-month field"),
        ("0 0 0 L-31 * ?", "cron.day_of_month", "at most 30"),
        ("0 0 0 ? * 3W", "cron.day_of_week", "'W' is only allowed in day-of-month"),
        ("0 0 L * * ?", "cron.hour", "only allowed in the day-of-month and day-of-week"),
        ("0 0 0 ?,5 * ?", "cron.day_of_month", "'?' must be the whole field"),
        ("? 0 0 1 * ?", "cron.second", "'?' is only allowed"),
        ("0 0 0 1-, * ?", "cron.day_of_month", "missing"),
        ("0 0 0 1,,2 * ?", "cron.day_of_month", "empty item"),
        ("0 0 0 ? * MON#", "cron.day_of_week", "between 1 and 5"),
        ("@reboot", "cron", "unknown macro"),
        ("61 * * * *", "cron.minute", "out of range 0-59"),
        ("0 0 ? * *", "cron.day_of_month", "not Unix cron syntax"),
        ("0 0 * * 8", "cron.day_of_week", "out of range 0-7"),
        ("0 0 L * *", "cron.day_of_month", "Quartz syntax"),
        ("0 0 */2 * MON", "cron.day_of_week", "'and'"),
    ],
)
def test_invalid_expressions_name_the_field_and_the_reason(
    expression: str, field: str, reason: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        parse_cron(expression)
    assert caught.value.field == field
    assert reason in caught.value.reason
    assert isinstance(caught.value, ValueError)


def test_error_prefix_is_the_callers_field_name() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        parse_cron("0 61 * * * ?", field="spec.cron")
    assert caught.value.field == "spec.cron.minute"


def test_non_string_is_rejected() -> None:
    with pytest.raises(InvalidArgumentError):
        parse_cron(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(("macro", "quartz"), sorted(MACROS.items()))
def test_macros_are_their_quartz_expressions(macro: str, quartz: str) -> None:
    cron = parse_cron(macro.upper())
    assert cron.kind == "macro"
    assert cron == parse_cron(quartz)
    assert cron.next_times(START, HCM, 5) == parse_cron(quartz).next_times(START, HCM, 5)


def test_weekly_is_sunday_midnight_like_unix() -> None:
    assert parse_cron("@weekly") == parse_cron("0 0 * * 0") == parse_cron("0 0 * * 7")


@pytest.mark.parametrize(
    ("unix", "quartz"),
    [
        ("*/15 * * * *", "0 */15 * * * ?"),
        ("30 2 * * *", "0 30 2 * * ?"),
        ("0 9 * * 1-5", "0 0 9 ? * 2-6"),
        ("0 9 * * MON-FRI", "0 0 9 ? * MON-FRI"),
        ("0 9 * * 0", "0 0 9 ? * 1"),
        ("0 9 * * 7", "0 0 9 ? * SUN"),
        ("0 9 * * 5-7", "0 0 9 ? * 1,6,7"),
        ("0 9 * * 5-0", "0 0 9 ? * 1,6,7"),
        ("0 9 * * */2", "0 0 9 ? * 1,3,5,7"),
        ("0 0 1,15 * *", "0 0 0 1,15 * ?"),
        ("0 0 */2 * *", "0 0 0 */2 * ?"),
        ("0 0 1-31 * *", "0 0 0 * * ?"),
        ("0 0 * JAN,JUL *", "0 0 0 * 1,7 ?"),
        ("0 0 1 * 0-7", "0 0 0 * * ?"),
    ],
)
def test_unix_expressions_map_to_quartz(unix: str, quartz: str) -> None:
    cron = parse_cron(unix)
    assert cron.kind == "unix"
    assert cron == parse_cron(quartz)


def test_unix_restricted_day_fields_combine_with_or() -> None:
    cron = parse_cron("0 12 1 * MON")
    assert len(cron.alternatives) == 2
    by_day = parse_cron("0 0 12 1 * ?").next_times(START, HCM, 12)
    by_weekday = parse_cron("0 0 12 ? * MON").next_times(START, HCM, 12)
    merged = sorted(set(heapq.merge(by_day, by_weekday)))[:12]
    assert cron.next_times(START, HCM, 12) == merged
    assert cron.quartz == ("0 0 12 1 * ?", "0 0 12 ? * 2")


def test_to_quartz_round_trips() -> None:
    for text in (
        "*/15 5,7-9 22-2 ? NOV-FEB MON-FRI 2026-2030",
        "0 0 0 L-3W * ?",
        "0 0 12 15W 1,2,3 ?",
        "0 0 12 ? * 6#3",
        "0 0 12 ? * 6L",
        "0 0 12 L * ?",
    ):
        cron = parse_cron(text)
        (again,) = cron.quartz
        assert parse_cron(again) == cron


def test_next_after_needs_an_aware_instant() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        parse_cron("@daily").next_after(datetime(2026, 1, 1), HCM)
    assert caught.value.field == "after"


def test_zone_may_be_named_and_bad_arguments_fail_at_the_call() -> None:
    cron = parse_cron("0 0 9 * * ?")
    assert cron.next_after(START, "Asia/Ho_Chi_Minh") == cron.next_after(START, HCM)
    with pytest.raises(InvalidArgumentError) as caught:
        cron.next_after(START, "Mars/Olympus")
    assert caught.value.field == "tz"
    with pytest.raises(InvalidArgumentError):
        cron.next_after(START, 7)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError) as caught:
        cron.fire_times(datetime(2026, 1, 1), HCM)  # raised before iterating
    assert caught.value.field == "after"
    with pytest.raises(InvalidArgumentError) as caught:
        cron.fire_times(START, HCM, count=-1)
    assert caught.value.field == "count"


def test_next_after_drops_fractions_and_is_strictly_after() -> None:
    cron = parse_cron("* * * * * ?")
    instant = datetime(2026, 1, 1, 0, 0, 0, 900_000, tzinfo=UTC)
    assert cron.next_after(instant, HCM) == datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    on_time = datetime(2025, 12, 31, 21, 0, 0, tzinfo=timezone(timedelta(hours=-3)))
    assert cron.next_after(on_time, HCM) == datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)


def test_instant_in_any_zone_gives_a_utc_result() -> None:
    cron = parse_cron("0 0 9 * * ?")
    instant = datetime(2026, 1, 1, 8, 0, tzinfo=HCM)
    result = cron.next_after(instant, HCM)
    assert result is not None and result.tzinfo is UTC
    assert result == datetime(2026, 1, 1, 9, 0, tzinfo=HCM)


@pytest.mark.parametrize(
    "expression",
    ["0 0 0 30 2 ?", "0 0 12 31 4,6,9,11 ?", "0 0 0 29 2 ? 2025-2027", "0 0 0 1 1 ? 2020"],
)
def test_expressions_that_never_fire_answer_none_quickly(expression: str) -> None:
    began = time.perf_counter()
    assert parse_cron(expression).next_after(START, HCM) is None
    assert list(parse_cron(expression).fire_times(START, HCM)) == []
    assert time.perf_counter() - began < 5


def test_fire_times_stops_at_the_last_year() -> None:
    cron = parse_cron("0 0 12 1 1 ? 2026-2028")
    times = list(cron.fire_times(datetime(2025, 6, 1, tzinfo=UTC), HCM))
    assert [t.year for t in times] == [2026, 2027, 2028]
    assert cron.next_times(datetime(2025, 6, 1, tzinfo=UTC), HCM, 2) == times[:2]


def test_expression_is_hashable_and_has_a_readable_repr() -> None:
    cron = parse_cron("0 0 12 * * ?")
    assert {cron: 1}[parse_cron("0 0 12 * * ?  ")] == 1
    assert repr(cron) == "CronExpression('0 0 12 * * ?')" and str(cron) == "0 0 12 * * ?"
    assert isinstance(cron, CronExpression)
