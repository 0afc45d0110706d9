"""The SQL of jobs, variables and stored calendars: reads, upserts, the all-or-nothing apply
(jobs and calendars in one transaction), secret rotation.

It shares the event log's :class:`~cadenza.history._store.SqlStore` (its connections, its
SQLite write lock and its error translation), so an in-memory SQLite database and a PostgreSQL
pool serve both. Nothing here knows about encryption: secret values arrive and leave as the
``v1:...`` tokens that ``cadenza.engine`` made with ``SecretBox``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cadenza.history import _schedule_tables as sc
from cadenza.history import _variable_tables as vt
from cadenza.history._errors import ConditionFailedError, InvalidArgumentError
from cadenza.history._store import SqlStore

__all__ = [
    "GLOBAL_SCOPE",
    "AppliedVersions",
    "CalendarDelete",
    "CalendarRecord",
    "CalendarReference",
    "CalendarUpsert",
    "JobDelete",
    "JobRecord",
    "JobUpsert",
    "JobVersionRecord",
    "VariableRecord",
    "VariableStore",
    "job_scope",
]

GLOBAL_SCOPE = "global"
"""The scope of global variables."""


def job_scope(job_name: str) -> str:
    """The scope of a job's own variables (``job/<name>``)."""
    return f"job/{job_name}"


@dataclass(frozen=True, kw_only=True)
class VariableRecord:
    """A stored variable.

    Attributes:
        namespace: Its namespace.
        scope: ``global`` or ``job/<job name>``.
        name: The variable name.
        value: The value (JSON data); for a secret, its encrypted token (a string).
        secret: Whether it is a secret.
        description: What it is for.
        updated_by: Who wrote it last.
        updated_ms: When (epoch milliseconds).
    """

    namespace: str
    scope: str
    name: str
    value: Any
    secret: bool
    description: str = ""
    updated_by: str = ""
    updated_ms: int = 0


@dataclass(frozen=True, kw_only=True)
class JobRecord:
    """The current version of an applied job.

    Attributes:
        namespace: Its namespace.
        name: The job name.
        version: 1 for the first apply, incremented by every apply that changes it.
        definition: The definition as JSON text, secret values removed.
        content_hash: ``sha256`` of the canonical definition JSON.
        applied_by: Who applied this version.
        applied_ms: When (epoch milliseconds).
    """

    namespace: str
    name: str
    version: int
    definition: str
    content_hash: str
    applied_by: str
    applied_ms: int


@dataclass(frozen=True, kw_only=True)
class JobVersionRecord(JobRecord):
    """One entry of a job's audit trail.

    Attributes:
        change: ``created``, ``updated`` or ``deleted`` (the definition is then the last one).
    """

    change: str


@dataclass(frozen=True, kw_only=True)
class JobUpsert:
    """Create or update a job in :meth:`VariableStore.apply_jobs`.

    Attributes:
        name: The job.
        expected_version: The version the caller planned against (``None``: the job must not
            exist). A different current version aborts the whole apply.
        definition: The definition JSON (secret values removed).
        content_hash: Its hash.
        secrets: The job-scoped secret tokens by variable name; they replace the job's stored
            ones. ``None`` leaves them as they are.
    """

    name: str
    expected_version: int | None
    definition: str
    content_hash: str
    secrets: dict[str, str] | None = None
    descriptions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class JobDelete:
    """Delete a job (and its job-scoped variables) in :meth:`VariableStore.apply_jobs`.

    Attributes:
        name: The job.
        expected_version: Its version when planned.
    """

    name: str
    expected_version: int


@dataclass(frozen=True, kw_only=True)
class CalendarRecord:
    """A stored business calendar (applied from a job file).

    Attributes:
        name: The key: the calendar's name, lower-cased (names are case-insensitive).
        display_name: The name as written in the file.
        definition: The calendar data of the file as canonical JSON (sorted keys).
        content_hash: ``sha256:<hex>`` of ``definition``.
        version: 1 when created, +1 for every apply that changes it.
        namespace: The namespace whose apply wrote it last (only a ``--prune`` there deletes
            it).
        updated_by: Who applied this version.
        updated_ms: When (epoch milliseconds).
    """

    name: str
    display_name: str
    definition: str
    content_hash: str
    version: int
    namespace: str
    updated_by: str
    updated_ms: int


@dataclass(frozen=True, kw_only=True)
class CalendarUpsert:
    """Create or update a calendar in :meth:`VariableStore.apply_changes`.

    Attributes:
        display_name: The name as written (the key is its lower-cased form).
        expected_version: The version planned against (``None``: it must not exist). A
            different current version aborts the whole apply.
        definition: Canonical JSON of the calendar data.
        content_hash: Its hash.
    """

    display_name: str
    expected_version: int | None
    definition: str
    content_hash: str


@dataclass(frozen=True, kw_only=True)
class CalendarDelete:
    """Delete a stored calendar in :meth:`VariableStore.apply_changes`.

    Attributes:
        name: Its key (lower-cased name).
        expected_version: Its version when planned.
    """

    name: str
    expected_version: int


@dataclass(frozen=True, kw_only=True)
class AppliedVersions:
    """What :meth:`VariableStore.apply_changes` wrote.

    Attributes:
        jobs: The new version of every job written (deleted jobs: the deletion's version).
        calendars: The new version of every calendar written, by key (deleted calendars: the
            version they had).
    """

    jobs: dict[str, int] = field(default_factory=dict)
    calendars: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class CalendarReference:
    """A job or a schedule that names a calendar.

    Attributes:
        kind: ``job`` (a schedule of an applied job's definition) or ``schedule`` (an active
            schedule row).
        namespace: Its namespace.
        name: The job name, or the schedule id.
        calendar: The calendar name as written in the spec.
        workflow_type: For a schedule, the workflow type its action starts.
    """

    kind: str
    namespace: str
    name: str
    calendar: str
    workflow_type: str = ""


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class VariableStore:
    """Jobs and variables in the event log's database.

    Args:
        store: The event log's SQL store; its connections and transactions are shared.

    Raises:
        InvalidArgumentError: ``store`` is not a :class:`SqlStore`.
    """

    def __init__(self, store: Any) -> None:
        if not isinstance(store, SqlStore):
            raise InvalidArgumentError(
                "store", f"jobs and variables need the SQL store, got {type(store).__name__}"
            )
        self._store = store

    # ------------------------------------------------------------------ variables

    @staticmethod
    def _variable(row: Any) -> VariableRecord:
        m = row._mapping
        return VariableRecord(
            namespace=m["namespace"],
            scope=m["scope"],
            name=m["name"],
            value=orjson.loads(m["value"]),
            secret=bool(m["secret"]),
            description=m["description"],
            updated_by=m["updated_by"],
            updated_ms=m["updated_ms"],
        )

    async def get_variable(self, namespace: str, scope: str, name: str) -> VariableRecord | None:
        """One variable, or None."""
        v = vt.variables.c
        async with self._store._read() as conn:
            row = (
                await conn.execute(
                    select(vt.variables).where(
                        v.namespace == namespace, v.scope == scope, v.name == name
                    )
                )
            ).first()
        return self._variable(row) if row else None

    async def get_variables(
        self, namespace: str, scope: str, names: Sequence[str]
    ) -> list[VariableRecord]:
        """The variables of a scope among ``names`` (absent ones are left out)."""
        if not names:
            return []
        v = vt.variables.c
        async with self._store._read() as conn:
            rows = await conn.execute(
                select(vt.variables).where(
                    v.namespace == namespace, v.scope == scope, v.name.in_(list(names))
                )
            )
            return [self._variable(r) for r in rows]

    async def list_variables(
        self, namespace: str | None, scope: str | None = None
    ) -> list[VariableRecord]:
        """Variables by name; every namespace when ``namespace`` is None, every scope when
        ``scope`` is None."""
        v = vt.variables.c
        conditions = []
        if namespace is not None:
            conditions.append(v.namespace == namespace)
        if scope is not None:
            conditions.append(v.scope == scope)
        async with self._store._read() as conn:
            rows = await conn.execute(
                select(vt.variables).where(*conditions).order_by(v.namespace, v.scope, v.name)
            )
            return [self._variable(r) for r in rows]

    async def put_variable(self, record: VariableRecord) -> bool:
        """Create or replace a variable; True when it was created."""
        v = vt.variables.c
        values = {
            "value": _dumps(record.value),
            "secret": 1 if record.secret else 0,
            "description": record.description,
            "updated_by": record.updated_by,
            "updated_ms": record.updated_ms,
        }
        key = (
            v.namespace == record.namespace,
            v.scope == record.scope,
            v.name == record.name,
        )
        async with self._store._write_txn() as conn:
            result = await conn.execute(update(vt.variables).where(*key).values(**values))
            if result.rowcount:
                return False
            await conn.execute(
                insert(vt.variables).values(
                    namespace=record.namespace, scope=record.scope, name=record.name, **values
                )
            )
            return True

    async def delete_variable(self, namespace: str, scope: str, name: str) -> bool:
        """Delete a variable; False when there was none."""
        v = vt.variables.c
        async with self._store._write_txn() as conn:
            result = await conn.execute(
                delete(vt.variables).where(
                    v.namespace == namespace, v.scope == scope, v.name == name
                )
            )
            return bool(result.rowcount)

    async def replace_secret_tokens(
        self, changes: Sequence[tuple[VariableRecord, str]], updated_ms: int
    ) -> list[VariableRecord]:
        """Rewrite secret tokens (key rotation) in one transaction.

        Each change is ``(record as read, new token)``; a row whose token is no longer the one
        read (someone set the variable meanwhile) is left alone.

        Returns:
            The records that were not rewritten because they changed meanwhile.
        """
        v = vt.variables.c
        skipped: list[VariableRecord] = []
        async with self._store._write_txn() as conn:
            for record, token in changes:
                result = await conn.execute(
                    update(vt.variables)
                    .where(
                        v.namespace == record.namespace,
                        v.scope == record.scope,
                        v.name == record.name,
                        v.secret == 1,
                        v.value == _dumps(record.value),
                    )
                    .values(value=_dumps(token), updated_ms=updated_ms)
                )
                if not result.rowcount:
                    skipped.append(record)
        return skipped

    # ------------------------------------------------------------------ jobs

    @staticmethod
    def _job(row: Any) -> JobRecord:
        m = row._mapping
        return JobRecord(
            namespace=m["namespace"],
            name=m["name"],
            version=m["version"],
            definition=m["definition"],
            content_hash=m["content_hash"],
            applied_by=m["applied_by"],
            applied_ms=m["applied_ms"],
        )

    async def list_jobs(self, namespace: str) -> list[JobRecord]:
        """Every current job of a namespace, by name."""
        j = vt.jobs.c
        async with self._store._read() as conn:
            rows = await conn.execute(
                select(vt.jobs).where(j.namespace == namespace).order_by(j.name)
            )
            return [self._job(r) for r in rows]

    async def get_job(self, namespace: str, name: str) -> JobRecord | None:
        """The current version of a job, or None."""
        j = vt.jobs.c
        async with self._store._read() as conn:
            row = (
                await conn.execute(select(vt.jobs).where(j.namespace == namespace, j.name == name))
            ).first()
        return self._job(row) if row else None

    async def job_versions(self, namespace: str, name: str) -> list[JobVersionRecord]:
        """Every version of a job (deletions included), oldest first."""
        h = vt.job_versions.c
        async with self._store._read() as conn:
            rows = await conn.execute(
                select(vt.job_versions)
                .where(h.namespace == namespace, h.name == name)
                .order_by(h.version)
            )
            return [
                JobVersionRecord(
                    namespace=r.namespace,
                    name=r.name,
                    version=r.version,
                    definition=r.definition,
                    content_hash=r.content_hash,
                    applied_by=r.applied_by,
                    applied_ms=r.applied_ms,
                    change=r.change,
                )
                for r in rows
            ]

    async def apply_jobs(
        self,
        namespace: str,
        upserts: Sequence[JobUpsert],
        deletes: Sequence[JobDelete],
        *,
        applied_by: str,
        applied_ms: int,
    ) -> dict[str, int]:
        """Create, update and delete jobs in ONE transaction: all of it or nothing.

        Returns:
            The new version of every job written (deleted jobs: the version of the deletion).

        Raises:
            ConditionFailedError: A job is not at the version the caller planned against (a
                concurrent apply); nothing was written.
        """
        applied = await self.apply_changes(
            namespace, upserts, deletes, applied_by=applied_by, applied_ms=applied_ms
        )
        return applied.jobs

    async def apply_changes(
        self,
        namespace: str,
        upserts: Sequence[JobUpsert],
        deletes: Sequence[JobDelete],
        *,
        calendar_upserts: Sequence[CalendarUpsert] = (),
        calendar_deletes: Sequence[CalendarDelete] = (),
        applied_by: str,
        applied_ms: int,
        notices: Sequence[str] = (),
    ) -> AppliedVersions:
        """Create, update and delete jobs and calendars in ONE transaction: all or nothing.

        Args:
            notices: Cluster notices sent (PostgreSQL NOTIFY) when the transaction commits,
                e.g. so that the other servers load the changed calendars.

        Raises:
            ConditionFailedError: A job or calendar is not at the version the caller planned
                against (a concurrent apply); nothing was written.
        """
        versions: dict[str, int] = {}
        async with self._store._write_txn() as conn:
            calendar_versions = await self._apply_calendars_txn(
                conn, namespace, calendar_upserts, calendar_deletes, applied_by, applied_ms
            )
            for upsert in upserts:
                current = await self._current_version_txn(conn, namespace, upsert.name)
                if current != upsert.expected_version:
                    raise ConditionFailedError(
                        f"job {upsert.name!r} changed since it was planned "
                        f"(version {current}, planned against {upsert.expected_version}); "
                        "plan again"
                    )
                version = await self._next_version_txn(conn, namespace, upsert.name)
                row = {
                    "version": version,
                    "definition": upsert.definition,
                    "content_hash": upsert.content_hash,
                    "applied_by": applied_by,
                    "applied_ms": applied_ms,
                }
                j = vt.jobs.c
                if current is None:
                    await conn.execute(
                        insert(vt.jobs).values(namespace=namespace, name=upsert.name, **row)
                    )
                else:
                    await conn.execute(
                        update(vt.jobs)
                        .where(j.namespace == namespace, j.name == upsert.name)
                        .values(**row)
                    )
                await conn.execute(
                    insert(vt.job_versions).values(
                        namespace=namespace,
                        name=upsert.name,
                        change="created" if current is None else "updated",
                        **row,
                    )
                )
                if upsert.secrets is not None:
                    await self._replace_job_secrets_txn(
                        conn, namespace, upsert, applied_by, applied_ms
                    )
                versions[upsert.name] = version
            for removal in deletes:
                current = await self._current_version_txn(conn, namespace, removal.name)
                if current != removal.expected_version:
                    raise ConditionFailedError(
                        f"job {removal.name!r} changed since it was planned "
                        f"(version {current}, planned against {removal.expected_version}); "
                        "plan again"
                    )
                j = vt.jobs.c
                last = (
                    await conn.execute(
                        select(vt.jobs).where(j.namespace == namespace, j.name == removal.name)
                    )
                ).first()
                version = await self._next_version_txn(conn, namespace, removal.name)
                await conn.execute(
                    delete(vt.jobs).where(j.namespace == namespace, j.name == removal.name)
                )
                await conn.execute(
                    insert(vt.job_versions).values(
                        namespace=namespace,
                        name=removal.name,
                        version=version,
                        change="deleted",
                        definition=last.definition if last else "{}",
                        content_hash=last.content_hash if last else "",
                        applied_by=applied_by,
                        applied_ms=applied_ms,
                    )
                )
                v = vt.variables.c
                await conn.execute(
                    delete(vt.variables).where(
                        v.namespace == namespace, v.scope == job_scope(removal.name)
                    )
                )
                versions[removal.name] = version
            if notices:
                await self._store._notify_txn(conn, list(notices))
        return AppliedVersions(jobs=versions, calendars=calendar_versions)

    # ------------------------------------------------------------------ calendars

    @staticmethod
    def _calendar(row: Any) -> CalendarRecord:
        m = row._mapping
        return CalendarRecord(
            name=m["name"],
            display_name=m["display_name"],
            definition=m["definition"],
            content_hash=m["content_hash"],
            version=m["version"],
            namespace=m["namespace"],
            updated_by=m["updated_by"],
            updated_ms=m["updated_ms"],
        )

    async def list_calendars(self) -> list[CalendarRecord]:
        """Every stored calendar, by key."""
        c = vt.calendars.c
        async with self._store._read() as conn:
            rows = await conn.execute(select(vt.calendars).order_by(c.name))
            return [self._calendar(r) for r in rows]

    async def get_calendar(self, name: str) -> CalendarRecord | None:
        """One stored calendar by name (case-insensitive), or None."""
        c = vt.calendars.c
        async with self._store._read() as conn:
            row = (await conn.execute(select(vt.calendars).where(c.name == name.lower()))).first()
        return self._calendar(row) if row else None

    async def calendar_references(self, *, jobs: bool = True) -> list[CalendarReference]:
        """Every applied job schedule (``jobs``) and every active schedule that names a
        calendar, in every namespace."""
        found: list[CalendarReference] = []
        s = sc.schedules.c
        async with self._store._read() as conn:
            if jobs:
                for row in await conn.execute(
                    select(vt.jobs.c.namespace, vt.jobs.c.name, vt.jobs.c.definition).where(
                        vt.jobs.c.definition.like('%"calendar":"%')
                    )
                ):
                    definition = orjson.loads(row.definition)
                    for spec in definition.get("schedules") or []:
                        if isinstance(spec, dict) and isinstance(spec.get("calendar"), str):
                            found.append(
                                CalendarReference(
                                    kind="job",
                                    namespace=row.namespace,
                                    name=row.name,
                                    calendar=spec["calendar"],
                                )
                            )
            for row in await conn.execute(
                select(s.namespace, s.schedule_id, s.spec, s.action).where(
                    s.status == "active", s.spec.like('%"calendar":"%')
                )
            ):
                spec = orjson.loads(row.spec)
                if isinstance(spec, dict) and isinstance(spec.get("calendar"), str):
                    action = orjson.loads(row.action)
                    found.append(
                        CalendarReference(
                            kind="schedule",
                            namespace=row.namespace,
                            name=row.schedule_id,
                            calendar=spec["calendar"],
                            workflow_type=str(action.get("workflow_type", ""))
                            if isinstance(action, dict)
                            else "",
                        )
                    )
        return found

    async def _apply_calendars_txn(
        self,
        conn: AsyncConnection,
        namespace: str,
        upserts: Sequence[CalendarUpsert],
        deletes: Sequence[CalendarDelete],
        applied_by: str,
        applied_ms: int,
    ) -> dict[str, int]:
        c = vt.calendars.c
        versions: dict[str, int] = {}
        for upsert in upserts:
            key = upsert.display_name.lower()
            current = await self._calendar_version_txn(conn, key)
            if current != upsert.expected_version:
                raise ConditionFailedError(
                    f"calendar {upsert.display_name!r} changed since it was planned "
                    f"(version {current}, planned against {upsert.expected_version}); plan again"
                )
            row = {
                "display_name": upsert.display_name,
                "definition": upsert.definition,
                "content_hash": upsert.content_hash,
                "version": (current or 0) + 1,
                "namespace": namespace,
                "updated_by": applied_by,
                "updated_ms": applied_ms,
            }
            if current is None:
                await conn.execute(insert(vt.calendars).values(name=key, **row))
            else:
                await conn.execute(update(vt.calendars).where(c.name == key).values(**row))
            versions[key] = row["version"]
        for removal in deletes:
            key = removal.name.lower()
            current = await self._calendar_version_txn(conn, key)
            if current != removal.expected_version:
                raise ConditionFailedError(
                    f"calendar {removal.name!r} changed since it was planned "
                    f"(version {current}, planned against {removal.expected_version}); plan again"
                )
            await conn.execute(delete(vt.calendars).where(c.name == key))
            versions[key] = removal.expected_version
        return versions

    async def _calendar_version_txn(self, conn: AsyncConnection, key: str) -> int | None:
        c = vt.calendars.c
        query = select(c.version).where(c.name == key)
        if self._store.dialect == "postgresql":
            query = query.with_for_update()
        value = (await conn.execute(query)).scalar()
        return int(value) if value is not None else None

    async def _current_version_txn(
        self, conn: AsyncConnection, namespace: str, name: str
    ) -> int | None:
        j = vt.jobs.c
        query = select(j.version).where(j.namespace == namespace, j.name == name)
        if self._store.dialect == "postgresql":
            query = query.with_for_update()
        value = (await conn.execute(query)).scalar()
        return int(value) if value is not None else None

    async def _next_version_txn(self, conn: AsyncConnection, namespace: str, name: str) -> int:
        h = vt.job_versions.c
        value = (
            await conn.execute(
                select(func.max(h.version)).where(h.namespace == namespace, h.name == name)
            )
        ).scalar()
        return int(value or 0) + 1

    async def _replace_job_secrets_txn(
        self,
        conn: AsyncConnection,
        namespace: str,
        upsert: JobUpsert,
        updated_by: str,
        updated_ms: int,
    ) -> None:
        v = vt.variables.c
        scope = job_scope(upsert.name)
        await conn.execute(delete(vt.variables).where(v.namespace == namespace, v.scope == scope))
        rows = [
            {
                "namespace": namespace,
                "scope": scope,
                "name": name,
                "value": _dumps(token),
                "secret": 1,
                "description": upsert.descriptions.get(name, ""),
                "updated_by": updated_by,
                "updated_ms": updated_ms,
            }
            for name, token in sorted((upsert.secrets or {}).items())
        ]
        if rows:
            await conn.execute(insert(vt.variables), rows)
