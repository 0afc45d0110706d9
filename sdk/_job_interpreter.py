"""The job interpreter: ONE built-in workflow (``cadenza.job``) that runs any declarative job.

It is ordinary workflow code written with the SDK (it lives in ``cadenza.sdk`` because the SDK
depends on the engine, never the reverse; the engine only knows the contract in
``cadenza.engine._job_contract``). Its input is a :class:`JobRunRequest`: the job's snapshot
(the definition with secret values removed), recorded in the ``workflow started`` event, so
applying a new version of the job never changes a run that has started, nor its replay.

Semantics (``docs/jobs.md``):

* Steps run in dependency order; steps whose dependencies have all finished start together
  (independent branches run in parallel), in file order. Compensation steps never run in the
  normal order.
* Each step is ONE activity of the step's type (``http``, ``sql``, ``email``, ``file``,
  ``sftp`` or a registered activity; ``workflow`` starts a child workflow), scheduled with
  ``activity_id`` = the step id (``id[3]`` for the fourth ``for_each`` item), so its result is
  recorded in the history under the step id. An unknown type fails the step with the engine's
  ``ActivityTypeNotRegistered`` error naming it.
* Templates and ``when`` conditions are evaluated here, in workflow code, from what the history
  recorded (step outputs, the trigger, the variables read by the ``cadenza.job.variables``
  activity): deterministic on replay. Secret variables stay placeholders; the activity resolves
  them at run time (``cadenza.sdk._job_activities``).
* ``when`` false: the step is ``skipped`` and its dependents still run. ``on_failure``:
  ``fail`` fails the job (running steps are cancelled), ``continue`` records the failure and
  goes on, ``{compensate: STEP}`` cancels the running steps, runs the compensation step, then
  fails the job. ``for_each`` runs the step per item with at most ``concurrency`` at once; its
  output is the list of the items' outputs in item order.
* A step's ``retry`` (else the job's) is the activity's retry policy; its ``timeout`` the
  limit of one attempt (without one: the job's ``execution_timeout`` bounds all attempts,
  else 24 hours per attempt). The job's ``execution_timeout`` is the workflow's.
* The result is a :class:`JobRunResult` (per step: status and output); a failed run fails
  with ``ApplicationError`` type ``JobFailed`` whose details hold the same summary.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from cadenza.engine._job_contract import (
    JOB_TASK_QUEUE,
    JOB_WORKFLOW_TYPE,
    VARIABLES_ACTIVITY,
    JobRunRequest,
    JobRunResult,
    JobTrigger,
    StepResult,
)
from cadenza.engine._job_expr import evaluate, expression_references
from cadenza.engine._job_loader import load_job_set
from cadenza.engine._job_model import JobDefinition, Step, topological_order
from cadenza.engine._job_template import (
    TemplateContext,
    TemplateError,
    contains_secrets,
    render,
    template_references,
)
from cadenza.engine._jobs import jobs_for
from cadenza.history import (
    ActivityError,
    ApplicationError,
    CadenzaError,
    ChildWorkflowError,
    FailureError,
    NonDeterminismError,
)
from cadenza.sdk import workflow
from cadenza.sdk._common import RetryPolicy
from cadenza.sdk._job_activities import (
    builtin_step_activities,
    secret_aware,
    use_job_backend,
    variables_activity,
)
from cadenza.timers._spec import DEFAULT_TIMEZONE

__all__ = [
    "DEFAULT_STEP_TIMEOUT",
    "JOB_TASK_QUEUE",
    "JobInterpreter",
    "job_activities",
    "job_worker",
    "job_workflows",
    "load_jobs_into",
    "referenced_variables",
]

log = logging.getLogger("cadenza.sdk.jobs")

DEFAULT_STEP_TIMEOUT = timedelta(hours=24)
"""Limit of one attempt of a step without ``timeout`` in a job without ``execution_timeout``."""

_VARIABLES_RETRY = RetryPolicy(maximum_attempts=10, maximum_interval=timedelta(seconds=30))


def referenced_variables(job: JobDefinition) -> list[str]:
    """Names of the variables the job's templates and conditions read that the job itself does
    not define (so they are global), sorted."""
    names: set[str] = set()
    for step in job.steps:
        for _, ref in template_references(step.config):
            if ref.variable:
                names.add(ref.variable)
        if step.for_each is not None:
            for _, ref in template_references(step.for_each.items):
                if ref.variable:
                    names.add(ref.variable)
        if step.when:
            for ref in expression_references(step.when):
                if ref.variable:
                    names.add(ref.variable)
    return sorted(names - set(job.variables))


@dataclass
class _Failure:
    """Why a step failed (kept as data: it goes into the result)."""

    message: str
    type: str


def _describe(exc: BaseException) -> _Failure:
    """Message and type of a step failure, from the error an activity or child raised."""
    if isinstance(exc, TemplateError):
        return _Failure(str(exc), "TemplateError")
    cause: BaseException = exc
    while isinstance(cause, ActivityError | ChildWorkflowError) and cause.__cause__ is not None:
        cause = cause.__cause__
    if isinstance(cause, ApplicationError):
        return _Failure(cause.message, cause.type)
    if isinstance(cause, FailureError):
        return _Failure(cause.message, type(cause).__name__)
    return _Failure(str(cause), type(cause).__name__)


class _StepFailed(Exception):
    """A ``for_each`` item failed in a way that fails the whole step."""

    def __init__(self, failure: _Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def _aware(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return None


class _Run:
    """One execution of a job: the state the interpreter keeps while it runs."""

    def __init__(self, request: JobRunRequest, results: dict[str, StepResult]) -> None:
        self.job = request.job
        self.version = request.version
        self.results = results
        self.steps_ctx: dict[str, dict[str, Any]] = {}
        run_info = workflow.info()
        recorded = run_info.trigger or {}
        trigger = request.trigger or JobTrigger(
            source="scheduled" if recorded.get("schedule_id") else "manual",
            schedule_id=recorded.get("schedule_id"),
            nominal_time=_aware(recorded.get("nominal_time")),
        )
        schedule_id = trigger.schedule_id
        zone = trigger.timezone
        if zone is None and schedule_id is not None:
            for index, spec in enumerate(self.job.schedules):
                if self.job.schedule_id(index) == schedule_id:
                    zone = spec.timezone
        zone = zone or DEFAULT_TIMEZONE
        # Manual and webhook runs stand for the time they were requested (the start event).
        nominal = _aware(trigger.nominal_time) or _aware(run_info.start_time)
        self.trigger = {"source": trigger.source, "payload": trigger.payload}
        self.execution = {
            "id": run_info.workflow_id,
            "run_id": run_info.run_id,
            "job": self.job.name,
            "version": self.version,
        }
        self.schedule = {"nominal_time": nominal, "id": schedule_id, "timezone": zone}
        self.zone = zone
        self.variables: dict[str, Any] = {}
        self.secrets: frozenset[str] = frozenset()

    # ------------------------------------------------------------------ context

    def context(self) -> TemplateContext:
        """What templates see now (outputs of every finished step)."""
        return TemplateContext(
            variables=self.variables,
            secrets=self.secrets,
            steps=self.steps_ctx,
            trigger=self.trigger,
            execution=self.execution,
            schedule=self.schedule,
            timezone=self.zone,
        )

    async def load_variables(self) -> None:
        """Job variables over the global ones the job reads (read once, recorded)."""
        names = referenced_variables(self.job)
        global_values: dict[str, Any] = {}
        global_secrets: list[str] = []
        if names:
            answer = await workflow.execute_activity(
                VARIABLES_ACTIVITY,
                names,
                activity_id="cadenza.variables",
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=_VARIABLES_RETRY,
            )
            global_values = dict(answer.get("values", {}))
            global_secrets = list(answer.get("secrets", []))
        self.variables, self.secrets = self.job.resolve_variables(global_values, global_secrets)

    def record(self, step: Step, result: StepResult) -> None:
        """Make a finished step visible to later templates and to the summary."""
        self.results[step.id] = result
        self.steps_ctx[step.id] = {"output": result.output, "status": result.status}

    # ------------------------------------------------------------------ the graph

    async def execute(self) -> JobRunResult:
        """Run every step; returns the summary or raises ``ApplicationError`` (JobFailed)."""
        await self.load_variables()
        compensation_ids = self.job.compensation_step_ids()
        order = topological_order([s for s in self.job.steps if s.id not in compensation_ids])
        position = {step.id: i for i, step in enumerate(order)}
        pending = list(order)
        running: dict[str, asyncio.Task[StepResult]] = {}
        finished: set[str] = set()
        failed: Step | None = None
        loop = asyncio.get_running_loop()
        while pending or running:
            if failed is None:
                for step in list(pending):
                    if all(dep in finished for dep in step.depends_on):
                        pending.remove(step)
                        running[step.id] = loop.create_task(
                            self.run_step(step), name=f"step-{step.id}"
                        )
            if not running:
                break
            done, _ = await asyncio.wait(running.values(), return_when=asyncio.FIRST_COMPLETED)
            for step_id in sorted(
                (sid for sid, task in running.items() if task in done), key=position.__getitem__
            ):
                task = running.pop(step_id)
                step = self.job.step(step_id)
                result = task.result()
                self.record(step, result)
                finished.add(step_id)
                if result.status == "failed" and step.on_failure != "continue" and not failed:
                    failed = step
            if failed is not None:
                await self._cancel(running)
                break
        if failed is None:
            return JobRunResult(
                job=self.job.name, version=self.version, status="completed", steps=self.results
            )
        compensation = failed.compensation_step
        if compensation is not None:
            step = self.job.step(compensation)
            result = await self.run_step(step)
            self.record(step, msgspec.structs.replace(result, compensation=failed.id))
        summary = JobRunResult(
            job=self.job.name,
            version=self.version,
            status="failed",
            steps=self.results,
            failed_step=failed.id,
        )
        error = self.results[failed.id]
        raise ApplicationError(
            f"job {self.job.name!r} failed: step {failed.id!r} failed: {error.error}",
            msgspec.to_builtins(summary),
            type="JobFailed",
            non_retryable=True,
        )

    async def _cancel(self, running: dict[str, asyncio.Task[StepResult]]) -> None:
        """Cancel the steps still running (their activities get a cancel request)."""
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
        for step_id, task in running.items():
            step = self.job.step(step_id)
            if task.cancelled():
                self.record(step, StepResult(status="cancelled"))
            else:
                self.record(step, task.result())
        running.clear()

    # ------------------------------------------------------------------ one step

    async def run_step(self, step: Step) -> StepResult:
        """Run one step to its end: completed, failed (data, not an exception) or skipped."""
        context = self.context()
        try:
            if step.when is not None and not evaluate(
                step.when, context, field=f"steps.{step.id}.when"
            ):
                return StepResult(status="skipped")
            if step.for_each is not None:
                return await self._for_each(step, context)
            config = render(step.config, context, field=f"steps.{step.id}.config")
            output = await self._call(step, config, step.id)
            return StepResult(status="completed", output=output)
        except NonDeterminismError:
            raise
        except CadenzaError as exc:  # a failure, a template error, a bad child id ...
            failure = _describe(exc)
            return StepResult(status="failed", error=failure.message, error_type=failure.type)

    async def _for_each(self, step: Step, context: TemplateContext) -> StepResult:
        spec = step.for_each
        if spec is None:  # pragma: no cover - guarded by the caller
            raise RuntimeError("not a for_each step")
        items = render(spec.items, context, field=f"steps.{step.id}.for_each.items")
        if not isinstance(items, list):
            raise TemplateError(
                f"steps.{step.id}.for_each.items",
                f"must be a list, got {type(items).__name__}",
            )
        outputs: list[Any] = [None] * len(items)
        errors: dict[int, _Failure] = {}
        keep_going = step.on_failure == "continue"
        indexes = iter(range(len(items)))

        async def lane() -> None:
            for index in indexes:
                local = context.with_locals(**{spec.item_var: items[index], spec.index_var: index})
                field = f"steps.{step.id}[{index}].config"
                try:
                    config = render(step.config, local, field=field)
                    outputs[index] = await self._call(step, config, f"{step.id}[{index}]")
                except NonDeterminismError:
                    raise
                except CadenzaError as exc:
                    failure = _describe(exc)
                    failure.message = f"item {index}: {failure.message}"
                    errors[index] = failure
                    if not keep_going:
                        raise _StepFailed(failure) from None

        loop = asyncio.get_running_loop()
        lanes = [
            loop.create_task(lane(), name=f"step-{step.id}-lane-{n}")
            for n in range(min(spec.concurrency, len(items)))
        ]
        if lanes:
            _, rest = await asyncio.wait(lanes, return_when=asyncio.FIRST_EXCEPTION)
            for task in rest:
                task.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)
            for task in lanes:
                if not task.cancelled() and isinstance(task.exception(), _StepFailed):
                    failure = errors[min(errors)]
                    return StepResult(
                        status="failed",
                        output=outputs,
                        error=failure.message,
                        error_type=failure.type,
                    )
        if errors:
            first = errors[min(errors)]
            message = f"{len(errors)} of {len(items)} items failed; first: {first.message}"
            return StepResult(status="failed", output=outputs, error=message, error_type=first.type)
        return StepResult(status="completed", output=outputs)

    def _retry(self, step: Step) -> RetryPolicy:
        policy = self.job.retry_for(step)
        return RetryPolicy(
            initial_interval=policy.initial_interval,
            backoff_coefficient=policy.backoff_coefficient,
            maximum_interval=policy.effective_maximum_interval,
            maximum_attempts=policy.maximum_attempts,
            non_retryable_error_types=tuple(policy.non_retryable_error_types),
        )

    def _timeouts(self, step: Step) -> dict[str, timedelta]:
        if step.timeout is not None:
            return {"start_to_close_timeout": step.timeout}
        if self.job.execution_timeout is not None:
            return {"schedule_to_close_timeout": self.job.execution_timeout}
        return {"start_to_close_timeout": DEFAULT_STEP_TIMEOUT}

    async def _call(self, step: Step, config: Any, activity_id: str) -> Any:
        if step.type == "workflow":
            return await self._child(step, config, activity_id)
        return await workflow.execute_activity(
            step.type,
            config,
            activity_id=activity_id,
            retry_policy=self._retry(step),
            **self._timeouts(step),
        )

    async def _child(self, step: Step, config: Any, activity_id: str) -> Any:
        """A ``workflow`` step: start the child, wait for its result, retried as the step's
        retry policy says (each attempt a new child, ``<id>#<attempt>``)."""
        field = f"steps.{step.id}.config"
        if not isinstance(config, dict) or not isinstance(config.get("workflow"), str):
            raise TemplateError(field, "a workflow step needs 'workflow': the workflow type")
        unknown = set(config) - {"workflow", "input", "args", "id", "task_queue"}
        if unknown:
            raise TemplateError(
                f"{field}.{sorted(unknown)[0]}",
                "unknown field (known: workflow, input, args, id, task_queue)",
            )
        if contains_secrets(config):
            raise TemplateError(field, "secrets cannot be passed to a child workflow")
        if "args" in config and "input" in config:
            raise TemplateError(field, "give 'input' (one argument) or 'args', not both")
        args = config.get("args", [config["input"]] if "input" in config else [])
        if not isinstance(args, list):
            raise TemplateError(f"{field}.args", "must be a list")
        base_id = config.get("id") or f"{workflow.info().workflow_id}/{activity_id}"
        policy = self.job.retry_for(step)
        attempt = 1
        delay = policy.initial_interval
        while True:
            child_id = base_id if attempt == 1 else f"{base_id}#{attempt}"
            try:
                return await workflow.execute_child_workflow(
                    config["workflow"],
                    *args,
                    id=child_id,
                    task_queue=config.get("task_queue") or workflow.info().task_queue,
                    execution_timeout=step.timeout,
                )
            except FailureError as exc:
                failure = _describe(exc)
                last = policy.maximum_attempts and attempt >= policy.maximum_attempts
                if last or failure.type in policy.non_retryable_error_types:
                    raise
            await workflow.sleep(delay)
            delay = min(delay * policy.backoff_coefficient, policy.effective_maximum_interval)
            attempt += 1


@workflow.defn(name=JOB_WORKFLOW_TYPE)
class JobInterpreter:
    """The built-in workflow that runs declarative jobs (see the module docstring)."""

    def __init__(self) -> None:
        self._results: dict[str, StepResult] = {}

    @workflow.query
    def steps(self) -> dict[str, Any]:
        """The steps finished so far: status and output per step id."""
        return msgspec.to_builtins(self._results)  # type: ignore[no-any-return]

    @workflow.run
    async def run(self, request: JobRunRequest) -> dict[str, Any]:
        """Run the job of ``request``; returns the :class:`JobRunResult` as JSON data."""
        result = await _Run(request, self._results).execute()
        return msgspec.to_builtins(result)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- assembly


def job_workflows() -> list[type]:
    """The workflows a job worker runs: the interpreter."""
    return [JobInterpreter]


def job_activities(service: Any = None, *, extra: Sequence[Any] = ()) -> list[Any]:
    """What a worker on the job queue (``cadenza-jobs``) needs to run jobs: the interpreter
    workflow class, then the secret-aware built-in step activities and the variables activity.

    Args:
        service: Where the activities ask for variables and secrets: the worker's ``Client``,
            an ``Engine`` or a ``RemoteService``. Default: the backend registered with
            ``use_job_backend`` (``load_jobs_into`` registers its engine).
        extra: Your own ``@activity.defn`` step activities, made secret-aware too (a step of
            type ``partner_archive`` calls the activity named so).

    Example::

        items = job_activities(client)
        worker = Worker(
            client,
            task_queue=JOB_TASK_QUEUE,
            workflows=[x for x in items if isinstance(x, type)],
            activities=[x for x in items if not isinstance(x, type)],
        )
    """

    activities = [secret_aware(fn, service) for fn in [*builtin_step_activities(), *extra]]
    return [*job_workflows(), *activities, variables_activity(service)]


def job_worker(
    client: Any,
    *,
    extra: Sequence[Any] = (),
    workflows: Sequence[type] = (),
    **options: Any,
) -> Any:
    """A :class:`~cadenza.sdk.Worker` on the job queue (``cadenza-jobs``) that runs jobs:
    the interpreter, the built-in step activities (asking ``client``'s service for variables
    and secrets), your ``extra`` step activities and the ``workflows`` that ``workflow``
    steps start. ``options`` go to ``Worker``.
    """
    from cadenza.sdk._worker import Worker

    items = job_activities(client, extra=extra)
    return Worker(
        client,
        task_queue=JOB_TASK_QUEUE,
        workflows=[*(x for x in items if isinstance(x, type)), *workflows],
        activities=[x for x in items if not isinstance(x, type)],
        **options,
    )


async def load_jobs_into(
    engine: Any,
    paths: Sequence[str],
    identity: str = "dev",
    *,
    prune: bool = False,
    step_types: Sequence[str] = (),
) -> Any:
    """Apply the job files (jobs and calendars) under ``paths`` to an in-process engine
    (``cadenza dev --jobs``).

    Also makes the engine the backend of job activities created without a service.

    Returns:
        The :class:`~cadenza.engine._jobs.ApplyResult`.

    Raises:
        JobFileError: A file is invalid (nothing is applied).
    """
    service = jobs_for(engine)
    namespace = engine.settings.namespace
    known = await service.known_step_types(namespace)
    job_set = load_job_set(paths, step_types={*known, *step_types})
    use_job_backend(engine)
    result = await service.apply(
        namespace, job_set.jobs, prune=prune, identity=identity, calendars=job_set.calendars
    )
    for line in result.plan.render().splitlines():
        log.info("jobs: %s", line)
    for problem in result.schedule_errors:
        log.warning("jobs: %s", problem)
    return result
