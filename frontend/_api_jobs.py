"""REST API of declarative jobs, variables and secrets.

* ``/api/v1/jobs``: list, show, plan, apply (jobs and the business calendars of the files),
  run, webhook (``POST /jobs/{name}/webhook``: the JSON body is the run's ``trigger.payload``);
* ``/api/v1/variables``: global variables, secret values masked (``••••••``);
* ``/api/v1/secrets``: ``rotate-key`` (re-encrypt every secret under the active key) and
  ``encrypt`` (a token for a job file);
* ``/api/v1/worker/job-variables`` and ``/job-secrets``: what the job activities of remote
  workers ask at run time. A secret's plain value leaves the server only here, for a running
  step attempt of a job run, and only for the secrets that attempt's recorded input references.

``?namespace=`` selects the namespace (default: the configured one). Errors are problem+json
(:mod:`cadenza.frontend._middleware_errors`); see ``docs/api.md``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from cadenza.engine._jobs import ActivityRef, jobs_for, validate_jobs
from cadenza.frontend._state import ENGINE, json_response, namespace_of
from cadenza.frontend._wire import API_PREFIX, decode_body, encode
from cadenza.frontend._wire_jobs import (
    ApplyJobsBody,
    EncryptBody,
    EncryptResponse,
    JobList,
    JobSecretsResponse,
    JobVariablesBody,
    RunJobBody,
    SetVariableBody,
    VariableList,
)
from cadenza.history._variable_store import GLOBAL_SCOPE, job_scope

routes = web.RouteTableDef()

_J = API_PREFIX + "/jobs"
_V = API_PREFIX + "/variables"
_NO_STORE = {"Cache-Control": "no-store"}


def _identity(request: web.Request, given: str) -> str:
    return given or f"api@{request.remote or 'local'}"


async def _body(request: web.Request, type_: type[Any]) -> Any:
    return decode_body(await request.read(), type_)


async def _jobs_of(request: web.Request, body: ApplyJobsBody) -> list[Any]:
    service = jobs_for(request.app[ENGINE])
    known = await service.known_step_types(namespace_of(request))
    return validate_jobs(body.jobs, step_types={*known, *body.step_types})


@routes.get(_J)
async def list_jobs(request: web.Request) -> web.Response:
    """Every applied job of the namespace, by name."""
    found = await jobs_for(request.app[ENGINE]).list_jobs(namespace_of(request))
    return json_response(JobList(jobs=found))


@routes.post(_J + "/plan")
async def plan_jobs(request: web.Request) -> web.Response:
    """What applying ``jobs`` would change; changes nothing."""
    body: ApplyJobsBody = await _body(request, ApplyJobsBody)
    jobs = await _jobs_of(request, body)
    plan = await jobs_for(request.app[ENGINE]).plan(
        namespace_of(request), jobs, prune=body.prune, calendars=body.calendars
    )
    return json_response(plan)


@routes.post(_J + "/apply")
async def apply_jobs(request: web.Request) -> web.Response:
    """Make the namespace's jobs match ``jobs`` (all or nothing; idempotent)."""
    body: ApplyJobsBody = await _body(request, ApplyJobsBody)
    jobs = await _jobs_of(request, body)
    result = await jobs_for(request.app[ENGINE]).apply(
        namespace_of(request),
        jobs,
        prune=body.prune,
        identity=_identity(request, body.identity),
        calendars=body.calendars,
    )
    return json_response(result)


@routes.get(_J + "/{name}")
async def show_job(request: web.Request) -> web.Response:
    """A job: summary, definition (secret values removed) and every version."""
    described = await jobs_for(request.app[ENGINE]).describe_job(
        namespace_of(request), request.match_info["name"]
    )
    return json_response(described)


def _started(response: Any, namespace: str) -> web.Response:
    location = (
        f"{API_PREFIX}/workflows/{quote(response.workflow_id, safe='')}"
        f"?namespace={quote(namespace, safe='')}&run_id={response.run_id}"
    )
    return web.Response(
        body=encode(response),
        status=201 if response.started else 200,
        content_type="application/json",
        headers={"Location": location},
    )


@routes.post(_J + "/{name}/runs")
async def run_job(request: web.Request) -> web.Response:
    """Start a manual run of a job (its current version); 201 with the run."""
    body: RunJobBody = await _body(request, RunJobBody)
    namespace = namespace_of(request)
    response = await jobs_for(request.app[ENGINE]).run_job(
        namespace,
        request.match_info["name"],
        input=body.input,
        identity=_identity(request, body.identity),
        request_id=body.request_id,
        workflow_id=body.workflow_id,
    )
    return _started(response, namespace)


@routes.post(_J + "/{name}/webhook")
async def webhook(request: web.Request) -> web.Response:
    """Start a webhook run: the JSON body is ``trigger.payload`` (the job must allow
    ``webhook``). ``Idempotency-Key`` makes a retried delivery start one run."""
    raw = await request.read()
    payload = decode_body(raw, Any) if raw.strip() else None
    namespace = namespace_of(request)
    response = await jobs_for(request.app[ENGINE]).run_job(
        namespace,
        request.match_info["name"],
        input=payload,
        source="webhook",
        identity=_identity(request, ""),
        request_id=request.headers.get("Idempotency-Key", ""),
    )
    return _started(response, namespace)


# --------------------------------------------------------------------------- variables


@routes.get(_V)
async def list_variables(request: web.Request) -> web.Response:
    """Global variables (``?scope=all``: job-scoped secrets too), secret values masked."""
    scope = request.query.get("scope") or None
    found = await jobs_for(request.app[ENGINE]).vars.list_variables(
        namespace_of(request), scope=scope
    )
    return json_response(VariableList(variables=found))


@routes.get(_V + "/{name}")
async def get_variable(request: web.Request) -> web.Response:
    """One global variable (a secret's value masked)."""
    view = await jobs_for(request.app[ENGINE]).vars.get_variable(
        namespace_of(request), request.match_info["name"]
    )
    return json_response(view)


@routes.put(_V + "/{name}")
async def set_variable(request: web.Request) -> web.Response:
    """Create (201) or replace (200) a global variable; a secret is encrypted at once."""
    body: SetVariableBody = await _body(request, SetVariableBody)
    view, created = await jobs_for(request.app[ENGINE]).vars.set_variable(
        namespace_of(request),
        request.match_info["name"],
        body.value,
        secret=body.secret,
        description=body.description,
        identity=_identity(request, body.identity),
    )
    return json_response(view, status=201 if created else 200)


@routes.delete(_V + "/{name}")
async def delete_variable(request: web.Request) -> web.Response:
    """Delete a global variable (204)."""
    await jobs_for(request.app[ENGINE]).vars.delete_variable(
        namespace_of(request), request.match_info["name"], identity=_identity(request, "")
    )
    return web.Response(status=204)


# --------------------------------------------------------------------------- secrets


@routes.post(API_PREFIX + "/secrets/rotate-key")
async def rotate_key(request: web.Request) -> web.Response:
    """Re-encrypt every stored secret under the active key (idempotent)."""
    report = await jobs_for(request.app[ENGINE]).vars.rotate_key()
    return json_response(report)


@routes.post(API_PREFIX + "/secrets/encrypt")
async def encrypt(request: web.Request) -> web.Response:
    """A token of a value for a global variable or a job's variable (for job files)."""
    body: EncryptBody = await _body(request, EncryptBody)
    scope = job_scope(body.job) if body.job else GLOBAL_SCOPE
    token = jobs_for(request.app[ENGINE]).vars.encrypt_for(scope, body.name, body.value)
    return web.Response(
        body=encode(EncryptResponse(token=token)),
        content_type="application/json",
        headers=_NO_STORE,
    )


# --------------------------------------------------------------------------- workers


@routes.post(API_PREFIX + "/worker/job-variables")
async def job_variables(request: web.Request) -> web.Response:
    """Global variables a job run reads: plain values, and the names of secret ones."""
    body: JobVariablesBody = await _body(request, JobVariablesBody)
    result = await jobs_for(request.app[ENGINE]).run_variables(body.namespace, body.names)
    return json_response(result)


@routes.post(API_PREFIX + "/worker/job-secrets")
async def job_secrets(request: web.Request) -> web.Response:
    """Plain secret values for ONE running step attempt of a job run (never logged)."""
    ref: ActivityRef = await _body(request, ActivityRef)
    values = await jobs_for(request.app[ENGINE]).activity_secrets(ref)
    return web.Response(
        body=encode(JobSecretsResponse(values=values)),
        content_type="application/json",
        headers=_NO_STORE,
    )
