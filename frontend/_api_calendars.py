"""REST API of business calendars (read-only): ``GET /api/v1/calendars`` and
``GET /api/v1/calendars/{name}?year=YYYY``.

Calendars are written by ``POST /api/v1/jobs/apply`` (the ``calendars`` of job files); these
routes show what a server uses: the built-in ones, the stored ones (with version and who
applied them) and those registered by code in the server process. Both routes read the stored
calendars first, so they answer with the database's current versions even when this server
has not seen a change notice yet. See ``docs/api.md`` and ``docs/calendars.md``.
"""

from __future__ import annotations

from aiohttp import web

from cadenza.engine._job_calendars import default_year, describe_calendar, list_calendars
from cadenza.frontend._state import ENGINE, int_param, json_response
from cadenza.frontend._wire import API_PREFIX
from cadenza.frontend._wire_jobs import CalendarList
from cadenza.timers._calendars import MAX_YEAR, MIN_YEAR

routes = web.RouteTableDef()

_C = API_PREFIX + "/calendars"


@routes.get(_C)
async def get_calendars(request: web.Request) -> web.Response:
    """Every calendar the server knows, by name, with its source."""
    found = await list_calendars(request.app[ENGINE])
    return json_response(CalendarList(calendars=found))


@routes.get(_C + "/{name}")
async def get_calendar_year(request: web.Request) -> web.Response:
    """A calendar's holidays and make-up working days of ``?year=`` (default: this year)."""
    engine = request.app[ENGINE]
    year = int_param(request, "year", default_year(engine), low=MIN_YEAR, high=MAX_YEAR)
    described = await describe_calendar(engine, request.match_info["name"], year)
    return json_response(described)
