"""The one place where errors become HTTP responses: ``application/problem+json`` (RFC 9457).

* A :class:`~cadenza.history.CadenzaError` gets its class's ``status`` (400, 404, 409, 413,
  503; 500 for a class without one) and a body naming the class (``cadenza_error``) and its
  attributes (``field`` and ``reason`` of bad input, ``workflow_id`` …), built by
  :func:`~cadenza.frontend._wire.problem_from_error`, so that
  :class:`~cadenza.frontend.remote.RemoteService` raises the same exception on its side.
* aiohttp's own HTTP errors (unknown route, wrong method, a body over the size limit, a
  refused token) keep their status and headers and get a problem body too.
* Anything else is a bug: it is logged with its stack and answered 500 without details.
"""

from __future__ import annotations

import logging

from aiohttp import web

from cadenza.frontend._wire import PROBLEM_JSON, Problem, encode, problem_from_error, status_title
from cadenza.history import CadenzaError

log = logging.getLogger("cadenza.frontend")

_PASS_HEADERS = ("WWW-Authenticate", "Allow", "Retry-After")


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> web.Response:
    """A problem detail as a response."""
    return web.Response(
        body=encode(problem),
        status=problem.status,
        content_type=PROBLEM_JSON,
        headers=headers,
    )


def _http_problem(exc: web.HTTPException, path: str) -> Problem:
    status = exc.status
    detail = exc.text or exc.reason
    if detail.startswith(f"{status}: "):
        detail = detail[len(f"{status}: ") :]
    if status == 413:
        return Problem(
            type="urn:cadenza:error:PayloadTooLargeError",
            title=status_title(status),
            status=status,
            detail=f"body: {detail}",
            instance=path,
            cadenza_error="PayloadTooLargeError",
            field="body",
            reason=detail,
        )
    return Problem(
        title=exc.reason or status_title(status), status=status, detail=detail, instance=path
    )


@web.middleware
async def errors_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Turn every error of a handler (or of an inner middleware) into a problem response."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k in _PASS_HEADERS if (v := exc.headers.get(k)) is not None}
        return problem_response(_http_problem(exc, request.rel_url.raw_path), headers)
    except CadenzaError as exc:
        problem = problem_from_error(exc, instance=request.rel_url.raw_path)
        if problem.status >= 500:
            log.warning("%s %s failed: %r", request.method, request.path, exc)
        return problem_response(problem)
    except Exception:
        log.exception("%s %s failed with an unexpected error", request.method, request.path)
        return problem_response(
            Problem(
                title=status_title(500),
                status=500,
                detail="internal server error (see the server log)",
                instance=request.rel_url.raw_path,
            )
        )
