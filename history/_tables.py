"""The schema truth: SQLAlchemy Core tables of the event log and its outbox.

Every table is keyed by ``shard_id`` first so that a distributed PostgreSQL (Citus) can spread
them by shard. Times that the engine compares (fire times, leases, visibility) are integer
milliseconds since the epoch, which compare the same way on SQLite and PostgreSQL. The
migrations under ``cadenza.schemas/migrations`` must build exactly these tables; a test
compares a database built by the migrations with one built from this metadata.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)

metadata = MetaData()

cluster_metadata = Table(
    "cluster_metadata",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False),
    Column("applied_ms", BigInteger, nullable=False),
)

shards = Table(
    "shards",
    metadata,
    Column("shard_id", Integer, primary_key=True, autoincrement=False),
    Column("range_id", BigInteger, nullable=False),
    Column("owner", Text),
    Column("lease_until_ms", BigInteger, nullable=False),
)

executions = Table(
    "executions",
    metadata,
    Column("shard_id", Integer, nullable=False),
    Column("run_id", Text, nullable=False),
    Column("namespace", Text, nullable=False),
    Column("workflow_id", Text, nullable=False),
    Column("workflow_type", Text, nullable=False),
    Column("task_queue", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("start_time_ms", BigInteger, nullable=False),
    Column("close_time_ms", BigInteger),
    Column("next_event_id", Integer, nullable=False),
    Column("last_hash", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("sticky_worker", Text),
    PrimaryKeyConstraint("shard_id", "run_id", name="pk_executions"),
    Index(
        "ux_executions_running",
        "shard_id",
        "namespace",
        "workflow_id",
        unique=True,
        sqlite_where=text("status = 'running'"),
        postgresql_where=text("status = 'running'"),
    ),
    Index("ix_executions_workflow", "namespace", "workflow_id", "start_time_ms"),
    Index("ix_executions_start", "namespace", "start_time_ms"),
    Index("ix_executions_status", "namespace", "status", "start_time_ms"),
)

events = Table(
    "events",
    metadata,
    Column("shard_id", Integer, nullable=False),
    Column("run_id", Text, nullable=False),
    Column("event_id", Integer, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("event_time_ms", BigInteger, nullable=False),
    Column("data", Text, nullable=False),
    Column("hash", Text, nullable=False),
    Column("writer", Text),
    Column("range_id", BigInteger),
    PrimaryKeyConstraint("shard_id", "run_id", "event_id", name="pk_events"),
)

tasks = Table(
    "tasks",
    metadata,
    Column("shard_id", Integer, nullable=False),
    Column("task_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("task_queue", Text, nullable=False),
    Column("namespace", Text, nullable=False),
    Column("workflow_id", Text, nullable=False),
    Column("run_id", Text, nullable=False),
    Column("ref_event_id", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("visible_at_ms", BigInteger),
    Column("lease_owner", Text),
    Column("lease_until_ms", BigInteger),
    Column("started_at_ms", BigInteger),
    Column("seen_up_to", Integer),
    Column("sticky_worker", Text),
    Column("sticky_until_ms", BigInteger),
    Column("heartbeat_at_ms", BigInteger),
    Column("heartbeat_details", Text),
    Column("cancel_requested", Integer, nullable=False, server_default=text("0")),
    Column("payload", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("shard_id", "task_id", name="pk_tasks"),
    Index(
        "ix_tasks_ready",
        "kind",
        "task_queue",
        "visible_at_ms",
        sqlite_where=text("lease_owner IS NULL"),
        postgresql_where=text("lease_owner IS NULL"),
    ),
)

timers = Table(
    "timers",
    metadata,
    Column("shard_id", Integer, nullable=False),
    Column("timer_key", Text, nullable=False),
    Column("fire_at_ms", BigInteger, nullable=False),
    Column("namespace", Text, nullable=False),
    Column("workflow_id", Text, nullable=False),
    Column("run_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("ref_event_id", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    PrimaryKeyConstraint("shard_id", "timer_key", name="pk_timers"),
    Index("ix_timers_due", "shard_id", "fire_at_ms"),
)

worker_registrations = Table(
    "worker_registrations",
    metadata,
    Column("namespace", Text, nullable=False),
    Column("task_queue", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("type_name", Text, nullable=False),
    Column("last_seen_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint(
        "namespace", "task_queue", "kind", "type_name", name="pk_worker_registrations"
    ),
)

cluster_members = Table(
    "cluster_members",
    metadata,
    Column("owner", Text, primary_key=True),
    Column("address", Text, nullable=False),
    Column("heartbeat_ms", BigInteger, nullable=False),
    Column("started_ms", BigInteger, nullable=False),
    Column("polling", Text, nullable=False, server_default="[]"),
)

# Tables of other areas register themselves on the same metadata (imported last: they import
# ``metadata`` from here).
from cadenza.history import _schedule_tables, _variable_tables  # noqa: E402, F401
