"""Schedule-as-code on the engine (SQLite and PostgreSQL): plan, apply, prune, versions, all
or nothing, schedules of jobs, manual and scheduled runs."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from cadenza.engine._job_loader import JobFileError
from cadenza.engine._jobs import validate_jobs
from cadenza.history import InvalidArgumentError, NotFoundError

JOBS = """
jobs:
  - name: alpha
    tags: [finance, nightly]
    steps:
      - {id: fetch, type: http, timeout: 30s, config: {url: "http://127.0.0.1:9/a"}}
  - name: beta
    steps:
      - {id: ping, type: http, config: {url: "http://127.0.0.1:9/b"}}
"""

ALPHA_V2 = """
name: alpha
tags: [finance]
steps:
  - {id: fetch, type: http, timeout: 45s, config: {url: "http://127.0.0.1:9/a"}}
  - {id: load, type: http, depends_on: [fetch], config: {url: "http://127.0.0.1:9/l"}}
"""


async def test_apply_is_idempotent_and_records_versions(env, jobs, parse):
    plan = await jobs.plan("default", parse(JOBS))
    assert [(c.name, c.action) for c in plan.jobs] == [("alpha", "create"), ("beta", "create")]
    assert not await jobs.list_jobs("default")  # plan changes nothing
    result = await jobs.apply("default", parse(JOBS), identity="ci@example.vn")
    assert result.versions == {"alpha": 1, "beta": 1}
    again = await jobs.plan("default", parse(JOBS))
    assert not again.has_changes and again.render().startswith("no changes")
    second = await jobs.apply("default", parse(JOBS), identity="someone-else")
    assert second.versions == {} and not second.plan.has_changes
    listed = {j.name: j for j in await jobs.list_jobs("default")}
    assert listed["alpha"].version == 1 and listed["alpha"].applied_by == "ci@example.vn"
    described = await jobs.describe_job("default", "alpha")
    assert [(v.version, v.change, v.applied_by) for v in described.versions] == [
        (1, "created", "ci@example.vn")
    ]
    assert described.definition["tags"] == ["finance", "nightly"]


async def test_plan_shows_a_field_level_diff(env, jobs, parse):
    await jobs.apply("default", parse(JOBS), identity="ci")
    plan = await jobs.plan("default", parse(ALPHA_V2))
    by_name = {c.name: c for c in plan.jobs}
    change = by_name["alpha"]
    assert change.action == "update" and change.version == 1
    fields = {f.path: (f.kind, f.old, f.new) for f in change.fields}
    assert fields["tags"] == ("changed", ["finance", "nightly"], ["finance"])
    assert fields["steps[fetch].timeout"][0] == "changed"
    assert fields["steps[load]"][0] == "added"
    assert plan.unmanaged == ["beta"]  # not in the files, kept without --prune
    text = plan.render()
    assert "~ job alpha: update (version 1 -> 2)" in text and "+ steps[load]:" in text
    result = await jobs.apply("default", parse(ALPHA_V2), identity="dev2")
    assert result.versions == {"alpha": 2}
    described = await jobs.describe_job("default", "alpha")
    assert [(v.version, v.change, v.applied_by) for v in described.versions] == [
        (1, "created", "ci"),
        (2, "updated", "dev2"),
    ]
    assert [j.name for j in await jobs.list_jobs("default")] == ["alpha", "beta"]


async def test_prune_deletes_jobs_that_are_not_in_the_files(env, jobs, parse):
    await jobs.apply("default", parse(JOBS), identity="ci")
    plan = await jobs.plan("default", parse(ALPHA_V2), prune=True)
    assert {c.name: c.action for c in plan.jobs} == {"alpha": "update", "beta": "delete"}
    await jobs.apply("default", parse(ALPHA_V2), prune=True, identity="ci")
    assert [j.name for j in await jobs.list_jobs("default")] == ["alpha"]
    with pytest.raises(NotFoundError):
        await jobs.describe_job("default", "beta")
    versions = await jobs.store.job_versions("default", "beta")
    assert [(v.version, v.change) for v in versions] == [(1, "created"), (2, "deleted")]
    assert not (await jobs.plan("default", parse(ALPHA_V2), prune=True)).has_changes


async def test_an_invalid_job_changes_nothing(env, jobs, parse):
    await jobs.apply("default", parse(JOBS), identity="ci")
    # A schedule that can never fire is caught before anything is written.
    bad = parse(
        """
jobs:
  - name: alpha
    steps:
      - {id: fetch, type: http, timeout: 99s, config: {url: "http://127.0.0.1:9/a"}}
  - name: gamma
    schedules:
      - {kind: one_time, id: once, at: "2001-01-01T00:00:00+07:00"}
    steps:
      - {id: x, type: http, config: {url: "http://127.0.0.1:9/x"}}
"""
    )
    with pytest.raises(JobFileError) as caught:
        await jobs.apply("default", bad, prune=True, identity="ci")
    assert "jobs[1].schedules[0].at" in str(caught.value)
    assert [(j.name, j.version) for j in await jobs.list_jobs("default")] == [
        ("alpha", 1),
        ("beta", 1),
    ]
    assert not await env.engine.list_schedules("default")
    # A secret token that does not decrypt for this job and variable: nothing either.
    token = jobs.vars.encrypt_for("job/other", "PASSWORD", "hunter2")
    stolen = parse(
        f"""
name: alpha
variables:
  PASSWORD: {{secret: true, value: "{token}"}}
steps:
  - {{id: fetch, type: http, config: {{url: "http://127.0.0.1:9/a"}}}}
"""
    )
    with pytest.raises(JobFileError) as caught:
        await jobs.apply("default", stolen, identity="ci")
    assert "variables.PASSWORD.value" in str(caught.value)
    assert (await jobs.load_job("default", "alpha"))[1] == 1


async def test_job_definitions_sent_as_data_are_checked_like_files(env):
    ok = validate_jobs([{"name": "a", "steps": [{"id": "s", "type": "http"}]}])
    assert ok[0].name == "a"
    with pytest.raises(JobFileError) as caught:
        validate_jobs(
            [
                {"name": "a", "steps": [{"id": "s", "type": "http"}]},
                {"name": "b", "steps": [{"id": "s", "type": "ftp", "retries": 3}]},
            ]
        )
    text = str(caught.value)
    assert "jobs[1].steps[0].retries: unknown field" in text


SCHEDULED = """
name: ticker
schedules:
  - {kind: cron, id: every-minute, cron: "0 * * * * ?"}
steps:
  - id: tick
    type: http
    config:
      url: "@URL/tick"
      method: POST
      json:
        nominal: "{{ schedule.nominal_time | iso }}"
        source: "{{ trigger.source }}"
        schedule: "{{ schedule.id }}"
"""


async def test_schedules_of_a_job_start_the_interpreter_with_its_snapshot(
    env, jobs, parse, service, worker_for, until
):
    text = SCHEDULED.replace("@URL", service.url)
    async with worker_for(env):
        result = await jobs.apply("default", parse(text), identity="ci")
        assert result.schedules == ["+ schedule ticker/every-minute"] and not result.schedule_errors
        described = await env.engine.describe_schedule("default", "ticker/every-minute")
        assert described.action.workflow_type == "cadenza.job"
        run_input = msgspec.json.decode(bytes(described.action.input))
        assert run_input[0]["job"]["name"] == "ticker" and run_input[0]["version"] == 1
        assert not (await jobs.plan("default", parse(text))).has_changes
        await env.sleep(61)
        await until(lambda: service.calls("/tick"))
    body = service.calls("/tick")[0]["body"]
    assert body["source"] == "scheduled" and body["schedule"] == "ticker/every-minute"
    runs = await env.client.list_workflows(workflow_type="cadenza.job")
    assert runs and runs[-1].workflow_id.startswith("ticker/every-minute/")
    assert body["nominal"].endswith(":00+07:00")


async def test_schedule_drift_is_planned_and_repaired(env, jobs, parse, service, worker_for):
    text = SCHEDULED.replace("@URL", service.url)
    async with worker_for(env):
        await jobs.apply("default", parse(text), identity="ci")
        await env.engine.pause_schedule("default", "ticker/every-minute", note="ops pause")
        plan = await jobs.plan("default", parse(text))
        assert [(s.schedule_id, s.action) for s in plan.schedules] == [
            ("ticker/every-minute", "update")
        ]
        assert any(f.path == "spec.paused" for f in plan.schedules[0].fields)
        await jobs.apply("default", parse(text), identity="ci")
        assert not (await env.engine.describe_schedule("default", "ticker/every-minute")).paused
        # A new cron: the job and its schedule change together.
        changed = text.replace('cron: "0 * * * * ?"', 'cron: "0 */5 * * * ?"')
        plan = await jobs.plan("default", parse(changed))
        assert {c.name: c.action for c in plan.jobs} == {"ticker": "update"}
        paths = {f.path for f in plan.schedules[0].fields}
        assert {"spec.cron", "action.input", "action.memo.job_version"} <= paths
        await jobs.apply("default", parse(changed), identity="ci")
        described = await env.engine.describe_schedule("default", "ticker/every-minute")
        assert described.spec["cron"] == "0 */5 * * * ?"
        # Pruning the job deletes its schedule.
        await jobs.apply("default", parse(JOBS), prune=True, identity="ci")
    assert not await env.engine.list_schedules("default")


async def test_run_job_checks_the_trigger_and_the_name(env, jobs, parse, service, worker_for):
    text = """
name: only-scheduled
triggers: [scheduled]
steps:
  - {id: a, type: http, config: {url: "@URL/a"}}
"""
    await jobs.apply("default", parse(text.replace("@URL", service.url)), identity="t")
    with pytest.raises(InvalidArgumentError) as caught:
        await jobs.run_job("default", "only-scheduled")
    assert "does not allow manual runs" in caught.value.reason
    with pytest.raises(NotFoundError):
        await jobs.run_job("default", "nope")
    hooks = """
name: hooked
triggers: [manual, webhook]
steps:
  - {id: a, type: http, config: {url: "@URL/hook", method: POST, json: "{{ trigger.payload }}"}}
"""
    await jobs.apply("default", parse(hooks.replace("@URL", service.url)), identity="t")
    async with worker_for(env):
        started = await jobs.run_job("default", "hooked", input={"order": 7}, source="webhook")
        assert started.workflow_id.startswith("hooked/webhook/")
        result: dict[str, Any] = await env.client.get_workflow_handle(started.workflow_id).result()
    assert result["status"] == "completed"
    assert service.calls("/hook")[0]["body"] == {"order": 7}
