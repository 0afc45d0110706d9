"""Two servers on one PostgreSQL database: a client sends each start straight to its shard's
owner (``GET /api/v1/cluster/shards``), and falls back to its own server when an owner cannot
be reached."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from cadenza.engine import StartWorkflowRequest
from cadenza.engine._shards import shard_for
from cadenza.frontend import RemoteService

START_MANY = "/api/v1/workflows/start-many"


async def _metric(url: str, name: str, route: str) -> float:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.get(url + "/metrics") as response,
    ):
        text = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and f'route="{route}"' in line
    )


async def _start_all(service: RemoteService, prefix: str, count: int) -> list[str]:
    """Concurrent starts (the client sends them as start-many batches); their run ids."""
    answers = await asyncio.gather(
        *(
            service.start_workflow(
                StartWorkflowRequest(
                    workflow_id=f"{prefix}-{i}",
                    workflow_type="Idle",
                    task_queue="route",
                    request_id=f"{prefix}-{i}",
                )
            )
            for i in range(count)
        )
    )
    return [a.run_id for a in answers]


async def test_the_shard_owners_route_lists_each_shard_s_server(cluster) -> None:
    (engine_a, url_a), (_engine_b, url_b) = cluster
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.get(url_b + "/api/v1/cluster/shards") as response,
    ):
        assert response.status == 200
        body = await response.json()
    assert body["shard_count"] == 4
    expected = [url_a if s in engine_a.shards.owned() else url_b for s in range(4)]
    assert body["owners"] == expected


async def test_starts_go_straight_to_their_owners(cluster) -> None:
    (_engine_a, url_a), (_engine_b, url_b) = cluster
    async with RemoteService(url_a) as service:
        runs = await _start_all(service, "direct", 40)
        assert len(set(runs)) == 40
        for i in range(40):
            assert (await service.describe_workflow("default", f"direct-{i}")).status == "running"
    # Both servers took starts, and neither sent any on.
    assert await _metric(url_b, "cadenza_http_requests_total", START_MANY) > 0
    assert await _metric(url_a, "cadenza_http_forwards_total", START_MANY) == 0
    assert await _metric(url_b, "cadenza_http_forwards_total", START_MANY) == 0

    # The same starts through one server without routing: it forwards the other's share.
    async with RemoteService(url_a, route_to_owners=False) as service:
        assert len(set(await _start_all(service, "relayed", 40))) == 40
    assert await _metric(url_a, "cadenza_http_forwards_total", START_MANY) > 0


async def test_an_owner_that_cannot_be_reached_is_skipped(cluster) -> None:
    (_engine_a, url_a), (engine_b, url_b) = cluster
    dead = "http://127.0.0.1:9"  # the discard port: nothing listens on loopback
    async with RemoteService(url_a, request_timeout=5) as service:
        await _start_all(service, "warm", 4)  # reads the owners
        router = service._router
        router._owners = [dead if owner == url_b else owner for owner in router._owners]
        router._read_at = time.monotonic() + 3600  # keep this map
        runs = await _start_all(service, "around", 30)
        assert len(set(runs)) == 30
        # The starts of B's shards went through A, which forwarded them to B.
        b_shards = set(engine_b.shards.owned())
        moved = [i for i in range(30) if shard_for("default", f"around-{i}", 4) in b_shards]
        assert moved
        for i in moved:
            assert (await service.describe_workflow("default", f"around-{i}")).status == "running"
        assert await _metric(url_a, "cadenza_http_forwards_total", START_MANY) > 0
        assert router._unreachable.get(dead, 0) > time.monotonic()
