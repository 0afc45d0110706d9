"""Batched dispatch over HTTP: many workflow tasks per poll, many completions per request."""

from __future__ import annotations

import asyncio
import dataclasses

import aiohttp
import msgspec
import pytest
from aiohttp.test_utils import TestServer

from cadenza.engine import (
    CompleteWorkflow,
    Engine,
    Settings,
    StaleTaskError,
    StartWorkflowRequest,
    TaskToken,
)
from cadenza.frontend import RemoteService, create_app
from cadenza.history import InvalidArgumentError, verify_chain
from cadenza.sdk import Client, Worker, activity, workflow

TOKEN = "batch-token"


@activity.defn
async def double(x: int) -> int:
    return 2 * x


@workflow.defn
class Doubles:
    @workflow.run
    async def run(self, x: int) -> int:
        total = 0
        for i in range(3):
            total += await workflow.execute_local_activity(double, x + i, start_to_close_timeout=5)
        return total


async def _start(service: RemoteService, ids: list[str], queue: str) -> None:
    for wid in ids:
        await service.start_workflow(
            StartWorkflowRequest(workflow_id=wid, workflow_type="Idle", task_queue=queue)
        )


def _json(value: object) -> object:
    """A struct as the plain JSON value a client would send."""
    return msgspec.json.decode(msgspec.json.encode(value))


async def _requests(url: str, route: str) -> float:
    async with (
        aiohttp.ClientSession() as http,
        http.get(url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}) as response,
    ):
        text = await response.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("cadenza_http_requests_total{") and f'route="{route}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_one_poll_leases_every_visible_task_up_to_max(serve, engine: Engine) -> None:
    url = await serve()
    async with RemoteService(url) as service:
        await _start(service, [f"b-{i}" for i in range(5)], "bq")
        first = await service.poll_workflow_tasks("default", "bq", "w1", timeout=5, max_tasks=3)
        assert len(first) == 3
        assert len({t.run_id for t in first}) == 3
        assert all(t.token is not None and t.history for t in first)
        rest = await service.poll_workflow_tasks("default", "bq", "w1", timeout=5, max_tasks=10)
        assert len(rest) == 2
        got = sorted(t.workflow_id for t in first + rest)
        assert got == [f"b-{i}" for i in range(5)]
        # Nothing is left: an empty poll is an empty list once its timeout passes.
        assert await service.poll_workflow_tasks("default", "bq", "w1", timeout=0.2) == []


async def test_a_poll_answers_the_first_task_without_waiting_for_more(
    serve, engine: Engine
) -> None:
    url = await serve()
    async with RemoteService(url) as service:
        poll = asyncio.create_task(
            service.poll_workflow_tasks("default", "wq", "w1", timeout=20, max_tasks=50)
        )
        await asyncio.sleep(0.2)
        assert not poll.done()
        await _start(service, ["w-1"], "wq")
        tasks = await asyncio.wait_for(poll, 5)
        assert [t.workflow_id for t in tasks] == ["w-1"]


async def test_max_tasks_out_of_range_is_rejected(serve, engine: Engine) -> None:
    url = await serve()
    async with RemoteService(url) as service:
        for bad in (0, 101):
            with pytest.raises(InvalidArgumentError) as info:
                await service.poll_workflow_tasks("default", "q", "w1", timeout=1, max_tasks=bad)
            assert info.value.field == "max_tasks" and str(bad) in info.value.reason
    with pytest.raises(InvalidArgumentError) as info:
        await engine.poll_workflow_tasks("default", "q", "w1", timeout=1, max_tasks=0)
    assert info.value.field == "max_tasks"


async def test_complete_many_answers_each_completion_on_its_own(
    serve, engine: Engine, http: aiohttp.ClientSession
) -> None:
    url = await serve()
    async with RemoteService(url) as service:
        await _start(service, ["c-1", "c-2"], "cq")
        tasks = await service.poll_workflow_tasks("default", "cq", "w1", timeout=5, max_tasks=2)
        assert len(tasks) == 2
        done = _json(CompleteWorkflow(result=msgspec.Raw(b"7")))
        stale = _json(msgspec.structs.replace(tasks[1].token, attempt=9))
        body = {
            "completions": [
                {"token": _json(tasks[0].token), "commands": [done]},
                {"token": stale, "commands": [done]},
            ]
        }
        async with http.post(url + "/api/v1/worker/workflow-tasks/complete-many", json=body) as r:
            assert r.status == 200
            results = (await r.json())["results"]
        assert results[0] == {"outcome": "completed"}
        assert results[1]["problem"]["cadenza_error"] == "StaleTaskError"
        assert results[1]["problem"]["status"] == 409
        # The refused one changed nothing: its run still runs, its task is still leased.
        assert (await service.describe_workflow("default", "c-1")).status == "completed"
        assert (await service.describe_workflow("default", "c-2")).status == "running"
        assert await service.complete_workflow_task(tasks[1].token, [CompleteWorkflow()]) == (
            "completed"
        )
        with pytest.raises(StaleTaskError):
            await service.complete_workflow_task(tasks[1].token, [CompleteWorkflow()])


async def test_complete_many_rejects_empty_and_oversized_batches(
    serve, http: aiohttp.ClientSession
) -> None:
    url = await serve()
    route = url + "/api/v1/worker/workflow-tasks/complete-many"
    token = _json(
        TaskToken(
            shard_id=0,
            namespace="default",
            workflow_id="x",
            run_id="r",
            scheduled_event_id=2,
            attempt=1,
        )
    )
    for count in (0, 101):
        body = {"completions": [{"token": token, "commands": []}] * count}
        async with http.post(route, json=body) as r:
            assert r.status == 400
            problem = await r.json()
        assert problem["field"] == "completions" and str(count) in problem["reason"]
    async with http.post(route, json={"completions": [{"token": token}]}) as r:
        assert r.status == 400
        assert "commands" in (await r.json())["field"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_busy_worker_batches_polls_and_completions(
    backend: str, tmp_path, pg_database_factory
) -> None:
    db = f"sqlite:///{tmp_path / 'b.db'}" if backend == "sqlite" else pg_database_factory("batched")
    engine = Engine(Settings(database_url=db, shard_count=4))
    await engine.start()
    settings = dataclasses.replace(engine.settings, worker_token=TOKEN)
    server = TestServer(create_app(engine, settings), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    count = 60
    try:
        client = await Client.connect(url, token=TOKEN)
        try:
            handles = [
                await client.start_workflow(Doubles.run, i, id=f"d-{i}", task_queue="dq")
                for i in range(count)
            ]
            # All tasks wait before the worker starts: its polls find many at once.
            async with Worker(
                client, task_queue="dq", workflows=[Doubles], activities=[double]
            ) as worker:
                results = [await h.result(timeout=30) for h in handles]
                assert worker.stats["workflow_tasks"] == count
            assert results == [2 * (3 * i + 3) for i in range(count)]
            for h in handles[:5]:
                events = await h.fetch_history()
                assert verify_chain("default", h.id, h.run_id, events).ok
                assert [e.event_type for e in events].count("workflow_task_completed") == 1
        finally:
            await client.close()
        polls = await _requests(url, "/api/v1/worker/workflow-tasks/poll-many")
        batches = await _requests(url, "/api/v1/worker/workflow-tasks/complete-many")
        singles = await _requests(url, "/api/v1/worker/workflow-tasks/complete")
        # 60 tasks in far fewer polls than tasks (16 per poll at most, 4 pollers).
        assert 0 < polls < count / 2
        assert 0 < batches <= count and singles == 0
    finally:
        await server.close()
        await engine.stop()


async def test_worker_rejects_a_bad_tasks_per_poll(engine: Engine) -> None:
    for bad in (0, 101):
        with pytest.raises(InvalidArgumentError) as info:
            Worker(
                Client(engine),
                task_queue="q",
                workflows=[Doubles],
                workflow_tasks_per_poll=bad,
            )
        assert info.value.field == "workflow_tasks_per_poll"


async def test_worker_rejects_a_negative_cache_size(engine: Engine) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        Worker(Client(engine), task_queue="q", workflows=[Doubles], max_cached_workflows=-1)
    assert info.value.field == "max_cached_workflows"


def test_cli_worker_takes_a_cache_size() -> None:
    from cadenza.frontend.cli._main import build_parser

    argv = ["worker", "--server", "http://127.0.0.1:1", "--module", "m.py"]
    assert build_parser().parse_args(argv).max_cached_workflows == 5000
    args = build_parser().parse_args([*argv, "--max-cached-workflows", "0"])
    assert args.max_cached_workflows == 0


async def test_start_many_answers_each_start_on_its_own(
    serve, http: aiohttp.ClientSession, engine: Engine
) -> None:
    url = await serve()
    start = {"workflow_type": "Idle", "task_queue": "sq"}
    body = {
        "starts": [
            {**start, "workflow_id": "s-1", "input": [1]},
            {**start, "workflow_id": "s-1"},  # the same id again: only one may run
            {**start, "workflow_id": "s-2", "input": {"not": "an array"}},
            {**start, "workflow_id": "s-3"},
        ]
    }
    async with http.post(url + "/api/v1/workflows/start-many", json=body) as r:
        assert r.status == 200
        results = (await r.json())["results"]
    assert len(results) == 4, results
    # The two starts of s-1 run concurrently: either may win, the other is refused.
    won, lost = sorted(results[:2], key=lambda r: "problem" in r)
    assert won["run"]["started"] is True and results[3]["run"]["started"] is True
    assert lost["problem"]["status"] == 409
    assert lost["problem"]["type"].endswith("WorkflowAlreadyStartedError")
    assert results[2]["problem"]["status"] == 400 and results[2]["problem"]["field"] == "input"
    # What was started is there; the refused starts left nothing behind.
    first = await engine.describe_workflow("default", "s-1")
    assert first.run_id == won["run"]["run_id"] and first.status == "running"
    assert (await engine.describe_workflow("default", "s-3")).status == "running"
    listed = await engine.list_workflows("default", workflow_id="s-1")
    assert len(listed) == 1
    assert not await engine.list_workflows("default", workflow_id="s-2")


async def test_start_many_rejects_empty_and_oversized_batches(
    serve, http: aiohttp.ClientSession
) -> None:
    url = await serve()
    one = {"workflow_id": "x", "workflow_type": "Idle", "task_queue": "sq"}
    for count in (0, 101):
        async with http.post(
            url + "/api/v1/workflows/start-many", json={"starts": [one] * count}
        ) as r:
            assert r.status == 400
            problem = await r.json()
        assert problem["field"] == "starts" and str(count) in problem["reason"]
    async with http.post(
        url + "/api/v1/workflows/start-many", json={"starts": [{**one, "surprise": 1}]}
    ) as r:
        assert r.status == 400
        problem = await r.json()
    assert "surprise" in problem["field"] and problem["reason"] == "unknown field", problem


async def test_concurrent_starts_of_a_client_travel_together(serve, engine: Engine) -> None:
    url = await serve(worker_token=TOKEN)
    count = 60
    async with RemoteService(url, token=TOKEN) as service:
        runs = await asyncio.gather(
            *(
                service.start_workflow(
                    StartWorkflowRequest(
                        workflow_id=f"c-{i}", workflow_type="Idle", task_queue="cq"
                    )
                )
                for i in range(count)
            )
        )
    assert [r.workflow_id for r in runs] == [f"c-{i}" for i in range(count)]
    assert all(r.started for r in runs) and len({r.run_id for r in runs}) == count
    for r in runs[:5]:
        assert (await engine.describe_workflow("default", r.workflow_id)).run_id == r.run_id
    batches = await _requests(url, "/api/v1/workflows/start-many")
    singles = await _requests(url, "/api/v1/workflows")
    # At most two requests in flight: the 60 starts go in a few requests, none alone.
    assert 0 < batches < count / 4 and singles == 0
