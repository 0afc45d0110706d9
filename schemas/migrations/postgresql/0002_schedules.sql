-- Schedules (spec, action, state, pause, version for compare-and-swap, head of the audit chain)
-- and their hash-chained audit log. Their fire timers are rows of the timers table.
CREATE TABLE schedules (
    shard_id INTEGER NOT NULL,
    namespace TEXT NOT NULL,
    schedule_id TEXT NOT NULL,
    status TEXT NOT NULL,
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,
    action TEXT NOT NULL,
    state TEXT NOT NULL,
    paused INTEGER NOT NULL,
    note TEXT NOT NULL,
    next_fire_ms BIGINT,
    run_count INTEGER NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    version BIGINT NOT NULL,
    next_event_id INTEGER NOT NULL,
    last_hash TEXT NOT NULL,
    CONSTRAINT pk_schedules PRIMARY KEY (shard_id, namespace, schedule_id)
);
CREATE INDEX ix_schedules_namespace ON schedules (namespace, status, schedule_id);

CREATE TABLE schedule_events (
    shard_id INTEGER NOT NULL,
    namespace TEXT NOT NULL,
    schedule_id TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    event_time_ms BIGINT NOT NULL,
    identity TEXT NOT NULL,
    data TEXT NOT NULL,
    hash TEXT NOT NULL,
    CONSTRAINT pk_schedule_events PRIMARY KEY (shard_id, namespace, schedule_id, event_id)
);
