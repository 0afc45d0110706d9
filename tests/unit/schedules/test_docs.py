"""docs/schedules.md: every YAML spec example is a valid spec, and the DST and calendar
tables show what the schedule math computes."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from cadenza.timers._schedule_eval import preview_fire_times
from cadenza.timers._spec import decode_schedule_spec

DOC = Path(__file__).resolve().parents[3] / "docs" / "schedules.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC.read_text("utf-8"), flags=re.S)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lstrip().startswith(("#", "kind"))])
def test_yaml_examples_are_valid_specs(block: str) -> None:
    data = yaml.safe_load(block)
    if "kind" in data:
        decode_schedule_spec(data)


@pytest.mark.parametrize(
    ("dst", "after", "expected"),
    [
        ({}, "2026-03-28T12:00:00+00:00", "2026-03-30T00:30:00+00:00"),
        (
            {"nonexistent": "shift_forward"},
            "2026-03-28T12:00:00+00:00",
            "2026-03-29T01:30:00+00:00",
        ),
        ({}, "2026-10-24T12:00:00+00:00", "2026-10-25T01:30:00+00:00"),
        ({"ambiguous": "first"}, "2026-10-24T12:00:00+00:00", "2026-10-25T00:30:00+00:00"),
    ],
)
def test_dst_table(dst: dict, after: str, expected: str) -> None:
    spec = {"kind": "cron", "cron": "0 30 2 * * ?", "timezone": "Europe/Berlin", "dst": dst}
    first = preview_fire_times(
        decode_schedule_spec(spec), after=datetime.fromisoformat(after), count=1
    )[0]
    assert first.nominal.isoformat() == expected
    assert f"({expected[11:16]}Z)" in DOC.read_text("utf-8")
