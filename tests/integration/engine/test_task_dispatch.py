"""Each server hands out the tasks of its own shards, and serves a shard whose owner has no
worker polling the queue: two servers on one PostgreSQL database, workers over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from cadenza.engine import Engine
from cadenza.engine._shards import shard_for
from cadenza.frontend.remote import RemoteService
from cadenza.sdk import Client, Worker
from tests.integration.engine import workflows as w

ACTIVITIES = [w.reserve, w.charge, w.ship_order]
SHARDS = 4


async def _until(check, seconds: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _ids_of(engine: Engine, prefix: str, count: int) -> list[str]:
    """``count`` workflow ids whose shard ``engine`` owns."""
    owned = set(engine.shards.owned())
    ids = (f"{prefix}-{i}" for i in range(10_000))
    return [i for i in ids if shard_for("default", i, SHARDS) in owned][:count]


def _identities(history: Sequence) -> set[str]:
    """The workers that completed the run's workflow tasks and ran its activities."""
    return {
        e.attributes.identity
        for e in history
        if e.event_type in ("workflow_task_completed", "activity_task_started")
    }


def _worker(client: Client, queue: str, identity: str) -> Worker:
    return Worker(
        client,
        task_queue=queue,
        workflows=[w.OrderWorkflow],
        activities=ACTIVITIES,
        identity=identity,
    )


async def _run_orders(client: Client, ids: list[str], queue: str) -> list:
    handles = await asyncio.gather(
        *(
            client.start_workflow(w.OrderWorkflow.run, w.Order(i, 1), id=i, task_queue=queue)
            for i in ids
        )
    )
    results = [await asyncio.wait_for(h.result(), 30) for h in handles]
    assert results == [
        {"reserved": f"reserved:{i}", "cents": 100, "shipped": f"shipped:{i}"} for i in ids
    ]
    return [await h.fetch_history() for h in handles]


async def test_with_workers_on_both_servers_each_run_is_served_by_its_owners_workers(
    cluster,
) -> None:
    (first, first_url), (second, second_url) = cluster
    clients = [Client(RemoteService(first_url)), Client(RemoteService(second_url))]
    workflow_key = ("workflow", "default", "own")
    activity_key = ("activity", "default", "own")
    try:
        async with (
            _worker(clients[0], "own", "worker-of-first"),
            _worker(clients[1], "own", "worker-of-second"),
        ):
            # Once each server has read the other's heartbeat listing the queue, it claims
            # only the tasks of its own shards.
            await _until(
                lambda: all(
                    e.dispatch.shards_for(key) == e.shards.owned()
                    for e in (first, second)
                    for key in (workflow_key, activity_key)
                )
            )
            mine, theirs = _ids_of(first, "own-a", 6), _ids_of(second, "own-b", 6)
            # Every start goes through the first server: where a run is started does not
            # matter, only which server owns its shard.
            histories = await _run_orders(clients[0], mine + theirs, "own")
    finally:
        for client in clients:
            await client.close()
    served = [_identities(h) for h in histories]
    assert served[:6] == [{"worker-of-first"}] * 6
    assert served[6:] == [{"worker-of-second"}] * 6
    # Nothing handed out is left tracked (a completion forwarded to the owner is forgotten).
    assert first.inflight_tasks == 0
    assert second.inflight_tasks == 0


async def test_a_server_whose_workers_left_has_its_tasks_served_by_the_other(cluster) -> None:
    (first, first_url), (second, second_url) = cluster
    to_first, to_second = Client(RemoteService(first_url)), Client(RemoteService(second_url))
    workflow_key = ("workflow", "default", "moved")
    try:
        # Workers poll the second server first: it serves its own shards only.
        async with _worker(to_second, "moved", "early"):
            await _until(lambda: first.dispatch.peer_serves(second.owner, workflow_key))
            await _run_orders(to_second, _ids_of(second, "early", 2), "moved")
        # They move to the first server. The second server's queue is served by the first
        # once the second stops listing it (a few seconds), not never.
        async with _worker(to_first, "moved", "late"):
            late_ids = _ids_of(second, "late", 3)
            histories = await _run_orders(to_first, late_ids, "moved")
        assert [_identities(h) for h in histories] == [{"late"}] * 3
        assert not first.dispatch.peer_serves(second.owner, workflow_key)
        assert first.dispatch.shards_for(workflow_key) is None
    finally:
        await to_first.close()
        await to_second.close()
