"""REST API of schedules under ``/api/v1/schedules``: list, create, preview, describe, update,
pause, unpause, trigger, backfill, delete, and the audit log (events, verify).

Schedule ids may contain ``/`` (a job's schedules are ``<job>/<id>``): callers percent-encode
them in the path (``billing%2Fnightly``). ``?namespace=`` selects the namespace (default: the
configured one). Every change names its caller (``identity``; default ``api@<address>``) in the
schedule's audit log. Errors are problem+json (:mod:`cadenza.frontend._middleware_errors`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from cadenza.frontend._state import ENGINE, SETTINGS, int_param, json_response, namespace_of
from cadenza.frontend._wire import API_PREFIX, decode_body, encode
from cadenza.frontend._wire_schedules import (
    BackfillBody,
    CreateScheduleBody,
    DeleteScheduleBody,
    FireTimeList,
    NoteBody,
    PreviewBody,
    ScheduleEventPage,
    ScheduleList,
    ScheduleVerifyResponse,
    TriggerBody,
    UpdateScheduleBody,
)

routes = web.RouteTableDef()

_S = API_PREFIX + "/schedules"
_ONE = _S + "/{schedule_id}"
MAX_LIST_LIMIT = 1000
MAX_EVENTS_PAGE = 1000


def _identity(request: web.Request, given: str) -> str:
    return given or f"api@{request.remote or 'local'}"


async def _body(request: web.Request, type_: type[Any]) -> Any:
    return decode_body(await request.read(), type_)


def _local(request: web.Request, value: datetime | None) -> datetime | None:
    """A date-time without an offset is wall-clock time of the server's zone."""
    if value is None or value.tzinfo is not None:
        return value
    try:
        zone = ZoneInfo(request.app[SETTINGS].timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return value.replace(tzinfo=zone)


def _location(schedule_id: str, namespace: str) -> str:
    return f"{_S}/{quote(schedule_id, safe='')}?namespace={quote(namespace, safe='')}"


@routes.get(_S)
async def list_schedules(request: web.Request) -> web.Response:
    """Schedules of the namespace ordered by id; ``after`` and ``limit`` page through them."""
    limit = int_param(request, "limit", 100, low=1, high=MAX_LIST_LIMIT)
    found = await request.app[ENGINE].list_schedules(
        namespace_of(request), after=request.query.get("after", ""), limit=limit
    )
    next_after = found[-1].schedule_id if len(found) == limit else None
    return json_response(ScheduleList(schedules=found, next_after=next_after))


@routes.post(_S)
async def create_schedule(request: web.Request) -> web.Response:
    """Create a schedule; 201 with its description (409 if the id is taken)."""
    body: CreateScheduleBody = await _body(request, CreateScheduleBody)
    namespace = namespace_of(request)
    description = await request.app[ENGINE].create_schedule(
        namespace,
        body.schedule_id,
        body.spec,
        body.action.to_action(),
        identity=_identity(request, body.identity),
    )
    return web.Response(
        body=encode(description),
        status=201,
        content_type="application/json",
        headers={"Location": _location(body.schedule_id, namespace)},
    )


@routes.post(_S + "/preview")
async def preview(request: web.Request) -> web.Response:
    """The next fire times of a spec, without creating it."""
    body: PreviewBody = await _body(request, PreviewBody)
    times = await request.app[ENGINE].preview_schedule(
        body.spec,
        count=body.count,
        after=_local(request, body.after),
        schedule_id=body.schedule_id,
    )
    return json_response(FireTimeList(fire_times=times))


@routes.get(_ONE)
async def describe_schedule(request: web.Request) -> web.Response:
    """Spec, action, state, the next 10 fire times, the last runs and their outcome."""
    description = await request.app[ENGINE].describe_schedule(
        namespace_of(request), request.match_info["schedule_id"]
    )
    return json_response(description)


@routes.post(_ONE + "/update")
async def update_schedule(request: web.Request) -> web.Response:
    """Replace the spec and/or the action; answers the new description."""
    body: UpdateScheduleBody = await _body(request, UpdateScheduleBody)
    description = await request.app[ENGINE].update_schedule(
        namespace_of(request),
        request.match_info["schedule_id"],
        spec=body.spec,
        action=body.action.to_action() if body.action is not None else None,
        identity=_identity(request, body.identity),
    )
    return json_response(description)


@routes.post(_ONE + "/pause")
async def pause(request: web.Request) -> web.Response:
    """Pause the schedule with a note; 204."""
    body: NoteBody = await _body(request, NoteBody)
    await request.app[ENGINE].pause_schedule(
        namespace_of(request),
        request.match_info["schedule_id"],
        note=body.note,
        identity=_identity(request, body.identity),
    )
    return web.Response(status=204)


@routes.post(_ONE + "/unpause")
async def unpause(request: web.Request) -> web.Response:
    """Unpause the schedule; 204."""
    body: NoteBody = await _body(request, NoteBody)
    await request.app[ENGINE].unpause_schedule(
        namespace_of(request),
        request.match_info["schedule_id"],
        note=body.note,
        identity=_identity(request, body.identity),
    )
    return web.Response(status=204)


@routes.post(_ONE + "/trigger")
async def trigger(request: web.Request) -> web.Response:
    """Fire now; answers what happened (started, buffered, skipped, already_started)."""
    body: TriggerBody = await _body(request, TriggerBody)
    result = await request.app[ENGINE].trigger_schedule(
        namespace_of(request),
        request.match_info["schedule_id"],
        overlap=body.overlap,
        identity=_identity(request, body.identity),
    )
    return json_response(result)


@routes.post(_ONE + "/backfill")
async def backfill(request: web.Request) -> web.Response:
    """Queue the spec's fires of a past range (at most 10,000); 202 with their count."""
    body: BackfillBody = await _body(request, BackfillBody)
    start, end = _local(request, body.start), _local(request, body.end)
    result = await request.app[ENGINE].backfill_schedule(
        namespace_of(request),
        request.match_info["schedule_id"],
        start,  # type: ignore[arg-type]
        end,  # type: ignore[arg-type]
        overlap=body.overlap,
        identity=_identity(request, body.identity),
    )
    return json_response(result, status=202)


@routes.delete(_ONE)
async def delete_schedule(request: web.Request) -> web.Response:
    """Delete the schedule (its runs keep running, its audit log stays); 204."""
    body: DeleteScheduleBody = await _body(request, DeleteScheduleBody)
    await request.app[ENGINE].delete_schedule(
        namespace_of(request),
        request.match_info["schedule_id"],
        identity=_identity(request, body.identity),
        reason=body.reason,
    )
    return web.Response(status=204)


@routes.get(_ONE + "/events")
async def events(request: web.Request) -> web.Response:
    """A page of the schedule's audit log (``after``, ``limit``), deleted schedules too."""
    schedule_id = request.match_info["schedule_id"]
    limit = int_param(request, "limit", 100, low=1, high=MAX_EVENTS_PAGE)
    page = await request.app[ENGINE].get_schedule_history(
        namespace_of(request),
        schedule_id,
        after=int_param(request, "after", 0, low=0, high=2**62),
        limit=limit,
    )
    next_after = page[-1].event_id if len(page) == limit else None
    return json_response(
        ScheduleEventPage(schedule_id=schedule_id, events=page, next_after=next_after)
    )


@routes.get(_ONE + "/verify")
async def verify(request: web.Request) -> web.Response:
    """Recompute the audit log's hash chain; ``ok`` false names the first bad event."""
    schedule_id = request.match_info["schedule_id"]
    verdict = await request.app[ENGINE].verify_schedule_history(namespace_of(request), schedule_id)
    return json_response(
        ScheduleVerifyResponse(
            schedule_id=schedule_id,
            ok=verdict.ok,
            events_checked=verdict.events_checked,
            first_bad_event_id=verdict.first_bad_event_id,
            reason=verdict.reason,
        )
    )
