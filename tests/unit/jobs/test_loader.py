"""Loading job files: every feature loads; every bad input names file, line and field."""

from __future__ import annotations

import json
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from cadenza.engine._job_loader import (
    JobFileError,
    expand_paths,
    load_job_file,
    load_job_files,
    load_job_set,
    load_job_text,
)
from cadenza.engine._job_model import Compensate, JobDefinition, RetryPolicy, Variable
from cadenza.history import InvalidArgumentError
from cadenza.timers._spec import (
    CronSchedule,
    FixedDelaySchedule,
    FixedRateSchedule,
    OneTimeSchedule,
)

FULL_YAML = (Path(__file__).parent / "examples" / "full.yaml").read_text(encoding="utf-8")
"""Every feature of the format in one file (also validated against the JSON Schema)."""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_full_yaml_loads_every_feature(tmp_path: Path) -> None:
    path = _write(tmp_path, "jobs/nightly.yaml", FULL_YAML)
    jobs = load_job_files([path], step_types={"reconcile_rollback"})
    assert [job.name for job in jobs] == ["nightly-reconciliation", "hourly-health"]
    job = jobs[0]
    assert job.owner == "payments-team@example.vn"
    assert job.tags == ["finance", "nightly"]
    assert job.triggers == ["scheduled", "manual", "webhook"]
    assert job.execution_timeout == timedelta(hours=2)
    assert job.retry == RetryPolicy(
        initial_interval=timedelta(seconds=5),
        backoff_coefficient=3,
        maximum_interval=timedelta(minutes=5),
        maximum_attempts=4,
        non_retryable_error_types=["BadFile"],
    )
    cron, rate, delay, once, business = job.schedules
    assert isinstance(cron, CronSchedule) and cron.cron == "0 30 1 * * ?"
    assert cron.jitter == timedelta(seconds=30) and cron.overlap == "buffer_one"
    assert cron.catch_up.window == timedelta(hours=6) and cron.dst.nonexistent == "skip"
    assert isinstance(rate, FixedRateSchedule) and rate.every == timedelta(minutes=90)
    assert rate.start == datetime(2025, 1, 1) and rate.max_runs == 100 and rate.paused
    assert rate.end is not None and rate.end.utcoffset() == timedelta(hours=7)
    assert isinstance(delay, FixedDelaySchedule) and delay.every == timedelta(minutes=10)
    assert isinstance(once, OneTimeSchedule) and once.at == datetime(2025, 2, 1, 9)
    assert business.nth_business_day == "last"
    assert job.variables == {
        "BANK": Variable(value="vcb"),
        "BATCH_SIZE": Variable(value=500),
        "SFTP_PASSWORD": Variable(secret=True, description="from the secret store"),
        "OPTIONS": Variable(value={"fast": True}),
    }
    post = job.step("post-batches")
    assert post.for_each is not None
    assert (post.for_each.items, post.for_each.concurrency, post.for_each.item_var) == (
        "{{ steps.parse.output.batches }}",
        4,
        "batch",
    )
    assert post.on_failure == Compensate(compensate="rollback")
    assert post.retry == RetryPolicy(maximum_attempts=10)
    assert job.step("mail").on_failure == "continue"
    assert job.step("fetch").timeout == timedelta(minutes=10)
    assert job.compensation_step_ids() == {"rollback"}


def test_same_job_in_json_and_toml_is_equal(tmp_path: Path) -> None:
    yaml_job = load_job_files(
        [_write(tmp_path, "a.yaml", FULL_YAML)], step_types={"reconcile_rollback"}
    )
    # JSON: the same data (date-times as text).
    import yaml

    data = yaml.safe_load(FULL_YAML)
    data["jobs"][0]["schedules"][1]["start"] = "2025-01-01T00:00:00"
    data["jobs"][0]["schedules"][1]["end"] = "2026-01-01T00:00:00+07:00"
    json_path = _write(tmp_path, "b.json", json.dumps(data, indent=2, default=str))
    json_jobs = load_job_files([json_path], step_types={"reconcile_rollback"})
    assert json_jobs == yaml_job
    toml_text = """\
    name = "hourly-health"
    description = "Ping every service"
    execution_timeout = 300

    [retry]
    maximum_attempts = 2

    [variables]
    BASE = "https://status.local"
    TOKEN = { secret = true }

    [[schedules]]
    kind = "cron"
    cron = "0 0 * * * ?"
    start = 2025-01-01T00:00:00+07:00

    [[schedules]]
    kind = "fixed_rate"
    every = "15m"

    [[steps]]
    id = "list"
    type = "http"
    config = { url = "${BASE}/services" }

    [[steps]]
    id = "ping"
    type = "http"
    depends_on = ["list"]

    [steps.for_each]
    items = "{{ steps.list.output.services }}"
    concurrency = 8
    as = "svc"

    [steps.config]
    url = "{{ svc.url }}"
    headers = { Authorization = "Bearer ${TOKEN}" }
    """
    (job,) = load_job_files([_write(tmp_path, "c.toml", toml_text)])
    assert job.name == "hourly-health"
    assert job.execution_timeout == timedelta(minutes=5)
    assert job.variables["TOKEN"] == Variable(secret=True)
    assert [s.kind for s in job.schedules] == ["cron", "fixed_rate"]
    assert job.step("ping").for_each.item_var == "svc"
    assert job.step("ping").config["headers"] == {"Authorization": "Bearer ${TOKEN}"}


def test_single_job_file_and_directories(tmp_path: Path) -> None:
    _write(tmp_path, "jobs/a.yaml", "name: a\nsteps: [{id: s, type: http}]\n")
    _write(tmp_path, "jobs/sub/b.yml", "name: b\nsteps: [{id: s, type: sql}]\n")
    _write(tmp_path, "jobs/c.json", '{"name": "c", "steps": [{"id": "s", "type": "email"}]}')
    _write(tmp_path, "jobs/README.md", "not a job")
    _write(tmp_path, "jobs/.hidden/x.yaml", "garbage: [")
    assert [p.name for p in expand_paths([tmp_path / "jobs"])] == ["a.yaml", "c.json", "b.yml"]
    assert [j.name for j in load_job_files([tmp_path / "jobs"])] == ["a", "c", "b"]
    assert [j.name for j in load_job_files(str(tmp_path / "jobs" / "a.yaml"))] == ["a"]
    with pytest.raises(InvalidArgumentError, match="no such file"):
        load_job_files([tmp_path / "missing"])


def test_snapshot_round_trip_through_json(tmp_path: Path) -> None:
    (job, _) = load_job_files(
        [_write(tmp_path, "a.yaml", FULL_YAML)], step_types={"reconcile_rollback"}
    )
    encoded = msgspec.json.encode(job)
    assert msgspec.json.decode(encoded, type=JobDefinition) == job


# --------------------------------------------------------------------------- bad input


def _issues(tmp_path: Path, name: str, text: str, **options: object) -> list[str]:
    path = _write(tmp_path, name, text)
    loaded = load_job_file(path, **options)  # type: ignore[arg-type]
    return [str(issue).removeprefix(str(tmp_path) + "/") for issue in loaded.issues]


BAD_CASES = [
    pytest.param(
        "nightly.yaml",
        """\
        jobs:
          - name: nightly
            steps:
              - id: a
                type: http
              - id: b
                type: http
              - id: c
                type: http
                retry:
                  maximum_attempts: three
        """,
        [
            'nightly.yaml:11: jobs[0].steps[2].retry.maximum_attempts: expected an integer, got "three"'
        ],
        id="wrong-type-nested",
    ),
    pytest.param(
        "bad.yaml",
        "name: x\nsteps:\n  - id: a\n    type: http\n    config: {url: [\n",
        [
            "bad.yaml:6: yaml: expected the node content, but found '<stream end>' "
            "while parsing a flow node (column 1)"
        ],
        id="malformed-yaml",
    ),
    pytest.param(
        "bad.json",
        '{\n  "name": "x",\n  "steps": [\n    {"id": "a", "type": "http",}\n  ]\n}\n',
        ["bad.json:4: json: Expecting property name enclosed in double quotes (column 32)"],
        id="malformed-json",
    ),
    pytest.param(
        "bad.toml",
        'name = "x"\n\n[[steps]]\nid = "a"\ntype = http\n',
        ["bad.toml:5: toml: Invalid value (at line 5, column 8)"],
        id="malformed-toml",
    ),
    pytest.param(
        "unknown.yaml",
        "name: x\nsteps:\n  - id: a\n    type: http\n    retries: 3\n",
        ["unknown.yaml:5: steps[0].retries: unknown field; did you mean 'retry'?"],
        id="unknown-field",
    ),
    pytest.param(
        "missing.yaml",
        "name: x\nsteps:\n  - id: a\n  - id: b\n    type: http\n",
        ["missing.yaml:3: steps[0].type: missing required field"],
        id="missing-field",
    ),
    pytest.param(
        "dup.yaml",
        "name: x\nsteps:\n  - id: a\n    type: http\n  - id: a\n    type: sql\n",
        ["dup.yaml:5: steps[1].id: duplicate step id 'a' (first at steps[0])"],
        id="duplicate-step-id",
    ),
    pytest.param(
        "deps.yaml",
        "name: x\nsteps:\n  - id: a\n    type: http\n    depends_on: [b, ghost]\n  - id: b\n    type: http\n",
        ["deps.yaml:5: steps[0].depends_on[1]: unknown step 'ghost' in depends_on"],
        id="unknown-dependency",
    ),
    pytest.param(
        "comp.yaml",
        "name: x\nsteps:\n  - id: a\n    type: http\n    on_failure:\n      compensate: undo\n",
        ["comp.yaml:6: steps[0].on_failure.compensate: unknown compensation step 'undo'"],
        id="unknown-compensation",
    ),
    pytest.param(
        "cycle.yaml",
        """\
        name: x
        steps:
          - id: a
            type: http
          - id: b
            type: http
            depends_on: [d]
          - id: c
            type: http
            depends_on: [b]
          - id: d
            type: http
            depends_on: [c]
        """,
        ["cycle.yaml:7: steps[1].depends_on: dependency cycle: b -> d -> c -> b"],
        id="cycle",
    ),
    pytest.param(
        "type.yaml",
        "name: x\nsteps:\n  - id: a\n    type: ftp\n",
        [
            "type.yaml:4: steps[0].type: unknown step type 'ftp' (known: email, file, http, sftp, "
            "sql, workflow; register the activity or pass it to lint with --step-type)"
        ],
        id="unknown-step-type",
    ),
    pytest.param(
        "tpl.yaml",
        'name: x\nsteps:\n  - id: a\n    type: http\n    config:\n      headers:\n        X-Day: "{{ schedule.nominal_time | }}"\n',
        [
            "tpl.yaml:7: steps[0].config.headers.X-Day: expected a filter name after '|', found the end of the expression at column 28"
        ],
        id="template-syntax",
    ),
    pytest.param(
        "when.yaml",
        "name: x\nsteps:\n  - id: a\n    type: http\n    when: steps.a.output.n >> 3\n",
        ["when.yaml:5: steps[0].when: expected a value, found '>' at column 19"],
        id="condition-syntax",
    ),
    pytest.param(
        "ref.yaml",
        """\
        name: x
        steps:
          - id: a
            type: http
          - id: b
            type: http
            config:
              id: "{{ steps.a.output.id }}"
              other: "{{ steps.zz.output }}"
        """,
        [
            "ref.yaml:8: steps[1].config.id: steps.a.output.id: step 'b' reads step 'a' but does not depend on it (add 'a' to depends_on)",
            "ref.yaml:9: steps[1].config.other: steps.zz.output: unknown step 'zz'",
        ],
        id="step-references",
    ),
    pytest.param(
        "sched.yaml",
        """\
        name: x
        schedules:
          - kind: fixed_rate
            every: 0s
          - kind: cron
            cron: "@daily"
            timezone: Asia/Hanoi_City
          - kind: one_time
            at: 2025-01-01
            start: 2025-02-01
            end: 2025-01-15
        steps:
          - id: a
            type: http
        """,
        [
            "sched.yaml:4: schedules[0].every: must be a positive interval",
            "sched.yaml:7: schedules[1].timezone: unknown time zone 'Asia/Hanoi_City'",
            "sched.yaml:11: schedules[2].end: must be after start (2025-02-01T00:00:00)",
            "sched.yaml:9: schedules[2].at: is before start",
        ],
        id="schedule-validation",
    ),
    pytest.param(
        "dur.yaml",
        "name: x\nexecution_timeout: forever\nsteps:\n  - id: a\n    type: http\n",
        [
            "dur.yaml:2: execution_timeout: expected a duration such as '30s', '5m', '1h30m', '2d', 'PT5M' or seconds, got \"forever\""
        ],
        id="bad-duration",
    ),
    pytest.param(
        "kind.yaml",
        "name: x\nschedules:\n  - kind: hourly\nsteps:\n  - id: a\n    type: http\n",
        [
            'kind.yaml:3: schedules[0].kind: expected one of cron, fixed_rate, fixed_delay, one_time, got "hourly"'
        ],
        id="bad-schedule-kind",
    ),
    pytest.param(
        "name.yaml",
        "name: Nightly Job\nsteps:\n  - id: a\n    type: http\n",
        [
            "name.yaml:1: name: 'Nightly Job' is not a valid job name: use lower-case letters, digits, '_', '.', '-' (at most 100, starting and ending with a letter or digit)"
        ],
        id="bad-job-name",
    ),
    pytest.param(
        "trig.yaml",
        "name: x\ntriggers: [manual, cron]\nsteps:\n  - id: a\n    type: http\n",
        ['trig.yaml:2: triggers[1]: expected one of manual, scheduled, webhook, got "cron"'],
        id="bad-trigger",
    ),
    pytest.param(
        "nosched.yaml",
        "name: x\ntriggers: [manual]\nschedules:\n  - kind: cron\n    cron: '@daily'\nsteps:\n  - id: a\n    type: http\n",
        [
            "nosched.yaml:2: triggers: the job has schedules but does not allow the 'scheduled' trigger"
        ],
        id="schedules-without-trigger",
    ),
    pytest.param(
        "var.yaml",
        "name: x\nvariables:\n  TOKEN: {value: a, secret: 'yes'}\nsteps:\n  - id: a\n    type: http\n",
        ["var.yaml:3: variables.TOKEN.secret: expected a boolean (true or false)"],
        id="bad-variable",
    ),
    pytest.param(
        "secretwhen.yaml",
        "name: x\nvariables:\n  TOKEN: {secret: true}\nsteps:\n  - id: a\n    type: http\n    when: ${TOKEN} == 'x'\n",
        ["secretwhen.yaml:7: steps[0].when: secret variable 'TOKEN' cannot be used in a condition"],
        id="secret-in-condition",
    ),
    pytest.param(
        "foreach.yaml",
        "name: x\nsteps:\n  - id: a\n    type: http\n    for_each:\n      items: not-a-template\n      concurrency: 0\n",
        ["foreach.yaml:7: steps[0].for_each.concurrency: expected an integer >= 1, got 0"],
        id="for-each-concurrency",
    ),
    pytest.param(
        "foreach2.yaml",
        "name: x\nsteps:\n  - id: a\n    type: http\n    for_each:\n      items: not-a-template\n      as: steps\n",
        [
            "foreach2.yaml:7: steps[0].for_each.as: 'steps' cannot name the item: use a name of letters, digits, '_' other than execution, schedule, steps, trigger, vars",
            'foreach2.yaml:6: steps[0].for_each.items: must be a list or a template that renders to a list (e.g. "{{ steps.list.output.files }}")',
        ],
        id="for-each-items",
    ),
    pytest.param(
        "dupkey.yaml",
        "name: x\nsteps:\n  - id: a\n    type: http\n    type: sql\n",
        ["dupkey.yaml:5: steps[0].type: duplicate key 'type' (first at line 4)"],
        id="duplicate-key",
    ),
    pytest.param(
        "empty.yaml",
        "# nothing\n",
        [
            "empty.yaml:1: (file): the file is empty: expected one job, or 'jobs:' with a list of jobs"
        ],
        id="empty-file",
    ),
    pytest.param(
        "nosteps.yaml",
        "name: x\nsteps: []\n",
        ["nosteps.yaml:2: steps: must not be empty"],
        id="no-steps",
    ),
    pytest.param(
        "top.yaml",
        "jobs:\n  - name: a\n    steps: [{id: s, type: http}]\nowner: me\n",
        [
            "top.yaml:4: owner: unknown field: a file with 'jobs:' holds only 'jobs' and 'calendars' "
            "(put job fields inside each job)"
        ],
        id="field-beside-jobs",
    ),
    pytest.param(
        "dupname.yaml",
        "jobs:\n  - name: a\n    steps: [{id: s, type: http}]\n  - name: a\n    steps: [{id: s, type: http}]\n",
        ["dupname.yaml:4: jobs[1].name: duplicate job name 'a' (first at line 2)"],
        id="duplicate-job-name-in-file",
    ),
    pytest.param(
        "json_type.json",
        '{\n  "jobs": [\n    {\n      "name": "a",\n      "steps": [\n        {"id": "s", "type": "http",\n         "timeout": true}\n      ]\n    }\n  ]\n}\n',
        ["json_type.json:7: jobs[0].steps[0].timeout: expected a duration or null, got true"],
        id="json-line-of-nested-field",
    ),
    pytest.param(
        "toml_type.toml",
        'name = "a"\n\n[[steps]]\nid = "s"\ntype = "http"\n\n[[steps]]\nid = "t"\ntype = "http"\n\n[steps.retry]\nmaximum_attempts = "three"\n',
        ['toml_type.toml:12: steps[1].retry.maximum_attempts: expected an integer, got "three"'],
        id="toml-line-of-nested-field",
    ),
]


@pytest.mark.parametrize(("name", "text", "expected"), BAD_CASES)
def test_bad_input_is_located(tmp_path: Path, name: str, text: str, expected: list[str]) -> None:
    assert _issues(tmp_path, name, text) == expected
    with pytest.raises(JobFileError) as info:
        load_job_files([tmp_path / name])
    assert [str(i).removeprefix(str(tmp_path) + "/") for i in info.value.issues] == expected
    assert isinstance(info.value, InvalidArgumentError)


def test_unknown_variables_only_with_known_globals(tmp_path: Path) -> None:
    text = "name: x\nvariables: {A: 1}\nsteps:\n  - id: s\n    type: http\n    config: {u: '${A}/${B}/${C}'}\n"
    assert _issues(tmp_path, "v.yaml", text) == []
    assert _issues(tmp_path, "v.yaml", text, global_variables={"B"}) == [
        "v.yaml:6: steps[0].config.u: unknown variable 'C' (not a job variable nor a global one; known: A, B)"
    ]


def test_registered_step_types_are_accepted(tmp_path: Path) -> None:
    text = "name: x\nsteps:\n  - id: s\n    type: my_activity\n"
    assert _issues(tmp_path, "t.yaml", text, step_types={"my_activity"}) == []


def test_all_or_nothing_across_files(tmp_path: Path) -> None:
    good = _write(tmp_path, "good.yaml", "name: good\nsteps: [{id: s, type: http}]\n")
    bad = _write(tmp_path, "bad.yaml", "name: bad\nsteps: [{id: s, type: nope}]\n")
    again = _write(tmp_path, "again.yaml", "name: good\nsteps: [{id: s, type: http}]\n")
    with pytest.raises(JobFileError) as info:
        load_job_files([good, bad, again])
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{bad}:2: steps[0].type: unknown step type 'nope'")
    assert lines[1] == f"{again}:1: name: duplicate job name 'good' (also defined at {good}:1)"
    assert info.value.field == f"{bad}:2: steps[0].type"


def test_load_job_text_for_uploads() -> None:
    loaded = load_job_text(
        '{"name": "a", "steps": [{"id": "s", "type": "http"}]}', filename="upload.json"
    )
    assert loaded.ok and [j.name for j in loaded.jobs] == ["a"]
    toml = load_job_text('name = "a"\n[[steps]]\nid = "s"\ntype = "sql"\n', format="toml")
    assert toml.ok and toml.jobs[0].steps[0].type == "sql"
    unknown = load_job_text("x", filename="job.txt")
    assert [str(i) for i in unknown.issues] == [
        "job.txt:1: (file): unknown format: use .yaml, .yml, .json or .toml"
    ]


def test_yaml_anchors_and_merge_keys(tmp_path: Path) -> None:
    text = """\
    name: x
    description: &d shared
    steps:
      - &base
        id: a
        type: http
        timeout: 30s
      - <<: *base
        id: b
        depends_on: [a]
        description: *d
    """
    (job,) = load_job_files([_write(tmp_path, "m.yaml", text)])
    assert job.step("b").timeout == timedelta(seconds=30)
    assert job.step("b").description == "shared"
    bad = "name: x\nsteps:\n  - &base\n    id: a\n    type: http\n    retrys: 1\n  - <<: *base\n    id: b\n"
    assert (
        _issues(tmp_path, "m2.yaml", bad)[0]
        == "m2.yaml:6: steps[0].retrys: unknown field; did you mean 'retry'?"
    )


# --------------------------------------------------------------------------- calendars


def test_calendars_load_beside_jobs(tmp_path: Path) -> None:
    path = _write(tmp_path, "full.yaml", FULL_YAML)
    job_set = load_job_set([path], step_types={"reconcile_rollback"})
    assert [c["name"] for c in job_set.calendars] == ["acme-bank"]
    assert job_set.jobs[0].schedules[4].calendar == "acme-bank"
    only = _write(tmp_path, "cal.toml", '[[calendars]]\nname = "plant"\nweekend = ["sun"]\n')
    assert load_job_set([only]).calendars == [{"name": "plant", "weekend": ["sun"]}]
    assert load_job_files([only]) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "calendars:\n  - name: x\n    holidays:\n      - {lunar: '13-01', name: a}\n",
            ["c.yaml:4: calendars[0].holidays[0].lunar: month must be 1..12, got 13"],
        ),
        (
            "calendars:\n  - name: x\n    weekends: [sat]\n",
            [
                "c.yaml:3: calendars[0].weekends: unknown field; allowed: description, holidays, "
                "include, makeup_workdays, name, substitute, weekend"
            ],
        ),
        (
            "calendars:\n  - name: x\n  - name: X\n",
            ["c.yaml:3: calendars[1].name: duplicate calendar name 'X' (first at line 2)"],
        ),
        ("calendars: {name: x}\n", ["c.yaml:1: calendars: expected a list of calendars, got dict"]),
        (
            "name: j\ncalendars: []\nsteps: [{id: s, type: http}]\n",
            ["c.yaml:2: calendars: 'calendars:' goes beside 'jobs:', not inside a job"],
        ),
    ],
)
def test_bad_calendars_are_located(tmp_path: Path, text: str, expected: list[str]) -> None:
    assert _issues(tmp_path, "c.yaml", text) == expected
