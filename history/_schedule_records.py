"""Schedule rows and the schedule audit log: records, event kinds, the hash chain.

Every change of a schedule — and every fire, started or skipped — is an event of the
schedule's own append-only log, numbered 1, 2, 3 … and chained like a workflow history:
``hash(n) = sha256(hash(n-1) ‖ canonical bytes of event n)``, starting from a genesis value
derived from the namespace and the schedule id. Each event names who caused it
(``identity``: the API caller, or ``cadenza`` for fires). Event kinds are a tagged union on
``type``; their attributes are plain JSON a person can read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

import msgspec

from cadenza.history._chain import ChainVerdict, chain_hash, genesis_hash
from cadenza.history._errors import CadenzaError, NotFoundError
from cadenza.history._records import TimerRecord

__all__ = [
    "SCHEDULE_EVENT_TYPES",
    "FieldChange",
    "ScheduleAlreadyExistsError",
    "ScheduleBackfillRequested",
    "ScheduleCreated",
    "ScheduleDeleted",
    "ScheduleEvent",
    "ScheduleEventAttributes",
    "ScheduleFired",
    "ScheduleHead",
    "ScheduleNotFoundError",
    "ScheduleOverlapAction",
    "SchedulePaused",
    "ScheduleRecord",
    "ScheduleRunClosed",
    "ScheduleTriggered",
    "ScheduleUnpaused",
    "ScheduleUpdated",
    "ScheduleWrite",
    "decode_schedule_event",
    "encode_schedule_event",
    "schedule_event_to_json",
    "schedule_genesis_hash",
    "verify_schedule_chain",
]


# --------------------------------------------------------------------------- errors


class ScheduleNotFoundError(NotFoundError):
    """No schedule with this id exists in the namespace (or it was deleted)."""

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"schedule {schedule_id!r} not found")
        self.schedule_id = schedule_id


class ScheduleAlreadyExistsError(CadenzaError):
    """A schedule with this id exists already in the namespace. Nothing was written."""

    status = 409

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"schedule {schedule_id!r} already exists")
        self.schedule_id = schedule_id


# --------------------------------------------------------------------------- event kinds


class _Attrs(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True):
    pass


class FieldChange(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One changed field of an update: ``spec.cron`` from ``old`` to ``new`` (JSON values;
    ``None`` when the field was absent)."""

    field: str
    old: Any = None
    new: Any = None


class ScheduleCreated(_Attrs, tag="created"):
    """The schedule was created with this spec (as JSON) and action."""

    spec: dict[str, Any]
    action: dict[str, Any]


class ScheduleUpdated(_Attrs, tag="updated"):
    """The spec or the action changed; ``changes`` lists each field that differs."""

    changes: list[FieldChange]


class SchedulePaused(_Attrs, tag="paused"):
    """The schedule was paused (it does not fire until unpaused)."""

    note: str = ""


class ScheduleUnpaused(_Attrs, tag="unpaused"):
    """The schedule was unpaused; missed fires follow its catch-up policy."""

    note: str = ""


class ScheduleTriggered(_Attrs, tag="triggered"):
    """Someone asked for a run now, outside the spec; ``nominal_time`` is the request time."""

    nominal_time: datetime
    overlap: str = ""


class ScheduleBackfillRequested(_Attrs, tag="backfill_requested"):
    """Someone asked for the spec's fires in ``[start_time, end_time]`` to run now."""

    start_time: datetime
    end_time: datetime
    fire_count: int
    overlap: str = ""


class ScheduleFired(_Attrs, tag="fired"):
    """A fire was processed.

    Attributes:
        nominal_time: The time the fire stands for (names the workflow).
        actual_time: When it was processed.
        source: ``spec``, ``trigger``, ``backfill``.
        workflow_id: The started (or existing) workflow.
        run_id: Its run.
        skipped: Empty when a run started; else why not: ``overlap`` (a run was still running
            and the policy is ``skip``), ``buffer_full``, ``missed`` (the catch-up policy
            dropped it), ``already_started`` (the derived workflow id exists: the run is
            ``run_id``), ``start_failed`` (``detail`` says why).
        skipped_count: For ``missed``: how many fires from ``nominal_time`` to
            ``last_nominal_time`` were dropped (0 when more than 10000 were not counted).
        last_nominal_time: The last dropped fire (``missed`` only).
        detail: More about a failure.
    """

    nominal_time: datetime
    actual_time: datetime
    source: str = "spec"
    workflow_id: str = ""
    run_id: str = ""
    skipped: str = ""
    skipped_count: int = 0
    last_nominal_time: datetime | None = None
    detail: str = ""


class ScheduleOverlapAction(_Attrs, tag="overlap_action"):
    """The overlap policy acted on a fire that came while a run was running.

    Attributes:
        policy: The policy applied.
        action: ``buffered`` (the fire waits), ``cancel_requested`` or ``terminate_requested``
            (of the running run ``workflow_id``/``run_id``).
        nominal_time: The fire.
    """

    policy: str
    action: str
    nominal_time: datetime
    workflow_id: str = ""
    run_id: str = ""


class ScheduleRunClosed(_Attrs, tag="run_closed"):
    """A run the schedule started has closed with ``status``."""

    workflow_id: str
    run_id: str
    status: str
    nominal_time: datetime | None = None


class ScheduleDeleted(_Attrs, tag="deleted"):
    """The schedule was deleted (its running runs are not touched)."""

    reason: str = ""


ScheduleEventAttributes: TypeAlias = (
    ScheduleCreated
    | ScheduleUpdated
    | SchedulePaused
    | ScheduleUnpaused
    | ScheduleTriggered
    | ScheduleBackfillRequested
    | ScheduleFired
    | ScheduleOverlapAction
    | ScheduleRunClosed
    | ScheduleDeleted
)

SCHEDULE_EVENT_TYPES: tuple[str, ...] = tuple(
    str(cls.__struct_config__.tag)
    for cls in (
        ScheduleCreated,
        ScheduleUpdated,
        SchedulePaused,
        ScheduleUnpaused,
        ScheduleTriggered,
        ScheduleBackfillRequested,
        ScheduleFired,
        ScheduleOverlapAction,
        ScheduleRunClosed,
        ScheduleDeleted,
    )
)
"""Every schedule event type."""


class ScheduleEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One event of a schedule's audit log.

    Attributes:
        event_id: Position in the log, from 1, without gaps.
        event_time: When it was appended (UTC).
        identity: Who caused it (``cadenza`` for fires and run closes).
        attributes: The kind-specific attributes; ``attributes.type`` names the kind.
        hash: Hex SHA-256 of the previous event's hash and this event's canonical bytes.
    """

    event_id: int
    event_time: datetime
    identity: str
    attributes: ScheduleEventAttributes
    hash: str = ""

    @property
    def event_type(self) -> str:
        """The kind, e.g. ``fired``."""
        kind = type(self.attributes)
        tag = _TAGS.get(kind)
        if tag is None:
            tag = _TAGS[kind] = str(kind.__struct_config__.tag)
        return tag


_TAGS: dict[type, str] = {}
_ENCODER = msgspec.json.Encoder(order="deterministic")
_DECODER = msgspec.json.Decoder(ScheduleEvent)


def encode_schedule_event(event: ScheduleEvent) -> bytes:
    """Canonical JSON of an event without its hash: the bytes the chain covers."""
    return _ENCODER.encode(
        {
            "event_id": event.event_id,
            "event_time": event.event_time,
            "identity": event.identity,
            "attributes": event.attributes,
        }
    )


def decode_schedule_event(data: bytes | str, hash_hex: str) -> ScheduleEvent:
    """Rebuild an event from its canonical JSON and stored hash."""
    event = _DECODER.decode(data)
    return msgspec.structs.replace(event, hash=hash_hex)


def schedule_event_to_json(event: ScheduleEvent) -> dict[str, Any]:
    """A JSON-ready dict of an event (for the API and the CLI), type and hash included."""
    out: dict[str, Any] = msgspec.json.decode(encode_schedule_event(event))
    out["event_type"] = event.event_type
    out["hash"] = event.hash
    return out


def schedule_genesis_hash(namespace: str, schedule_id: str) -> str:
    """The chain value before event 1 of a schedule (distinct from any workflow's)."""
    return genesis_hash(namespace, f"schedule:{schedule_id}", "schedule-log")


def verify_schedule_chain(
    namespace: str, schedule_id: str, events: list[ScheduleEvent]
) -> ChainVerdict:
    """Recompute a schedule's chain over ``events`` (in order) and report the first mismatch."""
    previous = schedule_genesis_hash(namespace, schedule_id)
    for count, event in enumerate(events, start=1):
        if event.event_id != count:
            return ChainVerdict(False, count, event.event_id, f"expected event id {count}")
        computed = chain_hash(previous, encode_schedule_event(event))
        if computed != event.hash:
            return ChainVerdict(False, count, event.event_id, "hash mismatch")
        previous = computed
    return ChainVerdict(True, len(events))


@dataclass(slots=True)
class ScheduleHead:
    """Where a schedule's audit chain stands, and the events a write appends to it."""

    namespace: str
    schedule_id: str
    next_event_id: int
    last_hash: str
    events: list[ScheduleEvent] = field(default_factory=list)
    event_data: list[bytes] = field(default_factory=list)

    def append(
        self, attributes: ScheduleEventAttributes, event_time: datetime, identity: str
    ) -> ScheduleEvent:
        """Number, encode and chain an event."""
        event = ScheduleEvent(
            event_id=self.next_event_id,
            event_time=event_time,
            identity=identity,
            attributes=attributes,
        )
        data = encode_schedule_event(event)
        digest = chain_hash(self.last_hash, data)
        event = msgspec.structs.replace(event, hash=digest)
        self.events.append(event)
        self.event_data.append(data)
        self.next_event_id += 1
        self.last_hash = digest
        return event


# --------------------------------------------------------------------------- rows


@dataclass(slots=True)
class ScheduleRecord:
    """One row of ``schedules``; ``spec``, ``action`` and ``state`` are JSON text."""

    shard_id: int
    namespace: str
    schedule_id: str
    status: str
    kind: str
    spec: str
    action: str
    state: str
    paused: bool
    note: str
    next_fire_ms: int | None
    run_count: int
    created_ms: int
    updated_ms: int
    version: int
    next_event_id: int
    last_hash: str


@dataclass(slots=True)
class ScheduleWrite:
    """One atomic change of one schedule: the new row, its events, its timer, its outbox.

    The write succeeds only if the row's ``version`` still equals ``expected_version``
    (``create``: no row may exist) and, with the rest of its transaction, the writer's
    fencing tokens are current. The timer row ``timer_key`` is always replaced: deleted, and
    inserted again when ``timer`` is set. ``messages`` are timer rows for other shards (work
    for their owners: start a run, stop a run), inserted with the change.
    """

    record: ScheduleRecord
    expected_version: int
    create: bool
    events: list[ScheduleEvent]
    event_data: list[bytes]
    timer_key: str
    timer: TimerRecord | None = None
    messages: list[TimerRecord] = field(default_factory=list)
