"""The job, calendar, variable and secret operations of
:class:`~cadenza.frontend.remote.RemoteService` (one HTTP request each to the routes of
:mod:`cadenza.frontend._api_jobs` and :mod:`cadenza.frontend._api_calendars`).

A mixin of ``RemoteService``: it uses the service's ``_call``, ``_get`` and ``_post``, so
timeouts, authentication and error mapping are the same as for every other call. The method
names match :class:`~cadenza.engine._jobs.JobService` where both exist, so job activities of a
remote worker (``run_variables``, ``activity_secrets``) work the same as in process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import msgspec

from cadenza.engine._api import StartWorkflowResponse
from cadenza.engine._job_calendars import CalendarSummary, CalendarYear
from cadenza.engine._job_contract import JobVariables
from cadenza.engine._job_model import JobDefinition
from cadenza.engine._job_plan import JobPlan
from cadenza.engine._jobs import (
    ActivityRef,
    ApplyResult,
    JobDescription,
    JobSummary,
)
from cadenza.engine._variables import RotationReport, VariableView
from cadenza.frontend._wire import API_PREFIX, ServerError, decode_response
from cadenza.frontend._wire_jobs import (
    ApplyJobsBody,
    CalendarList,
    EncryptBody,
    EncryptResponse,
    JobList,
    JobSecretsResponse,
    JobVariablesBody,
    RunJobBody,
    SetVariableBody,
    VariableList,
)

__all__ = ["RemoteJobs"]


def _ns(namespace: str, **more: str) -> dict[str, str]:
    return {"namespace": namespace, **more}


def _job_path(name: str, suffix: str = "") -> str:
    return f"{API_PREFIX}/jobs/{quote(name, safe='')}{suffix}"


def _variable_path(name: str) -> str:
    return f"{API_PREFIX}/variables/{quote(name, safe='')}"


class RemoteJobs:
    """Jobs, variables and secrets over HTTP (mixed into ``RemoteService``)."""

    _call: Any
    _get: Any
    _post: Any

    # ------------------------------------------------------------------ jobs

    async def list_jobs(self, namespace: str) -> list[JobSummary]:
        """Every applied job of a namespace (``GET /api/v1/jobs``)."""
        found: JobList = await self._get(JobList, f"{API_PREFIX}/jobs", params=_ns(namespace))
        return found.jobs

    async def describe_job(self, namespace: str, name: str) -> JobDescription:
        """A job with its definition and versions (``GET /api/v1/jobs/{name}``)."""
        return await self._get(JobDescription, _job_path(name), params=_ns(namespace))  # type: ignore[no-any-return]

    @staticmethod
    def _apply_body(
        jobs: Sequence[JobDefinition],
        prune: bool,
        step_types: Sequence[str],
        identity: str,
        calendars: Sequence[Any] | None,
    ) -> ApplyJobsBody:
        return ApplyJobsBody(
            jobs=[msgspec.to_builtins(job) for job in jobs],
            prune=prune,
            step_types=list(step_types),
            identity=identity,
            calendars=None if calendars is None else msgspec.to_builtins(list(calendars)),
        )

    async def plan_jobs(
        self,
        namespace: str,
        jobs: Sequence[JobDefinition],
        *,
        prune: bool = False,
        step_types: Sequence[str] = (),
        calendars: Sequence[Any] | None = None,
    ) -> JobPlan:
        """What applying ``jobs`` (and ``calendars``, the ``calendars:`` entries of the files)
        would change (``POST /api/v1/jobs/plan``)."""
        return await self._post(  # type: ignore[no-any-return]
            JobPlan,
            f"{API_PREFIX}/jobs/plan",
            self._apply_body(jobs, prune, step_types, "", calendars),
            params=_ns(namespace),
        )

    async def apply_jobs(
        self,
        namespace: str,
        jobs: Sequence[JobDefinition],
        *,
        prune: bool = False,
        step_types: Sequence[str] = (),
        identity: str = "",
        calendars: Sequence[Any] | None = None,
    ) -> ApplyResult:
        """Make the server's jobs (and calendars) match the files (``POST
        /api/v1/jobs/apply``)."""
        return await self._post(  # type: ignore[no-any-return]
            ApplyResult,
            f"{API_PREFIX}/jobs/apply",
            self._apply_body(jobs, prune, step_types, identity, calendars),
            params=_ns(namespace),
        )

    async def run_job(
        self,
        namespace: str,
        name: str,
        *,
        input: Any = None,
        identity: str = "",
        request_id: str = "",
        workflow_id: str | None = None,
    ) -> StartWorkflowResponse:
        """Start a manual run (``POST /api/v1/jobs/{name}/runs``)."""
        return await self._post(  # type: ignore[no-any-return]
            StartWorkflowResponse,
            _job_path(name, "/runs"),
            RunJobBody(
                input=input, identity=identity, request_id=request_id, workflow_id=workflow_id
            ),
            params=_ns(namespace),
        )

    # ------------------------------------------------------------------ calendars

    async def list_calendars(self) -> list[CalendarSummary]:
        """The server's calendars: built-in, stored and registered (``GET
        /api/v1/calendars``)."""
        found: CalendarList = await self._get(CalendarList, f"{API_PREFIX}/calendars")
        return found.calendars

    async def describe_calendar(self, name: str, year: int) -> CalendarYear:
        """A calendar's holidays and make-up working days of ``year`` on the server (``GET
        /api/v1/calendars/{name}?year=``)."""
        return await self._get(  # type: ignore[no-any-return]
            CalendarYear,
            f"{API_PREFIX}/calendars/{quote(name, safe='')}",
            params={"year": str(year)},
        )

    # ------------------------------------------------------------------ variables

    async def list_variables(
        self, namespace: str, *, scope: str | None = None
    ) -> list[VariableView]:
        """Variables, secret values masked (``GET /api/v1/variables``)."""
        params = _ns(namespace, **({"scope": scope} if scope else {}))
        found: VariableList = await self._get(
            VariableList, f"{API_PREFIX}/variables", params=params
        )
        return found.variables

    async def get_variable(self, namespace: str, name: str) -> VariableView:
        """One global variable, masked (``GET /api/v1/variables/{name}``)."""
        return await self._get(VariableView, _variable_path(name), params=_ns(namespace))  # type: ignore[no-any-return]

    async def set_variable(
        self,
        namespace: str,
        name: str,
        value: Any,
        *,
        secret: bool = False,
        description: str = "",
        identity: str = "",
    ) -> VariableView:
        """Create or replace a global variable (``PUT /api/v1/variables/{name}``)."""
        data = await self._call(
            "PUT",
            _variable_path(name),
            params=_ns(namespace),
            body=SetVariableBody(
                value=value, secret=secret, description=description, identity=identity
            ),
        )
        if data is None:
            raise ServerError(f"PUT {_variable_path(name)}: empty response", 204)
        return decode_response(data, VariableView)

    async def delete_variable(self, namespace: str, name: str, *, identity: str = "") -> None:
        """Delete a global variable (``DELETE /api/v1/variables/{name}``)."""
        await self._call("DELETE", _variable_path(name), params=_ns(namespace))

    # ------------------------------------------------------------------ secrets

    async def rotate_secret_key(self) -> RotationReport:
        """Re-encrypt every secret under the active key (``POST /api/v1/secrets/rotate-key``)."""
        return await self._post(RotationReport, f"{API_PREFIX}/secrets/rotate-key", {})  # type: ignore[no-any-return]

    async def encrypt_secret(self, name: str, value: str, *, job: str = "") -> str:
        """A token of ``value`` for variable ``name`` (of ``job``, else global)."""
        answer: EncryptResponse = await self._post(
            EncryptResponse,
            f"{API_PREFIX}/secrets/encrypt",
            EncryptBody(name=name, value=value, job=job),
        )
        return answer.token

    # ------------------------------------------------------------------ job activities

    async def run_variables(self, namespace: str, names: Sequence[str]) -> JobVariables:
        """Global variables a job run reads (``POST /api/v1/worker/job-variables``)."""
        return await self._post(  # type: ignore[no-any-return]
            JobVariables,
            f"{API_PREFIX}/worker/job-variables",
            JobVariablesBody(namespace=namespace, names=list(names)),
        )

    async def activity_secrets(self, ref: ActivityRef) -> dict[str, str]:
        """Plain secret values for one running step attempt (``POST
        /api/v1/worker/job-secrets``)."""
        answer: JobSecretsResponse = await self._post(
            JobSecretsResponse, f"{API_PREFIX}/worker/job-secrets", ref
        )
        return answer.values
