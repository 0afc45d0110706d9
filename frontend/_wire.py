"""JSON on the wire, shared by the HTTP server and :class:`~cadenza.frontend.remote.RemoteService`.

Three things live here so that both ends agree on them byte for byte:

* the request bodies of every route, as msgspec Structs that reject unknown fields, and the
  responses that are not engine structs already;
* :func:`decode_body`, which turns msgspec's decode errors into an
  :class:`~cadenza.history.InvalidArgumentError` naming the offending field;
* the mapping between Cadenza's errors and RFC 9457 problem details: :func:`problem_from_error`
  (server) and :func:`error_from_problem` (client). The problem body carries the exception's
  class name (``cadenza_error``) and its constructor attributes, so the client raises the same
  class with the same message the engine raised.
"""

from __future__ import annotations

import http
import re
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from cadenza.engine import (
    ActivityTaskInfo,
    Command,
    StaleTaskError,
    StartWorkflowRequest,
    StartWorkflowResponse,
    TaskToken,
    WorkflowTaskInfo,
)
from cadenza.history import (
    EMPTY_ARGS,
    NULL,
    CadenzaError,
    ConditionFailedError,
    ExecutionSummary,
    Failure,
    HistoryEvent,
    InvalidArgumentError,
    NonDeterminismError,
    NotFoundError,
    PayloadEncodingError,
    PayloadTooLargeError,
    QueryFailedError,
    RetryPolicySpec,
    ShardOwnershipLostError,
    StoreError,
    StoreUnavailableError,
    UnknownTypeError,
    WorkflowAlreadyStartedError,
    WorkflowClosedError,
    WorkflowNotFoundError,
)
from cadenza.history._events import TriggerInfo

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
JSON_LINES = "application/jsonl"

API_PREFIX = "/api/v1"

T = TypeVar("T")

_ENCODER = msgspec.json.Encoder()


def encode(value: Any) -> bytes:
    """JSON bytes of a value (Structs, dataclasses, ``msgspec.Raw`` payloads kept verbatim)."""
    return _ENCODER.encode(value)


# --------------------------------------------------------------------------- decoding

_AT = re.compile(r"\s+-\s+at\s+`\$(?P<path>[^`]*)`$")
_NAMED = re.compile(r"(?:unknown|missing required) field `(?P<name>[^`]+)`")


def _join(path: str, name: str) -> str:
    path = path.lstrip(".")
    if not name:
        return path
    return f"{path}.{name}" if path else name


def field_of(error: msgspec.ValidationError) -> tuple[str, str]:
    """The dotted field path and the reason of a msgspec validation error.

    ``Expected `str`, got `int` - at `$.workflow_id``` gives ``("workflow_id", "Expected
    `str`, got `int`")``; ``Object contains unknown field `foo``` gives ``("foo", "unknown
    field")``. An error about the document itself names ``body``.
    """
    message = str(error)
    path = ""
    at = _AT.search(message)
    if at:
        path = at.group("path")
        message = message[: at.start()]
    named = _NAMED.search(message)
    if named:
        field = _join(path, named.group("name"))
        reason = "unknown field" if message.startswith("Object contains") else "missing"
        return field, reason
    return _join(path, "") or "body", message


def decode_body(data: bytes, type_: type[T], *, prefix: str = "") -> T:
    """Decode a JSON request body into ``type_``.

    Raises:
        InvalidArgumentError: naming the field (dotted path, ``body`` for malformed JSON).
    """
    if not data.strip():
        data = b"{}"
    try:
        return msgspec.json.decode(data, type=type_)
    except msgspec.ValidationError as exc:
        field, reason = field_of(exc)
        raise InvalidArgumentError(_join(prefix, field) if prefix else field, reason) from None
    except msgspec.DecodeError as exc:
        raise InvalidArgumentError(prefix or "body", f"not valid JSON: {exc}") from None


def decode_response(data: bytes, type_: type[T]) -> T:
    """Decode a server response (a mismatch here is a protocol error, not bad input)."""
    try:
        return msgspec.json.decode(data, type=type_)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise CadenzaError(f"unexpected response from the server: {exc}") from None


def check_json_array(field: str, payload: msgspec.Raw) -> None:
    """Reject a payload that is not a JSON array (workflow input, signal and query args)."""
    try:
        msgspec.json.decode(bytes(payload), type=list[msgspec.Raw])
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise InvalidArgumentError(field, "must be a JSON array of arguments") from None


# --------------------------------------------------------------------------- REST bodies


class _Body(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class _StrictRetryPolicy(RetryPolicySpec, forbid_unknown_fields=True):
    pass


class _StrictTrigger(TriggerInfo, forbid_unknown_fields=True):
    pass


class StartWorkflowBody(StartWorkflowRequest, forbid_unknown_fields=True):
    """``POST /api/v1/workflows``: the fields of :class:`~cadenza.engine.StartWorkflowRequest`
    (nested objects refuse unknown fields too)."""

    retry_policy: _StrictRetryPolicy | None = None
    trigger: _StrictTrigger | None = None

    def to_request(self) -> StartWorkflowRequest:
        """The engine's request struct (nested structs as the engine's own classes)."""
        fields = msgspec.structs.asdict(self)
        if self.retry_policy is not None:
            fields["retry_policy"] = RetryPolicySpec(**msgspec.structs.asdict(self.retry_policy))
        if self.trigger is not None:
            fields["trigger"] = TriggerInfo(**msgspec.structs.asdict(self.trigger))
        return StartWorkflowRequest(**fields)


class StartWorkflowsBody(_Body, kw_only=True):
    """``POST /api/v1/workflows/start-many``: several starts at once (1 to 100), each made on
    its own as by ``POST /api/v1/workflows``; the answer has one :class:`StartResult` per
    start, in order."""

    starts: list[StartWorkflowBody]


class SignalBody(_Body, kw_only=True):
    """``POST …/signal``."""

    signal_name: str
    input: msgspec.Raw = EMPTY_ARGS
    request_id: str = ""
    identity: str = ""


class CancelBody(_Body, kw_only=True):
    """``POST …/cancel``."""

    reason: str = ""
    request_id: str = ""
    identity: str = ""


class TerminateBody(_Body, kw_only=True):
    """``POST …/terminate``."""

    reason: str = ""
    identity: str = ""


class QueryBody(_Body, kw_only=True):
    """``POST …/query``; ``timeout`` is capped by the server."""

    query_type: str
    args: msgspec.Raw = EMPTY_ARGS
    timeout: float = 10.0


class QueryResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of a query."""

    result: msgspec.Raw


class WorkflowList(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/v1/workflows``."""

    workflows: list[ExecutionSummary]


class VerifyResponse(msgspec.Struct, frozen=True, kw_only=True):
    """``GET …/verify``: the hash chain verdict of one run."""

    workflow_id: str
    run_id: str
    ok: bool
    events_checked: int
    first_bad_event_id: int | None = None
    reason: str = ""


class ResultResponse(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``GET …/result``: ``status`` is ``running`` until the run closes.

    ``result`` is set when it completed, ``failure`` when it failed; ``close_event`` is the
    event that closed it (its attributes say more: the new run of a continue-as-new, the
    reason of a termination).
    """

    workflow_id: str
    run_id: str
    status: str
    result: msgspec.Raw | None = None
    failure: Failure | None = None
    close_event: dict[str, Any] | None = None


class ResultReply(msgspec.Struct, frozen=True, kw_only=True):
    """How the client reads a :class:`ResultResponse` (the close event as a struct)."""

    workflow_id: str
    run_id: str
    status: str
    close_event: HistoryEvent | None = None


# --------------------------------------------------------------------------- worker bodies


class PollWorkflowTaskBody(_Body, kw_only=True):
    """``POST /api/v1/worker/workflow-tasks/poll``; ``timeout`` seconds, capped by the server."""

    namespace: str = "default"
    task_queue: str
    worker_id: str
    workflow_types: list[str] = []
    timeout: float | None = None


class PollWorkflowTasksBody(_Body, kw_only=True):
    """``POST /api/v1/worker/workflow-tasks/poll-many``: like a single poll, but answers with
    every visible task up to ``max_tasks`` (1 to 100, default 16) as a
    :class:`WorkflowTaskBatch`."""

    namespace: str = "default"
    task_queue: str
    worker_id: str
    workflow_types: list[str] = []
    timeout: float | None = None
    max_tasks: int = 16


class WorkflowTaskBatch(msgspec.Struct, frozen=True, kw_only=True):
    """The workflow tasks one ``poll-many`` leased to the worker (a query comes alone)."""

    tasks: list[WorkflowTaskInfo]


class PollActivityTaskBody(_Body, kw_only=True):
    """``POST /api/v1/worker/activity-tasks/poll``."""

    namespace: str = "default"
    task_queue: str
    worker_id: str
    activity_types: list[str] = []
    timeout: float | None = None


class PollActivityTasksBody(_Body, kw_only=True):
    """``POST /api/v1/worker/activity-tasks/poll-many``: like a single poll, but answers with
    every visible attempt up to ``max_tasks`` (1 to 100, default 16) as an
    :class:`ActivityTaskBatch`."""

    namespace: str = "default"
    task_queue: str
    worker_id: str
    activity_types: list[str] = []
    timeout: float | None = None
    max_tasks: int = 16


class ActivityTaskBatch(msgspec.Struct, frozen=True, kw_only=True):
    """The activity attempts one ``poll-many`` leased to the worker."""

    tasks: list[ActivityTaskInfo]


class HistorySliceBody(_Body, kw_only=True):
    """``POST /api/v1/worker/history``: events ``after < id <= up_to`` (at most ``limit``)."""

    namespace: str = "default"
    workflow_id: str
    run_id: str | None = None
    after: int = 0
    up_to: int | None = None
    limit: int = 1000


class HistorySlice(msgspec.Struct, frozen=True, kw_only=True):
    """Events exactly as stored (payload bytes verbatim, so client-side hashes verify)."""

    run_id: str
    events: list[HistoryEvent]


class CompleteWorkflowTaskBody(_Body, kw_only=True):
    """``POST /api/v1/worker/workflow-tasks/complete``."""

    token: TaskToken
    commands: list[Command]
    identity: str = ""
    sticky: bool = True
    force_new_task: bool = False


class CompleteWorkflowTaskResponse(msgspec.Struct, frozen=True, kw_only=True):
    """``completed`` or ``unhandled_command`` (drop the cached execution)."""

    outcome: str


class CompleteWorkflowTasksBody(_Body, kw_only=True):
    """``POST /api/v1/worker/workflow-tasks/complete-many``: several completions at once
    (1 to 100), each recorded on its own as by ``complete``; the answer has one
    :class:`CompletionResult` per completion, in order."""

    completions: list[CompleteWorkflowTaskBody]


class FailWorkflowTaskBody(_Body, kw_only=True):
    """``POST /api/v1/worker/workflow-tasks/fail``."""

    token: TaskToken
    cause: str
    failure: Failure
    identity: str = ""


class RespondQueryBody(_Body, kw_only=True):
    """``POST /api/v1/worker/queries/respond``: the result, or an error message."""

    query_id: str
    result: msgspec.Raw = NULL
    error: str | None = None


class CompleteActivityBody(_Body, kw_only=True):
    """``POST /api/v1/worker/activity-tasks/complete``."""

    token: TaskToken
    result: msgspec.Raw = NULL
    identity: str = ""


class CompleteActivitiesBody(_Body, kw_only=True):
    """``POST /api/v1/worker/activity-tasks/complete-many``: several attempts' results at once
    (1 to 100), each recorded on its own as by ``complete``; the answer has one
    :class:`ActivityResult` per completion, in order."""

    completions: list[CompleteActivityBody]


class ActivityResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One completion of an activity ``complete-many``: ``accepted`` (false: the attempt was
    no longer current, nothing written), or the ``problem`` that refused it."""

    accepted: bool | None = None
    problem: Problem | None = None


class CompleteActivitiesResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of an activity ``complete-many``: one result per completion, in order."""

    results: list[ActivityResult]


class FailActivityBody(_Body, kw_only=True):
    """``POST /api/v1/worker/activity-tasks/fail``."""

    token: TaskToken
    failure: Failure
    identity: str = ""


class ActivityCanceledBody(_Body, kw_only=True):
    """``POST /api/v1/worker/activity-tasks/canceled``."""

    token: TaskToken
    details: msgspec.Raw = NULL
    identity: str = ""


class ReleaseStickyBody(_Body, kw_only=True):
    """A worker shutting down gives up its sticky workflow tasks."""

    worker_id: str


class HeartbeatBody(_Body, kw_only=True):
    """``POST /api/v1/worker/activity-tasks/heartbeat``."""

    token: TaskToken
    details: list[Any] = []


class Accepted(msgspec.Struct, frozen=True, kw_only=True):
    """False when the attempt was no longer current (nothing was written)."""

    accepted: bool


# --------------------------------------------------------------------------- problems


class Problem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An RFC 9457 problem detail, with Cadenza's extension members.

    Attributes:
        type: ``urn:cadenza:error:<ClassName>`` for Cadenza errors, ``about:blank`` otherwise.
        title: The HTTP reason phrase.
        status: The HTTP status.
        detail: The error message.
        instance: The request path.
        cadenza_error: The exception class name, for clients to raise the same class.
        field: The offending field (bad input).
        reason: Why it was rejected (bad input, rejected starts).
        workflow_id, run_id, workflow_status, operation, shard_id, range_id: The
            constructor attributes of the errors that have them.
    """

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""
    instance: str = ""
    cadenza_error: str = ""
    field: str | None = None
    reason: str | None = None
    workflow_id: str | None = None
    run_id: str | None = None
    workflow_status: str | None = None
    operation: str | None = None
    shard_id: int | None = None
    range_id: int | None = None


class CompletionResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One completion of a ``complete-many``: its ``outcome``, or the ``problem`` that
    refused it (a stale token, a shard owned by another server …); one refused completion
    never fails the others."""

    outcome: str | None = None
    problem: Problem | None = None


class StartResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One start of a ``start-many``: the run it started or found (``started`` says which), or
    the ``problem`` that refused it (already started, a bad field …); one refused start never
    fails the others."""

    run: StartWorkflowResponse | None = None
    problem: Problem | None = None


class StartWorkflowsResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The results of a ``start-many``, in the order of its starts."""

    results: list[StartResult]


class ShardOwners(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/v1/cluster/shards``: where each shard's owner listens, so that a client can
    send a write straight to it (``owners[shard_id]``; null while a shard has no live owner,
    or when its owner advertises no address)."""

    shard_count: int
    owners: list[str | None]


class CompleteWorkflowTasksResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The results of a ``complete-many``, in the order of its completions."""

    results: list[CompletionResult]


def status_title(status: int) -> str:
    """The reason phrase of an HTTP status."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


_STR_ATTRS = ("field", "reason", "workflow_id", "run_id", "workflow_status", "operation")
_INT_ATTRS = ("shard_id", "range_id")


def problem_from_error(exc: CadenzaError, *, instance: str = "") -> Problem:
    """The problem detail of a Cadenza error (status from the class's ``status``, else 500)."""
    status = int(getattr(exc, "status", 500))
    extra: dict[str, Any] = {}
    for name in _STR_ATTRS:
        value = getattr(exc, name, None)
        if isinstance(value, str):
            extra[name] = value
    for name in _INT_ATTRS:
        value = getattr(exc, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            extra[name] = value
    name = type(exc).__name__
    return Problem(
        type=f"urn:cadenza:error:{name}",
        title=status_title(status),
        status=status,
        detail=str(exc),
        instance=instance,
        cadenza_error=name,
        **extra,
    )


def _message(cls: type[CadenzaError]) -> Callable[[Problem], CadenzaError]:
    return lambda p: cls(p.detail)


def _invalid(cls: type[InvalidArgumentError]) -> Callable[[Problem], CadenzaError]:
    return lambda p: cls(p.field or "request", p.reason if p.reason is not None else p.detail)


_BUILDERS: dict[str, Callable[[Problem], CadenzaError]] = {
    "InvalidArgumentError": _invalid(InvalidArgumentError),
    "PayloadEncodingError": _invalid(PayloadEncodingError),
    "PayloadTooLargeError": _invalid(PayloadTooLargeError),
    "UnknownTypeError": _invalid(UnknownTypeError),
    "WorkflowNotFoundError": lambda p: WorkflowNotFoundError(p.workflow_id or "?", p.run_id),
    "WorkflowAlreadyStartedError": lambda p: WorkflowAlreadyStartedError(
        p.workflow_id or "?", p.run_id or "?", p.reason or ""
    ),
    "WorkflowClosedError": lambda p: WorkflowClosedError(
        p.workflow_id or "?", p.run_id or "?", p.workflow_status or "closed", p.operation or "?"
    ),
    "ShardOwnershipLostError": lambda p: ShardOwnershipLostError(
        p.shard_id if p.shard_id is not None else -1, p.range_id if p.range_id is not None else -1
    ),
    "StaleTaskError": _message(StaleTaskError),
    "QueryFailedError": _message(QueryFailedError),
    "NotFoundError": _message(NotFoundError),
    "StoreError": _message(StoreError),
    "ConditionFailedError": _message(ConditionFailedError),
    "StoreUnavailableError": _message(StoreUnavailableError),
    "NonDeterminismError": _message(NonDeterminismError),
    "CadenzaError": _message(CadenzaError),
}


class AccessDeniedError(CadenzaError):
    """The server refused the request: no or a wrong token (401), or a non-loopback caller
    while the server has no token configured (403)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ServerError(CadenzaError):
    """The server failed in a way that is not one of Cadenza's errors (a 5xx without a known
    class), or answered something that is not a problem detail."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def error_from_problem(problem: Problem) -> CadenzaError:
    """Rebuild the exception the server raised (the inverse of :func:`problem_from_error`).

    An unknown class name falls back by what the problem carries: a ``field`` means bad input,
    else the status decides (404 not found, 401/403 access denied, 503 unavailable).
    """
    builder = _BUILDERS.get(problem.cadenza_error)
    if builder is not None:
        return builder(problem)
    status = problem.status
    detail = problem.detail or problem.title
    if problem.field is not None or status in (400, 422):
        return InvalidArgumentError(problem.field or "request", problem.reason or detail)
    if status == 413:
        return PayloadTooLargeError(problem.field or "body", problem.reason or detail)
    if status == 404:
        return NotFoundError(detail)
    if status in (401, 403):
        return AccessDeniedError(detail, status)
    if status == 503:
        return StoreUnavailableError(detail)
    return ServerError(detail, status)


def decode_problem(data: bytes, status: int, reason: str) -> Problem:
    """The problem detail of an error response (a plain one when the body is not one)."""
    try:
        return msgspec.json.decode(data, type=Problem)
    except (msgspec.ValidationError, msgspec.DecodeError):
        text = data.decode("utf-8", "replace").strip()[:500]
        return Problem(title=reason or status_title(status), status=status, detail=text or reason)
