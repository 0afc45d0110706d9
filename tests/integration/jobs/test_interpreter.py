"""The job interpreter on the engine (SQLite and PostgreSQL): order, parallel branches, when,
on_failure, compensation, for_each, templates, the logical date, snapshots, child workflows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from aiohttp import web

from cadenza.engine._job_contract import JobTrigger
from cadenza.history import WorkflowFailureError
from cadenza.history import events as ev
from cadenza.sdk import workflow
from cadenza.sdk._job_interpreter import JobInterpreter
from cadenza.sdk.testing import replay_history


def scheduled_ids(history: list[Any]) -> list[str]:
    """activity_id of every scheduled activity, in history order."""
    return [
        e.attributes.activity_id
        for e in history
        if isinstance(e.attributes, ev.ActivityTaskScheduled)
    ]


async def apply(jobs, parse, text: str, url: str, **kw: Any):
    return await jobs.apply("default", parse(text.replace("@URL", url), **kw), identity="test")


async def run(env, jobs, name: str, input: Any = None):
    started = await jobs.run_job("default", name, input=input, identity="tester")
    return env.client.get_workflow_handle(started.workflow_id)


async def outcome(handle) -> tuple[dict[str, Any], bool]:
    """The run's summary and whether it completed (a failed run's summary is in its failure)."""
    try:
        return await handle.result(), True
    except WorkflowFailureError as exc:
        cause = exc.__cause__
        assert getattr(cause, "type", None) == "JobFailed", cause
        return cause.details[0], False


PARALLEL = """
name: diamond
steps:
  - {id: a, type: http, config: {url: "@URL/a"}}
  - {id: b, type: http, depends_on: [a], config: {url: "@URL/b"}}
  - {id: c, type: http, depends_on: [a], config: {url: "@URL/c"}}
  - id: d
    type: http
    depends_on: [b, c]
    config:
      url: "@URL/d"
      method: POST
      json: {from_b: "{{ steps.b.output.body.path }}", from_c: "{{ steps.c.output.body.path }}"}
"""


async def test_dependency_order_and_parallel_branches(env, jobs, parse, service, worker_for, until):
    await apply(jobs, parse, PARALLEL, service.url)
    gate = service.gates["/b"] = service.gates["/c"] = asyncio.Event()
    async with worker_for(env):
        handle = await run(env, jobs, "diamond")
        # b and c are both in flight at once: independent branches run in parallel.
        await until(lambda: service.active.get("/b") == 1 and service.active.get("/c") == 1)
        assert not service.calls("/d")
        gate.set()
        summary, ok = await outcome(handle)
    assert ok
    paths = [r["path"] for r in service.requests]
    assert paths[0] == "/a" and paths[-1] == "/d" and sorted(paths[1:3]) == ["/b", "/c"]
    assert service.calls("/d")[0]["body"] == {"from_b": "/b", "from_c": "/c"}
    assert {k: v["status"] for k, v in summary["steps"].items()} == {
        "a": "completed",
        "b": "completed",
        "c": "completed",
        "d": "completed",
    }
    history = await handle.fetch_history()
    ids = scheduled_ids(history)
    assert ids[0] == "a" and ids[-1] == "d" and sorted(ids[1:3]) == ["b", "c"]
    completed = [e for e in history if isinstance(e.attributes, ev.ActivityTaskCompleted)]
    assert msgspec.json.decode(bytes(completed[0].attributes.result))["body"]["path"] == "/a"


WHEN = """
name: conditional
steps:
  - {id: check, type: http, config: {url: "@URL/check"}}
  - id: load
    type: http
    depends_on: [check]
    when: steps.check.output.body.count > 0
    config: {url: "@URL/load"}
  - id: report
    type: http
    depends_on: [load]
    config:
      url: "@URL/report"
      method: POST
      json:
        load: "{{ steps.load.status }}"
        output: "{{ steps.load.output | default('none') }}"
"""


async def test_when_false_skips_and_dependents_still_run(env, jobs, parse, service, worker_for):
    await apply(jobs, parse, WHEN, service.url)

    async def zero(request: web.Request, body: Any) -> web.Response:
        return web.json_response({"count": 0})

    service.handlers["/check"] = zero
    async with worker_for(env):
        summary, ok = await outcome(await run(env, jobs, "conditional"))
    assert ok
    assert not service.calls("/load")
    assert summary["steps"]["load"] == {"status": "skipped"}
    assert service.calls("/report")[0]["body"] == {"load": "skipped", "output": "none"}


FAILURES = """
name: failures
steps:
  - id: flaky
    type: http
    on_failure: continue
    config: {url: "@URL/missing"}
  - id: after
    type: http
    depends_on: [flaky]
    config:
      url: "@URL/after"
      method: POST
      json: {flaky: "{{ steps.flaky.status }}"}
"""


async def test_on_failure_continue_records_the_failure_and_goes_on(
    env, jobs, parse, service, worker_for
):
    await apply(jobs, parse, FAILURES, service.url)

    async def not_found(request: web.Request, body: Any) -> web.Response:
        return web.json_response({"error": "no such thing"}, status=404)

    service.handlers["/missing"] = not_found
    async with worker_for(env):
        summary, ok = await outcome(await run(env, jobs, "failures"))
    assert ok
    assert summary["steps"]["flaky"]["status"] == "failed"
    assert summary["steps"]["flaky"]["error_type"] == "HttpClientError"
    assert service.calls("/after")[0]["body"] == {"flaky": "failed"}
    assert len(service.calls("/missing")) == 1  # a 4xx is not retried


FAIL_FAST = """
name: fail-fast
steps:
  - {id: slow, type: http, config: {url: "@URL/slow"}}
  - id: broken
    type: http
    retry: {maximum_attempts: 1}
    config: {url: "@URL/broken"}
  - {id: never, type: http, depends_on: [broken], config: {url: "@URL/never"}}
"""


async def test_on_failure_fail_cancels_running_steps_and_fails_the_job(
    env, jobs, parse, service, worker_for, until
):
    await apply(jobs, parse, FAIL_FAST, service.url)
    gate = service.gates["/slow"] = asyncio.Event()

    async def boom(request: web.Request, body: Any) -> web.Response:
        return web.json_response({"error": "down"}, status=503)

    service.handlers["/broken"] = boom
    async with worker_for(env):
        handle = await run(env, jobs, "fail-fast")
        try:
            summary, ok = await outcome(handle)
        finally:
            gate.set()
    assert not ok
    assert summary["status"] == "failed" and summary["failed_step"] == "broken"
    assert summary["steps"]["broken"]["error_type"] == "HttpServerError"
    assert summary["steps"]["slow"]["status"] == "cancelled"
    assert "never" not in summary["steps"] and not service.calls("/never")
    assert len(service.calls("/broken")) == 1
    history = await handle.fetch_history()
    assert any(isinstance(e.attributes, ev.ActivityTaskCancelRequested) for e in history)


COMPENSATE = """
name: order
steps:
  - {id: reserve, type: http, config: {url: "@URL/reserve", method: POST, json: {sku: A1}}}
  - id: charge
    type: http
    depends_on: [reserve]
    on_failure: {compensate: release}
    config: {url: "@URL/charge", method: POST}
  - id: release
    type: http
    config:
      url: "@URL/release"
      method: POST
      json: {reserved: "{{ steps.reserve.output.body.body.sku }}"}
  - {id: ship, type: http, depends_on: [charge], config: {url: "@URL/ship"}}
"""


@pytest.mark.parametrize("charge_fails", [True, False])
async def test_compensation_runs_only_when_its_step_fails(
    env, jobs, parse, service, worker_for, charge_fails
):
    await apply(jobs, parse, COMPENSATE, service.url)

    async def declined(request: web.Request, body: Any) -> web.Response:
        return web.json_response({"error": "card declined"}, status=402)

    if charge_fails:
        service.handlers["/charge"] = declined
    async with worker_for(env):
        summary, ok = await outcome(await run(env, jobs, "order"))
    if charge_fails:
        assert not ok and summary["failed_step"] == "charge"
        assert service.calls("/release")[0]["body"] == {"reserved": "A1"}
        assert summary["steps"]["release"]["compensation"] == "charge"
        assert not service.calls("/ship")
    else:
        assert ok
        assert not service.calls("/release") and "release" not in summary["steps"]
        assert [r["path"] for r in service.requests] == ["/reserve", "/charge", "/ship"]


FOR_EACH = """
name: batches
steps:
  - {id: list, type: http, config: {url: "@URL/list"}}
  - id: post
    type: http
    depends_on: [list]
    for_each:
      items: "{{ steps.list.output.body.rows | chunk(2) }}"
      concurrency: 2
      as: batch
    on_failure: continue
    config:
      url: "@URL/post"
      method: POST
      json: {part: "{{ batch_index }}", ids: "{{ batch[*].id }}"}
"""


async def test_for_each_respects_concurrency_and_keeps_item_order(
    env, jobs, parse, service, worker_for, until
):
    await apply(jobs, parse, FOR_EACH, service.url)

    async def rows(request: web.Request, body: Any) -> web.Response:
        return web.json_response({"rows": [{"id": i} for i in range(1, 12)]})

    async def post(request: web.Request, body: Any) -> web.Response:
        if body["part"] == 3:
            return web.json_response({"error": "rejected"}, status=422)
        return web.json_response({"accepted": body["ids"]})

    service.handlers["/list"] = rows
    service.handlers["/post"] = post
    gate = service.gates["/post"] = asyncio.Event()
    async with worker_for(env):
        handle = await run(env, jobs, "batches")
        await until(lambda: service.active.get("/post") == 2)
        gate.set()
        summary, ok = await outcome(handle)
    assert ok  # on_failure: continue
    assert service.peak["/post"] == 2  # never more than `concurrency` at once
    step = summary["steps"]["post"]
    assert step["status"] == "failed" and step["error"].startswith("1 of 6 items failed")
    outputs = step["output"]
    assert [o["body"]["accepted"] if o else None for o in outputs] == [
        [1, 2],
        [3, 4],
        [5, 6],
        None,
        [9, 10],
        [11],
    ]
    history = await handle.fetch_history()
    assert sorted(scheduled_ids(history)[1:]) == sorted(f"post[{i}]" for i in range(6))


TEMPLATES = """
name: templated
variables: {REGION: south}
steps:
  - {id: fetch, type: http, config: {url: "@URL/rows"}}
  - id: use
    type: http
    depends_on: [fetch]
    config:
      url: "@URL/use/{{ steps.fetch.output.body.rows[0].id }}"
      method: POST
      json:
        first: "{{ steps.fetch.output.body.rows[0].id }}"
        skus: "{{ steps.fetch.output.body.rows[*].sku }}"
        file: "settle_{{ schedule.nominal_time | yesterday | format('%Y%m%d') }}.csv"
        from: "{{ schedule.nominal_time | date_add(months=-1) | start_of_month }}"
        to: "{{ schedule.nominal_time | date_add(months=-1) | end_of_month }}"
        at: "{{ schedule.nominal_time | iso }}"
        region: "${REGION}"
        source: "{{ trigger.source }}"
        payload: "{{ trigger.payload.note }}"
        run: "{{ execution.id }}"
"""


async def test_templates_read_outputs_trigger_and_the_logical_date(
    env, jobs, parse, service, worker_for
):
    await apply(jobs, parse, TEMPLATES, service.url)

    async def rows(request: web.Request, body: Any) -> web.Response:
        return web.json_response({"rows": [{"id": 11, "sku": "a"}, {"id": 12, "sku": "b"}]})

    service.handlers["/rows"] = rows
    job, version = await jobs.load_job("default", "templated")
    # 00:30 on 1 April in Ho Chi Minh City is 17:30 UTC on 31 March: "yesterday" is 31 March.
    request = jobs.start_request(
        "default",
        job,
        version,
        workflow_id="templated/fire",
        trigger=JobTrigger(
            source="scheduled",
            nominal_time=datetime(2025, 3, 31, 17, 30, tzinfo=UTC),
            payload={"note": "n1"},
        ),
    )
    async with worker_for(env):
        await env.engine.start_workflow(request)
        _summary, ok = await outcome(env.client.get_workflow_handle("templated/fire"))
    assert ok
    call = service.calls("/use/11")[0]
    assert call["body"] == {
        "first": 11,
        "skus": ["a", "b"],
        "file": "settle_20250331.csv",
        "from": "2025-03-01",
        "to": "2025-03-31",
        "at": "2025-04-01T00:30:00+07:00",
        "region": "south",
        "source": "scheduled",
        "payload": "n1",
        "run": "templated/fire",
    }


async def test_a_missing_reference_fails_the_step_naming_it(env, jobs, parse, service, worker_for):
    text = """
name: broken-ref
steps:
  - {id: fetch, type: http, config: {url: "@URL/rows"}}
  - id: use
    type: http
    depends_on: [fetch]
    config: {url: "@URL/use/{{ steps.fetch.output.body.rowz }}"}
"""
    await apply(jobs, parse, text, service.url)
    async with worker_for(env):
        summary, ok = await outcome(await run(env, jobs, "broken-ref"))
    assert not ok
    step = summary["steps"]["use"]
    assert step["error_type"] == "TemplateError"
    assert "steps.use.config.url" in step["error"] and "'rowz'" in step["error"]
    assert not service.calls("/use/")


async def test_an_unknown_step_type_fails_with_a_typed_error_naming_it(
    env, jobs, parse, service, worker_for
):
    text = """
name: files
steps:
  - {id: read, type: ledger_post, config: {path: /tmp/x.csv}}
"""
    # The files may name a step type (an activity) that no worker of the queue registers.
    await apply(jobs, parse, text, service.url, step_types={"ledger_post"})
    async with worker_for(env):
        summary, ok = await outcome(await run(env, jobs, "files"))
    assert not ok
    assert summary["steps"]["read"]["error_type"] == "ActivityTypeNotRegistered"
    assert "'ledger_post'" in summary["steps"]["read"]["error"]


SNAPSHOT = """
name: snap
steps:
  - {id: first, type: http, config: {url: "@URL/first"}}
  - {id: second, type: http, depends_on: [first], config: {url: "@URL/@SECOND"}}
"""


async def test_a_running_execution_keeps_its_snapshot(env, jobs, parse, service, worker_for, until):
    await apply(jobs, parse, SNAPSHOT.replace("@SECOND", "v1"), service.url)
    gate = service.gates["/first"] = asyncio.Event()
    async with worker_for(env):
        handle = await run(env, jobs, "snap")
        await until(lambda: service.active.get("/first") == 1)
        result = await apply(jobs, parse, SNAPSHOT.replace("@SECOND", "v2"), service.url)
        assert result.versions == {"snap": 2}
        gate.set()
        summary, ok = await outcome(handle)
        assert ok and summary["version"] == 1
        assert service.calls("/v1") and not service.calls("/v2")
        # A new run uses the new version.
        summary2, ok2 = await outcome(await run(env, jobs, "snap"))
    assert ok2 and summary2["version"] == 2 and service.calls("/v2")
    history = await handle.fetch_history()
    run_id = (await handle.describe()).run_id
    # In a thread: replaying sets (and then clears) the thread's running event loop.
    await asyncio.to_thread(
        replay_history, JobInterpreter, history, workflow_id=handle.id, run_id=run_id
    )


@workflow.defn(name="Doubler")
class Doubler:
    @workflow.run
    async def run(self, value: int) -> int:
        return value * 2


async def test_workflow_step_runs_a_child_workflow(env, jobs, parse, service, worker_for):
    text = """
name: parent
steps:
  - {id: n, type: http, config: {url: "@URL/n"}}
  - id: double
    type: workflow
    depends_on: [n]
    config: {workflow: Doubler, input: "{{ steps.n.output.body.value }}"}
  - id: report
    type: http
    depends_on: [double]
    config: {url: "@URL/report", method: POST, json: {doubled: "{{ steps.double.output }}"}}
"""
    await apply(jobs, parse, text, service.url)

    async def value(request: web.Request, body: Any) -> web.Response:
        return web.json_response({"value": 21})

    service.handlers["/n"] = value
    async with worker_for(env, workflows=[Doubler]):
        handle = await run(env, jobs, "parent")
        summary, ok = await outcome(handle)
    assert ok and summary["steps"]["double"] == {"status": "completed", "output": 42}
    assert service.calls("/report")[0]["body"] == {"doubled": 42}
    child = env.client.get_workflow_handle(f"{handle.id}/double")
    assert await child.result() == 42


async def test_execution_timeout_is_the_workflows(env, jobs, parse, service, worker_for):
    text = """
name: bounded
execution_timeout: 90m
steps:
  - {id: a, type: http, config: {url: "@URL/a"}}
"""
    await apply(jobs, parse, text, service.url)
    # The time skipper may jump to the new run's timeout timer between its idle check and
    # the start (sdk.testing race); this test needs no skipping.
    env.auto_time_skipping = False
    async with worker_for(env):
        handle = await run(env, jobs, "bounded")
        _summary, ok = await outcome(handle)
    assert ok
    history = await handle.fetch_history()
    assert history[0].attributes.execution_timeout == 5400
    scheduled = [
        e.attributes for e in history if isinstance(e.attributes, ev.ActivityTaskScheduled)
    ]
    assert scheduled[0].schedule_to_close_timeout == 5400


async def test_a_step_is_retried_by_its_retry_policy(env, jobs, parse, service, worker_for):
    text = """
name: retried
retry: {maximum_attempts: 1}
steps:
  - id: flaky
    type: http
    retry: {maximum_attempts: 3, initial_interval: 10m}
    config: {url: "@URL/flaky"}
"""
    await apply(jobs, parse, text, service.url)

    async def flaky(request: web.Request, body: Any) -> web.Response:
        if len(service.calls("/flaky")) < 3:
            return web.json_response({"error": "busy"}, status=503)
        return web.json_response({"ok": True})

    service.handlers["/flaky"] = flaky
    async with worker_for(env):
        handle = await run(env, jobs, "retried")
        summary, ok = await outcome(handle)
    assert ok and summary["steps"]["flaky"]["output"]["body"] == {"ok": True}
    history = await handle.fetch_history()
    failed = [e for e in history if isinstance(e.attributes, ev.ActivityTaskFailed)]
    assert [e.attributes.attempt for e in failed] == [1, 2]
