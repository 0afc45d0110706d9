"""What a run of a declarative job is started with and returns: the job interpreter's contract.

The interpreter itself is a workflow written with the SDK (``cadenza.sdk._job_interpreter``);
the engine cannot import the SDK (dependencies point ``sdk -> engine``), so the structs that
both sides exchange live here: the engine (manual runs, schedules, webhooks) builds a
:class:`JobRunRequest`, the workflow decodes it from its ``workflow started`` event.

The request carries the job's **snapshot**: the whole definition, secret values removed. It is
recorded in the history with the start, so editing or re-applying the job never changes a run
that has started, nor its replay.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from cadenza.engine._job_model import JobDefinition

__all__ = [
    "JOB_TASK_QUEUE",
    "JOB_WORKFLOW_TYPE",
    "VARIABLES_ACTIVITY",
    "JobRunRequest",
    "JobRunResult",
    "JobTrigger",
    "JobVariables",
    "StepResult",
]

JOB_WORKFLOW_TYPE = "cadenza.job"
"""Workflow type of the job interpreter."""

JOB_TASK_QUEUE = "cadenza-jobs"
"""Task queue job runs (and their step activities) are dispatched on."""

VARIABLES_ACTIVITY = "cadenza.job.variables"
"""Activity that reads the global variables a run needs (values recorded in its history;
secrets only by name)."""

TriggerSource = Literal["scheduled", "manual", "webhook"]


class JobTrigger(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What started a run, as templates see it (``trigger.*`` and ``schedule.*``).

    Attributes:
        source: ``scheduled``, ``manual`` or ``webhook``.
        payload: The webhook body or the manual input (``trigger.payload``). Default null.
        nominal_time: The logical time the run stands for (``schedule.nominal_time``); ``None``
            takes the schedule fire's nominal time recorded with the start, else the time the
            run was requested (the start event's time).
        schedule_id: The schedule that fired (``<job>/<schedule id>``), if any.
        timezone: Zone of the date helpers; default: the schedule's zone, else
            ``Asia/Ho_Chi_Minh``.
    """

    source: TriggerSource = "manual"
    payload: Any = None
    nominal_time: datetime | None = None
    schedule_id: str | None = None
    timezone: str | None = None


class JobRunRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The input of the job interpreter workflow.

    Attributes:
        job: The job snapshot (``job.without_secret_values()``).
        version: The applied version the snapshot is (0 for a job that was never applied).
        trigger: What started the run; ``None`` for a schedule fire, whose trigger (schedule
            id, nominal time) the engine records with the start.
    """

    job: JobDefinition
    version: int = 0
    trigger: JobTrigger | None = None


class JobVariables(msgspec.Struct, frozen=True, kw_only=True):
    """The result of the :data:`VARIABLES_ACTIVITY`: global variables a run reads.

    Attributes:
        values: Values of the non-secret global variables asked for (absent ones left out).
        secrets: Names of the global variables asked for that are secret (their values are
            resolved inside each activity, never recorded).
    """

    values: dict[str, Any] = {}
    secrets: list[str] = []


StepStatus = Literal["completed", "failed", "skipped", "cancelled"]


class StepResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """How one step ended.

    Attributes:
        status: ``completed``, ``failed`` (with ``on_failure: continue``, or the step that
            failed the job), ``skipped`` (``when`` was false) or ``cancelled`` (a running step
            cancelled when the job failed). Steps that never started are not listed.
        output: The activity's result (for ``for_each``: the list of the items' results, in
            item order, ``null`` for failed items).
        error: The failure message, for a failed step.
        error_type: The failure's type (``ApplicationError.type``, ``ActivityTypeNotRegistered``,
            ``TemplateError`` ...).
        compensation: For a compensation step, the step whose failure ran it.
    """

    status: StepStatus
    output: Any = None
    error: str | None = None
    error_type: str | None = None
    compensation: str | None = None


class JobRunResult(msgspec.Struct, frozen=True, kw_only=True):
    """What the interpreter returns (and, for a failed run, attaches to its failure).

    Attributes:
        job: The job name.
        version: The applied version that ran.
        status: ``completed`` or ``failed``.
        steps: Per step id, in the order the steps finished.
        failed_step: The step that failed the job, if it failed.
    """

    job: str
    version: int
    status: Literal["completed", "failed"]
    steps: dict[str, StepResult]
    failed_step: str | None = None
