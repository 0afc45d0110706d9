"""Tables of schedules and of their audit log.

They live on the shared :data:`cadenza.history._tables.metadata` (``_tables`` imports this
module at its end), so the schema truth and the migration diff cover them. The migration that
creates them is ``0002_schedules.sql``.

* ``schedules``: one row per schedule, keyed by ``shard_id`` first (the shard is
  ``shard_for(namespace, schedule_id)``): the spec and the action as JSON, the state as JSON
  (next fire, runs in progress, buffered fires, recent runs), the pause flag and note, the run
  count, a ``version`` for compare-and-swap, and the head of the audit chain
  (``next_event_id``, ``last_hash``). A deleted schedule keeps its row (``status = 'deleted'``)
  so that its audit chain continues if the id is created again.
* ``schedule_events``: the append-only audit log of each schedule, numbered 1, 2, 3 … per
  schedule and hash-chained like workflow histories: who created, changed, paused, triggered or
  deleted it, and every fire (started or skipped, with the reason).

The fire timer of a schedule is a row of the event log's ``timers`` table (kind
``schedule_fire``), written in the same transaction as the schedule's state.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, PrimaryKeyConstraint, Table, Text

from cadenza.history._tables import metadata

__all__ = ["schedule_events", "schedules"]

schedules = Table(
    "schedules",
    metadata,
    Column("shard_id", Integer, nullable=False),
    Column("namespace", Text, nullable=False),
    Column("schedule_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("spec", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("paused", Integer, nullable=False),
    Column("note", Text, nullable=False),
    Column("next_fire_ms", BigInteger),
    Column("run_count", Integer, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("next_event_id", Integer, nullable=False),
    Column("last_hash", Text, nullable=False),
    PrimaryKeyConstraint("shard_id", "namespace", "schedule_id", name="pk_schedules"),
    Index("ix_schedules_namespace", "namespace", "status", "schedule_id"),
)

schedule_events = Table(
    "schedule_events",
    metadata,
    Column("shard_id", Integer, nullable=False),
    Column("namespace", Text, nullable=False),
    Column("schedule_id", Text, nullable=False),
    Column("event_id", Integer, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("event_time_ms", BigInteger, nullable=False),
    Column("identity", Text, nullable=False),
    Column("data", Text, nullable=False),
    Column("hash", Text, nullable=False),
    PrimaryKeyConstraint(
        "shard_id", "namespace", "schedule_id", "event_id", name="pk_schedule_events"
    ),
)
