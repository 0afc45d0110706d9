"""Request and response bodies of the job, calendar, variable and secret routes (``_api_jobs``,
``_api_calendars``), shared with :class:`~cadenza.frontend.remote.RemoteService`. Bodies reject
unknown fields."""

from __future__ import annotations

from typing import Any

import msgspec

from cadenza.engine._job_calendars import CalendarSummary
from cadenza.engine._jobs import JobSummary
from cadenza.engine._variables import VariableView

__all__ = [
    "ApplyJobsBody",
    "CalendarList",
    "EncryptBody",
    "EncryptResponse",
    "JobList",
    "JobSecretsResponse",
    "JobVariablesBody",
    "RunJobBody",
    "SetVariableBody",
    "VariableList",
]


class _Body(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ApplyJobsBody(_Body):
    """``POST /api/v1/jobs/plan`` and ``/apply``.

    Attributes:
        jobs: Job definitions in the job file format (JSON data), e.g. as the CLI read them.
        prune: Delete applied jobs that are not in ``jobs``. Default false.
        step_types: Activity names allowed as step types besides the built-ins and those
            registered by the job queue's workers.
        identity: Who applies (recorded with every new version). Default ``api@<address>``.
        calendars: Business calendars of the files (``calendars:`` entries, JSON data), stored
            with the jobs. Absent or null: the stored calendars are left alone (even with
            ``prune``); a list (even empty) is the complete set of this namespace's calendars.
    """

    jobs: list[dict[str, Any]] = []
    prune: bool = False
    step_types: list[str] = []
    identity: str = ""
    calendars: list[dict[str, Any]] | None = None


class RunJobBody(_Body):
    """``POST /api/v1/jobs/{name}/runs``: start a manual run.

    Attributes:
        input: The trigger payload (``trigger.payload``).
        identity: Who starts it.
        request_id: Makes a retried request idempotent.
        workflow_id: The run's workflow id (default ``<job>/manual/<time>-<random>``).
    """

    input: Any = None
    identity: str = ""
    request_id: str = ""
    workflow_id: str | None = None


class JobList(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/v1/jobs``."""

    jobs: list[JobSummary]


class CalendarList(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/v1/calendars``: built-in, stored and registered calendars, by name."""

    calendars: list[CalendarSummary]


class SetVariableBody(_Body):
    """``PUT /api/v1/variables/{name}``.

    Attributes:
        value: The value (JSON data; a secret must be a non-empty string).
        secret: Store it encrypted and show it masked. Default false.
        description: What it is for.
        identity: Who sets it.
    """

    value: Any = None
    secret: bool = False
    description: str = ""
    identity: str = ""


class VariableList(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/v1/variables`` (secret values masked)."""

    variables: list[VariableView]


class EncryptBody(_Body):
    """``POST /api/v1/secrets/encrypt``: make a token to put in a job file.

    Attributes:
        name: The variable name.
        value: The plain value.
        job: The job whose variable it is (the token only decrypts for that job); empty for a
            global variable.
    """

    name: str
    value: str
    job: str = ""


class EncryptResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The token (``v1:...``)."""

    token: str


class JobVariablesBody(_Body):
    """``POST /api/v1/worker/job-variables``: global variables a run reads."""

    namespace: str
    names: list[str] = []


class JobSecretsResponse(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /api/v1/worker/job-secrets``: plain values for one running step attempt."""

    values: dict[str, str]
