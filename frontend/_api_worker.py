"""The worker protocol under ``/api/v1/worker``: what a remote SDK worker calls.

Every route is a ``POST`` of a JSON body (the structs in :mod:`cadenza.frontend._wire`) and maps
to one method of :class:`~cadenza.engine.Engine` with the same name, so a worker behaves the
same next to the engine and on another host. Long polls answer 204 when nothing arrived within
the poll's ``timeout``, which the server caps at its ``poll_timeout`` setting;
:class:`~cadenza.frontend.remote.RemoteService` asks for less than its HTTP request timeout, so
an empty poll always comes back as a 204, never as a client-side timeout.

A task token that is no longer current (the task timed out and went to another worker, or the
run closed) is a :class:`~cadenza.engine.StaleTaskError`: 409 with ``cadenza_error:
StaleTaskError``, which the remote client raises again as that class.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from cadenza.frontend._metrics import METRICS
from cadenza.frontend._middleware_forward import forward_misdirected
from cadenza.frontend._state import ENGINE, SETTINGS, each_on_its_own, json_response, long_poll
from cadenza.frontend._wire import (
    API_PREFIX,
    Accepted,
    ActivityCanceledBody,
    ActivityResult,
    ActivityTaskBatch,
    CompleteActivitiesBody,
    CompleteActivitiesResponse,
    CompleteActivityBody,
    CompleteWorkflowTaskBody,
    CompleteWorkflowTaskResponse,
    CompleteWorkflowTasksBody,
    CompleteWorkflowTasksResponse,
    CompletionResult,
    FailActivityBody,
    FailWorkflowTaskBody,
    HeartbeatBody,
    HistorySlice,
    HistorySliceBody,
    PollActivityTaskBody,
    PollActivityTasksBody,
    PollWorkflowTaskBody,
    PollWorkflowTasksBody,
    ReleaseStickyBody,
    RespondQueryBody,
    WorkflowTaskBatch,
    decode_body,
    problem_from_error,
)
from cadenza.history import CadenzaError, InvalidArgumentError

routes = web.RouteTableDef()

_W = API_PREFIX + "/worker"


async def _body(request: web.Request, type_: type[Any]) -> Any:
    return decode_body(await request.read(), type_)


def _poll_wait(request: web.Request, asked: float | None) -> float:
    limit = request.app[SETTINGS].poll_timeout
    if asked is None:
        return limit
    if not asked >= 0:
        raise InvalidArgumentError("timeout", "must not be negative")
    return min(asked, limit)


async def _poll_workflow(request: web.Request, *, many: bool) -> list[Any]:
    """The workflow tasks a long poll got (``many``: up to the body's ``max_tasks``)."""
    body: PollWorkflowTaskBody | PollWorkflowTasksBody = await _body(
        request, PollWorkflowTasksBody if many else PollWorkflowTaskBody
    )
    wait = _poll_wait(request, body.timeout)
    gauge = request.app[METRICS].long_polls.labels("workflow")
    gauge.inc()
    try:
        return await long_poll(
            request,
            request.app[ENGINE].poll_workflow_tasks(
                body.namespace,
                body.task_queue,
                body.worker_id,
                workflow_types=frozenset(body.workflow_types),
                timeout=wait,
                max_tasks=getattr(body, "max_tasks", 1),
            ),
            [],
        )
    finally:
        gauge.dec()


@routes.post(_W + "/workflow-tasks/poll")
async def poll_workflow_task(request: web.Request) -> web.Response:
    """Long-poll a workflow task (or a query) of a task queue; 204 when none came."""
    tasks = await _poll_workflow(request, many=False)
    return json_response(tasks[0]) if tasks else web.Response(status=204)


@routes.post(_W + "/workflow-tasks/poll-many")
async def poll_workflow_tasks(request: web.Request) -> web.Response:
    """Long-poll workflow tasks of a task queue: every visible one up to ``max_tasks``, leased
    in one transaction, as soon as there is any; 204 when none came."""
    tasks = await _poll_workflow(request, many=True)
    return json_response(WorkflowTaskBatch(tasks=tasks)) if tasks else web.Response(status=204)


@routes.post(_W + "/history")
async def history_slice(request: web.Request) -> web.Response:
    """Events of a run exactly as stored (the worker replays them)."""
    body: HistorySliceBody = await _body(request, HistorySliceBody)
    if body.after < 0:
        raise InvalidArgumentError("after", "must not be negative")
    run_id, events = await request.app[ENGINE].get_history(
        body.namespace,
        body.workflow_id,
        body.run_id,
        after=body.after,
        up_to=body.up_to,
        limit=body.limit,
    )
    return json_response(HistorySlice(run_id=run_id, events=events))


@routes.post(_W + "/workflow-tasks/complete")
async def complete_workflow_task(request: web.Request) -> web.Response:
    """Record a workflow task's commands."""
    body: CompleteWorkflowTaskBody = await _body(request, CompleteWorkflowTaskBody)
    outcome = await request.app[ENGINE].complete_workflow_task(
        body.token,
        body.commands,
        identity=body.identity,
        sticky=body.sticky,
        force_new_task=body.force_new_task,
    )
    return json_response(CompleteWorkflowTaskResponse(outcome=outcome))


MAX_COMPLETIONS_PER_REQUEST = 100


@routes.post(_W + "/workflow-tasks/complete-many")
async def complete_workflow_tasks(request: web.Request) -> web.Response:
    """Record several workflow tasks' commands. Each completion is recorded on its own (the
    engine's group commit writes those that arrive together in one transaction) and answered
    on its own: a refused one (stale token, shard of another server) has its problem detail
    in its result and never fails the others."""
    engine = request.app[ENGINE]

    async def record(item: CompleteWorkflowTaskBody) -> CompletionResult:
        outcome = await engine.complete_workflow_task(
            item.token,
            item.commands,
            identity=item.identity,
            sticky=item.sticky,
            force_new_task=item.force_new_task,
        )
        return CompletionResult(outcome=outcome)

    return await _completions(
        request,
        CompleteWorkflowTasksBody,
        CompleteWorkflowTasksResponse,
        CompletionResult,
        record,
    )


async def _completions(
    request: web.Request,
    body_type: type[Any],
    response_type: type[Any],
    result_type: type[Any],
    record: Callable[[Any], Awaitable[Any]],
) -> web.Response:
    """A ``complete-many`` route: ``record`` each of the body's completions on its own
    (concurrently: those that reach the store together share a group commit); a refused one
    gets ``result_type(problem=…)``; those of another server's shards are sent on to it, one
    request per owner."""
    body = await _body(request, body_type)

    async def one(item: Any) -> Any:
        try:
            return await record(item)
        except CadenzaError as exc:
            return result_type(problem=problem_from_error(exc, instance=request.path))

    results = await each_on_its_own(
        "completions", body.completions, MAX_COMPLETIONS_PER_REQUEST, one
    )
    await forward_misdirected(
        request,
        "completions",
        body.completions,
        results,
        lambda item: item.token.shard_id,
        body_type,
        response_type,
    )
    return json_response(response_type(results=results))


@routes.post(_W + "/workflow-tasks/fail")
async def fail_workflow_task(request: web.Request) -> web.Response:
    """Record a failed workflow task (it is retried after a back-off)."""
    body: FailWorkflowTaskBody = await _body(request, FailWorkflowTaskBody)
    await request.app[ENGINE].fail_workflow_task(
        body.token, cause=body.cause, failure=body.failure, identity=body.identity
    )
    return web.Response(status=204)


@routes.post(_W + "/queries/respond")
async def respond_query(request: web.Request) -> web.Response:
    """A worker's answer to a query it was handed by a workflow task poll."""
    body: RespondQueryBody = await _body(request, RespondQueryBody)
    result = None if body.error is not None else body.result
    request.app[ENGINE].respond_query(body.query_id, result, body.error)
    return web.Response(status=204)


@routes.post(_W + "/sticky/release")
async def release_sticky(request: web.Request) -> web.Response:
    """A worker shutting down: its sticky workflow tasks may go to any worker."""
    body: ReleaseStickyBody = await _body(request, ReleaseStickyBody)
    await request.app[ENGINE].release_sticky(body.worker_id)
    return web.Response(status=204)


async def _poll_activity(request: web.Request, *, many: bool) -> list[Any]:
    """The activity attempts a long poll got (``many``: up to the body's ``max_tasks``)."""
    body: PollActivityTaskBody | PollActivityTasksBody = await _body(
        request, PollActivityTasksBody if many else PollActivityTaskBody
    )
    wait = _poll_wait(request, body.timeout)
    gauge = request.app[METRICS].long_polls.labels("activity")
    gauge.inc()
    try:
        return await long_poll(
            request,
            request.app[ENGINE].poll_activity_tasks(
                body.namespace,
                body.task_queue,
                body.worker_id,
                activity_types=frozenset(body.activity_types),
                timeout=wait,
                max_tasks=getattr(body, "max_tasks", 1),
            ),
            [],
        )
    finally:
        gauge.dec()


@routes.post(_W + "/activity-tasks/poll")
async def poll_activity_task(request: web.Request) -> web.Response:
    """Long-poll an activity attempt of a task queue; 204 when none came."""
    tasks = await _poll_activity(request, many=False)
    return json_response(tasks[0]) if tasks else web.Response(status=204)


@routes.post(_W + "/activity-tasks/poll-many")
async def poll_activity_tasks(request: web.Request) -> web.Response:
    """Long-poll activity attempts of a task queue: every visible one up to ``max_tasks``,
    leased in one transaction, as soon as there is any; 204 when none came."""
    tasks = await _poll_activity(request, many=True)
    return json_response(ActivityTaskBatch(tasks=tasks)) if tasks else web.Response(status=204)


@routes.post(_W + "/activity-tasks/complete")
async def complete_activity(request: web.Request) -> web.Response:
    """Record an attempt's result; ``accepted`` is false when the attempt was not current."""
    body: CompleteActivityBody = await _body(request, CompleteActivityBody)
    accepted = await request.app[ENGINE].complete_activity(
        body.token, body.result, identity=body.identity
    )
    return json_response(Accepted(accepted=accepted))


@routes.post(_W + "/activity-tasks/complete-many")
async def complete_activities(request: web.Request) -> web.Response:
    """Record several attempts' results. Each is recorded on its own (those that arrive
    together share a group-commit transaction) and answered on its own: a refused one has its
    problem detail in its result and never fails the others; those of another server's
    shards are sent on to it, one request per owner."""
    engine = request.app[ENGINE]

    async def record(item: CompleteActivityBody) -> ActivityResult:
        accepted = await engine.complete_activity(item.token, item.result, identity=item.identity)
        return ActivityResult(accepted=accepted)

    return await _completions(
        request, CompleteActivitiesBody, CompleteActivitiesResponse, ActivityResult, record
    )


@routes.post(_W + "/activity-tasks/fail")
async def fail_activity(request: web.Request) -> web.Response:
    """Record a failed attempt; the retry policy decides what follows."""
    body: FailActivityBody = await _body(request, FailActivityBody)
    accepted = await request.app[ENGINE].fail_activity(
        body.token, body.failure, identity=body.identity
    )
    return json_response(Accepted(accepted=accepted))


@routes.post(_W + "/activity-tasks/canceled")
async def report_activity_canceled(request: web.Request) -> web.Response:
    """The activity stopped after a cancel request."""
    body: ActivityCanceledBody = await _body(request, ActivityCanceledBody)
    accepted = await request.app[ENGINE].report_activity_canceled(
        body.token, body.details, identity=body.identity
    )
    return json_response(Accepted(accepted=accepted))


@routes.post(_W + "/activity-tasks/heartbeat")
async def heartbeat_activity(request: web.Request) -> web.Response:
    """Store progress details; ``cancel_requested`` tells the activity to stop."""
    body: HeartbeatBody = await _body(request, HeartbeatBody)
    response = await request.app[ENGINE].heartbeat_activity(body.token, body.details)
    return json_response(response)
