"""Declarative jobs on a server: plan, apply (all or nothing), list, show, run.

:class:`JobService` is the engine side of schedule-as-code. ``apply`` validates every job it is
given (the same checks as ``cadenza lint``) and the job-scoped secret tokens, then writes every
change in ONE transaction (``jobs``, ``job_versions`` with who applied it, job-scoped secrets, and the business
calendars of the files: ``_job_calendars``), then brings the jobs' schedules in line. A second
apply of the same files changes nothing.

A run starts the job interpreter workflow (``cadenza.job``, implemented in
``cadenza.sdk._job_interpreter``) with a :class:`~cadenza.engine._job_contract.JobRunRequest`
holding the job's current snapshot; the run records it in its history, so later applies do not
change it.

The service also answers what running jobs ask the server: the global variables a run reads
(:meth:`JobService.run_variables`) and, for one running activity attempt, the plain values of
the secrets its input references (:meth:`JobService.activity_secrets`).
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
import weakref
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from cadenza.engine._api import StartWorkflowRequest, StartWorkflowResponse
from cadenza.engine._engine import Engine
from cadenza.engine._job_calendars import (
    CalendarPlan,
    calendar_notice,
    calendar_sync_for,
    check_schedules,
    plan_calendars,
    refresh_schedules,
)
from cadenza.engine._job_contract import (
    JOB_TASK_QUEUE,
    JOB_WORKFLOW_TYPE,
    JobRunRequest,
    JobTrigger,
    JobVariables,
)
from cadenza.engine._job_loader import JobFileError, JobIssue, load_job_text
from cadenza.engine._job_model import JobDefinition
from cadenza.engine._job_plan import (
    FieldChange,
    JobChange,
    JobPlan,
    canonical_definition,
    content_hash,
    diff_values,
    secret_changes,
)
from cadenza.engine._job_schedules import apply_schedules, plan_schedules
from cadenza.engine._mutation import activity_task_id
from cadenza.engine._variables import VariableService, job_secret_tokens
from cadenza.history import InvalidArgumentError, NotFoundError, WorkflowClosedError
from cadenza.history._events import (
    ActivityTaskScheduled,
    TriggerInfo,
    WorkflowExecutionStarted,
)
from cadenza.history._variable_store import JobDelete, JobRecord, JobUpsert
from cadenza.timers._calendars import calendar_overlay

__all__ = [
    "ActivityRef",
    "ApplyResult",
    "JobDescription",
    "JobService",
    "JobSummary",
    "JobVersionView",
    "jobs_for",
    "secret_names_in",
    "validate_jobs",
]

log = logging.getLogger("cadenza.engine.jobs")

_SERVICES: weakref.WeakKeyDictionary[Engine, JobService] = weakref.WeakKeyDictionary()


def jobs_for(engine: Engine) -> JobService:
    """The :class:`JobService` of an engine (one per engine, created on first use)."""
    service = _SERVICES.get(engine)
    if service is None:
        service = _SERVICES[engine] = JobService(engine)
    return service


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


class JobSummary(msgspec.Struct, frozen=True, kw_only=True):
    """An applied job in a listing.

    Attributes:
        name: The job.
        version: Its current version.
        description: Its description.
        owner: Its owner.
        tags: Its tags.
        triggers: The triggers it allows.
        schedules: The ids of its schedules (``<job>/<id>``).
        steps: Number of steps.
        applied_by: Who applied the current version.
        applied_at: When, ISO-8601 UTC.
        content_hash: Hash of the definition (secret values excluded).
    """

    name: str
    version: int
    description: str
    owner: str
    tags: list[str]
    triggers: list[str]
    schedules: list[str]
    steps: int
    applied_by: str
    applied_at: str
    content_hash: str


class JobVersionView(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of a job's audit trail."""

    version: int
    change: str
    applied_by: str
    applied_at: str
    content_hash: str


class JobDescription(msgspec.Struct, frozen=True, kw_only=True):
    """``job show``: the summary, the definition (secret values removed) and every version."""

    job: JobSummary
    definition: dict[str, Any]
    versions: list[JobVersionView]


class ApplyResult(msgspec.Struct, frozen=True, kw_only=True):
    """What ``apply`` did.

    Attributes:
        plan: The changes, as planned and made.
        versions: The new version of every created, updated or deleted job.
        schedules: One line per schedule created, updated or deleted (``+ job/id`` ...).
        schedule_errors: Schedules that could not be synced (the jobs are applied; a repeated
            apply retries them).
        calendar_versions: The new version of every created or updated calendar (a deleted
            one: the version it had), by name as written.
    """

    plan: JobPlan
    versions: dict[str, int] = {}
    schedules: list[str] = []
    schedule_errors: list[str] = []
    calendar_versions: dict[str, int] = {}


class ActivityRef(msgspec.Struct, frozen=True, kw_only=True):
    """One running activity attempt, as its worker knows it (``activity.info()``)."""

    namespace: str
    workflow_id: str
    run_id: str
    scheduled_event_id: int
    attempt: int


def validate_jobs(
    documents: Sequence[Any], *, step_types: Collection[str] | None = None
) -> list[JobDefinition]:
    """Check job definitions sent as data (JSON of the job file format), all or nothing.

    Raises:
        JobFileError: Any problem (issues located as ``request:1: jobs[2].steps[0].type: ...``).
    """
    if not documents:
        return []
    try:
        text = msgspec.json.encode({"jobs": list(documents)}).decode()
    except (TypeError, msgspec.EncodeError) as exc:
        raise InvalidArgumentError("jobs", f"must be JSON data: {exc}") from None
    loaded = load_job_text(
        text, filename="request", format="json", step_types=step_types, unknown_variables=None
    )
    if not loaded.ok:
        raise JobFileError(loaded.issues)
    return loaded.jobs


def secret_names_in(value: Any) -> set[str]:
    """Names of every secret placeholder inside a JSON value (rendered step input)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            kind = node.get("kind")
            if kind == "secret_ref" and isinstance(node.get("name"), str):
                found.add(node["name"])
                return
            if kind == "secret_string" and isinstance(node.get("parts"), list):
                for part in node["parts"]:
                    walk(part)
                return
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(value)
    return found


def _summary(record: JobRecord, job: JobDefinition) -> JobSummary:
    return JobSummary(
        name=record.name,
        version=record.version,
        description=job.description,
        owner=job.owner,
        tags=list(job.tags),
        triggers=list(job.triggers),
        schedules=[job.schedule_id(i) for i in range(len(job.schedules))],
        steps=len(job.steps),
        applied_by=record.applied_by,
        applied_at=_iso(record.applied_ms),
        content_hash=record.content_hash,
    )


def _decode_job(record: JobRecord) -> JobDefinition:
    return msgspec.json.decode(record.definition, type=JobDefinition)


class JobService:
    """Jobs, their runs and their variables on one engine.

    Args:
        engine: The engine (started).
        variables: The variable service to use (default: one on the engine's store and
            settings).
        task_queue: Queue of job runs (default ``cadenza-jobs``).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        variables: VariableService | None = None,
        task_queue: str = JOB_TASK_QUEUE,
    ) -> None:
        self.engine = engine
        self.vars = variables or VariableService(engine.store, engine.settings)
        self.store = self.vars.variables
        self.task_queue = task_queue

    # ------------------------------------------------------------------ reads

    async def list_jobs(self, namespace: str) -> list[JobSummary]:
        """Every applied job of a namespace, by name."""
        return [_summary(r, _decode_job(r)) for r in await self.store.list_jobs(namespace)]

    async def load_job(self, namespace: str, name: str) -> tuple[JobDefinition, int]:
        """The current definition (secret values removed) and version of a job.

        Raises:
            NotFoundError: No such job.
        """
        record = await self.store.get_job(namespace, name)
        if record is None:
            raise NotFoundError(f"no job {name!r} in namespace {namespace!r}")
        return _decode_job(record), record.version

    async def describe_job(self, namespace: str, name: str) -> JobDescription:
        """A job with its definition and audit trail.

        Raises:
            NotFoundError: No such job.
        """
        record = await self.store.get_job(namespace, name)
        if record is None:
            raise NotFoundError(f"no job {name!r} in namespace {namespace!r}")
        job = _decode_job(record)
        versions = await self.store.job_versions(namespace, name)
        return JobDescription(
            job=_summary(record, job),
            definition=msgspec.json.decode(record.definition),
            versions=[
                JobVersionView(
                    version=v.version,
                    change=v.change,
                    applied_by=v.applied_by,
                    applied_at=_iso(v.applied_ms),
                    content_hash=v.content_hash,
                )
                for v in versions
            ],
        )

    async def known_step_types(self, namespace: str) -> set[str]:
        """Activity types that workers registered on the job queue (besides built-ins)."""
        return await self.engine.store.registered_types(namespace, self.task_queue, "activity")

    # ------------------------------------------------------------------ plan and apply

    def _check_secrets(self, jobs: Sequence[JobDefinition]) -> dict[str, dict[str, str]]:
        """Decrypt every job-scoped secret token of the files (all must be valid)."""
        issues: list[JobIssue] = []
        plain: dict[str, dict[str, str]] = {}
        for index, job in enumerate(jobs):
            values: dict[str, str] = {}
            for name, token in job_secret_tokens(job).items():
                try:
                    values[name] = self.vars.check_job_secret(job.name, name, token)
                except InvalidArgumentError as exc:
                    issues.append(JobIssue(job.name, 1, f"jobs[{index}].{exc.field}", exc.reason))
            plain[job.name] = values
        if issues:
            raise JobFileError(issues)
        return plain

    async def plan(
        self,
        namespace: str,
        jobs: Sequence[JobDefinition],
        *,
        prune: bool = False,
        calendars: Sequence[Any] | None = None,
    ) -> JobPlan:
        """What :meth:`apply` would do; changes nothing.

        Args:
            calendars: The business calendars of the files (``calendars:`` entries as JSON
                data); ``None`` leaves the stored calendars out of the plan.

        Raises:
            JobFileError: Two jobs share a name, a job-scoped secret token is invalid, a
                calendar is invalid or cannot be pruned, or a schedule would never fire.
        """
        plan, _, _ = await self._plan(namespace, jobs, prune, calendars)
        return plan

    async def _plan(
        self,
        namespace: str,
        jobs: Sequence[JobDefinition],
        prune: bool,
        calendars: Sequence[Any] | None = None,
    ) -> tuple[JobPlan, dict[str, JobRecord], CalendarPlan | None]:
        seen: dict[str, int] = {}
        for index, job in enumerate(jobs):
            if job.name in seen:
                raise JobFileError(
                    [
                        JobIssue(
                            job.name,
                            1,
                            f"jobs[{index}].name",
                            f"duplicate job name {job.name!r} (also jobs[{seen[job.name]}])",
                        )
                    ]
                )
            seen[job.name] = index
        desired_secrets = self._check_secrets(jobs)
        current = {r.name: r for r in await self.store.list_jobs(namespace)}
        calendar_plan: CalendarPlan | None = None
        if calendars is not None:
            calendar_plan = await plan_calendars(
                self, namespace, calendars, prune=prune, jobs=jobs, stored_jobs=list(current)
            )
        changes: list[JobChange] = []
        for job in sorted(jobs, key=lambda j: j.name):
            record = current.get(job.name)
            if record is None:
                changes.append(
                    JobChange(
                        name=job.name,
                        action="create",
                        steps=len(job.steps),
                        schedules=len(job.schedules),
                    )
                )
                continue
            old = msgspec.json.decode(record.definition)
            new = msgspec.json.decode(canonical_definition(job))
            fields: list[FieldChange] = list(diff_values(old, new))
            stored = await self.vars.stored_job_secrets(namespace, job.name)
            fields.extend(secret_changes(stored, desired_secrets[job.name]))
            changes.append(
                JobChange(
                    name=job.name,
                    action="update" if fields else "unchanged",
                    version=record.version,
                    fields=fields,
                )
            )
        unmanaged: list[str] = []
        for name in sorted(set(current) - set(seen)):
            if prune:
                job = _decode_job(current[name])
                changes.append(
                    JobChange(
                        name=name,
                        action="delete",
                        version=current[name].version,
                        steps=len(job.steps),
                        schedules=len(job.schedules),
                    )
                )
            else:
                unmanaged.append(name)
        expected: list[tuple[JobDefinition, int]] = []
        for change in changes:
            if change.action == "delete":
                continue
            job = jobs[seen[change.name]]
            if change.action == "create":
                history = await self.store.job_versions(namespace, job.name)
                version = (history[-1].version if history else 0) + 1
            else:
                version = (change.version or 0) + (1 if change.action == "update" else 0)
            expected.append((job, version))
        removed = [c.name for c in changes if c.action == "delete"]
        # Schedules are checked against the calendars of the files, before they are stored.
        with calendar_overlay(calendar_plan.built if calendar_plan is not None else {}):
            schedules, issues = await plan_schedules(self, namespace, expected, removed)
        if calendar_plan is not None:
            issues.extend(
                check_schedules(
                    jobs, calendar_plan, self.engine.clock.now_ms(), {i.field for i in issues}
                )
            )
        if issues:
            raise JobFileError(issues)
        plan = JobPlan(
            namespace=namespace,
            jobs=changes,
            unmanaged=unmanaged,
            prune=prune,
            schedules=schedules,
            calendars=calendar_plan.changes if calendar_plan is not None else [],
            unmanaged_calendars=calendar_plan.unmanaged if calendar_plan is not None else [],
        )
        return plan, current, calendar_plan

    async def apply(
        self,
        namespace: str,
        jobs: Sequence[JobDefinition],
        *,
        prune: bool = False,
        identity: str = "",
        calendars: Sequence[Any] | None = None,
    ) -> ApplyResult:
        """Make the server's jobs (and calendars) match the files: all or nothing, idempotent.

        Every job of the files is created or updated (a new version, recorded with
        ``identity``), unless it is unchanged; with ``prune``, applied jobs not in ``jobs`` are
        deleted. The business calendars of the files are stored in the same transaction
        (with ``prune``, stored calendars last applied from this namespace and not in the
        files are deleted) and registered in every server. Then the schedules of every job
        are brought in line with its definition (their specs were validated before anything
        was written, against the new calendars), and schedules naming a changed calendar
        get their next fire recomputed.

        Args:
            calendars: The ``calendars:`` entries of the files (JSON data); ``None`` leaves
                the stored calendars alone (even with ``prune``).

        Raises:
            JobFileError: Duplicate names, invalid secret tokens, invalid calendars, a
                calendar to prune that is still used, or schedules that would never fire
                (nothing changed).
            ConditionFailedError: A concurrent apply changed a job or calendar meanwhile
                (nothing changed; plan again).
        """
        plan, current, calendar_plan = await self._plan(namespace, jobs, prune, calendars)
        by_name = {job.name: job for job in jobs}
        upserts: list[JobUpsert] = []
        deletes: list[JobDelete] = []
        for change in plan.jobs:
            if change.action in ("create", "update"):
                job = by_name[change.name]
                canonical = canonical_definition(job)
                upserts.append(
                    JobUpsert(
                        name=job.name,
                        expected_version=change.version,
                        definition=canonical,
                        content_hash=content_hash(canonical),
                        secrets=dict(job_secret_tokens(job)),
                        descriptions={
                            name: v.description for name, v in job.variables.items() if v.secret
                        },
                    )
                )
            elif change.action == "delete" and change.version is not None:
                deletes.append(JobDelete(name=change.name, expected_version=change.version))
        calendar_upserts = calendar_plan.upserts if calendar_plan is not None else []
        calendar_deletes = calendar_plan.deletes if calendar_plan is not None else []
        versions: dict[str, int] = {}
        calendar_versions: dict[str, int] = {}
        if upserts or deletes or calendar_upserts or calendar_deletes:
            applied = await self.store.apply_changes(
                namespace,
                upserts,
                deletes,
                calendar_upserts=calendar_upserts,
                calendar_deletes=calendar_deletes,
                applied_by=identity or "unknown",
                applied_ms=int(time.time() * 1000),
                notices=(
                    [calendar_notice(self.engine.owner)]
                    if calendar_upserts or calendar_deletes
                    else []
                ),
            )
            versions = applied.jobs
            names = {c.name.lower(): c.name for c in plan.calendars}
            calendar_versions = {names.get(k, k): v for k, v in applied.calendars.items()}
            counts = plan.counts()
            log.info(
                "jobs applied by %s in %s: %d created, %d updated, %d deleted; calendars "
                "written: %s",
                identity or "unknown",
                namespace,
                counts["create"],
                counts["update"],
                counts["delete"],
                ", ".join(sorted(calendar_versions)) or "none",
            )
        if calendar_plan is not None:
            # Registered here before the schedules below are created against them.
            await calendar_sync_for(self.engine).load()
        applied_jobs = {
            job.name: (job, versions.get(job.name) or current[job.name].version) for job in jobs
        }
        done, errors = await apply_schedules(
            self, namespace, plan.schedules, applied_jobs, identity=identity or "unknown"
        )
        if calendar_plan is not None:
            moved, failed = await refresh_schedules(
                self, {*calendar_plan.built, *calendar_plan.changed}, identity or "unknown"
            )
            done.extend(moved)
            errors.extend(failed)
        return ApplyResult(
            plan=plan,
            versions=versions,
            schedules=done,
            schedule_errors=errors,
            calendar_versions=calendar_versions,
        )

    # ------------------------------------------------------------------ runs

    def start_request(
        self,
        namespace: str,
        job: JobDefinition,
        version: int,
        *,
        workflow_id: str,
        trigger: JobTrigger | None = None,
        identity: str = "",
        request_id: str = "",
    ) -> StartWorkflowRequest:
        """The request that starts a run of ``job`` (for manual runs, webhooks, schedules)."""
        run = JobRunRequest(job=job.without_secret_values(), version=version, trigger=trigger)
        info = None
        if trigger is not None:
            # The payload travels in the run request only (it is recorded there once).
            info = TriggerInfo(
                source=trigger.source,
                schedule_id=trigger.schedule_id,
                nominal_time=trigger.nominal_time,
            )
        timeout = job.execution_timeout.total_seconds() if job.execution_timeout else None
        return StartWorkflowRequest(
            workflow_id=workflow_id,
            workflow_type=JOB_WORKFLOW_TYPE,
            task_queue=self.task_queue,
            input=msgspec.Raw(msgspec.json.encode([run])),
            namespace=namespace,
            execution_timeout=timeout,
            request_id=request_id,
            trigger=info,
            memo={"job": job.name, "job_version": version},
            identity=identity,
        )

    async def run_job(
        self,
        namespace: str,
        name: str,
        *,
        input: Any = None,
        source: str = "manual",
        identity: str = "",
        workflow_id: str | None = None,
        request_id: str = "",
    ) -> StartWorkflowResponse:
        """Start a run of an applied job now (its current version).

        Args:
            namespace: The namespace.
            name: The job.
            input: The trigger payload (``trigger.payload``): the manual input or the webhook
                body.
            source: ``manual`` or ``webhook``; the job must allow it in ``triggers``.
            identity: Who asks (recorded with the start).
            workflow_id: The run's workflow id (default ``<job>/<source>/<UTC time>-<random>``,
                or ``<job>/<source>/<digest of request_id>`` when ``request_id`` is given).
            request_id: Makes a retried call idempotent: it finds the run the first call
                started.

        Raises:
            NotFoundError: No such job.
            InvalidArgumentError: The job does not allow this trigger, or a bad input.
        """
        if source not in ("manual", "webhook"):
            raise InvalidArgumentError("source", "must be 'manual' or 'webhook'")
        job, version = await self.load_job(namespace, name)
        if source not in job.triggers:
            raise InvalidArgumentError(
                "trigger",
                f"job {name!r} does not allow {source} runs (triggers: {', '.join(job.triggers)})",
            )
        try:
            msgspec.json.encode(input)
        except (TypeError, msgspec.EncodeError) as exc:
            raise InvalidArgumentError("input", f"must be JSON data: {exc}") from None
        if workflow_id is None and request_id:
            # A retried request (a webhook delivered twice) finds the run it started.
            digest = hashlib.sha256(request_id.encode("utf-8")).hexdigest()[:20]
            workflow_id = f"{name}/{source}/{digest}"
        elif workflow_id is None:
            stamp = datetime.fromtimestamp(self.engine.clock.now_ms() / 1000, tz=UTC)
            workflow_id = (
                f"{name}/{source}/{stamp.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"
            )
        request = self.start_request(
            namespace,
            job,
            version,
            workflow_id=workflow_id,
            trigger=JobTrigger(source=source, payload=input),  # type: ignore[arg-type]
            identity=identity,
            request_id=request_id or uuid.uuid4().hex,
        )
        response = await self.engine.start_workflow(request)
        log.info(
            "job %s version %d run %s started (%s) by %s",
            name,
            version,
            response.workflow_id,
            source,
            identity or "?",
        )
        return response

    # ------------------------------------------------------------------ what runs ask

    async def run_variables(self, namespace: str, names: Collection[str]) -> JobVariables:
        """Global variables among ``names``: values of plain ones, names of secret ones."""
        values, secrets = await self.vars.global_values(namespace, names)
        return JobVariables(values=values, secrets=secrets)

    async def activity_secrets(self, ref: ActivityRef) -> dict[str, str]:
        """Plain values of the secrets referenced by one running step attempt's input.

        Only a job run's activity attempt that is running now may ask, and only for the
        secrets its own recorded input references, as its job declares them.

        Raises:
            InvalidArgumentError: Not a running attempt of a job run's activity.
            WorkflowClosedError: The run has closed.
            NotFoundError: A referenced secret is not set.
        """
        engine = self.engine
        record = await engine.load_run(ref.namespace, ref.workflow_id, ref.run_id)
        if record.workflow_type != JOB_WORKFLOW_TYPE:
            raise InvalidArgumentError("workflow_id", f"{ref.workflow_id!r} is not a job run")
        if not record.state.running:
            raise WorkflowClosedError(ref.workflow_id, ref.run_id, record.status, "read secrets")
        task = await engine.store.get_task(
            record.shard_id, activity_task_id(record.run_id, ref.scheduled_event_id)
        )
        if task is None or task.attempt != ref.attempt or task.lease_owner is None:
            raise InvalidArgumentError(
                "scheduled_event_id",
                f"activity {ref.scheduled_event_id} attempt {ref.attempt} of run "
                f"{ref.run_id} is not running",
            )
        started = await engine.store.read_events(record.shard_id, record.run_id, 0, 1, 1)
        scheduled = await engine.store.read_events(
            record.shard_id, record.run_id, ref.scheduled_event_id - 1, ref.scheduled_event_id, 1
        )
        if not started or not isinstance(started[0].attributes, WorkflowExecutionStarted):
            raise InvalidArgumentError("run_id", "the run has no start event")
        if not scheduled or not isinstance(scheduled[0].attributes, ActivityTaskScheduled):
            raise InvalidArgumentError("scheduled_event_id", "not an activity of this run")
        request = msgspec.json.decode(bytes(started[0].attributes.input), type=list[JobRunRequest])[
            0
        ]
        names = secret_names_in(msgspec.json.decode(bytes(scheduled[0].attributes.input)))
        if not names:
            return {}
        return await self.vars.secret_values(ref.namespace, request.job, names)
