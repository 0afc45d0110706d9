"""Activity polls that take many attempts at once (``activity-tasks/poll-many``) and results
that travel together (``activity-tasks/complete-many``)."""

from __future__ import annotations

import asyncio
import dataclasses

import msgspec
import pytest
from aiohttp.test_utils import TestServer

from cadenza.engine import Engine, ScheduleActivity, Settings, StartWorkflowRequest
from cadenza.frontend import RemoteService, create_app
from cadenza.history import InvalidArgumentError, verify_chain
from cadenza.sdk import Client, Worker, activity, workflow

TOKEN = "activity-batch-token"


async def _schedule(service: RemoteService, ids: list[str], queue: str) -> None:
    """Start a run per id and answer its first workflow task with one activity."""
    for wid in ids:
        await service.start_workflow(
            StartWorkflowRequest(workflow_id=wid, workflow_type="Idle", task_queue=queue)
        )
    done = 0
    while done < len(ids):
        tasks = await service.poll_workflow_tasks("default", queue, "wf", timeout=5, max_tasks=50)
        for task in tasks:
            assert task.token is not None
            step = ScheduleActivity(
                seq=1,
                activity_id="1",
                activity_type="step",
                task_queue=queue,
                input=msgspec.Raw(msgspec.json.encode([task.workflow_id])),
                start_to_close_timeout=30,
            )
            assert await service.complete_workflow_task(task.token, [step]) == "completed"
        done += len(tasks)


async def test_one_poll_leases_every_visible_attempt_up_to_max(serve, engine: Engine) -> None:
    url = await serve()
    async with RemoteService(url) as service:
        ids = [f"a-{i}" for i in range(5)]
        await _schedule(service, ids, "aq")
        first = await service.poll_activity_tasks("default", "aq", "w1", timeout=5, max_tasks=3)
        assert len(first) == 3
        rest = await service.poll_activity_tasks("default", "aq", "w1", timeout=5, max_tasks=10)
        assert len(rest) == 2
        assert sorted(t.token.workflow_id for t in first + rest) == ids
        assert {bytes(t.input) for t in first + rest} == {f'["{i}"]'.encode() for i in ids}
        # Every one is leased: nothing is left for anyone else.
        assert await service.poll_activity_tasks("default", "aq", "w2", timeout=0.2) == []
        for task in first + rest:
            assert await service.complete_activity(task.token, msgspec.Raw(b"1")) is True
        for wid in ids:
            description = await service.describe_workflow("default", wid)
            assert description.pending_activities == []


async def test_an_activity_poll_answers_the_first_attempt_without_waiting_for_more(
    serve, engine: Engine
) -> None:
    url = await serve()
    async with RemoteService(url) as service:
        poll = asyncio.create_task(
            service.poll_activity_tasks("default", "fq", "w1", timeout=20, max_tasks=50)
        )
        await asyncio.sleep(0.2)
        assert not poll.done()
        await _schedule(service, ["f-1"], "fq")
        tasks = await asyncio.wait_for(poll, 5)
        assert [t.token.workflow_id for t in tasks] == ["f-1"]


async def test_activity_max_tasks_out_of_range_is_rejected(serve, engine: Engine) -> None:
    url = await serve()
    async with RemoteService(url) as service:
        for bad in (0, 101):
            with pytest.raises(InvalidArgumentError) as info:
                await service.poll_activity_tasks("default", "q", "w1", timeout=1, max_tasks=bad)
            assert info.value.field == "max_tasks" and str(bad) in info.value.reason
    with pytest.raises(InvalidArgumentError) as info:
        await engine.poll_activity_tasks("default", "q", "w1", timeout=1, max_tasks=0)
    assert info.value.field == "max_tasks"


async def test_the_single_poll_still_takes_one_attempt(serve, engine: Engine) -> None:
    url = await serve()
    async with RemoteService(url) as service:
        await _schedule(service, ["s-1", "s-2"], "sq")
        one = await service.poll_activity_task("default", "sq", "w1", timeout=5)
        assert one is not None
        other = await service.poll_activity_task("default", "sq", "w1", timeout=5)
        assert other is not None and other.token.workflow_id != one.token.workflow_id


@activity.defn
async def triple(x: int) -> int:
    return 3 * x


@workflow.defn
class Triples:
    @workflow.run
    async def run(self, x: int) -> int:
        total = 0
        for i in range(2):
            total += await workflow.execute_activity(triple, x + i, start_to_close_timeout=30)
        return total


async def _until_scheduled(service: RemoteService, workflow_id: str) -> None:
    for _ in range(600):
        if (await service.describe_workflow("default", workflow_id)).pending_activities:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{workflow_id} never scheduled its activity")


async def _requests(service: RemoteService, route: str) -> float:
    data = await service._call("GET", "/metrics")
    total = 0.0
    for line in (data or b"").decode().splitlines():
        if line.startswith("cadenza_http_requests_total{") and f'route="{route}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_busy_worker_takes_many_attempts_per_poll(
    backend: str, tmp_path, pg_database_factory
) -> None:
    db = f"sqlite:///{tmp_path / 'a.db'}" if backend == "sqlite" else pg_database_factory("acts")
    engine = Engine(Settings(database_url=db, shard_count=4))
    await engine.start()
    settings = dataclasses.replace(engine.settings, worker_token=TOKEN)
    server = TestServer(create_app(engine, settings), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    count = 40
    try:
        client = await Client.connect(url, token=TOKEN)
        try:
            handles = [
                await client.start_workflow(Triples.run, i, id=f"t-{i}", task_queue="tq")
                for i in range(count)
            ]
            # A workflow-only worker first: every run's first activity waits in the queue.
            async with Worker(client, task_queue="tq", workflows=[Triples]):
                for h in handles:
                    await _until_scheduled(client.service, h.id)
            async with Worker(client, task_queue="tq", workflows=[Triples], activities=[triple]):
                results = [await h.result(timeout=30) for h in handles]
            assert results == [3 * (2 * i + 1) for i in range(count)]
            for h in handles[:5]:
                events = await h.fetch_history()
                assert verify_chain("default", h.id, h.run_id, events).ok
                kinds = [e.event_type for e in events]
                assert kinds.count("activity_task_completed") == 2
            service = client.service
            polls = await _requests(service, "/api/v1/worker/activity-tasks/poll-many")
            singles = await _requests(service, "/api/v1/worker/activity-tasks/poll")
            batches = await _requests(service, "/api/v1/worker/activity-tasks/complete-many")
            one_by_one = await _requests(service, "/api/v1/worker/activity-tasks/complete")
        finally:
            await client.close()
        # 80 attempts, the first 40 waiting at once: far fewer polls than attempts.
        assert 0 < polls < count and singles == 0
        # The results of attempts that finish together travel together.
        assert 0 < batches < 2 * count and one_by_one == 0
    finally:
        await server.close()
        await engine.stop()


async def test_worker_rejects_a_bad_activity_tasks_per_poll(engine: Engine) -> None:
    for bad in (0, 101):
        with pytest.raises(InvalidArgumentError) as info:
            Worker(
                Client(engine),
                task_queue="q",
                activities=[triple],
                activity_tasks_per_poll=bad,
            )
        assert info.value.field == "activity_tasks_per_poll"


async def test_complete_many_answers_each_result_on_its_own(serve, engine: Engine, http) -> None:
    url = await serve()
    async with RemoteService(url) as service:
        await _schedule(service, ["m-1", "m-2"], "mq")
        tasks = await service.poll_activity_tasks("default", "mq", "w1", timeout=5, max_tasks=2)
        assert len(tasks) == 2
        first, second = (msgspec.to_builtins(t.token) for t in tasks)
        bad = {"shard_id": first[0]}  # not a token at all
        body = {
            "completions": [
                {"token": first, "result": 41},
                {"token": first, "result": 42},  # the same attempt again: not current
                {"token": second, "result": 7, "identity": "w1"},
            ]
        }
        async with http.post(url + "/api/v1/worker/activity-tasks/complete-many", json=body) as r:
            assert r.status == 200
            results = (await r.json())["results"]
        # The same attempt twice: one is recorded, the other finds it no longer current.
        assert sorted(results[:2], key=str) == [{"accepted": False}, {"accepted": True}]
        assert results[2] == {"accepted": True}
        for wid in ("m-1", "m-2"):
            _, events = await service.get_history("default", wid)
            done = [e for e in events if e.event_type == "activity_task_completed"]
            assert len(done) == 1
        # A malformed item refuses the whole request, naming the field; nothing is written.
        async with http.post(
            url + "/api/v1/worker/activity-tasks/complete-many",
            json={"completions": [{"token": bad, "result": 1}]},
        ) as r:
            assert r.status == 400
            problem = await r.json()
            assert "completions" in problem["field"]


async def test_activity_complete_many_rejects_empty_and_oversized_batches(
    serve, engine: Engine, http
) -> None:
    url = await serve()
    route = url + "/api/v1/worker/activity-tasks/complete-many"
    token = [0, "default", "x", "r", 5, 1]
    for completions in ([], [{"token": token, "result": 1}] * 101):
        async with http.post(route, json={"completions": completions}) as r:
            assert r.status == 400
            problem = await r.json()
            assert problem["field"] == "completions" and str(len(completions)) in problem["reason"]
