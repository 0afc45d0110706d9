"""``cadenza lint``: messages, exit status, summary, --vars and --step-type."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cadenza.engine._job_lint import lint_paths, read_variable_names
from cadenza.frontend.cli import main

GOOD = """\
name: nightly
variables:
  LIMIT: 10
schedules:
  - kind: cron
    cron: "0 0 2 * * ?"
steps:
  - id: fetch
    type: http
    config:
      url: "https://api.local/orders?limit=${LIMIT}&region=${REGION}"
  - id: load
    type: sql
    depends_on: [fetch]
    config:
      rows: "{{ steps.fetch.output.rows }}"
"""


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_clean_files_exit_0_with_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path, "jobs/nightly.yaml", GOOD)
    vars_file = _write(tmp_path, "globals.yaml", "REGION: north\nSMTP_HOST: mail.local\n")
    status = main(["lint", str(tmp_path / "jobs"), "--vars", str(vars_file)])
    out = capsys.readouterr().out
    assert status == 0
    assert out == "lint ok: 1 file, 1 valid job, 0 errors, 0 warnings\n"


def test_unknown_variable_is_a_warning_without_vars(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "nightly.yaml", GOOD)
    status = main(["lint", str(path)])
    out = capsys.readouterr().out.splitlines()
    assert status == 0
    assert out == [
        f"{path}:11: steps[0].config.url: warning: unknown variable 'REGION' "
        "(not a job variable nor a global one; known: LIMIT)",
        "lint ok: 1 file, 1 valid job, 0 errors, 1 warning",
    ]


def test_unknown_variable_is_an_error_with_vars(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "nightly.yaml", GOOD)
    vars_file = _write(tmp_path, "globals.json", '["SMTP_HOST"]')
    status = main(["lint", str(path), "--vars", str(vars_file)])
    out = capsys.readouterr().out.splitlines()
    assert status == 1
    assert out == [
        f"{path}:11: steps[0].config.url: unknown variable 'REGION' "
        "(not a job variable nor a global one; known: LIMIT, SMTP_HOST)",
        "lint failed: 1 file, 0 valid jobs, 1 error, 0 warnings",
    ]


def test_every_problem_of_every_file_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _write(
        tmp_path,
        "a.yaml",
        """\
        name: shared
        steps:
          - id: a
            type: http
            depends_on: [c]
          - id: b
            type: http
            depends_on: [a]
          - id: c
            type: http
            depends_on: [b]
          - id: d
            type: http
            depends_on: [ghost]
            config:
              x: "{{ steps.a.output"
        """,
    )
    b = _write(tmp_path, "b.json", '{"name": "shared", "steps": [{"id": "s", "type": "http"}]}')
    c = _write(tmp_path, "c.toml", 'name = "other"\n[[steps]]\nid = "s"\ntype = "carrier_pigeon"\n')
    status = main(["lint", str(a), str(b), str(c), "--step-type", "fax"])
    out = capsys.readouterr().out.splitlines()
    assert status == 1
    assert out == [
        f"{a}:14: steps[3].depends_on[0]: unknown step 'ghost' in depends_on",
        f"{a}:5: steps[0].depends_on: dependency cycle: a -> c -> b -> a",
        f"{a}:16: steps[3].config.x: unterminated '{{{{': expected '}}}}' at column 1",
        f"{c}:4: steps[0].type: unknown step type 'carrier_pigeon' (known: email, fax, file, "
        "http, sftp, sql, workflow; register the activity or pass it to lint with --step-type)",
        f"{b}:1: name: duplicate job name 'shared' (also defined at {a}:1)",
        "lint failed: 3 files, 1 valid job, 5 errors, 0 warnings",
    ]


def test_template_errors_are_reported_when_there_is_no_cycle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(
        tmp_path,
        "t.yaml",
        """\
        name: t
        steps:
          - id: a
            type: http
            when: "steps.a.status = 'x'"
            config:
              x: "{{ steps.a.output"
        """,
    )
    assert main(["lint", str(path), "-q"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{path}:5: steps[0].when: unexpected '=' at column 16",
        f"{path}:7: steps[0].config.x: unterminated '{{{{': expected '}}}}' at column 1",
    ]


def test_invalid_cron_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(
        tmp_path,
        "cron.yaml",
        """\
        name: c
        schedules:
          - kind: cron
            cron: "0 0 2 * * ?"
          - kind: cron
            cron: "0 61 2 * * ?"
        steps:
          - id: a
            type: http
        """,
    )
    assert main(["lint", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}:6: schedules[1].cron: minute: ")
    assert "61" in out[0]
    assert out[1] == "lint failed: 1 file, 0 valid jobs, 1 error, 0 warnings"


def test_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: no such file or directory" in capsys.readouterr().err
    job = _write(tmp_path, "j.yaml", GOOD)
    bad_vars = _write(tmp_path, "vars.yaml", "- 1\n- 2\n")
    assert main(["lint", str(job), "--vars", str(bad_vars)]) == 2
    assert "expected a mapping of variables or a list of names" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["lint"])
    assert info.value.code == 2


def test_quiet_prints_errors_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "nightly.yaml", GOOD)
    assert main(["lint", "-q", str(path)]) == 0
    assert capsys.readouterr().out == ""


def test_read_variable_names_shapes(tmp_path: Path) -> None:
    assert read_variable_names(_write(tmp_path, "a.yaml", "A: 1\nB: {secret: true}\n")) == {
        "A",
        "B",
    }
    assert read_variable_names(_write(tmp_path, "b.toml", "[variables]\nX = 1\n")) == {"X"}
    assert read_variable_names(_write(tmp_path, "c.json", '["P", "Q"]')) == {"P", "Q"}
    assert read_variable_names(_write(tmp_path, "d.yaml", "")) == frozenset()


def test_lint_report_api(tmp_path: Path) -> None:
    _write(tmp_path, "x/a.yaml", GOOD)
    report = lint_paths([tmp_path / "x"], global_variables={"REGION"})
    assert report.ok and report.job_count == 1 and report.issues == []
    assert report.files[0].jobs[0].name == "nightly"


def test_calendars_unknown_and_duplicated_across_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = _write(
        tmp_path,
        "jobs.yaml",
        """\
        jobs:
          - name: close
            schedules:
              - kind: cron
                cron: "0 0 9 ? * *"
                calendar: acme
                nth_business_day: -2
              - kind: cron
                cron: "0 0 9 ? * *"
                calendar: VN
              - kind: cron
                cron: "0 0 9 ? * *"
                calendar: atlantis
            steps:
              - id: s
                type: http
        calendars:
          - name: acme
        """,
    )
    other = _write(tmp_path, "more.yaml", "calendars:\n  - name: ACME\n")
    assert main(["lint", str(jobs), str(other)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3
    assert out[0] == (
        f"{other}:2: calendars[0].name: duplicate calendar name 'ACME' (also defined at {jobs}:18)"
    )
    # The list of known calendars depends on what the process registered; VN is built in.
    warning = f"{jobs}:13: jobs[0].schedules[2].calendar: warning: unknown calendar 'atlantis'; "
    assert out[1].startswith(warning + "known calendars: VN")
    assert out[1].endswith("; nor is it defined under 'calendars:' in these files")
    assert out[2] == "lint failed: 2 files, 1 valid job, 1 error, 1 warning"
