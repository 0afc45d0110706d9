"""DST behaviour: Quartz's default and the explicit policies, on real 2026 transitions.

These are the examples of docs/cron.md. Europe/Berlin springs forward on 2026-03-29 at 02:00
CET (01:00Z) to 03:00 CEST and falls back on 2026-10-25 at 03:00 CEST (01:00Z) to 02:00 CET;
America/New_York falls back on 2026-11-01 at 02:00 EDT (06:00Z) to 01:00 EST.
"""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from cadenza.history import InvalidArgumentError
from cadenza.timers._cron import AmbiguousTime, CronDstPolicy, NonexistentTime, parse_cron

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def fires(expression: str, zone: ZoneInfo, after: str, count: int, dst=None) -> list[str]:
    times = parse_cron(expression).next_times(utc(after), zone, count, dst=dst)
    return [t.strftime("%Y-%m-%dT%H:%MZ") for t in times]


# Daily at 02:30 in Berlin across the spring-forward night: 02:30 does not exist on the 29th.
SPRING_DAILY = {
    # Quartz reads 02:30 as 03:30 but its search steps past it: no fire on the 29th.
    None: ["2026-03-30T00:30Z", "2026-03-31T00:30Z"],
    ("skip", "first"): ["2026-03-30T00:30Z", "2026-03-31T00:30Z"],
    # 02:30 shifted forward by the one-hour gap is 03:30 CEST = 01:30Z.
    ("shift_forward", "first"): ["2026-03-29T01:30Z", "2026-03-30T00:30Z"],
    ("shift_forward", "both"): ["2026-03-29T01:30Z", "2026-03-30T00:30Z"],
}

# Every 30 minutes in Berlin from 01:15 CEST on the fall-back night: 02:00 and 02:30 occur
# twice (00:00Z/00:30Z in CEST, then 01:00Z/01:30Z in CET).
FALL_HALF_HOURLY = {
    # Quartz resolves a repeated wall time to its second occurrence only.
    None: ["2026-10-24T23:30Z", "2026-10-25T01:00Z", "2026-10-25T01:30Z", "2026-10-25T02:00Z"],
    ("skip", "first"): [
        "2026-10-24T23:30Z",
        "2026-10-25T00:00Z",
        "2026-10-25T00:30Z",
        "2026-10-25T02:00Z",
    ],
    ("skip", "last"): [
        "2026-10-24T23:30Z",
        "2026-10-25T01:00Z",
        "2026-10-25T01:30Z",
        "2026-10-25T02:00Z",
    ],
    ("skip", "both"): [
        "2026-10-24T23:30Z",
        "2026-10-25T00:00Z",
        "2026-10-25T00:30Z",
        "2026-10-25T01:00Z",
        "2026-10-25T01:30Z",
        "2026-10-25T02:00Z",
    ],
}


@pytest.mark.parametrize("policy", list(SPRING_DAILY))
def test_spring_forward_daily_0230_in_berlin(policy) -> None:
    dst = None if policy is None else CronDstPolicy(*policy)
    assert fires("0 30 2 * * ?", BERLIN, "2026-03-28T12:00:00Z", 2, dst) == SPRING_DAILY[policy]


@pytest.mark.parametrize("policy", list(FALL_HALF_HOURLY))
def test_fall_back_half_hourly_in_berlin(policy) -> None:
    dst = None if policy is None else CronDstPolicy(*policy)
    want = FALL_HALF_HOURLY[policy]
    assert fires("0 0/30 * * * ?", BERLIN, "2026-10-24T23:15:00Z", len(want), dst) == want


def test_spring_forward_half_hourly_shift_forward_fires_each_instant_once() -> None:
    # 02:00 and 02:30 shift to 03:00 and 03:30, which are fire times anyway: no double fire.
    for dst in (None, CronDstPolicy("skip", "first"), CronDstPolicy("shift_forward", "first")):
        assert fires("0 0/30 * * * ?", BERLIN, "2026-03-29T00:00:00Z", 3, dst) == [
            "2026-03-29T00:30Z",
            "2026-03-29T01:00Z",
            "2026-03-29T01:30Z",
        ]


def test_quartz_jumps_from_the_first_occurrence_to_the_second() -> None:
    # From 01:10 EDT (05:10Z) Quartz's next half hour is 01:30 EST (06:30Z), not 01:30 EDT.
    assert fires("0 0/30 * * * ?", NEW_YORK, "2026-11-01T05:10:00Z", 2) == [
        "2026-11-01T06:30Z",
        "2026-11-01T07:00Z",
    ]
    first = CronDstPolicy("skip", "first")
    assert fires("0 0/30 * * * ?", NEW_YORK, "2026-11-01T05:10:00Z", 2, first) == [
        "2026-11-01T05:30Z",
        "2026-11-01T07:00Z",
    ]


def test_daily_0130_in_new_york_on_the_fall_back_day() -> None:
    after = "2026-10-31T12:00:00Z"
    assert fires("0 30 1 * * ?", NEW_YORK, after, 1) == ["2026-11-01T06:30Z"]
    assert fires("0 30 1 * * ?", NEW_YORK, after, 1, CronDstPolicy("skip", "first")) == [
        "2026-11-01T05:30Z"
    ]
    assert fires("0 30 1 * * ?", NEW_YORK, after, 3, CronDstPolicy("skip", "both")) == [
        "2026-11-01T05:30Z",
        "2026-11-01T06:30Z",
        "2026-11-02T06:30Z",
    ]


def test_lord_howe_half_hour_gap_shifted_times_interleave_with_real_ones() -> None:
    # Lord Howe jumps from 02:00 to 02:30 (+10:30 -> +11:00) on 2026-10-04 (15:30Z on the 3rd).
    # 02:10 shifts to 02:40 (15:40Z); 02:35 is real (15:35Z) and comes first.
    zone = ZoneInfo("Australia/Lord_Howe")
    dst = CronDstPolicy("shift_forward", "first")
    assert fires("0 10,35 2 * * ?", zone, "2026-10-03T12:00:00Z", 3, dst) == [
        "2026-10-03T15:35Z",
        "2026-10-03T15:40Z",
        "2026-10-04T15:10Z",
    ]
    assert fires("0 10,35 2 * * ?", zone, "2026-10-03T15:35:00Z", 1, dst) == ["2026-10-03T15:40Z"]


def test_policy_fields_left_at_quartz_mean_their_closest_explicit_rule() -> None:
    after = "2026-10-24T23:15:00Z"
    mixed = CronDstPolicy(nonexistent="quartz", ambiguous="first")
    explicit = CronDstPolicy(nonexistent="shift_forward", ambiguous="first")
    assert fires("0 0/30 * * * ?", BERLIN, after, 6, mixed) == fires(
        "0 0/30 * * * ?", BERLIN, after, 6, explicit
    )
    assert not mixed.is_quartz and CronDstPolicy().is_quartz


def test_policy_coercion() -> None:
    assert CronDstPolicy("skip", "both").nonexistent is NonexistentTime.SKIP
    assert CronDstPolicy.of(None) == CronDstPolicy()
    assert CronDstPolicy.of({"ambiguous": "last"}).ambiguous is AmbiguousTime.LAST
    spec_like = SimpleNamespace(nonexistent="skip", ambiguous="first")
    assert CronDstPolicy.of(spec_like) == CronDstPolicy("skip", "first")
    cron = parse_cron("0 30 1 * * ?")
    assert cron.next_after(utc("2026-10-31T12:00:00Z"), NEW_YORK, dst=spec_like) == utc(
        "2026-11-01T05:30:00Z"
    )


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"nonexistent": "later"}, "dst.nonexistent"),
        ({"ambiguous": "middle"}, "dst.ambiguous"),
        ({"when": "now"}, "dst"),
        (42, "dst"),
    ],
)
def test_invalid_policies_are_rejected(value, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        CronDstPolicy.of(value)
    assert caught.value.field == field
