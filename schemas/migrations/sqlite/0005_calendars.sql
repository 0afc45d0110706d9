-- Business calendars applied from job files (``calendars:``), shared by every server: each
-- process registers them at start and again when one changes. See history/_variable_tables.py.
CREATE TABLE calendars (
    name TEXT NOT NULL,
    display_name TEXT NOT NULL,
    definition TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    version INTEGER NOT NULL,
    namespace TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    CONSTRAINT pk_calendars PRIMARY KEY (name)
);
