"""Tables of declarative jobs and of variables (global and job-scoped), secrets included.

They live on the shared :data:`cadenza.history._tables.metadata` (``_tables`` imports this
module at its end), so the schema truth and the migration diff cover them. The migration that
creates them is ``0003_jobs_variables.sql``.

* ``variables``: one row per variable of a scope. ``scope`` is ``global`` or ``job/<job name>``
  (job-scoped secrets that a job file gives as encrypted tokens). ``value`` is JSON text; for a
  secret it is the JSON string of its ``v1:...`` token (AES-256-GCM, ``docs/secrets.md``), never
  the plain value.
* ``jobs``: the current version of every applied job: its definition as JSON with secret values
  removed, the content hash of that JSON, who applied it and when.
* ``job_versions``: every version ever applied (and deletions), for the audit trail.
* ``calendars`` (migration ``0005_calendars.sql``): the business calendars applied from job
  files, keyed by the lower-cased name: the name as written, the definition as canonical JSON
  (the calendar data of the file), its content hash, a version (+1 per change), the namespace
  whose apply wrote it last (``--prune`` there may delete it), who and when.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, PrimaryKeyConstraint, Table, Text

from cadenza.history._tables import metadata

__all__ = ["calendars", "job_versions", "jobs", "variables"]

variables = Table(
    "variables",
    metadata,
    Column("namespace", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("value", Text, nullable=False),
    Column("secret", Integer, nullable=False),
    Column("description", Text, nullable=False),
    Column("updated_by", Text, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("namespace", "scope", "name", name="pk_variables"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("namespace", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("definition", Text, nullable=False),
    Column("content_hash", Text, nullable=False),
    Column("applied_by", Text, nullable=False),
    Column("applied_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("namespace", "name", name="pk_jobs"),
)

job_versions = Table(
    "job_versions",
    metadata,
    Column("namespace", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("change", Text, nullable=False),
    Column("definition", Text, nullable=False),
    Column("content_hash", Text, nullable=False),
    Column("applied_by", Text, nullable=False),
    Column("applied_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("namespace", "name", "version", name="pk_job_versions"),
)

calendars = Table(
    "calendars",
    metadata,
    Column("name", Text, nullable=False),
    Column("display_name", Text, nullable=False),
    Column("definition", Text, nullable=False),
    Column("content_hash", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("namespace", Text, nullable=False),
    Column("updated_by", Text, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("name", name="pk_calendars"),
)
