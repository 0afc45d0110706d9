"""Which shards' tasks a server hands out: its own, and those nobody else would serve."""

from __future__ import annotations

from cadenza.engine._task_dispatch import PollerPresence, TaskDispatch, queue_name

KEY = ("workflow", "default", "q")
NAME = queue_name(KEY)


def _two_servers(peer_polls: set[str]) -> TaskDispatch:
    dispatch = TaskDispatch("me")
    dispatch.update(
        [0, 1, 2, 3],
        {s: ("me" if s < 4 else "peer") for s in range(8)},
        {"me": frozenset({NAME}), "peer": frozenset(peer_polls)},
    )
    return dispatch


def test_before_the_first_view_and_with_every_shard_all_tasks_are_served() -> None:
    dispatch = TaskDispatch("me")
    assert dispatch.shards_for(KEY) is None
    assert not dispatch.peer_serves("peer", KEY)
    dispatch.update(range(8), {s: "me" for s in range(8)}, {"me": frozenset()})
    assert dispatch.shards_for(KEY) is None


def test_a_peer_polling_the_queue_keeps_its_shards() -> None:
    dispatch = _two_servers({NAME})
    assert dispatch.shards_for(KEY) == [0, 1, 2, 3]
    assert dispatch.peer_serves("peer", KEY)
    # Another queue the peer has no worker for: served here from every shard.
    other = ("activity", "default", "q")
    assert dispatch.shards_for(other) is None
    assert not dispatch.peer_serves("peer", other)


def test_shards_without_a_live_owner_or_of_an_unknown_owner_are_served() -> None:
    dispatch = TaskDispatch("me")
    owners: dict[int, str | None] = {s: ("me" if s < 4 else "peer") for s in range(8)}
    owners[5] = None  # its lease expired
    owners[6] = "gone"  # not a live member
    dispatch.update([0, 1, 2, 3], owners, {"me": frozenset(), "peer": frozenset({NAME})})
    assert dispatch.shards_for(KEY) == [0, 1, 2, 3, 5, 6]
    assert not dispatch.peer_serves("gone", KEY)


def test_a_view_that_serves_more_shards_asks_for_a_wake_up() -> None:
    dispatch = _two_servers({NAME})
    assert dispatch.shards_for(KEY) == [0, 1, 2, 3]
    # The peer's workers left: its shards are ours to serve, and pollers should look now.
    peer_left = {"me": frozenset({NAME}), "peer": frozenset()}
    owners = {s: ("me" if s < 4 else "peer") for s in range(8)}
    assert dispatch.update([0, 1, 2, 3], owners, peer_left)
    assert dispatch.shards_for(KEY) is None
    # The workers are back: fewer shards, nothing to wake for.
    assert not dispatch.update([0, 1, 2, 3], owners, {"me": frozenset(), "peer": {NAME}})
    assert dispatch.shards_for(KEY) == [0, 1, 2, 3]


def test_owned_shards_change_between_rounds() -> None:
    dispatch = _two_servers({NAME})
    assert dispatch.shards_for(KEY) == [0, 1, 2, 3]
    dispatch.set_owned([0, 1])  # two shards lost: the view still says "me" owns them
    assert dispatch.shards_for(KEY) == [0, 1, 2, 3]
    dispatch.update(
        [0, 1],
        {s: ("me" if s < 2 else "peer") for s in range(8)},
        {"me": frozenset(), "peer": frozenset({NAME})},
    )
    assert dispatch.shards_for(KEY) == [0, 1]


def test_presence_lasts_the_linger_time_after_the_last_poll_began() -> None:
    now = [100.0]
    presence = PollerPresence(linger_s=3.0, now=lambda: now[0])
    presence.seen(KEY)
    presence.seen(("activity", "default", "q"))
    now[0] += 2.0
    presence.seen(KEY)
    now[0] += 2.0
    assert presence.queues() == [NAME]
    now[0] += 1.5
    assert presence.queues() == []
