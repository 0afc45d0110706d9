"""Business calendars of job files on a server: plan, store, and load them in every process.

A job file's ``calendars:`` section (``docs/calendars.md``) is applied with its jobs. ``plan``
builds every calendar of the files exactly as the engine will (``calendar_from_dict``), so a
bad calendar fails before anything is written (``calendars[1].holidays[0].date: ...``), and
validates the schedules of the files against these calendars through a task-local overlay
(:func:`~cadenza.timers._calendars.calendar_overlay`) before they are stored. ``apply`` writes
the calendars in the same transaction as the jobs (table ``calendars``), with a cluster notice.

The calendar registry is per process, so every engine keeps it in line with the table
(:class:`CalendarSync`): it loads the stored calendars when it starts, again when another
server's apply sends the notice (PostgreSQL LISTEN/NOTIFY), and every minute as a safety net.
Compiled schedule evaluators notice the change by the registry's generation number
(:class:`~cadenza.engine._schedule_logic.EvaluatorCache`), and the applying server moves the
pending next fire of every schedule that names a changed calendar
(:func:`refresh_schedules`).

Built-in calendars (``VN``, its alias ``vietnam``, ``weekends-only``) cannot be redefined by a
file. With ``--prune``, a stored calendar that was last applied from the same namespace and is
not in the files is deleted, unless a job, a schedule or another calendar still names it.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from cadenza.engine._job_contract import JOB_WORKFLOW_TYPE
from cadenza.engine._job_loader import JobFileError, JobIssue
from cadenza.engine._job_model import JobDefinition
from cadenza.engine._job_plan import CalendarChange, content_hash, diff_values
from cadenza.history import (
    CadenzaError,
    InvalidArgumentError,
    NotFoundError,
    ShardOwnershipLostError,
    SqlStore,
)
from cadenza.history._variable_store import (
    CalendarDelete,
    CalendarRecord,
    CalendarUpsert,
    VariableStore,
)
from cadenza.timers._calendar_rules import WEEKDAY_NAMES
from cadenza.timers._calendar_spec import calendar_from_dict
from cadenza.timers._calendars import (
    MAX_YEAR,
    MIN_YEAR,
    Calendar,
    CalendarEntry,
    builtin_calendar_names,
    calendar_names,
    calendar_overlay,
    get_calendar,
    register_calendar,
    unregister_calendar,
)
from cadenza.timers._schedule_eval import ScheduleEvaluator

if TYPE_CHECKING:
    from cadenza.engine._engine import Engine
    from cadenza.engine._jobs import JobService

__all__ = [
    "CALENDAR_NOTICE",
    "CalendarPlan",
    "CalendarSummary",
    "CalendarSync",
    "CalendarYear",
    "build_calendars",
    "calendar_notice",
    "calendar_sync_for",
    "canonical_calendar",
    "check_schedules",
    "default_year",
    "describe_calendar",
    "list_calendars",
    "plan_calendars",
    "refresh_schedules",
]

log = logging.getLogger("cadenza.engine.calendars")

CALENDAR_NOTICE = "k"
"""Kind of the cluster notice (``<owner>|k|calendars``) that makes peers reload calendars."""

RELOAD_SECONDS = 60.0
"""How often every engine reloads the stored calendars even without a notice."""

# Process-wide: the calendars this process registered from a store, key -> content hash
# (the registry they go into is process-wide too).
_LOADED: dict[str, str] = {}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- building


def canonical_calendar(data: Mapping[str, Any]) -> str:
    """The calendar data as canonical JSON (sorted keys): what is stored and hashed."""
    return msgspec.json.encode(_sorted(data)).decode()


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def _includes(data: Mapping[str, Any]) -> list[str]:
    include = data.get("include")
    if not isinstance(include, list):
        return []
    return [name.lower() for name in include if isinstance(name, str)]


def _issue(name: str, index: int, where: str, message: str) -> JobIssue:
    path = f"calendars[{index}]" + (f".{where}" if where else "")
    return JobIssue(name or "request", 1, path, message)


def build_calendars(
    documents: Sequence[Any],
) -> tuple[list[dict[str, Any]], dict[str, Calendar]]:
    """Check and build the calendars of files, all or nothing.

    A calendar may include built-in, registered or stored calendars, and the other calendars
    of the same files (in any order; a cycle is an error).

    Returns:
        The calendar data as JSON values (dates as ``YYYY-MM-DD``), in file order, and the
        built calendars by lower-cased name.

    Raises:
        JobFileError: Every problem, located as ``calendars[i].field``.
    """
    issues: list[JobIssue] = []
    data: list[dict[str, Any]] = []
    keys: dict[str, int] = {}
    builtins = builtin_calendar_names()
    for index, raw in enumerate(documents):
        try:
            value = msgspec.to_builtins(raw)
        except (TypeError, msgspec.EncodeError) as exc:
            issues.append(_issue("", index, "", f"must be JSON data: {exc}"))
            data.append({})
            continue
        if not isinstance(value, dict):
            issues.append(_issue("", index, "", "expected a mapping (a calendar)"))
            data.append({})
            continue
        data.append(value)
        name = value.get("name")
        if not isinstance(name, str) or not name.strip():
            issues.append(_issue("", index, "name", "is required (a non-empty string)"))
            continue
        key = name.strip().lower()
        if key in builtins:
            issues.append(
                _issue(
                    name,
                    index,
                    "name",
                    f"{name!r} is a built-in calendar and cannot be redefined by a file; "
                    f"choose another name (it may include: [{name}])",
                )
            )
            continue
        if key in keys:
            issues.append(
                _issue(
                    name,
                    index,
                    "name",
                    f"duplicate calendar name {name!r} (also calendars[{keys[key]}])",
                )
            )
            continue
        keys[key] = index
    if issues:
        raise JobFileError(issues)
    built: dict[str, Calendar] = {}
    pending = dict(keys)
    while pending:
        progress = False
        for key, index in list(pending.items()):
            if any(dep in pending and dep != key for dep in _includes(data[index])):
                continue
            del pending[key]
            progress = True
            try:
                with calendar_overlay(built):
                    built[key] = calendar_from_dict(data[index])
            except InvalidArgumentError as exc:
                issues.append(_issue(data[index]["name"], index, exc.field, exc.reason))
        if not progress:
            for index in sorted(pending.values()):
                position = next(
                    (j for j, dep in enumerate(_includes(data[index])) if dep in pending), 0
                )
                issues.append(
                    _issue(
                        data[index]["name"],
                        index,
                        f"include[{position}]",
                        "calendars of the files include each other in a cycle",
                    )
                )
            break
    if issues:
        raise JobFileError(issues)
    return data, built


# --------------------------------------------------------------------------- plan


@dataclass
class CalendarPlan:
    """The calendar part of a plan, with what ``apply`` writes.

    Attributes:
        changes: For the plan (files in order of name, then deletions).
        unmanaged: Stored calendars of this namespace not in the files (kept).
        built: The calendars of the files, by lower-cased name (for the schedule checks).
        upserts: Calendars to create or update.
        deletes: Calendars to delete.
        stored: The stored calendars as read, by key.
    """

    changes: list[CalendarChange] = field(default_factory=list)
    unmanaged: list[str] = field(default_factory=list)
    built: dict[str, Calendar] = field(default_factory=dict)
    upserts: list[CalendarUpsert] = field(default_factory=list)
    deletes: list[CalendarDelete] = field(default_factory=list)
    stored: dict[str, CalendarRecord] = field(default_factory=dict)

    @property
    def changed(self) -> set[str]:
        """Keys of the calendars this apply creates, updates or deletes."""
        return {u.display_name.lower() for u in self.upserts} | {d.name for d in self.deletes}


def _job_calendars(job: JobDefinition) -> list[tuple[int, str]]:
    return [
        (index, spec.calendar)
        for index, spec in enumerate(job.schedules)
        if getattr(spec, "calendar", None)
    ]


async def plan_calendars(
    service: JobService,
    namespace: str,
    documents: Sequence[Any],
    *,
    prune: bool,
    jobs: Sequence[JobDefinition],
    stored_jobs: Collection[str],
) -> CalendarPlan:
    """Compare the calendars of the files with the stored ones.

    Args:
        documents: The ``calendars:`` entries of the files (JSON data).
        prune: Delete stored calendars of this namespace that are not in the files.
        jobs: The jobs of the files (after the apply, the namespace's only jobs with prune).
        stored_jobs: The names of the jobs applied in the namespace now.

    Raises:
        JobFileError: An invalid calendar, a built-in name, or a calendar to prune that is
            still used.
    """
    data, built = build_calendars(documents)
    stored = {r.name: r for r in await service.store.list_calendars()}
    plan = CalendarPlan(built=built, stored=stored)
    for value in sorted(data, key=lambda d: str(d["name"]).lower()):
        key = str(value["name"]).strip().lower()
        canonical = canonical_calendar(value)
        record = stored.get(key)
        if record is None:
            plan.changes.append(CalendarChange(name=value["name"], action="create"))
            plan.upserts.append(
                CalendarUpsert(
                    display_name=value["name"],
                    expected_version=None,
                    definition=canonical,
                    content_hash=content_hash(canonical),
                )
            )
            continue
        fields = list(diff_values(msgspec.json.decode(record.definition), _sorted(value)))
        plan.changes.append(
            CalendarChange(
                name=value["name"],
                action="update" if fields else "unchanged",
                version=record.version,
                fields=fields,
            )
        )
        if fields:
            plan.upserts.append(
                CalendarUpsert(
                    display_name=value["name"],
                    expected_version=record.version,
                    definition=canonical,
                    content_hash=content_hash(canonical),
                )
            )
    for key in sorted(set(stored) - set(built)):
        record = stored[key]
        if record.namespace != namespace:
            continue
        if not prune:
            plan.unmanaged.append(record.display_name)
            continue
        plan.changes.append(
            CalendarChange(name=record.display_name, action="delete", version=record.version)
        )
        plan.deletes.append(CalendarDelete(name=key, expected_version=record.version))
    if plan.deletes:
        await _check_unused(service, namespace, plan, data, jobs, stored_jobs)
    return plan


async def _check_unused(
    service: JobService,
    namespace: str,
    plan: CalendarPlan,
    data: Sequence[Mapping[str, Any]],
    jobs: Sequence[JobDefinition],
    stored_jobs: Collection[str],
) -> None:
    """Refuse to prune a calendar that something still names after the apply."""
    deleting = {d.name for d in plan.deletes}
    users: dict[str, list[str]] = {}

    def use(calendar: str, who: str) -> None:
        if calendar.lower() in deleting:
            users.setdefault(calendar.lower(), []).append(who)

    for job in jobs:
        for index, calendar in _job_calendars(job):
            use(calendar, f"job {job.name!r} (schedules[{index}]) in the files")
    synced = {*stored_jobs, *(job.name for job in jobs)}
    for ref in await service.store.calendar_references():
        if ref.namespace == namespace and ref.kind == "job":
            continue  # the namespace's jobs become those of the files
        if (
            ref.namespace == namespace
            and ref.workflow_type == JOB_WORKFLOW_TYPE
            and any(ref.name.startswith(f"{name}/") for name in synced)
        ):
            continue  # a job's schedule: it follows the files
        use(ref.calendar, f"{ref.kind} {ref.name!r} in namespace {ref.namespace!r}")
    for value in data:
        for other in _includes(value):
            use(other, f"calendar {value['name']!r} of the files (include)")
    for key, record in plan.stored.items():
        if key in deleting or key in plan.built:
            continue
        for other in _includes(msgspec.json.decode(record.definition)):
            use(other, f"stored calendar {record.display_name!r} (include)")
    if not users:
        return
    issues = []
    for key, who in sorted(users.items()):
        name = plan.stored[key].display_name
        shown = ", ".join(who[:5]) + (f" and {len(who) - 5} more" if len(who) > 5 else "")
        issues.append(
            JobIssue(
                name,
                1,
                "calendars",
                f"calendar {name!r} is not in the files but cannot be pruned: still used by "
                f"{shown}; keep it in the files or remove those references first",
            )
        )
    raise JobFileError(issues)


def check_schedules(
    jobs: Sequence[JobDefinition], plan: CalendarPlan, now_ms: int, skip: Collection[str]
) -> list[JobIssue]:
    """Schedules of the files that name a calendar the apply creates or changes must still
    fire under it (checked against the new calendars; ``skip``: fields already reported)."""
    changed = {u.display_name.lower() for u in plan.upserts}
    if not changed:
        return []
    issues: list[JobIssue] = []
    with calendar_overlay(plan.built):
        for job_index, job in enumerate(jobs):
            for index, calendar in _job_calendars(job):
                if calendar.lower() not in changed:
                    continue
                schedule_id = job.schedule_id(index)
                try:
                    evaluator = ScheduleEvaluator(job.schedules[index], schedule_id=schedule_id)
                    evaluator.check_fires(now_ms)
                except InvalidArgumentError as exc:
                    where = f"jobs[{job_index}].schedules[{index}].{exc.field}"
                    if where not in skip:
                        issues.append(JobIssue(schedule_id, 1, where, exc.reason))
    return issues


# --------------------------------------------------------------------------- after apply


def _affected(records: Iterable[CalendarRecord], changed: Collection[str]) -> set[str]:
    """``changed`` and every stored calendar that includes one of them, transitively."""
    includes = {r.name: set(_includes(msgspec.json.decode(r.definition))) for r in records}
    found = set(changed)
    while True:
        more = {name for name, deps in includes.items() if deps & found} - found
        if not more:
            return found
        found |= more


async def refresh_schedules(
    service: JobService, calendars: Collection[str], identity: str
) -> tuple[list[str], list[str]]:
    """Move the pending next fire of every active schedule (any namespace) that names one of
    ``calendars`` (or a stored calendar including one) when the current calendars give
    another one. Idempotent: a schedule already in line is not written.

    Returns:
        One line per schedule moved, and one per schedule that could not be.
    """
    if not calendars:
        return [], []
    engine = service.engine
    affected = _affected(await service.store.list_calendars(), {c.lower() for c in calendars})
    done: list[str] = []
    errors: list[str] = []
    for ref in await service.store.calendar_references(jobs=False):
        if ref.calendar.lower() not in affected:
            continue
        reason = f"calendar {ref.calendar!r} changed"
        try:
            moved, change = await engine._change_schedule(
                ref.namespace,
                ref.name,
                lambda c, reason=reason: c.refresh_next_fire(reason, identity),  # type: ignore[misc]
            )
        except ShardOwnershipLostError:
            raise  # the frontend forwards the whole (idempotent) apply to the owner
        except CadenzaError as exc:
            errors.append(f"schedule {ref.name}: next fire not recomputed: {exc}")
            continue
        if moved:
            nominal = change.state.next_nominal_ms
            when = _iso(nominal) if nominal is not None else "none"
            done.append(f"~ schedule {ref.name}: next fire {when} ({reason})")
    return done, errors


# --------------------------------------------------------------------------- sync


def _install(records: Sequence[CalendarRecord]) -> bool:
    """Register the stored calendars in this process (replacing older versions) and remove
    those no longer stored. Returns whether anything changed."""
    wanted = {r.name: r.content_hash for r in records}
    if wanted == _LOADED:
        return False
    builtins = builtin_calendar_names()
    by_key = {r.name: r for r in records if r.name not in builtins}
    built: dict[str, Calendar] = {}
    pending = dict(by_key)
    while pending:
        ready = [
            key
            for key, record in pending.items()
            if not any(
                dep in pending and dep != key
                for dep in _includes(msgspec.json.decode(record.definition))
            )
        ]
        if not ready:
            log.error("stored calendars include each other in a cycle: %s", sorted(pending))
            break
        for key in ready:
            record = pending.pop(key)
            try:
                with calendar_overlay(built):
                    built[key] = calendar_from_dict(msgspec.json.decode(record.definition))
            except Exception as exc:  # a bad row must not stop the engine's sync loop
                log.error("stored calendar %r cannot be built: %s", record.display_name, exc)
    for calendar in built.values():
        register_calendar(calendar, replace=True)
    for key in set(_LOADED) - set(wanted):
        try:
            unregister_calendar(key)
        except InvalidArgumentError:
            pass
    _LOADED.clear()
    _LOADED.update(wanted)
    log.info("calendars loaded from the database: %s", ", ".join(sorted(built)) or "none")
    return True


class CalendarSync:
    """Keeps this process's calendar registry in line with the stored calendars.

    Args:
        store: The engine's store (anything but the SQL store has no calendars).
        interval: Seconds between reloads without a notice (default 60).

    Attributes:
        versions: Version of every stored calendar at the last load, by key.
        loads: How many loads read the table (diagnostics and tests).
    """

    def __init__(self, store: Any, *, interval: float = RELOAD_SECONDS) -> None:
        self.interval = interval
        self._vars = VariableStore(store) if isinstance(store, SqlStore) else None
        self._wake = asyncio.Event()
        self.versions: dict[str, int] = {}
        self.loads = 0

    async def load(self) -> list[CalendarRecord]:
        """Read the stored calendars and register what changed; returns the records."""
        if self._vars is None:
            return []
        records = await self._vars.list_calendars()
        self.versions = {r.name: r.version for r in records}
        self.loads += 1
        _install(records)
        return records

    def changed(self) -> None:
        """Another server changed the calendars (a cluster notice): reload soon."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Reload on every notice and every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            except TimeoutError:
                pass
            self._wake.clear()
            if stop.is_set():
                return
            await self.load()


_SYNCS: weakref.WeakKeyDictionary[Any, CalendarSync] = weakref.WeakKeyDictionary()


def calendar_sync_for(engine: Engine) -> CalendarSync:
    """The engine's :class:`CalendarSync` (``engine.calendar_sync``, else one made here)."""
    sync = getattr(engine, "calendar_sync", None)
    if isinstance(sync, CalendarSync):
        return sync
    found = _SYNCS.get(engine)
    if found is None:
        found = _SYNCS[engine] = CalendarSync(engine.store)
    return found


def calendar_notice(owner: str) -> str:
    """The cluster notice line an apply that changed calendars sends."""
    return f"{owner}|{CALENDAR_NOTICE}|calendars"


# --------------------------------------------------------------------------- reads


class CalendarSummary(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A calendar a server knows.

    Attributes:
        name: Its name.
        source: ``builtin``, ``stored`` (applied from a job file) or ``registered`` (by code
            in the server process).
        description: Its description.
        weekend: Its weekend days (``sat``, ``sun``).
        aliases: Other names of a built-in calendar.
        version: A stored calendar's version.
        namespace: The namespace whose apply wrote a stored calendar last.
        updated_by: Who applied it.
        updated_at: When, ISO-8601 UTC.
        content_hash: Hash of its definition.
    """

    name: str
    source: Literal["builtin", "stored", "registered"]
    description: str = ""
    weekend: list[str] = []
    aliases: list[str] = []
    version: int | None = None
    namespace: str = ""
    updated_by: str = ""
    updated_at: str = ""
    content_hash: str = ""


class CalendarYear(msgspec.Struct, frozen=True, kw_only=True):
    """One calendar's holidays and make-up working days of a year.

    Attributes:
        calendar: The calendar.
        year: The year.
        entries: Holidays and make-up working days, in date order (like ``cadenza calendar
            show --json``, with each entry's ``source``).
        definition: A stored calendar's data as applied (None for others).
    """

    calendar: CalendarSummary
    year: int
    entries: list[CalendarEntry]
    definition: dict[str, Any] | None = None


def _summary(calendar: Calendar, record: CalendarRecord | None) -> CalendarSummary:
    key = calendar.name.lower()
    weekend = [WEEKDAY_NAMES[d] for d in sorted(calendar.weekend)]
    description = getattr(calendar, "description", "") or ""
    if record is not None:
        return CalendarSummary(
            name=record.display_name,
            source="stored",
            description=description,
            weekend=weekend,
            version=record.version,
            namespace=record.namespace,
            updated_by=record.updated_by,
            updated_at=_iso(record.updated_ms),
            content_hash=record.content_hash,
        )
    builtins = builtin_calendar_names()
    aliases = sorted(a for a in builtins if a != key and get_calendar(a) is calendar)
    return CalendarSummary(
        name=calendar.name,
        source="builtin" if key in builtins else "registered",
        description=description,
        weekend=weekend,
        aliases=aliases,
    )


async def list_calendars(engine: Engine) -> list[CalendarSummary]:
    """Every calendar the server knows (built-in, stored, registered), by name; the stored
    ones are loaded first, so the list is current even if a notice was missed."""
    records = {r.name: r for r in await calendar_sync_for(engine).load()}
    return [
        _summary(get_calendar(name), records.get(name.lower()))
        for name in sorted(calendar_names(), key=str.lower)
    ]


async def describe_calendar(engine: Engine, name: str, year: int) -> CalendarYear:
    """A calendar's holidays and make-up working days of ``year``.

    Raises:
        NotFoundError: No calendar of that name.
        InvalidArgumentError: A year out of range (field ``year``).
    """
    if isinstance(year, bool) or not isinstance(year, int) or not MIN_YEAR <= year <= MAX_YEAR:
        raise InvalidArgumentError("year", f"must be a year {MIN_YEAR}..{MAX_YEAR}, got {year!r}")
    records = {r.name: r for r in await calendar_sync_for(engine).load()}
    try:
        calendar = get_calendar(name)
    except InvalidArgumentError:
        raise NotFoundError(
            f"no calendar {name!r}; known calendars: {', '.join(calendar_names())}"
        ) from None
    record = records.get(calendar.name.lower())
    return CalendarYear(
        calendar=_summary(calendar, record),
        year=year,
        entries=calendar.entries(year),
        definition=msgspec.json.decode(record.definition) if record is not None else None,
    )


def default_year(engine: Engine) -> int:
    """The current year (UTC) by the engine's clock."""
    return datetime.fromtimestamp(engine.clock.now_ms() / 1000, tz=UTC).year
