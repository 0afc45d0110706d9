"""``cadenza cron next``: human and JSON output, defaults, and bad input (exit 2)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from cadenza.frontend.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(["cron", "next", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_json_prints_utc_instants_ending_in_z(capsys) -> None:
    status, out, err = run(
        capsys,
        "0 30 2 * * ?",
        "--tz",
        "Europe/Berlin",
        "--after",
        "2026-03-28T00:00:00Z",
        "--count",
        "3",
        "--json",
    )
    assert status == 0 and err == ""
    assert json.loads(out) == [
        "2026-03-28T01:30:00Z",
        "2026-03-30T00:30:00Z",
        "2026-03-31T00:30:00Z",
    ]


def test_defaults_are_ho_chi_minh_and_ten_fire_times(capsys) -> None:
    status, out, _ = run(capsys, "0 0 9 * * ?", "--after", "2026-01-01T00:00:00Z", "--json")
    assert status == 0
    times = json.loads(out)
    assert len(times) == 10
    # 09:00 in Ho Chi Minh City (UTC+7) is 02:00 UTC, daily from 1 January.
    assert times[0] == "2026-01-01T02:00:00Z" and times[9] == "2026-01-10T02:00:00Z"


def test_default_after_is_now(capsys) -> None:
    before = datetime.now(UTC)
    status, out, _ = run(capsys, "@hourly", "--count", "1", "--json")
    assert status == 0
    first = datetime.fromisoformat(json.loads(out)[0].replace("Z", "+00:00"))
    assert before < first <= datetime.now(UTC) + timedelta(hours=1)


def test_human_output_shows_local_time_with_offset_and_utc(capsys) -> None:
    status, out, _ = run(
        capsys, "0 0/30 * * * ?", "--tz", "America/New_York", "--after",
        "2026-11-01T04:45:00Z", "--count", "2",
    )  # fmt: skip
    assert status == 0
    lines = [line for line in out.splitlines() if re.match(r"\s+\d+\s", line)]
    assert len(lines) == 2
    assert "2026-11-01 01:00:00 -05:00" in lines[0] and "2026-11-01T06:00:00Z" in lines[0]
    assert "America/New_York" in out


def test_naive_after_is_a_wall_time_in_the_zone(capsys) -> None:
    status, out, _ = run(
        capsys, "0 0 9 * * ?", "--after", "2026-01-01T09:00:00", "--count", "1", "--json"
    )
    assert status == 0
    assert json.loads(out) == ["2026-01-02T02:00:00Z"]


def test_unix_and_dst_policy_options(capsys) -> None:
    status, out, _ = run(
        capsys, "30 1 * * *", "--tz", "America/New_York", "--after", "2026-10-31T12:00:00Z",
        "--count", "2", "--ambiguous", "both", "--nonexistent", "skip", "--json",
    )  # fmt: skip
    assert status == 0
    assert json.loads(out) == ["2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z"]
    status, out, _ = run(capsys, "*/20 9 * * 1", "--after", "2026-01-01T00:00:00Z")
    assert status == 0 and "Quartz: 0 0,20,40 9 ? * 2" in out


def test_an_expression_that_never_fires_prints_an_empty_list(capsys) -> None:
    status, out, _ = run(capsys, "0 0 0 30 2 ?", "--json")
    assert status == 0 and json.loads(out) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["0 0 12 * * *"], "day_of_week"),
        (["61 * * * *"], "cron.minute"),
        (["@daily", "--tz", "Mars/Olympus"], "unknown time zone"),
        (["@daily", "--tz", "America"], "unknown time zone"),
        (["@daily", "--after", "next tuesday"], "--after"),
        (["@daily", "--count", "0"], "--count"),
        (["@daily", "--count", "ten"], "--count"),
        (["@daily", "--count", "100001"], "--count"),
    ],
)
def test_bad_input_exits_2_with_the_message_on_stderr(capsys, argv, message) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert out == ""
    assert message in err and err.startswith("cadenza: ")
