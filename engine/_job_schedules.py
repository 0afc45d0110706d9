"""Schedules of declarative jobs: each schedule of a job file is a server schedule that starts
the job interpreter with the job's current snapshot.

A job's schedule ``i`` has the id ``job.schedule_id(i)`` (``<job>/<id or index>``) and an
action that starts ``cadenza.job`` on the job queue with a
:class:`~cadenza.engine._job_contract.JobRunRequest` holding the snapshot of the job's applied
version (no trigger: the schedule fire records its schedule id and nominal time with the start).
A schedule belongs to a job when its id starts with ``<job>/`` and its action starts
``cadenza.job``; other schedules are never touched.

:func:`plan_schedules` compares what the files want with what the server has (also catching
drift such as an operator's pause) and validates every new or changed spec exactly as
``create_schedule`` will (a spec that never fires is an error), so that ``apply`` fails before
writing anything. :func:`apply_schedules` then makes the changes through the engine's schedule
operations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from cadenza.engine._job_contract import JOB_WORKFLOW_TYPE, JobRunRequest
from cadenza.engine._job_loader import JobIssue
from cadenza.engine._job_model import JobDefinition
from cadenza.engine._job_plan import FieldChange, SchedulePlan, diff_values
from cadenza.engine._schedule_api import ScheduleAction, ScheduleDescription
from cadenza.engine._schedule_logic import action_json, spec_json
from cadenza.history import CadenzaError, InvalidArgumentError, ShardOwnershipLostError
from cadenza.timers._schedule_eval import ScheduleEvaluator

if TYPE_CHECKING:
    from cadenza.engine._jobs import JobService

__all__ = ["apply_schedules", "job_schedule_action", "owned_schedules", "plan_schedules"]

_PAGE = 500


def job_schedule_action(service: JobService, job: JobDefinition, version: int) -> ScheduleAction:
    """What each fire of one of ``job``'s schedules starts."""
    request = JobRunRequest(job=job.without_secret_values(), version=version)
    timeout = job.execution_timeout.total_seconds() if job.execution_timeout else None
    return ScheduleAction(
        workflow_type=JOB_WORKFLOW_TYPE,
        task_queue=service.task_queue,
        input=msgspec.Raw(msgspec.json.encode([request])),
        execution_timeout=timeout,
        memo={"job": job.name, "job_version": version},
    )


async def owned_schedules(
    service: JobService, namespace: str, job_name: str
) -> dict[str, ScheduleDescription]:
    """The server's schedules of a job, by schedule id."""
    engine = service.engine
    prefix = f"{job_name}/"
    out: dict[str, ScheduleDescription] = {}
    after = prefix
    while True:
        page = await engine.list_schedules(namespace, after=after, limit=_PAGE)
        for summary in page:
            if not summary.schedule_id.startswith(prefix):
                return out
            if summary.workflow_type == JOB_WORKFLOW_TYPE:
                out[summary.schedule_id] = await engine.describe_schedule(
                    namespace, summary.schedule_id
                )
        if len(page) < _PAGE:
            return out
        after = page[-1].schedule_id


def _input_version(raw: Any) -> Any:
    try:
        return msgspec.json.decode(bytes(raw), type=list[JobRunRequest])[0].version
    except (msgspec.DecodeError, msgspec.ValidationError, IndexError):
        return None


def _action_changes(old: ScheduleAction, new: ScheduleAction) -> list[FieldChange]:
    """Differences of two actions; a changed snapshot shows as its version change."""
    old_json, new_json = action_json(old), action_json(new)
    old_json.pop("input", None)
    new_json.pop("input", None)
    changes = list(diff_values(old_json, new_json, "action"))
    if msgspec.json.decode(bytes(old.input)) != msgspec.json.decode(bytes(new.input)):
        changes.append(
            FieldChange(
                path="action.input",
                kind="changed",
                old=f"job snapshot version {_input_version(old.input)}",
                new=f"job snapshot version {_input_version(new.input)}",
            )
        )
    return changes


def _validate(
    spec: Any, schedule_id: str, job_index: int, spec_index: int, now_ms: int
) -> JobIssue | None:
    try:
        ScheduleEvaluator(spec, schedule_id=schedule_id).check_fires(now_ms)
    except InvalidArgumentError as exc:
        return JobIssue(
            schedule_id,
            1,
            f"jobs[{job_index}].schedules[{spec_index}].{exc.field}",
            exc.reason,
        )
    return None


async def plan_schedules(
    service: JobService,
    namespace: str,
    jobs: Sequence[tuple[JobDefinition, int]],
    removed: Sequence[str],
) -> tuple[list[SchedulePlan], list[JobIssue]]:
    """Schedule changes that make the server match ``jobs`` (each with the version it will
    have) and delete the schedules of the ``removed`` jobs.

    Returns:
        The changes, and the problems of new or changed specs (they make ``apply`` fail).
    """
    now = service.engine.clock.now_ms()
    plans: list[SchedulePlan] = []
    issues: list[JobIssue] = []
    for job_index, (job, version) in enumerate(jobs):
        existing = await owned_schedules(service, namespace, job.name)
        action = job_schedule_action(service, job, version)
        wanted: set[str] = set()
        for spec_index, spec in enumerate(job.schedules):
            schedule_id = job.schedule_id(spec_index)
            wanted.add(schedule_id)
            current = existing.get(schedule_id)
            if current is None:
                issue = _validate(spec, schedule_id, job_index, spec_index, now)
                if issue is not None:
                    issues.append(issue)
                plans.append(SchedulePlan(schedule_id=schedule_id, job=job.name, action="create"))
                continue
            desired_spec = spec_json(spec)
            fields = list(diff_values(current.spec, desired_spec, "spec"))
            if current.paused != spec.paused and not any(f.path == "spec.paused" for f in fields):
                fields.append(
                    FieldChange(
                        path="spec.paused", kind="changed", old=current.paused, new=spec.paused
                    )
                )
            if fields:
                issue = _validate(spec, schedule_id, job_index, spec_index, now)
                if issue is not None:
                    issues.append(issue)
            fields.extend(_action_changes(current.action, action))
            if fields:
                plans.append(
                    SchedulePlan(
                        schedule_id=schedule_id, job=job.name, action="update", fields=fields
                    )
                )
        for schedule_id in sorted(set(existing) - wanted):
            plans.append(SchedulePlan(schedule_id=schedule_id, job=job.name, action="delete"))
    for name in removed:
        for schedule_id in sorted(await owned_schedules(service, namespace, name)):
            plans.append(SchedulePlan(schedule_id=schedule_id, job=name, action="delete"))
    return plans, issues


async def apply_schedules(
    service: JobService,
    namespace: str,
    plans: Sequence[SchedulePlan],
    jobs: Mapping[str, tuple[JobDefinition, int]],
    *,
    identity: str = "",
) -> tuple[list[str], list[str]]:
    """Make the planned schedule changes.

    Args:
        plans: From :func:`plan_schedules`.
        jobs: The applied jobs with their versions now, by name.

    Returns:
        One line per change made, and one per change that failed (a repeated apply retries
        them).
    """
    engine = service.engine
    done: list[str] = []
    errors: list[str] = []
    for plan in plans:
        try:
            if plan.action == "delete":
                await engine.delete_schedule(
                    namespace, plan.schedule_id, identity=identity, reason="removed by apply"
                )
                done.append(f"- schedule {plan.schedule_id}")
                continue
            job, version = jobs[plan.job]
            index = next(
                i for i in range(len(job.schedules)) if job.schedule_id(i) == plan.schedule_id
            )
            action = job_schedule_action(service, job, version)
            if plan.action == "create":
                await engine.create_schedule(
                    namespace, plan.schedule_id, job.schedules[index], action, identity=identity
                )
                done.append(f"+ schedule {plan.schedule_id}")
            else:
                await engine.update_schedule(
                    namespace,
                    plan.schedule_id,
                    spec=job.schedules[index],
                    action=action,
                    identity=identity,
                )
                done.append(f"~ schedule {plan.schedule_id}")
        except ShardOwnershipLostError:
            raise  # the frontend forwards the whole (idempotent) apply to the owner
        except CadenzaError as exc:
            errors.append(f"schedule {plan.schedule_id}: {plan.action} failed: {exc}")
    return done, errors
