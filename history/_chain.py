"""The hash chain that makes a history tamper-evident.

``hash(n) = sha256(hash(n-1) ‖ canonical bytes of event n)``, hex-encoded. The chain of an
execution starts from a genesis value derived from its identity, so an event copied from one
execution into another does not verify either.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from cadenza.history._events import HistoryEvent, encode_event


def genesis_hash(namespace: str, workflow_id: str, run_id: str) -> str:
    """The value before event 1 of an execution."""
    seed = f"cadenza-history-v1\x00{namespace}\x00{workflow_id}\x00{run_id}".encode()
    return hashlib.sha256(seed).hexdigest()


def chain_hash(previous_hash: str, canonical: bytes) -> str:
    """The hash of an event whose canonical bytes are ``canonical``."""
    digest = hashlib.sha256(bytes.fromhex(previous_hash))
    digest.update(canonical)
    return digest.hexdigest()


@dataclass(frozen=True)
class ChainVerdict:
    """The result of verifying a history.

    Attributes:
        ok: True when every event verifies and the ids run 1, 2, 3 … without gaps.
        events_checked: How many events were checked.
        first_bad_event_id: The first event that fails (None when ok).
        reason: Why it fails (empty when ok).
    """

    ok: bool
    events_checked: int
    first_bad_event_id: int | None = None
    reason: str = ""


def verify_chain(
    namespace: str, workflow_id: str, run_id: str, events: Iterable[HistoryEvent]
) -> ChainVerdict:
    """Recompute the chain over ``events`` (in order) and report the first mismatch."""
    previous = genesis_hash(namespace, workflow_id, run_id)
    expected_id = 1
    count = 0
    for event in events:
        count += 1
        if event.event_id != expected_id:
            return ChainVerdict(
                False, count, event.event_id, f"expected event id {expected_id}, found a gap"
            )
        computed = chain_hash(previous, encode_event(event))
        if computed != event.hash:
            return ChainVerdict(
                False,
                count,
                event.event_id,
                f"hash mismatch: stored {event.hash[:16]}…, computed {computed[:16]}…",
            )
        previous = computed
        expected_id += 1
    return ChainVerdict(True, count)
