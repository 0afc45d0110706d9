"""Next fire times against Quartz's own results (tests/cron_reference/quartz_reference.json).

The JSON file was written by tests/cron_reference/QuartzReference.java with Debian's
libquartz2-java; this test needs no Java. Every expression of expressions.txt is checked in six
zones from several start instants, most of them just before or inside a DST transition.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cadenza.history import InvalidArgumentError
from cadenza.timers._cron import parse_cron

REFERENCE = Path(__file__).parents[2] / "cron_reference" / "quartz_reference.json"
DATA = json.loads(REFERENCE.read_text(encoding="utf-8"))

CASES: dict[str, list[dict]] = defaultdict(list)
for _case in DATA["cases"]:
    CASES[_case["expression"]].append(_case)


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_reference_data_covers_what_the_brief_asks_for() -> None:
    expressions = set(CASES)
    assert len(expressions) >= 150
    zones = {case["zone"] for case in DATA["cases"]}
    assert zones == {
        "UTC",
        "Asia/Ho_Chi_Minh",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
        "America/Sao_Paulo",
    }
    for needed in ("L", "L-3", "LW", "15W", "1W", "31W", "6#3", "2#5", "6L", "0 30 2 * * ?"):
        assert any(needed in expression.split() or needed in expression for expression in CASES)


@pytest.mark.parametrize("expression", sorted(CASES))
def test_next_fire_times_equal_quartz(expression: str) -> None:
    cron = parse_cron(expression)
    count = DATA["count"]
    quartz_max_year = DATA["quartz_max_year"]
    mismatches = []
    for case in CASES[expression]:
        after = datetime.fromisoformat(case["after"].replace("Z", "+00:00"))
        got = [_iso(t) for t in cron.next_times(after, ZoneInfo(case["zone"]), count)]
        want = case["next"]
        if len(want) < count:
            # Quartz gives up after "now + 100 years"; Cadenza searches to 2199 (documented).
            extra = got[len(want) :]
            if extra and int(extra[0][:4]) <= quartz_max_year:
                mismatches.append((case["zone"], case["after"], want, got))
            got = got[: len(want)]
        if got != want:
            mismatches.append((case["zone"], case["after"], want, got))
    assert not mismatches, mismatches[:3]


VERDICTS = DATA["verdicts"]


@pytest.mark.parametrize(
    "verdict", [v for v in VERDICTS if v["list"] == "valid"], ids=lambda v: v["expression"]
)
def test_quartz_accepts_every_reference_expression(verdict: dict) -> None:
    assert verdict["quartz_parse_error"] is None and verdict["quartz_next_error"] is None


@pytest.mark.parametrize(
    "verdict", [v for v in VERDICTS if v["list"] != "valid"], ids=lambda v: v["expression"]
)
def test_invalid_expressions_are_rejected_like_quartz_or_on_purpose(verdict: dict) -> None:
    if verdict["list"] == "quartz-rejects":
        assert verdict["quartz_parse_error"] is not None
    else:
        # Documented differences: Quartz parses these but misreads them (or fails later).
        assert verdict["list"] == "quartz-accepts"
        assert verdict["quartz_parse_error"] is None
    with pytest.raises(InvalidArgumentError) as caught:
        parse_cron(verdict["expression"])
    assert caught.value.field.startswith("cron")
    assert caught.value.reason
