-- The event log, its transactional outbox (tasks, timers) and shard leases.
CREATE TABLE cluster_metadata (
    key TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE shards (
    shard_id INTEGER NOT NULL PRIMARY KEY,
    range_id BIGINT NOT NULL,
    owner TEXT,
    lease_until_ms BIGINT NOT NULL
);

CREATE TABLE executions (
    shard_id INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    namespace TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    workflow_type TEXT NOT NULL,
    task_queue TEXT NOT NULL,
    status TEXT NOT NULL,
    start_time_ms BIGINT NOT NULL,
    close_time_ms BIGINT,
    next_event_id INTEGER NOT NULL,
    last_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    sticky_worker TEXT,
    CONSTRAINT pk_executions PRIMARY KEY (shard_id, run_id)
);
CREATE UNIQUE INDEX ux_executions_running ON executions (shard_id, namespace, workflow_id)
    WHERE status = 'running';
CREATE INDEX ix_executions_workflow ON executions (namespace, workflow_id, start_time_ms);
CREATE INDEX ix_executions_start ON executions (namespace, start_time_ms);
CREATE INDEX ix_executions_status ON executions (namespace, status, start_time_ms);

CREATE TABLE events (
    shard_id INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    event_time_ms BIGINT NOT NULL,
    data TEXT NOT NULL,
    hash TEXT NOT NULL,
    CONSTRAINT pk_events PRIMARY KEY (shard_id, run_id, event_id)
);

CREATE TABLE tasks (
    shard_id INTEGER NOT NULL,
    task_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    task_queue TEXT NOT NULL,
    namespace TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    ref_event_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    visible_at_ms BIGINT,
    lease_owner TEXT,
    lease_until_ms BIGINT,
    started_at_ms BIGINT,
    seen_up_to INTEGER,
    sticky_worker TEXT,
    sticky_until_ms BIGINT,
    heartbeat_at_ms BIGINT,
    heartbeat_details TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    payload TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    CONSTRAINT pk_tasks PRIMARY KEY (shard_id, task_id)
);
CREATE INDEX ix_tasks_ready ON tasks (kind, task_queue, visible_at_ms) WHERE lease_owner IS NULL;

CREATE TABLE timers (
    shard_id INTEGER NOT NULL,
    timer_key TEXT NOT NULL,
    fire_at_ms BIGINT NOT NULL,
    namespace TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    ref_event_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    CONSTRAINT pk_timers PRIMARY KEY (shard_id, timer_key)
);
CREATE INDEX ix_timers_due ON timers (shard_id, fire_at_ms);

CREATE TABLE worker_registrations (
    namespace TEXT NOT NULL,
    task_queue TEXT NOT NULL,
    kind TEXT NOT NULL,
    type_name TEXT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    CONSTRAINT pk_worker_registrations PRIMARY KEY (namespace, task_queue, kind, type_name)
);
