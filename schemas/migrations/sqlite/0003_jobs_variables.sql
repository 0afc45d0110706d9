-- Declarative jobs (current version and every applied version) and variables (secrets
-- encrypted). See history/_variable_tables.py.
CREATE TABLE variables (
    namespace TEXT NOT NULL,
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    secret INTEGER NOT NULL,
    description TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    CONSTRAINT pk_variables PRIMARY KEY (namespace, scope, name)
);

CREATE TABLE jobs (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    definition TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    applied_by TEXT NOT NULL,
    applied_ms INTEGER NOT NULL,
    CONSTRAINT pk_jobs PRIMARY KEY (namespace, name)
);

CREATE TABLE job_versions (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    change TEXT NOT NULL,
    definition TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    applied_by TEXT NOT NULL,
    applied_ms INTEGER NOT NULL,
    CONSTRAINT pk_job_versions PRIMARY KEY (namespace, name, version)
);
