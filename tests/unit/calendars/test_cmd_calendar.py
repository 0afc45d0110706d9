"""``cadenza calendar show`` through the real CLI entry point."""

from __future__ import annotations

import json

import pytest

from cadenza.frontend.cli import main


def test_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calendar", "show", "VN", "--year", "2025", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert all(set(item) == {"date", "kind", "name"} for item in out)
    assert [i["date"] for i in out] == sorted(i["date"] for i in out)
    holidays = {i["date"] for i in out if i["kind"] == "holiday"}
    assert {
        "2025-01-01",
        "2025-01-29",
        "2025-04-07",
        "2025-04-30",
        "2025-05-01",
        "2025-05-02",
        "2025-09-01",
        "2025-09-02",
    } <= holidays
    assert [i["date"] for i in out if i["kind"] == "makeup_workday"] == ["2025-04-26"]
    assert len(out) == 13


def test_show_table_and_alias(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calendar", "show", "vietnam", "--year", "2024"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("VN 2024")
    assert out[1].split() == ["DATE", "DAY", "KIND", "SOURCE", "NAME"]
    row = next(line for line in out if line.startswith("2024-05-04"))
    assert row.split()[:4] == ["2024-05-04", "Sat", "makeup_workday", "decree"]
    assert any(line.startswith("2024-04-18  Thu  holiday") for line in out)


def test_weekends_only_lists_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calendar", "show", "weekends-only", "--year", "2030", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["calendar", "show", "atlantis", "--year", "2025"], "unknown calendar 'atlantis'"),
        (["calendar", "show", "VN", "--year", "20x5"], "--year"),
        (["calendar", "show", "VN", "--year", "1066"], "--year"),
    ],
)
def test_bad_input_exits_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calendar", "list"]) == 0
    names = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert {"VN", "weekends-only"} <= set(names)
