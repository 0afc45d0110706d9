"""RemoteService: workers and clients over HTTP, end to end, and the errors they raise."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from datetime import timedelta

import msgspec
import pytest
from aiohttp.test_utils import TestServer

from cadenza.engine import Engine, Settings, StaleTaskError, StartWorkflowRequest
from cadenza.frontend import (
    AccessDeniedError,
    RemoteService,
    ServerUnavailableError,
    create_app,
)
from cadenza.history import (
    Failure,
    InvalidArgumentError,
    QueryFailedError,
    UnknownTypeError,
    WorkflowAlreadyStartedError,
    WorkflowClosedError,
    WorkflowNotFoundError,
    verify_chain,
)
from cadenza.sdk import Client, Worker, activity, workflow

TOKEN = "remote-token"

# --------------------------------------------------------------------------- the workflow


@activity.defn
async def reserve(order: str, qty: int) -> str:
    return f"reserved {qty} x {order}"


@activity.defn
def charge(order: str, amount: int) -> dict:
    # A sync activity: runs in the worker's thread pool.
    return {"order": order, "charged": amount, "key": activity.info().idempotency_key}


@activity.defn
async def ship(order: str, approver: str) -> str:
    activity.heartbeat("packing")
    return f"shipped {order}, approved by {approver}"


@workflow.defn
class Fulfil:
    def __init__(self) -> None:
        self.stage = "starting"
        self.approver: str | None = None

    @workflow.run
    async def run(self, order: str, qty: int) -> dict:
        opts = {"start_to_close_timeout": timedelta(seconds=20)}
        self.stage = "reserving"
        reserved = await workflow.execute_activity(reserve, order, qty, **opts)
        self.stage = "charging"
        charged = await workflow.execute_activity(charge, order, qty * 10, **opts)
        self.stage = "cooling-off"
        await workflow.sleep(0.3)
        self.stage = "awaiting-approval"
        await workflow.wait_condition(lambda: self.approver is not None)
        self.stage = "shipping"
        shipped = await workflow.execute_activity(ship, order, self.approver, **opts)
        self.stage = "done"
        return {"reserved": reserved, "charged": charged["charged"], "shipped": shipped}

    @workflow.signal
    def approve(self, who: str) -> None:
        self.approver = who

    @workflow.query
    def status(self) -> str:
        return self.stage


# --------------------------------------------------------------------------- end to end


async def test_remote_worker_runs_a_workflow_end_to_end(serve, engine: Engine, until) -> None:
    url = await serve(worker_token=TOKEN)
    await _run_fulfil_remotely(url, engine, until)


@pytest.mark.postgres
async def test_remote_worker_on_postgresql(pg_database_factory, until) -> None:
    engine = Engine(Settings(database_url=pg_database_factory("frontend"), shard_count=4))
    await engine.start()
    settings = dataclasses.replace(engine.settings, worker_token=TOKEN)
    server = TestServer(create_app(engine, settings), host="127.0.0.1")
    try:
        await server.start_server()
        await _run_fulfil_remotely(str(server.make_url("")).rstrip("/"), engine, until)
    finally:
        await server.close()
        await engine.stop()


async def _run_fulfil_remotely(url: str, engine: Engine, until) -> None:
    client = await Client.connect(url, token=TOKEN)
    assert isinstance(client.service, RemoteService)
    try:
        async with Worker(
            client, task_queue="orders", workflows=[Fulfil], activities=[reserve, charge, ship]
        ):
            handle = await client.start_workflow(
                Fulfil.run, "A-17", 3, id="order/A-17", task_queue="orders"
            )

            async def stage() -> str | None:
                try:
                    return await handle.query(Fulfil.status)
                except QueryFailedError:
                    return None  # the first workflow task has not run yet

            await until(lambda: _is(stage(), "awaiting-approval"), timeout=30)
            desc = await handle.describe()
            assert desc.status == "running" and desc.workflow_type == "Fulfil"
            await handle.signal(Fulfil.approve, "lan")
            result = await handle.result(timeout=30)
            assert await handle.query(Fulfil.status) == "done"
        events = await handle.fetch_history()
    finally:
        await client.close()

    assert result == {
        "reserved": "reserved 3 x A-17",
        "charged": 30,
        "shipped": "shipped A-17, approved by lan",
    }
    # Every task went over HTTP (the server counted the worker protocol's requests), and the
    # hash chain verifies on the server and on the client side.
    text = await _metrics_text(url, token=TOKEN)
    route = 'method="POST",route="/api/v1/worker/activity-tasks/complete-many",status="200"'
    assert f"cadenza_http_requests_total{{{route}}} 3.0" in text
    kinds = [e.event_type for e in events]
    assert kinds.count("activity_task_completed") == 3
    assert kinds.count("timer_fired") == 1
    assert kinds.count("workflow_execution_signaled") == 1
    assert kinds[-1] == "workflow_execution_completed"
    assert verify_chain("default", "order/A-17", handle.run_id, events).ok
    verdict = await engine.verify_history("default", "order/A-17")
    assert verdict.ok and verdict.events_checked == len(events)
    local = await Client(engine).get_workflow_handle("order/A-17").fetch_history()
    assert local == events


async def _is(value, expected) -> bool:
    return (await value) == expected


async def test_remote_client_lists_and_describes(serve, engine: Engine) -> None:
    url = await serve()
    async with RemoteService(url) as service:
        client = Client(service)
        await client.start_workflow("Idle", 1, id="r-1", task_queue="nowhere")
        h2 = await client.start_workflow("Other", id="r-2", task_queue="nowhere")
        await h2.terminate(reason="test")
        running = await client.list_workflows(status="running")
        assert [w.workflow_id for w in running] == ["r-1"]
        assert {w.workflow_id for w in await client.list_workflows()} == {"r-1", "r-2"}
        assert [w.workflow_id for w in await client.list_workflows(workflow_type="Other")] == [
            "r-2"
        ]
        assert len(await client.list_workflows(limit=1)) == 1
        desc = await h2.describe()
        assert desc.status == "terminated" and desc.run_id == h2.run_id
        assert desc == await engine.describe_workflow("default", "r-2")
        with pytest.raises(InvalidArgumentError) as info:
            await service.list_workflows("default", colour="red")
        assert info.value.field == "colour"


# --------------------------------------------------------------------------- errors


async def test_server_errors_are_raised_as_the_same_classes(serve, engine: Engine) -> None:
    url = await serve()
    async with RemoteService(url) as service:
        client = Client(service)
        with pytest.raises(WorkflowNotFoundError) as nf:
            await client.get_workflow_handle("missing").describe()
        assert nf.value.workflow_id == "missing"
        assert str(nf.value) == str(WorkflowNotFoundError("missing"))

        with pytest.raises(InvalidArgumentError) as bad:
            await client.start_workflow("Idle", id="x" * 1001, task_queue="q")
        assert type(bad.value) is InvalidArgumentError
        assert bad.value.field == "workflow_id" and "limit is 1000" in bad.value.reason

        handle = await client.start_workflow("Idle", id="dup", task_queue="q")
        with pytest.raises(WorkflowAlreadyStartedError) as dup:
            await client.start_workflow("Idle", id="dup", task_queue="q")
        assert dup.value.run_id == handle.run_id and dup.value.workflow_id == "dup"

        await handle.terminate(reason="done")
        with pytest.raises(WorkflowClosedError) as closed:
            await handle.signal("late", 1)
        assert closed.value.workflow_status == "terminated"
        assert closed.value.operation == "signal"
        assert closed.value.run_id == handle.run_id

        # A queue whose workers registered their types rejects unknown ones.
        await engine.register_types("default", "typed", "workflow", frozenset({"Known"}))
        with pytest.raises(UnknownTypeError) as unknown:
            await client.start_workflow("Unknown", id="u", task_queue="typed")
        assert unknown.value.field == "workflow_type"

        with pytest.raises(TimeoutError):
            other = await client.start_workflow("Idle", id="slow", task_queue="q")
            await other.result(timeout=0.3)


async def test_tokens_and_unreachable_servers(serve) -> None:
    url = await serve(worker_token=TOKEN)
    for token in ("", "wrong"):
        async with RemoteService(url, token=token) as service:
            with pytest.raises(AccessDeniedError) as denied:
                await service.describe_workflow("default", "x")
            assert denied.value.status == 401
    async with RemoteService(url, token=TOKEN) as service:
        with pytest.raises(WorkflowNotFoundError):
            await service.describe_workflow("default", "x")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once the socket is closed
    async with RemoteService(f"http://127.0.0.1:{port}", request_timeout=2) as service:
        with pytest.raises(ServerUnavailableError):
            await service.describe_workflow("default", "x")

    for bad in ("ftp://x", "localhost:7233", ""):
        with pytest.raises(InvalidArgumentError) as info:
            RemoteService(bad)
        assert info.value.field == "base_url"
    with pytest.raises(InvalidArgumentError):
        RemoteService("http://x", request_timeout=0)


# --------------------------------------------------------------------------- worker protocol


async def test_respond_query_over_http(serve, engine: Engine) -> None:
    url = await serve()
    async with RemoteService(url) as service:
        await service.start_workflow(
            StartWorkflowRequest(workflow_id="q-1", workflow_type="Idle", task_queue="qq")
        )
        # Take the pending workflow task so that the next poll carries only the query.
        first = await service.poll_workflow_task("default", "qq", "w1", timeout=5)
        assert first is not None and first.token is not None and first.query is None

        asking = asyncio.create_task(
            engine.query_workflow("default", "q-1", None, "stage", msgspec.Raw(b"[1]"), timeout=20)
        )
        info = await service.poll_workflow_task("default", "qq", "w1", timeout=10)
        assert info is not None and info.token is None and info.query is not None
        assert info.query.query_type == "stage" and bytes(info.query.args) == b"[1]"
        assert info.workflow_id == "q-1"
        await service.respond_query(info.query.query_id, msgspec.Raw(b'{"stage": "x"}'), None)
        assert bytes(await asking) == b'{"stage": "x"}'

        failing = asyncio.create_task(
            service.query_workflow("default", "q-1", None, "boom", msgspec.Raw(b"[]"), timeout=20)
        )
        info = await service.poll_workflow_task("default", "qq", "w1", timeout=10)
        assert info is not None and info.query is not None
        await service.respond_query(info.query.query_id, None, "handler raised KeyError")
        with pytest.raises(QueryFailedError, match="handler raised KeyError"):
            await failing


async def test_stale_tokens_and_duplicate_completions(serve, engine: Engine) -> None:
    from cadenza.engine import CompleteWorkflow, ScheduleActivity

    url = await serve()
    async with RemoteService(url) as service:
        await service.start_workflow(
            StartWorkflowRequest(workflow_id="s-1", workflow_type="Idle", task_queue="sq")
        )
        task = await service.poll_workflow_task("default", "sq", "w1", timeout=5)
        assert task is not None and task.token is not None
        run_id, events = await service.get_history(
            "default", "s-1", task.run_id, up_to=task.seen_up_to
        )
        assert run_id == task.run_id and events[0].event_type == "workflow_execution_started"
        schedule = ScheduleActivity(
            seq=1, activity_id="1", activity_type="act", task_queue="sq", input=msgspec.Raw(b"[5]")
        )
        assert await service.complete_workflow_task(task.token, [schedule]) == "completed"
        with pytest.raises(StaleTaskError):
            await service.complete_workflow_task(task.token, [CompleteWorkflow()])
        with pytest.raises(StaleTaskError):
            await service.fail_workflow_task(task.token, cause="x", failure=Failure(message="late"))

        act = await service.poll_activity_task("default", "sq", "w1", timeout=5)
        assert act is not None and act.activity_type == "act" and bytes(act.input) == b"[5]"
        beat = await service.heartbeat_activity(act.token, ["half", 50])
        assert beat.cancel_requested is False
        desc = await service.describe_workflow("default", "s-1")
        assert desc.pending_activities[0].last_heartbeat_details == ["half", 50]
        assert await service.complete_activity(act.token, msgspec.Raw(b"10")) is True
        # The second completion of the same attempt changes nothing.
        assert await service.complete_activity(act.token, msgspec.Raw(b"11")) is False
        assert await service.fail_activity(act.token, Failure(message="late")) is False
        assert await service.report_activity_canceled(act.token, msgspec.Raw(b"null")) is False
        assert (await service.heartbeat_activity(act.token, [])).cancel_requested is True

        _, events = await service.get_history("default", "s-1")
        completed = [e for e in events if e.event_type == "activity_task_completed"]
        assert len(completed) == 1 and bytes(completed[0].attributes.result) == b"10"

        # Malformed commands are bad input naming the field.
        with pytest.raises(InvalidArgumentError) as bad:
            await service._call(
                "POST",
                "/api/v1/worker/workflow-tasks/complete",
                body={
                    "token": list(msgspec.to_builtins(task.token)),
                    "commands": [{"command": "fly"}],
                },
            )
        assert bad.value.field == "commands[0].command"


async def test_empty_poll_and_abandoned_poll(serve, engine: Engine, until) -> None:
    url = await serve()
    async with RemoteService(url, request_timeout=3.0, poll_timeout=1.0) as service:
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert await service.poll_activity_task("default", "empty", "w1", timeout=0.2) is None
        assert await service.poll_workflow_task("default", "empty", "w1") is None
        assert loop.time() - began < 2.9  # both answered by the server, not by a timeout

    # A poller that goes away must not be handed the next task.
    async with RemoteService(url) as quitter:
        gone = asyncio.create_task(
            quitter.poll_workflow_task("default", "handoff", "quitter", timeout=20)
        )

        async def held() -> bool:
            text = await _metrics_text(url)
            return 'cadenza_http_long_polls{kind="workflow"} 1.0' in text

        await until(held)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone

    async def released() -> bool:
        return 'cadenza_http_long_polls{kind="workflow"} 0.0' in await _metrics_text(url)

    await until(released, timeout=10)
    async with RemoteService(url) as service:
        await service.start_workflow(
            StartWorkflowRequest(workflow_id="h-1", workflow_type="Idle", task_queue="handoff")
        )
        task = await service.poll_workflow_task("default", "handoff", "stayer", timeout=5)
        assert task is not None and task.workflow_id == "h-1"


async def _metrics_text(url: str, token: str = "") -> str:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5), headers=headers) as http,
        http.get(url + "/metrics") as response,
    ):
        return await response.text()


# --------------------------------------------------------------------------- local activities


@activity.defn
async def slow_rate(currency: str) -> float:
    await asyncio.sleep(0.45)
    return {"USD": 25_000.0, "EUR": 27_000.0}[currency]


@workflow.defn
class ConvertLocally:
    @workflow.run
    async def run(self, amount: int) -> list[float]:
        return [
            amount * await workflow.execute_local_activity(slow_rate, currency)
            for currency in ("USD", "EUR", "USD")
        ]


async def test_remote_worker_runs_local_activities_and_hands_over(serve, engine: Engine) -> None:
    """Local-activity markers and ``force_new_task`` cross the worker protocol: three 0.45 s
    local activities do not fit in 80 % of a 1 s task, so the worker hands over to new tasks."""
    url = await serve(worker_token=TOKEN)
    client = await Client.connect(url, token=TOKEN)
    try:
        async with Worker(
            client, task_queue="fx", workflows=[ConvertLocally], activities=[slow_rate]
        ) as worker:
            result = await client.execute_workflow(
                ConvertLocally.run, 2, id="fx-1", task_queue="fx", task_timeout=1
            )
            assert worker.stats["workflow_task_handovers"] >= 1
        assert result == [50_000.0, 54_000.0, 50_000.0]
        history = await client.get_workflow_handle("fx-1").fetch_history()
        types = [e.event_type for e in history]
        markers = [
            e.attributes.local_activity for e in history if e.event_type == "marker_recorded"
        ]
        assert [(m.seq, m.activity_type, bytes(m.result)) for m in markers] == [
            (1, "slow_rate", b"25000.0"),
            (2, "slow_rate", b"27000.0"),
            (3, "slow_rate", b"25000.0"),
        ]
        assert types.count("workflow_task_completed") >= 2
        assert "workflow_task_timed_out" not in types
        assert (await engine.verify_history("default", "fx-1")).ok
    finally:
        await client.close()
