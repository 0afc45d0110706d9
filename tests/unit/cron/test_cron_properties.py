"""Property tests: fire times against a brute-force enumeration of the expression.

The brute force does not share code with the implementation: it lists every wall time of
every day in a window whose fields match, and maps each to instants with ``zoneinfo``'s own
``fold`` rules (fold=0 of a wall time in a gap is the time shifted forward by the gap).
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadenza.timers._cron import CronDstPolicy, _quartz_exact, _quartz_fire, parse_cron
from cadenza.timers._cron_next import zone_table
from cadenza.timers._cron_parse import CronFields

ZONES = [
    "UTC",
    "Asia/Ho_Chi_Minh",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Sao_Paulo",
]
NO_TRANSITIONS = {"UTC", "Asia/Ho_Chi_Minh"}
# Transition instants (UTC) to start near: spring forward, then fall back.
TRANSITIONS = {
    "Europe/Berlin": [
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 0, tzinfo=UTC),
    ],
    "America/New_York": [
        datetime(2026, 3, 8, 7, 0, tzinfo=UTC),
        datetime(2026, 11, 1, 6, 0, tzinfo=UTC),
    ],
    # 02:00 -> 02:30 and 02:00 -> 01:30
    "Australia/Lord_Howe": [
        datetime(2026, 10, 3, 15, 30, tzinfo=UTC),
        datetime(2026, 4, 4, 15, 0, tzinfo=UTC),
    ],
    # 00:00 -> 01:00 and 00:00 -> 23:00 the day before
    "America/Sao_Paulo": [
        datetime(2018, 11, 4, 3, 0, tzinfo=UTC),
        datetime(2019, 2, 17, 2, 0, tzinfo=UTC),
    ],
}
POLICIES = [
    CronDstPolicy(nonexistent=n, ambiguous=a)
    for n in ("skip", "shift_forward")
    for a in ("first", "last", "both")
]

# --------------------------------------------------------------------------- brute force


def _nearest_weekday(year: int, month: int, day: int) -> int:
    last = calendar.monthrange(year, month)[1]
    weekday = date(year, month, day).isoweekday()
    if weekday == 6:
        return day + 2 if day == 1 else day - 1
    if weekday == 7:
        return day - 2 if day == last else day + 1
    return day


def _day_matches(f: CronFields, day: date) -> bool:
    if day.month not in f.months or day.year not in f.years:
        return False
    last = calendar.monthrange(day.year, day.month)[1]
    if not f.dom_any:
        if f.last_day_of_month:
            target = last - f.last_day_offset
            if target < 1:
                return False
            if f.nearest_weekday:
                target = _nearest_weekday(day.year, day.month, target)
            return day.day == target
        if f.nearest_weekday:
            return day.day == _nearest_weekday(day.year, day.month, f.days_of_month[0])
        return day.day in f.days_of_month
    if day.isoweekday() % 7 + 1 not in f.days_of_week:
        return False
    if f.last_day_of_week:
        return day.day + 7 > last
    if f.nth_day_of_week:
        return (day.day - 1) // 7 + 1 == f.nth_day_of_week
    return True


def _instants(wall: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    return first, second


def brute_fires(
    cron, tz: ZoneInfo, after: datetime, end: datetime, nonexistent: str, ambiguous: str
) -> list[datetime]:
    """Every fire in (after, end] by definition, under an explicit DST policy."""
    lo = after.astimezone(tz).replace(tzinfo=None) - timedelta(hours=3)
    hi = end.astimezone(tz).replace(tzinfo=None) + timedelta(hours=3)
    fires: set[datetime] = set()
    day = lo.date()
    while day <= hi.date():
        for f in cron.alternatives:
            if not _day_matches(f, day):
                continue
            midnight = datetime(day.year, day.month, day.day)
            for hour in f.hours:
                start = midnight + timedelta(hours=hour)
                if start + timedelta(hours=1) <= lo or start > hi:
                    continue
                for minute in f.minutes:
                    start_minute = start + timedelta(minutes=minute)
                    if start_minute + timedelta(minutes=1) <= lo or start_minute > hi:
                        continue
                    for second in f.seconds:
                        wall = start_minute + timedelta(seconds=second)
                        first, second_instant = _instants(wall, tz)
                        if first == second_instant:
                            candidates = [first]
                        elif first < second_instant:  # occurs twice
                            candidates = {
                                "first": [first],
                                "last": [second_instant],
                                "both": [first, second_instant],
                            }[ambiguous]
                        else:  # in a gap: fold=0 is the wall time shifted by the gap
                            candidates = [] if nonexistent == "skip" else [first]
                        fires.update(c for c in candidates if after < c <= end)
        day += timedelta(days=1)
    return sorted(fires)


# --------------------------------------------------------------------------- strategies

SECONDS = ["0", "0", "0", "30", "*/15", "5,35", "50-10/10", "*"]
MINUTES = ["0", "0", "30", "*/5", "15,45", "55-5", "*", "0-10/5"]
HOURS = ["*", "*", "2", "1-3", "0", "*/6", "22-2", "0,12", "23"]
DOMS = ["*", "1", "15", "31", "L", "L-3", "LW", "L-2W", "15W", "1W", "28W", "1-10/3", "25-5"]
DOWS = ["*", "MON-FRI", "1", "SUN", "6L", "1L", "6#3", "2#5", "1#1", "SAT,SUN", "FRI-MON", "*/2"]
MONTHS = ["*", "*", "1", "FEB", "NOV-FEB", "*/3", "3,10", "MAR-NOV"]
YEARS = ["", "", "", "2018-2032", "*"]


@st.composite
def quartz_expressions(draw) -> str:
    seconds, minutes, hours = (
        draw(st.sampled_from(SECONDS)),
        draw(st.sampled_from(MINUTES)),
        (draw(st.sampled_from(HOURS))),
    )
    if draw(st.booleans()):
        days = f"{draw(st.sampled_from(DOMS))} {draw(st.sampled_from(MONTHS))} ?"
    else:
        days = f"? {draw(st.sampled_from(MONTHS))} {draw(st.sampled_from(DOWS))}"
    return f"{seconds} {minutes} {hours} {days} {draw(st.sampled_from(YEARS))}".strip()


@st.composite
def unix_expressions(draw) -> str:
    minute = draw(st.sampled_from(["0", "*/10", "30", "15,45"]))
    hour = draw(st.sampled_from(["*", "2", "1-3", "9", "0"]))
    dom = draw(st.sampled_from(["*", "1", "13", "1-7", "*/2"]))
    month = draw(st.sampled_from(["*", "JAN-JUN", "*/2"]))
    dow = draw(st.sampled_from(["*", "0", "7", "1-5", "FRI", "5-0"]))
    if dom.startswith("*") != dow.startswith("*") and dom != "*" and dow != "*":
        dow = "*"  # the Unix 'and' combination is rejected on purpose
    if dom == "*/2" and dow != "*":
        dom = "*"
    return f"{minute} {hour} {dom} {month} {dow}"


expressions = st.one_of(quartz_expressions(), quartz_expressions(), unix_expressions())


@st.composite
def night_expressions(draw) -> str:
    """Expressions that fire around the hours clocks change, on the days they change."""
    seconds = draw(st.sampled_from(["0", "0", "30", "*/20"]))
    minutes = draw(st.sampled_from(["0", "30", "15,45", "*/10", "10-40/15", "59"]))
    hours = draw(st.sampled_from(["2", "1-2", "0", "22-2", "2,4", "0-3", "*/2", "1", "23", "*"]))
    days = draw(st.sampled_from(["* * ?", "? * *", "? * SUN", "? * 1L", "? * 1#1", "? * 1#2"]))
    return f"{seconds} {minutes} {hours} {days}"


@st.composite
def zones_and_starts(draw) -> tuple[str, datetime]:
    """A zone and a start instant: in zones with DST, mostly within hours of a transition."""
    zone = draw(st.sampled_from(ZONES))
    if zone in TRANSITIONS and draw(st.integers(0, 3)) > 0:
        base = draw(st.sampled_from(TRANSITIONS[zone]))
        return zone, base + timedelta(seconds=draw(st.integers(-6 * 3600, 3 * 3600)))
    seconds = draw(st.integers(0, 8 * 365 * 86400))
    return zone, datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)


def _window(cron, tz, after, policy) -> tuple[list[datetime], datetime]:
    fires = cron.next_times(after, tz, 25, dst=policy)
    end = fires[-1] if len(fires) == 25 else after + timedelta(days=40)
    return [f for f in fires if f <= end], end


COMMON = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# --------------------------------------------------------------------------- properties


@COMMON
@given(expression=expressions, case=zones_and_starts())
def test_quartz_mode_is_increasing_and_every_fire_matches(
    expression: str, case: tuple[str, datetime]
) -> None:
    zone, after = case
    cron, tz = parse_cron(expression), ZoneInfo(zone)
    fires, end = _window(cron, tz, after, None)
    assert all(a < b for a, b in zip([after, *fires], fires, strict=False))
    assert all(f.tzinfo is UTC for f in fires)
    # Every Quartz fire is a matching wall time (either occurrence) or a gap-shifted one.
    allowed = set(brute_fires(cron, tz, after, end, "shift_forward", "both"))
    assert set(fires) <= allowed
    if zone in NO_TRANSITIONS:
        # Without transitions nothing is skipped: Quartz fires on every matching time.
        assert fires == brute_fires(cron, tz, after, end, "skip", "first")


@COMMON
@given(expression=expressions, case=zones_and_starts(), policy=st.sampled_from(POLICIES))
def test_dst_policies_fire_exactly_the_brute_force_set(
    expression: str, case: tuple[str, datetime], policy: CronDstPolicy
) -> None:
    zone, after = case
    cron, tz = parse_cron(expression), ZoneInfo(zone)
    fires, end = _window(cron, tz, after, policy)
    assert all(a < b for a, b in zip([after, *fires], fires, strict=False))
    want = brute_fires(cron, tz, after, end, policy.nonexistent, policy.ambiguous)
    assert fires == want
    # Asking again from just before any fire gives that fire.
    for fire in fires[:5]:
        assert cron.next_after(fire - timedelta(seconds=1), tz, dst=policy) == fire


@COMMON
@given(
    expression=night_expressions(),
    case=zones_and_starts().filter(lambda case: case[0] in TRANSITIONS),
    policy=st.sampled_from(POLICIES),
)
def test_dst_policies_at_night_on_transition_days(
    expression: str, case: tuple[str, datetime], policy: CronDstPolicy
) -> None:
    zone, after = case
    cron, tz = parse_cron(expression), ZoneInfo(zone)
    fires, end = _window(cron, tz, after, policy)
    assert fires == brute_fires(cron, tz, after, end, policy.nonexistent, policy.ambiguous)
    for fire in fires[:5]:
        assert cron.next_after(fire - timedelta(seconds=1), tz, dst=policy) == fire


@COMMON
@given(expression=night_expressions(), case=zones_and_starts())
def test_quartz_mode_at_night_only_fires_matching_times(
    expression: str, case: tuple[str, datetime]
) -> None:
    zone, after = case
    cron, tz = parse_cron(expression), ZoneInfo(zone)
    fires, end = _window(cron, tz, after, None)
    assert all(a < b for a, b in zip([after, *fires], fires, strict=False))
    assert set(fires) <= set(brute_fires(cron, tz, after, end, "shift_forward", "both"))


@COMMON
@given(expression=expressions, case=zones_and_starts())
def test_quartz_fast_path_equals_the_walk_through_the_zone(
    expression: str, case: tuple[str, datetime]
) -> None:
    # The fast path walks wall-clock time and subtracts a steady offset; the exact path
    # replays every calendar read through the zone's transitions. They must agree.
    zone, after = case
    table = zone_table(ZoneInfo(zone))
    instant = int(after.timestamp())
    for fields in parse_cron(expression).alternatives:
        for _ in range(5):
            fast = _quartz_fire(fields, instant, table)
            exact = _quartz_exact(fields, table.to_local(instant + 1), instant + 1, table)
            assert fast == exact
            if fast is None:
                break
            instant = fast


@COMMON
@given(expression=expressions)
def test_canonical_quartz_form_round_trips(expression: str) -> None:
    cron = parse_cron(expression)
    again = tuple(parse_cron(text).alternatives[0] for text in cron.quartz)
    assert again == cron.alternatives
    after = datetime(2026, 1, 1, tzinfo=UTC)
    tz = ZoneInfo("Europe/Berlin")
    merged = sorted({t for text in cron.quartz for t in parse_cron(text).next_times(after, tz, 5)})[
        :5
    ]
    assert cron.next_times(after, tz, 5) == merged
