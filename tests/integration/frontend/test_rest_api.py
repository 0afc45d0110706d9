"""Every REST route of /api/v1/workflows against a real engine, including the error cases."""

from __future__ import annotations

import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp

from cadenza.engine import Engine
from cadenza.sdk import ApplicationError, Client, Worker, activity, workflow

PROBLEM = "application/problem+json"


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    params: dict[str, str] | None = None,
) -> tuple[int, aiohttp.typedefs.LooseHeaders, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None and len(data) > 1024 * 1024:
        data = io.BytesIO(data)  # aiohttp warns about large raw byte bodies
    async with http.request(method, url, data=data, params=params) as response:
        text = await response.text()
        payload = json.loads(text) if text and "json" in response.content_type else text
        return response.status, response.headers, payload


def wf_url(base: str, workflow_id: str, suffix: str = "") -> str:
    return f"{base}/api/v1/workflows/{quote(workflow_id, safe='')}{suffix}"


async def start(http, base, workflow_id, **extra) -> dict[str, Any]:
    body = {"workflow_id": workflow_id, "workflow_type": "Idle", "task_queue": "rest", **extra}
    status, _, payload = await call(http, "POST", f"{base}/api/v1/workflows", body)
    assert status == 201, payload
    return payload


def assert_problem(status, headers, payload, expected_status, error=None, field=None) -> None:
    assert status == expected_status, payload
    assert headers["Content-Type"].startswith(PROBLEM)
    assert payload["status"] == expected_status
    assert payload["title"]
    if error is not None:
        assert payload["cadenza_error"] == error, payload
    if field is not None:
        assert payload["field"] == field, payload


# ------------------------------------------------------------------------ start


async def test_start_created_then_idempotent_then_conflict(http, base_url) -> None:
    body = {
        "workflow_id": "order/42",
        "workflow_type": "Idle",
        "task_queue": "rest",
        "input": ["a", 1],
        "request_id": "req-1",
        "memo": {"customer": "c-7"},
    }
    status, headers, first = await call(http, "POST", f"{base_url}/api/v1/workflows", body)
    assert status == 201
    assert first["started"] is True and first["workflow_id"] == "order/42"
    assert headers["Location"].startswith("/api/v1/workflows/order%2F42?")
    assert first["run_id"] in headers["Location"]

    status, _, again = await call(http, "POST", f"{base_url}/api/v1/workflows", body)
    assert status == 200
    assert again == {**first, "started": False}

    body["request_id"] = "req-2"
    status, headers, payload = await call(http, "POST", f"{base_url}/api/v1/workflows", body)
    assert_problem(status, headers, payload, 409, "WorkflowAlreadyStartedError")
    assert payload["workflow_id"] == "order/42"
    assert payload["run_id"] == first["run_id"]

    body.update(request_id="req-3", id_conflict_policy="use_existing")
    status, _, existing = await call(http, "POST", f"{base_url}/api/v1/workflows", body)
    assert status == 200 and existing["run_id"] == first["run_id"]


async def test_start_bad_bodies_name_the_field(http, base_url, engine: Engine) -> None:
    url = f"{base_url}/api/v1/workflows"
    good = {"workflow_id": "w", "workflow_type": "Idle", "task_queue": "rest"}
    cases: list[tuple[dict[str, Any] | bytes, str]] = [
        ({**good, "colour": "red"}, "colour"),
        ({**good, "workflow_id": 7}, "workflow_id"),
        ({"workflow_type": "Idle", "task_queue": "rest"}, "workflow_id"),
        ({**good, "input": {"not": "an array"}}, "input"),
        ({**good, "retry_policy": {"initial_interval": "soon"}}, "retry_policy.initial_interval"),
        ({**good, "id_reuse_policy": "sometimes"}, "id_reuse_policy"),
        ({**good, "run_timeout": -1}, "run_timeout"),
        ({**good, "workflow_id": "x" * 1001}, "workflow_id"),
        ({**good, "workflow_id": "   "}, "workflow_id"),
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
    ]
    for body, field in cases:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        status, headers, payload = await call(http, "POST", url, raw=raw)
        assert_problem(status, headers, payload, 400, field=field)
        assert payload["detail"].startswith(field) or field == "body", payload
    # Nothing was written by any of them.
    assert await engine.list_workflows() == []


async def test_payload_over_the_limit_is_413(http, base_url, engine: Engine) -> None:
    big = ["x" * (engine.settings.payload_limit_bytes + 10)]
    body = {"workflow_id": "big", "workflow_type": "Idle", "task_queue": "rest", "input": big}
    status, headers, payload = await call(http, "POST", f"{base_url}/api/v1/workflows", body)
    assert_problem(status, headers, payload, 413, "PayloadTooLargeError", field="input")
    # A body over the HTTP size limit is refused before it is decoded.
    huge = b'{"workflow_id": "' + b"y" * (17 * 1024 * 1024) + b'"}'
    status, headers, payload = await call(http, "POST", f"{base_url}/api/v1/workflows", raw=huge)
    assert_problem(status, headers, payload, 413, "PayloadTooLargeError", field="body")
    assert await engine.list_workflows() == []


# ------------------------------------------------------------------------ list


async def test_list_with_filters(http, base_url) -> None:
    a = await start(http, base_url, "list-a")
    await start(http, base_url, "list-b", workflow_type="Other")
    await start(http, base_url, "list-c")
    status, _, _ = await call(http, "POST", wf_url(base_url, "list-c", "/terminate"), {})
    assert status == 204

    async def ids(**params: str) -> list[str]:
        status, _, payload = await call(http, "GET", f"{base_url}/api/v1/workflows", params=params)
        assert status == 200, payload
        return sorted(w["workflow_id"] for w in payload["workflows"])

    assert await ids() == ["list-a", "list-b", "list-c"]
    assert await ids(status="running") == ["list-a", "list-b"]
    assert await ids(status="terminated") == ["list-c"]
    assert await ids(workflow_type="Other") == ["list-b"]
    assert await ids(workflow_id="list-a") == ["list-a"]
    assert len(await ids(limit="2")) == 2
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await ids(started_after=past) == ["list-a", "list-b", "list-c"]
    assert await ids(started_after=future) == []
    assert await ids(started_before=past) == []
    # A time without an offset is read in the configured zone (Asia/Ho_Chi_Minh, UTC+7).
    local_now = (datetime.now(UTC) + timedelta(hours=7)).replace(tzinfo=None)
    assert await ids(started_before=(local_now + timedelta(minutes=5)).isoformat()) != []
    assert await ids(started_before=(local_now - timedelta(minutes=5)).isoformat()) == []

    status, _, payload = await call(
        http, "GET", f"{base_url}/api/v1/workflows", params={"workflow_id": "list-a"}
    )
    (row,) = payload["workflows"]
    assert row["run_id"] == a["run_id"] and row["status"] == "running"
    assert row["workflow_type"] == "Idle" and row["task_queue"] == "rest"
    assert row["history_length"] >= 2

    for params, field in [
        ({"status": "sleepy"}, "status"),
        ({"limit": "many"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"started_after": "yesterday"}, "started_after"),
    ]:
        status, headers, payload = await call(
            http, "GET", f"{base_url}/api/v1/workflows", params=params
        )
        assert_problem(status, headers, payload, 400, "InvalidArgumentError", field)


# ------------------------------------------------------------------------ describe, history


async def test_describe_and_not_found(http, base_url) -> None:
    started = await start(http, base_url, "desc/1", memo={"k": "v"})
    status, _, d = await call(http, "GET", wf_url(base_url, "desc/1"))
    assert status == 200
    assert d["workflow_id"] == "desc/1" and d["run_id"] == started["run_id"]
    assert d["status"] == "running" and d["memo"] == {"k": "v"}
    assert d["history_length"] >= 2 and len(d["last_hash"]) == 64

    status, _, same = await call(
        http, "GET", wf_url(base_url, "desc/1"), params={"run_id": started["run_id"]}
    )
    assert same["run_id"] == started["run_id"]

    status, headers, payload = await call(http, "GET", wf_url(base_url, "nope"))
    assert_problem(status, headers, payload, 404, "WorkflowNotFoundError")
    assert payload["workflow_id"] == "nope"
    status, headers, payload = await call(
        http, "GET", wf_url(base_url, "desc/1"), params={"run_id": "not-a-run"}
    )
    assert_problem(status, headers, payload, 404, "WorkflowNotFoundError")
    status, headers, payload = await call(http, "GET", wf_url(base_url, "z" * 1001))
    assert_problem(status, headers, payload, 400, "InvalidArgumentError", "workflow_id")
    status, headers, payload = await call(
        http, "GET", wf_url(base_url, "desc/1"), params={"namespace": "elsewhere"}
    )
    assert_problem(status, headers, payload, 404, "WorkflowNotFoundError")


async def test_history_pages_and_jsonl_export(http, base_url) -> None:
    await start(http, base_url, "hist", input=[1, 2])
    for n in range(5):
        status, _, _ = await call(
            http, "POST", wf_url(base_url, "hist", "/signal"), {"signal_name": "s", "input": [n]}
        )
        assert status == 204
    status, _, full = await call(http, "GET", wf_url(base_url, "hist", "/history"))
    events = full["events"]
    assert [e["event_id"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["event_type"] == "workflow_execution_started"
    assert events[0]["attributes"]["input"] == [1, 2]
    assert all(len(e["hash"]) == 64 for e in events)
    assert full["next_after"] is None
    signals = [e for e in events if e["event_type"] == "workflow_execution_signaled"]
    assert [s["attributes"]["input"] for s in signals] == [[0], [1], [2], [3], [4]]

    paged: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        status, _, page = await call(
            http,
            "GET",
            wf_url(base_url, "hist", "/history"),
            params={"after": str(after), "limit": "3"},
        )
        assert status == 200 and len(page["events"]) <= 3
        paged.extend(page["events"])
        after = page["next_after"]
    assert paged == events

    async with http.get(wf_url(base_url, "hist", "/history"), params={"format": "jsonl"}) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("application/jsonl")
        assert "attachment" in r.headers["Content-Disposition"]
        lines = (await r.text()).splitlines()
    assert [json.loads(line) for line in lines] == events

    for params, field in [({"format": "xml"}, "format"), ({"limit": "0"}, "limit")]:
        status, headers, payload = await call(
            http, "GET", wf_url(base_url, "hist", "/history"), params=params
        )
        assert_problem(status, headers, payload, 400, field=field)
    status, headers, payload = await call(http, "GET", wf_url(base_url, "ghost", "/history"))
    assert_problem(status, headers, payload, 404, "WorkflowNotFoundError")


async def test_verify_detects_tampering(http, base_url, engine: Engine, tmp_path) -> None:
    started = await start(http, base_url, "audit", input=["amount", 100])
    status, _, verdict = await call(http, "GET", wf_url(base_url, "audit", "/verify"))
    assert status == 200
    assert verdict["ok"] is True and verdict["run_id"] == started["run_id"]
    assert verdict["events_checked"] >= 2 and verdict["first_bad_event_id"] is None

    with sqlite3.connect(tmp_path / "t.db") as db:
        changed = db.execute(
            "UPDATE events SET data = replace(data, '100', '900') WHERE run_id = ? AND event_id = 1",
            (started["run_id"],),
        ).rowcount
    assert changed == 1
    status, _, verdict = await call(http, "GET", wf_url(base_url, "audit", "/verify"))
    assert status == 200
    assert verdict["ok"] is False and verdict["first_bad_event_id"] == 1
    assert "hash mismatch" in verdict["reason"]


# ------------------------------------------------------------------------ signal, cancel, terminate


async def test_signal_cancel_terminate_and_closed_conflicts(http, base_url) -> None:
    await start(http, base_url, "ops")
    url = wf_url(base_url, "ops")
    status, _, _ = await call(
        http,
        "POST",
        url + "/signal",
        {"signal_name": "approve", "input": ["bob"], "request_id": "sig-1", "identity": "ops-team"},
    )
    assert status == 204
    # The same request id is applied once.
    status, _, _ = await call(
        http,
        "POST",
        url + "/signal",
        {"signal_name": "approve", "input": ["bob"], "request_id": "sig-1"},
    )
    assert status == 204
    for body, field in [
        ({"input": []}, "signal_name"),
        ({"signal_name": "s", "input": "nope"}, "input"),
        ({"signal_name": "s", "extra": 1}, "extra"),
        ({"signal_name": ""}, "signal_name"),
    ]:
        status, headers, payload = await call(http, "POST", url + "/signal", body)
        assert_problem(status, headers, payload, 400, field=field)

    status, _, _ = await call(http, "POST", url + "/cancel", {"reason": "customer asked"})
    assert status == 204
    status, _, _ = await call(http, "POST", url + "/terminate", {"reason": "stuck"})
    assert status == 204

    status, _, history = await call(http, "GET", url + "/history")
    kinds = [e["event_type"] for e in history["events"]]
    assert kinds.count("workflow_execution_signaled") == 1
    signaled = next(
        e for e in history["events"] if e["event_type"] == "workflow_execution_signaled"
    )
    assert signaled["attributes"]["identity"] == "ops-team"
    cancel = next(
        e for e in history["events"] if e["event_type"] == "workflow_execution_cancel_requested"
    )
    assert cancel["attributes"]["reason"] == "customer asked"
    assert cancel["attributes"]["identity"].startswith("api@")
    assert kinds[-1] == "workflow_execution_terminated"

    for action, body in [
        ("/signal", {"signal_name": "late"}),
        ("/cancel", {}),
        ("/terminate", {}),
    ]:
        status, headers, payload = await call(http, "POST", url + action, body)
        assert_problem(status, headers, payload, 409, "WorkflowClosedError")
        assert payload["workflow_status"] == "terminated"
        assert payload["workflow_id"] == "ops"

    status, _, result = await call(http, "GET", url + "/result")
    assert status == 200
    assert result["status"] == "terminated"
    assert result["failure"]["type"] == "TerminatedError"
    assert result["failure"]["message"] == "stuck"
    assert result["close_event"]["event_type"] == "workflow_execution_terminated"

    status, headers, payload = await call(http, "POST", wf_url(base_url, "ghost", "/cancel"), {})
    assert_problem(status, headers, payload, 404, "WorkflowNotFoundError")


# ------------------------------------------------------------------------ query and result


@activity.defn
async def double(x: int) -> int:
    return 2 * x


@workflow.defn
class Doubler:
    def __init__(self) -> None:
        self.go = False
        self.seen: list[str] = []

    @workflow.run
    async def run(self, x: int) -> int:
        await workflow.wait_condition(lambda: self.go)
        if x < 0:
            raise ApplicationError("negative input", type="Negative", non_retryable=True)
        return await workflow.execute_activity(
            double, x, start_to_close_timeout=timedelta(seconds=10)
        )

    @workflow.signal
    def release(self, who: str) -> None:
        self.seen.append(who)
        self.go = True

    @workflow.query
    def waiting_for(self, prefix: str) -> str:
        return f"{prefix}: {'released' if self.go else 'waiting'}"


async def test_query_and_result_long_poll(http, base_url, engine: Engine, until) -> None:
    client = Client(engine)
    async with Worker(client, task_queue="dbl", workflows=[Doubler], activities=[double]):
        body = {
            "workflow_id": "dbl-1",
            "workflow_type": "Doubler",
            "task_queue": "dbl",
            "input": [21],
        }
        status, _, _ = await call(http, "POST", f"{base_url}/api/v1/workflows", body)
        assert status == 201
        url = wf_url(base_url, "dbl-1")

        async def answered() -> Any:
            status, _, payload = await call(
                http, "POST", url + "/query", {"query_type": "waiting_for", "args": ["state"]}
            )
            return payload if status == 200 else None

        assert (await until(answered)) == {"result": "state: waiting"}

        status, headers, payload = await call(
            http, "POST", url + "/query", {"query_type": "no_such_query", "timeout": 5}
        )
        assert_problem(status, headers, payload, 400, "QueryFailedError")
        assert "no_such_query" in payload["detail"]
        status, headers, payload = await call(
            http, "POST", url + "/query", {"query_type": "waiting_for", "timeout": 0}
        )
        assert_problem(status, headers, payload, 400, field="timeout")

        status, _, payload = await call(http, "GET", url + "/result")
        assert status == 200 and payload["status"] == "running" and "result" not in payload
        status, _, _ = await call(
            http, "POST", url + "/signal", {"signal_name": "release", "input": ["ops"]}
        )
        assert status == 204
        status, _, payload = await call(http, "GET", url + "/result", params={"wait": "20"})
        assert status == 200
        assert payload["status"] == "completed" and payload["result"] == 42
        assert payload["close_event"]["event_type"] == "workflow_execution_completed"

        body = {
            "workflow_id": "dbl-2",
            "workflow_type": "Doubler",
            "task_queue": "dbl",
            "input": [-1],
        }
        status, _, _ = await call(http, "POST", f"{base_url}/api/v1/workflows", body)
        await call(
            http,
            "POST",
            wf_url(base_url, "dbl-2", "/signal"),
            {"signal_name": "release", "input": ["x"]},
        )
        status, _, payload = await call(
            http, "GET", wf_url(base_url, "dbl-2", "/result"), params={"wait": "20"}
        )
        assert payload["status"] == "failed"
        assert payload["failure"]["message"] == "negative input"
        assert payload["failure"]["type"] == "Negative"

        status, headers, payload = await call(http, "GET", url + "/result", params={"wait": "soon"})
        assert_problem(status, headers, payload, 400, field="wait")


# ------------------------------------------------------------------------ HTTP-level errors


async def test_unknown_route_and_wrong_method_are_problems(http, base_url) -> None:
    status, headers, payload = await call(http, "GET", f"{base_url}/api/v1/nothing-here")
    assert_problem(status, headers, payload, 404)
    status, headers, payload = await call(http, "DELETE", f"{base_url}/api/v1/workflows")
    assert_problem(status, headers, payload, 405)
    assert "GET" in headers["Allow"] and "POST" in headers["Allow"]


async def test_start_with_nested_options(http, base_url) -> None:
    body = {
        "workflow_id": "nested",
        "workflow_type": "Idle",
        "task_queue": "rest",
        "retry_policy": {"maximum_attempts": 3, "initial_interval": 2.0},
        "trigger": {"source": "webhook"},
        "run_timeout": 3600,
    }
    status, _, _ = await call(http, "POST", f"{base_url}/api/v1/workflows", body)
    assert status == 201
    status, _, history = await call(http, "GET", wf_url(base_url, "nested", "/history"))
    started = history["events"][0]["attributes"]
    assert started["retry_policy"] == {"maximum_attempts": 3, "initial_interval": 2.0}
    assert started["trigger"] == {"source": "webhook"}
    assert started["run_timeout"] == 3600
    status, _, verdict = await call(http, "GET", wf_url(base_url, "nested", "/verify"))
    assert verdict["ok"] is True
    body.update(workflow_id="nested-2", trigger={"source": "webhook", "sneaky": 1})
    status, headers, payload = await call(http, "POST", f"{base_url}/api/v1/workflows", body)
    assert_problem(status, headers, payload, 400, field="trigger.sneaky")
