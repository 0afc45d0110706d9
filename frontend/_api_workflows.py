"""REST API of workflows under ``/api/v1/workflows``: list, start, describe, history, verify,
signal, cancel, terminate, query, result.

Workflow ids may contain ``/`` (a schedule's runs are ``{schedule_id}/{time}``): callers
percent-encode them in the path (``a%2Fb``). ``?namespace=`` (default: the configured one) and
``?run_id=`` (default: the latest run) select the execution. Errors are problem+json, rendered
by :mod:`cadenza.frontend._middleware_errors`; see ``docs/api.md`` for every route.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec
from aiohttp import web

from cadenza.engine import Engine
from cadenza.frontend._metrics import METRICS
from cadenza.frontend._middleware_forward import forward_misdirected
from cadenza.frontend._state import (
    ENGINE,
    SETTINGS,
    each_on_its_own,
    float_param,
    int_param,
    json_response,
    long_poll,
    namespace_of,
    run_id_of,
    time_param,
)
from cadenza.frontend._wire import (
    API_PREFIX,
    JSON_LINES,
    CancelBody,
    QueryBody,
    QueryResponse,
    ResultResponse,
    SignalBody,
    StartResult,
    StartWorkflowBody,
    StartWorkflowsBody,
    StartWorkflowsResponse,
    TerminateBody,
    VerifyResponse,
    WorkflowList,
    check_json_array,
    decode_body,
    encode,
    problem_from_error,
)
from cadenza.history import (
    CadenzaError,
    ExecutionRecord,
    Failure,
    HistoryEvent,
    InvalidArgumentError,
    event_to_json,
)
from cadenza.history import events as ev

routes = web.RouteTableDef()

WORKFLOW_STATUSES = (
    "running",
    "completed",
    "failed",
    "canceled",
    "terminated",
    "timed_out",
    "continued_as_new",
)
"""Values of ``?status=`` (and of ``status`` in responses)."""

MAX_LIST_LIMIT = 1000
MAX_HISTORY_PAGE = 1000

_WF = API_PREFIX + "/workflows/{workflow_id}"


def _identity(request: web.Request, given: str) -> str:
    return given or f"api@{request.remote or 'local'}"


async def _body(request: web.Request, type_: type[Any]) -> Any:
    return decode_body(await request.read(), type_)


@routes.get(API_PREFIX + "/workflows")
async def list_workflows(request: web.Request) -> web.Response:
    """Executions matching the filters, newest first."""
    status = request.query.get("status") or None
    if status is not None and status not in WORKFLOW_STATUSES:
        raise InvalidArgumentError("status", f"must be one of {', '.join(WORKFLOW_STATUSES)}")
    found = await request.app[ENGINE].list_workflows(
        namespace_of(request),
        status=status,
        workflow_type=request.query.get("workflow_type") or None,
        workflow_id=request.query.get("workflow_id") or None,
        started_after_ms=time_param(request, "started_after"),
        started_before_ms=time_param(request, "started_before"),
        limit=int_param(request, "limit", 100, low=1, high=MAX_LIST_LIMIT),
    )
    return json_response(WorkflowList(workflows=list(found)))


@routes.post(API_PREFIX + "/workflows")
async def start_workflow(request: web.Request) -> web.Response:
    """Start an execution; 201 when a run was started, 200 when an existing run was returned
    (``id_conflict_policy=use_existing`` or a repeated ``request_id``)."""
    body: StartWorkflowBody = await _body(request, StartWorkflowBody)
    check_json_array("input", body.input)
    start = body.to_request()
    if not start.identity:
        start = msgspec.structs.replace(start, identity=_identity(request, ""))
    response = await request.app[ENGINE].start_workflow(start)
    location = (
        f"{API_PREFIX}/workflows/{quote(response.workflow_id, safe='')}"
        f"?namespace={quote(start.namespace, safe='')}&run_id={response.run_id}"
    )
    return web.Response(
        body=encode(response),
        status=201 if response.started else 200,
        content_type="application/json",
        headers={"Location": location},
    )


MAX_STARTS_PER_REQUEST = 100


@routes.post(API_PREFIX + "/workflows/start-many")
async def start_workflows(request: web.Request) -> web.Response:
    """Start several executions. Each start is made on its own (those that arrive together
    share a group-commit transaction) and answered on its own: a refused one (already
    started, a bad field, a shard of another server) has its problem detail in its result and
    never fails the others."""
    body: StartWorkflowsBody = await _body(request, StartWorkflowsBody)
    engine = request.app[ENGINE]

    async def one(item: StartWorkflowBody) -> StartResult:
        try:
            check_json_array("input", item.input)
            start = item.to_request()
            if not start.identity:
                start = msgspec.structs.replace(start, identity=_identity(request, ""))
            return StartResult(run=await engine.start_workflow(start))
        except CadenzaError as exc:
            return StartResult(problem=problem_from_error(exc, instance=request.path))

    results = await each_on_its_own("starts", body.starts, MAX_STARTS_PER_REQUEST, one)
    await forward_misdirected(
        request,
        "starts",
        body.starts,
        results,
        lambda item: engine.shard_of(item.namespace, item.workflow_id),
        StartWorkflowsBody,
        StartWorkflowsResponse,
    )
    return json_response(StartWorkflowsResponse(results=results))


@routes.get(_WF)
async def describe_workflow(request: web.Request) -> web.Response:
    """Status, timing and pending work of a run."""
    description = await request.app[ENGINE].describe_workflow(
        namespace_of(request), request.match_info["workflow_id"], run_id_of(request)
    )
    return json_response(description)


@routes.get(_WF + "/history")
async def history(request: web.Request) -> web.StreamResponse:
    """A page of a run's history (``after``, ``limit``), or all of it as JSON lines."""
    engine = request.app[ENGINE]
    namespace, workflow_id = namespace_of(request), request.match_info["workflow_id"]
    after = int_param(request, "after", 0, low=0, high=2**62)
    if request.query.get("format", "json") == "jsonl":
        return await _export_jsonl(request, engine, namespace, workflow_id, after)
    if request.query.get("format", "json") != "json":
        raise InvalidArgumentError("format", "must be json or jsonl")
    limit = int_param(request, "limit", 100, low=1, high=MAX_HISTORY_PAGE)
    run_id, events = await engine.get_history(
        namespace, workflow_id, run_id_of(request), after=after, limit=limit
    )
    next_after = events[-1].event_id if len(events) == limit else None
    return json_response(
        {
            "workflow_id": workflow_id,
            "run_id": run_id,
            "events": [event_to_json(e) for e in events],
            "next_after": next_after,
        }
    )


async def _export_jsonl(
    request: web.Request, engine: Engine, namespace: str, workflow_id: str, after: int
) -> web.StreamResponse:
    run_id, page = await engine.get_history(
        namespace, workflow_id, run_id_of(request), after=after, limit=MAX_HISTORY_PAGE
    )
    response = web.StreamResponse(
        headers={
            "Content-Type": f"{JSON_LINES}; charset=utf-8",
            "Content-Disposition": (
                f"attachment; filename*=UTF-8''{quote(workflow_id, safe='')}-{run_id}.jsonl"
            ),
        }
    )
    await response.prepare(request)
    while True:
        await response.write(b"".join(encode(event_to_json(e)) + b"\n" for e in page))
        if len(page) < MAX_HISTORY_PAGE:
            break
        _, page = await engine.get_history(
            namespace, workflow_id, run_id, after=page[-1].event_id, limit=MAX_HISTORY_PAGE
        )
    await response.write_eof()
    return response


@routes.get(_WF + "/verify")
async def verify(request: web.Request) -> web.Response:
    """Recompute a run's hash chain; ``ok`` false names the first bad event."""
    engine = request.app[ENGINE]
    namespace, workflow_id = namespace_of(request), request.match_info["workflow_id"]
    record = await engine.load_run(namespace, workflow_id, run_id_of(request))
    verdict = await engine.verify_history(namespace, workflow_id, record.run_id)
    return json_response(
        VerifyResponse(
            workflow_id=workflow_id,
            run_id=record.run_id,
            ok=verdict.ok,
            events_checked=verdict.events_checked,
            first_bad_event_id=verdict.first_bad_event_id,
            reason=verdict.reason,
        )
    )


@routes.post(_WF + "/signal")
async def signal(request: web.Request) -> web.Response:
    """Deliver a signal; 204 once it is in the history (409 if the run closed)."""
    body: SignalBody = await _body(request, SignalBody)
    check_json_array("input", body.input)
    await request.app[ENGINE].signal_workflow(
        namespace_of(request),
        request.match_info["workflow_id"],
        run_id_of(request),
        body.signal_name,
        body.input,
        request_id=body.request_id,
        identity=_identity(request, body.identity),
    )
    return web.Response(status=204)


@routes.post(_WF + "/cancel")
async def cancel(request: web.Request) -> web.Response:
    """Request cancellation; the workflow's code decides how to wind down."""
    body: CancelBody = await _body(request, CancelBody)
    await request.app[ENGINE].request_cancel_workflow(
        namespace_of(request),
        request.match_info["workflow_id"],
        run_id_of(request),
        reason=body.reason,
        request_id=body.request_id,
        identity=_identity(request, body.identity),
    )
    return web.Response(status=204)


@routes.post(_WF + "/terminate")
async def terminate(request: web.Request) -> web.Response:
    """Close a run at once; its code does not run again."""
    body: TerminateBody = await _body(request, TerminateBody)
    await request.app[ENGINE].terminate_workflow(
        namespace_of(request),
        request.match_info["workflow_id"],
        run_id_of(request),
        reason=body.reason,
        identity=_identity(request, body.identity),
    )
    return web.Response(status=204)


@routes.post(_WF + "/query")
async def query(request: web.Request) -> web.Response:
    """Ask a worker to answer a query from the workflow's state."""
    body: QueryBody = await _body(request, QueryBody)
    check_json_array("args", body.args)
    if not body.timeout > 0:
        raise InvalidArgumentError("timeout", "must be positive")
    limit = request.app[SETTINGS].poll_timeout
    result = await request.app[ENGINE].query_workflow(
        namespace_of(request),
        request.match_info["workflow_id"],
        run_id_of(request),
        body.query_type,
        body.args,
        timeout=min(body.timeout, limit),
    )
    return json_response(QueryResponse(result=result))


def _outcome(close: HistoryEvent) -> tuple[msgspec.Raw | None, Failure | None]:
    attrs = close.attributes
    if isinstance(attrs, ev.WorkflowExecutionCompleted):
        return attrs.result, None
    if isinstance(attrs, ev.WorkflowExecutionFailed):
        return None, attrs.failure
    if isinstance(attrs, ev.WorkflowExecutionCanceled):
        return None, Failure(message="workflow canceled", type="CancelledError", source="canceled")
    if isinstance(attrs, ev.WorkflowExecutionTerminated):
        return None, Failure(
            message=attrs.reason or "workflow terminated",
            type="TerminatedError",
            source="terminated",
        )
    if isinstance(attrs, ev.WorkflowExecutionTimedOut):
        return None, Failure(
            message="workflow timed out",
            type="TimeoutError",
            source="timeout",
            details=[attrs.timeout_type],
        )
    return None, None  # continued as new: the close event names the new run


@routes.get(_WF + "/result")
async def result(request: web.Request) -> web.Response:
    """The outcome of a run; ``?wait=seconds`` long-polls until it closes (capped by the
    server's ``poll_timeout``). A run still open after the wait answers ``status: running``."""
    engine = request.app[ENGINE]
    namespace, workflow_id = namespace_of(request), request.match_info["workflow_id"]
    wait = float_param(request, "wait", 0.0, high=request.app[SETTINGS].poll_timeout)
    record: ExecutionRecord = await engine.load_run(namespace, workflow_id, run_id_of(request))
    status, close = record.status, None
    if not record.state.running:
        close = await engine.close_event(record)
    elif wait > 0:
        gauge = request.app[METRICS].long_polls.labels("result")
        gauge.inc()
        try:
            closed = await long_poll(
                request,
                engine.wait_for_close(namespace, workflow_id, record.run_id, wait),
                None,
            )
        except TimeoutError:
            closed = None
        finally:
            gauge.dec()
        if closed is not None:
            status, close = closed
    if close is None:
        return json_response(
            ResultResponse(workflow_id=workflow_id, run_id=record.run_id, status="running")
        )
    value, failure = _outcome(close)
    return json_response(
        ResultResponse(
            workflow_id=workflow_id,
            run_id=record.run_id,
            status=status,
            result=value,
            failure=failure,
            close_event=event_to_json(close),
        )
    )
