"""A query reaches the run's worker through whichever server of the cluster it polls."""

from __future__ import annotations

import asyncio

import aiohttp
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cadenza.engine._shards import shard_for
from cadenza.frontend.remote import RemoteService
from cadenza.history import QueryFailedError
from cadenza.sdk import Client, Worker
from tests.integration.engine import workflows as w


async def test_query_through_a_server_its_worker_does_not_poll(cluster) -> None:
    owner = next(
        i
        for i, (e, _) in enumerate(cluster)
        if shard_for("default", "relay", 4) in e.shards.owned()
    )
    # The worker polls the server that does NOT own the run's shard; the query is sent to the
    # owner, which has no poller for the queue and must relay it.
    worker_url, owner_url = cluster[1 - owner][1], cluster[owner][1]
    polled = Client(RemoteService(worker_url))
    asking = Client(RemoteService(owner_url))
    try:
        async with Worker(polled, task_queue="q", workflows=[w.SignalWorkflow]):
            handle = await asking.start_workflow(w.SignalWorkflow.run, id="relay", task_queue="q")
            await handle.signal(w.SignalWorkflow.add, "apple")
            for _ in range(100):
                if await handle.query(w.SignalWorkflow.count) == 1:
                    break
                await asyncio.sleep(0.05)
            assert await handle.query("count") == 1
            # A query the workflow does not define fails with the worker's reason, relayed back.
            with pytest.raises(QueryFailedError, match="nope"):
                await handle.query("nope")
            await handle.signal(w.SignalWorkflow.finish)
            assert await handle.result() == ["apple"]
    finally:
        await polled.close()
        await asking.close()


async def test_starts_through_one_server_are_written_by_each_shard_owner(cluster) -> None:
    """Every start goes to server 0; those of server 1's shards are forwarded there (over the
    pooled session, with the cached owner directory) and written by server 1 alone. Starts
    and workflow-task completions reach server 1 in batches, never one by one."""
    first, second = cluster[0][0], cluster[1][0]
    ids = [f"fwd-{i}" for i in range(24)]
    assert {shard_for("default", i, 4) for i in ids} == {0, 1, 2, 3}
    client = Client(RemoteService(cluster[0][1]))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        before = await _post_requests(http, cluster[1][1])
        try:
            async with Worker(client, task_queue="fwd", workflows=[w.SignalWorkflow]):
                handles = await asyncio.gather(
                    *(
                        client.start_workflow(w.SignalWorkflow.run, id=i, task_queue="fwd")
                        for i in ids
                    )
                )
                for handle in handles:
                    await handle.signal(w.SignalWorkflow.finish)
                assert [await h.result() for h in handles] == [[] for _ in ids]
        finally:
            await client.close()
        after = await _post_requests(http, cluster[1][1])
    grew = {route: n - before.get(route, 0) for route, n in after.items()}
    assert grew.get("/api/v1/worker/workflow-tasks/complete-many", 0) > 0, grew
    assert not grew.get("/api/v1/worker/workflow-tasks/complete"), grew
    assert not grew.get("/api/v1/workflows"), grew
    dsn = first.settings.database_url
    with psycopg.connect(dsn.replace("postgresql+psycopg://", "postgresql://")) as conn:
        rows = conn.execute(
            "SELECT e.workflow_id, v.shard_id, v.range_id, v.writer FROM events v"
            " JOIN executions e ON e.shard_id = v.shard_id AND e.run_id = v.run_id"
            " WHERE e.workflow_id LIKE 'fwd-%'"
        ).fetchall()
    assert {r[0] for r in rows} == set(ids)
    # Server 0 took every request, yet server 1 wrote the runs of its shards: forwarded.
    assert {r[3] for r in rows} == {first.owner, second.owner}
    # And each fencing token of a shard was used by one server only.
    token_writers: dict[tuple[int, int], set[str]] = {}
    for _, shard_id, range_id, writer in rows:
        token_writers.setdefault((shard_id, range_id), set()).add(writer)
    assert all(len(w) == 1 for w in token_writers.values()), token_writers


async def _post_requests(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """The server's count of answered POST requests, by route (from its /metrics)."""
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != "cadenza_http_requests_total":
                continue
            route = sample.labels["route"]
            if sample.labels["method"] == "POST":
                counts[route] = counts.get(route, 0) + sample.value
    return counts


async def test_a_start_many_to_one_server_is_split_among_the_shard_owners(cluster) -> None:
    """The starts of another server's shards in a ``start-many`` travel there as one
    ``start-many`` (not as one request each), and each run is written by its shard's owner."""
    (first, first_url), (second, second_url) = cluster
    ids = [f"many-{i}" for i in range(24)]
    theirs = [i for i in ids if shard_for("default", i, 4) in set(second.shards.owned())]
    assert 0 < len(theirs) < len(ids)
    starts = [{"workflow_id": i, "workflow_type": "Anything", "task_queue": "nowhere"} for i in ids]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        before = await _post_requests(http, second_url)
        async with http.post(
            f"{first_url}/api/v1/workflows/start-many", json={"starts": starts}
        ) as response:
            assert response.status == 200
            results = (await response.json())["results"]
        after = await _post_requests(http, second_url)
    assert [r.get("problem") for r in results] == [None] * len(ids)
    assert [(r["run"]["workflow_id"], r["run"]["started"]) for r in results] == [
        (i, True) for i in ids
    ]
    grew = {route: after.get(route, 0) - before.get(route, 0) for route in after}
    assert grew.get("/api/v1/workflows/start-many") == 1, grew
    assert not grew.get("/api/v1/workflows"), grew
    dsn = first.settings.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        writers = dict(
            conn.execute(
                "SELECT e.workflow_id, min(v.writer) FROM events v JOIN executions e"
                " ON e.shard_id = v.shard_id AND e.run_id = v.run_id"
                " WHERE e.workflow_id LIKE 'many-%' GROUP BY e.workflow_id"
            ).fetchall()
        )
    assert writers == {i: second.owner if i in theirs else first.owner for i in ids}
