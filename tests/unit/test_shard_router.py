"""ShardRouter: a client's grouping of writes by the server that owns their shard."""

from __future__ import annotations

import pytest

from cadenza.engine._shards import shard_for
from cadenza.frontend import _shard_router
from cadenza.frontend._shard_router import ShardRouter
from cadenza.frontend._wire import ShardOwners
from cadenza.history import NotFoundError, StoreUnavailableError

HOME = "http://a:1"
OTHER = "http://b:2"
IDS = [f"wf-{i}" for i in range(40)]


def _owners(count: int = 8) -> ShardOwners:
    """Even shards on HOME, odd ones on OTHER, shard 7 without an owner."""
    owners: list[str | None] = [HOME if i % 2 == 0 else OTHER + "/" for i in range(count)]
    owners[7] = None
    return ShardOwners(shard_count=count, owners=owners)


def _key(wid: str) -> tuple[str, str]:
    return ("default", wid)


class Reads:
    def __init__(self, *answers: ShardOwners | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self) -> ShardOwners:
        self.calls += 1
        answer = self.answers[min(self.calls, len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_items_go_to_their_shard_s_owner_and_the_unowned_ones_home() -> None:
    router = ShardRouter(HOME + "/", Reads(_owners()))
    groups = await router.groups(IDS, _key)
    assert set(groups) == {HOME, OTHER}
    assert sorted(i for indices in groups.values() for i in indices) == list(range(len(IDS)))
    for i, wid in enumerate(IDS):
        shard = shard_for("default", wid, 8)
        expected = OTHER if shard % 2 == 1 and shard != 7 else HOME
        assert i in groups[expected], (wid, shard)


async def test_the_owners_are_read_once_per_ttl_and_again_after_forget() -> None:
    reads = Reads(_owners())
    router = ShardRouter(HOME, reads)
    await router.groups(IDS, _key)
    await router.groups(IDS, _key)
    assert reads.calls == 1
    router.forget()
    await router.groups(IDS, _key)
    assert reads.calls == 2


async def test_an_unreachable_owner_gets_nothing_for_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    router = ShardRouter(HOME, Reads(_owners()))
    router.unreachable(OTHER)
    assert set(await router.groups(IDS, _key)) == {HOME}
    monkeypatch.setattr(_shard_router, "UNREACHABLE_S", -1.0)
    router.unreachable(OTHER)
    assert set(await router.groups(IDS, _key)) == {HOME, OTHER}


async def test_a_server_without_the_route_turns_routing_off() -> None:
    reads = Reads(NotFoundError("no such route"))
    router = ShardRouter(HOME, reads)
    assert await router.groups(IDS, _key) == {HOME: list(range(len(IDS)))}
    router.forget()
    assert await router.groups(IDS, _key) == {HOME: list(range(len(IDS)))}
    assert reads.calls == 1 and router.enabled is False


async def test_a_failed_read_sends_everything_home_until_the_next_read() -> None:
    reads = Reads(StoreUnavailableError("database away"), _owners())
    router = ShardRouter(HOME, reads)
    assert set(await router.groups(IDS, _key)) == {HOME}
    router.forget()
    assert set(await router.groups(IDS, _key)) == {HOME, OTHER}


async def test_an_https_client_never_routes_to_a_plain_http_owner() -> None:
    owners = ShardOwners(shard_count=2, owners=["https://a:1", "http://b:2"])
    router = ShardRouter("https://a:1", Reads(owners))
    groups = await router.groups(IDS, _key)
    assert set(groups) == {"https://a:1"}


async def test_a_disabled_router_never_reads_the_owners() -> None:
    reads = Reads(_owners())
    router = ShardRouter(HOME, reads, enabled=False)
    assert await router.groups(IDS, _key) == {HOME: list(range(len(IDS)))}
    assert reads.calls == 0
