"""A :class:`~cadenza.sdk._service.WorkflowService` over HTTP, for clients and workers on other
hosts.

``Client.connect("http://server:7233", token=...)`` and ``Worker(Client(RemoteService(...)))``
use it; worker hosts then need no database credentials. Each method is one HTTP request to the
frontend (``docs/api.md``) with a timeout. Errors the server answers as problem+json are raised
again as the same :mod:`cadenza.history` classes (and :class:`~cadenza.engine.StaleTaskError`),
with the same message and attributes; a server that cannot be reached raises
:class:`ServerUnavailableError`.

Example::

    service = RemoteService("http://cadenza.internal:7233", token=os.environ["CADENZA_TOKEN"])
    client = Client(service)
    async with Worker(client, task_queue="billing", workflows=[Billing], activities=[charge]):
        ...
    await client.close()  # closes the service's HTTP session
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec
from yarl import URL

from cadenza.engine import (
    ActivityTaskInfo,
    Command,
    HeartbeatResponse,
    StartWorkflowRequest,
    StartWorkflowResponse,
    TaskToken,
    WorkflowDescription,
    WorkflowTaskInfo,
)
from cadenza.engine._schedule_api import (
    BackfillResult,
    FireTimeView,
    ScheduleAction,
    ScheduleDescription,
    ScheduleSummary,
    TriggerResult,
)
from cadenza.frontend._coalesce import Coalescer
from cadenza.frontend._remote_jobs import RemoteJobs
from cadenza.frontend._shard_router import ShardRouter
from cadenza.frontend._wire import (
    API_PREFIX,
    JSON,
    Accepted,
    AccessDeniedError,
    ActivityCanceledBody,
    ActivityTaskBatch,
    CancelBody,
    CompleteActivitiesBody,
    CompleteActivitiesResponse,
    CompleteActivityBody,
    CompleteWorkflowTaskBody,
    CompleteWorkflowTaskResponse,
    CompleteWorkflowTasksBody,
    CompleteWorkflowTasksResponse,
    FailActivityBody,
    FailWorkflowTaskBody,
    HeartbeatBody,
    HistorySlice,
    HistorySliceBody,
    PollActivityTaskBody,
    PollActivityTasksBody,
    PollWorkflowTaskBody,
    PollWorkflowTasksBody,
    QueryBody,
    QueryResponse,
    ReleaseStickyBody,
    RespondQueryBody,
    ResultReply,
    ServerError,
    ShardOwners,
    SignalBody,
    StartWorkflowsResponse,
    TerminateBody,
    WorkflowList,
    WorkflowTaskBatch,
    decode_problem,
    decode_response,
    encode,
    error_from_problem,
)
from cadenza.frontend._wire_schedules import (
    ActionBody,
    BackfillBody,
    CreateScheduleBody,
    DeleteScheduleBody,
    FireTimeList,
    NoteBody,
    PreviewBody,
    ScheduleEventPage,
    ScheduleList,
    TriggerBody,
    UpdateScheduleBody,
)
from cadenza.history import (
    CadenzaError,
    ExecutionSummary,
    Failure,
    HistoryEvent,
    InvalidArgumentError,
    NotFoundError,
    PayloadEncodingError,
    ShardOwnershipLostError,
)
from cadenza.history._schedule_records import (
    ScheduleAlreadyExistsError,
    ScheduleEvent,
    ScheduleNotFoundError,
)
from cadenza.timers._spec import ScheduleSpec

__all__ = ["AccessDeniedError", "RemoteService", "ServerError", "ServerUnavailableError"]

T = TypeVar("T")

_LIST_FILTERS = frozenset(
    {"status", "workflow_type", "workflow_id", "started_after_ms", "started_before_ms", "limit"}
)


_STREAM_ABOVE = 1024 * 1024
_COMPLETIONS_PER_REQUEST = 64  # the server takes up to 100
_STARTS_PER_REQUEST = 64  # the server takes up to 100


class ServerUnavailableError(CadenzaError):
    """The server could not be reached, or did not answer within the request timeout.

    Attributes:
        status: 503, as for the server's own unavailability errors.
    """

    status = 503


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


class RemoteService(RemoteJobs):
    """The engine's service surface, called over HTTP.

    Args:
        base_url: The server's URL, e.g. ``http://127.0.0.1:7233`` (a path prefix is kept).
        token: The server's ``worker_token``, sent as ``Authorization: Bearer``.
        request_timeout: Seconds any request may take (30). Long polls are asked to return
            before it.
        poll_timeout: Longest long poll in seconds (25): worker polls and result waits ask the
            server to answer within it. Capped at ``request_timeout`` minus a margin.
        route_to_owners: Send each start straight to the server that owns its shard, at the
            address that server advertises (``GET /api/v1/cluster/shards``), instead of
            letting ``base_url`` forward it (True). Only addresses of ``base_url``'s scheme are
            used (an ``https://`` client never sends its token over plain HTTP). Turn it off
            when the servers' advertised addresses cannot be reached from here; an owner that
            does not answer is skipped by itself for 30 s.

    Raises:
        InvalidArgumentError: a URL that is not ``http(s)://host``, or a non-positive timeout.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str = "",
        request_timeout: float = 30.0,
        poll_timeout: float = 25.0,
        route_to_owners: bool = True,
    ) -> None:
        url = URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise InvalidArgumentError(
                "base_url", f"expected http(s)://host[:port], got {base_url!r}"
            )
        if not request_timeout > 0:
            raise InvalidArgumentError("request_timeout", "must be positive")
        if not poll_timeout > 0:
            raise InvalidArgumentError("poll_timeout", "must be positive")
        self.base_url = str(url.with_query(None).with_fragment(None)).rstrip("/")
        self.request_timeout = float(request_timeout)
        self.margin = min(5.0, self.request_timeout / 5)
        self.poll_timeout = min(float(poll_timeout), self.request_timeout - self.margin)
        self._headers = {"Accept": JSON, "User-Agent": "cadenza-remote"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._completions = Coalescer[CompleteWorkflowTaskBody, str](
            self._complete_many, max_batch=_COMPLETIONS_PER_REQUEST
        )
        self._starts = Coalescer[StartWorkflowRequest, StartWorkflowResponse](
            self._start_many, max_batch=_STARTS_PER_REQUEST
        )
        self._activity_results = Coalescer[CompleteActivityBody, bool](
            self._complete_activities, max_batch=_COMPLETIONS_PER_REQUEST
        )
        self._router = ShardRouter(self.base_url, self._shard_owners, enabled=route_to_owners)

    # ------------------------------------------------------------------ plumbing

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this RemoteService is closed")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self.request_timeout),
            )
        return self._session

    async def close(self) -> None:
        """Close the HTTP session; calls after this raise RuntimeError (idempotent)."""
        self._closed = True
        await self._completions.close()
        await self._activity_results.close()
        await self._starts.close()
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> RemoteService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _url(self, path: str, params: dict[str, str] | None = None, base: str = "") -> URL:
        url = URL((base or self.base_url) + path, encoded=True)
        return url.with_query(params) if params else url

    @staticmethod
    def _wf(workflow_id: str, suffix: str = "") -> str:
        if not isinstance(workflow_id, str) or not workflow_id:
            raise InvalidArgumentError("workflow_id", "must be a non-empty string")
        return f"{API_PREFIX}/workflows/{quote(workflow_id, safe='')}{suffix}"

    @staticmethod
    def _params(namespace: str, run_id: str | None, **more: str) -> dict[str, str]:
        params = {"namespace": namespace}
        if run_id:
            params["run_id"] = run_id
        params.update(more)
        return params

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        timeout: float | None = None,
        base: str = "",
    ) -> bytes | None:
        """One request (to ``base``, default ``base_url``), retried while its shard changes
        owner (a write refused for that reason wrote nothing, so trying again is always
        safe)."""
        delay = 0.1
        for _ in range(8):
            try:
                return await self._call_once(
                    method, path, params=params, body=body, timeout=timeout, base=base
                )
            except ShardOwnershipLostError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        return await self._call_once(
            method, path, params=params, body=body, timeout=timeout, base=base
        )

    async def _call_once(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        timeout: float | None = None,
        base: str = "",
    ) -> bytes | None:
        """One request; the body bytes of a 2xx (None for 204), else the server's error."""
        session = self._open()
        try:
            data: bytes | io.BytesIO | None = encode(body) if body is not None else None
        except (TypeError, ValueError, msgspec.EncodeError) as exc:
            raise PayloadEncodingError("body", f"cannot be encoded as JSON: {exc}") from None
        if data is not None and len(data) > _STREAM_ABOVE:
            data = io.BytesIO(data)  # aiohttp streams it instead of one large write
        headers = {"Content-Type": JSON} if data is not None else None
        limit = self.request_timeout if timeout is None else timeout
        try:
            async with session.request(
                method,
                self._url(path, params, base),
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=limit),
            ) as response:
                payload = await response.read()
                if response.status == 204:
                    return None
                if response.status < 300:
                    return payload
                problem = decode_problem(payload, response.status, response.reason or "")
        except TimeoutError:
            raise ServerUnavailableError(
                f"{method} {path}: no answer from {base or self.base_url} within {limit:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise ServerUnavailableError(
                f"{method} {path}: {base or self.base_url}: {exc}"
            ) from None
        raise error_from_problem(problem)

    async def _get(self, type_: type[T], path: str, **kwargs: Any) -> T:
        data = await self._call("GET", path, **kwargs)
        if data is None:
            raise ServerError(f"GET {path}: empty response", 204)
        return decode_response(data, type_)

    async def _shard_owners(self) -> ShardOwners:
        return await self._get(ShardOwners, f"{API_PREFIX}/cluster/shards")

    async def _post(self, type_: type[T], path: str, body: Any, **kwargs: Any) -> T:
        data = await self._call("POST", path, body=body, **kwargs)
        if data is None:
            raise ServerError(f"POST {path}: empty response", 204)
        return decode_response(data, type_)

    def _poll_wait(self, asked: float | None) -> float:
        return self.poll_timeout if asked is None else max(0.0, min(asked, self.poll_timeout))

    # ------------------------------------------------------------------ client operations

    async def start_workflow(self, request: StartWorkflowRequest) -> StartWorkflowResponse:
        """Start an execution.

        Starts made while others are on their way travel together in the next request
        (``POST /api/v1/workflows/start-many``); each is still made and answered on its own.
        """
        try:
            return await self._starts.call(request)
        except ShardOwnershipLostError:
            # Another server owns the workflow id's shard: the single route is forwarded there.
            return await self._post(StartWorkflowResponse, f"{API_PREFIX}/workflows", request)

    async def _start_many(
        self, items: Sequence[StartWorkflowRequest]
    ) -> list[StartWorkflowResponse | BaseException]:
        """One ``start-many`` per shard owner (see :mod:`cadenza.frontend._shard_router`)."""
        groups = await self._router.groups(items, lambda r: (r.namespace, r.workflow_id))
        results: list[StartWorkflowResponse | BaseException | None] = [None] * len(items)

        async def send(url: str, indices: list[int]) -> None:
            batch = [items[i] for i in indices]
            base = "" if url == self.base_url else url
            try:
                answers = await self._start_batch(batch, base)
            except ServerUnavailableError:
                if not base:
                    raise
                # Nothing answered: send them through our own server, which forwards them
                # (a start that did land meanwhile is found again by its request id).
                self._router.unreachable(url)
                answers = await self._start_batch(batch, "")
            for i, answer in zip(indices, answers, strict=True):
                results[i] = answer

        await asyncio.gather(*(send(url, indices) for url, indices in groups.items()))
        if any(isinstance(r, ShardOwnershipLostError) for r in results):
            self._router.forget()
        return [
            r if r is not None else ServerUnavailableError("start-many answered nothing")
            for r in results
        ]

    async def _start_batch(
        self, items: Sequence[StartWorkflowRequest], base: str
    ) -> list[StartWorkflowResponse | BaseException]:
        reply = await self._post(
            StartWorkflowsResponse,
            f"{API_PREFIX}/workflows/start-many",
            {"starts": list(items)},
            base=base,
        )
        if len(reply.results) != len(items):
            raise ServerError(f"start-many answered {len(reply.results)} of {len(items)}", 502)
        return [
            error_from_problem(r.problem)
            if r.problem is not None
            else r.run or ServerUnavailableError("start-many answered neither a run nor a problem")
            for r in reply.results
        ]

    async def signal_workflow(
        self,
        namespace: str,
        workflow_id: str,
        run_id: str | None,
        signal_name: str,
        input: msgspec.Raw,
        *,
        request_id: str = "",
        identity: str = "",
    ) -> None:
        """Deliver a signal."""
        await self._call(
            "POST",
            self._wf(workflow_id, "/signal"),
            params=self._params(namespace, run_id),
            body=SignalBody(
                signal_name=signal_name, input=input, request_id=request_id, identity=identity
            ),
        )

    async def request_cancel_workflow(
        self,
        namespace: str,
        workflow_id: str,
        run_id: str | None = None,
        *,
        reason: str = "",
        request_id: str = "",
        identity: str = "",
    ) -> None:
        """Request cancellation."""
        await self._call(
            "POST",
            self._wf(workflow_id, "/cancel"),
            params=self._params(namespace, run_id),
            body=CancelBody(reason=reason, request_id=request_id, identity=identity),
        )

    async def terminate_workflow(
        self,
        namespace: str,
        workflow_id: str,
        run_id: str | None = None,
        *,
        reason: str = "",
        identity: str = "",
    ) -> None:
        """Terminate a run."""
        await self._call(
            "POST",
            self._wf(workflow_id, "/terminate"),
            params=self._params(namespace, run_id),
            body=TerminateBody(reason=reason, identity=identity),
        )

    async def describe_workflow(
        self, namespace: str, workflow_id: str, run_id: str | None = None
    ) -> WorkflowDescription:
        """Status, timing and pending work of a run."""
        return await self._get(
            WorkflowDescription, self._wf(workflow_id), params=self._params(namespace, run_id)
        )

    async def get_history(
        self,
        namespace: str,
        workflow_id: str,
        run_id: str | None = None,
        *,
        after: int = 0,
        up_to: int | None = None,
        limit: int = 1000,
    ) -> tuple[str, list[HistoryEvent]]:
        """A page of a run's history, events exactly as stored (their hashes verify)."""
        page = await self._post(
            HistorySlice,
            f"{API_PREFIX}/worker/history",
            HistorySliceBody(
                namespace=namespace,
                workflow_id=workflow_id,
                run_id=run_id,
                after=after,
                up_to=up_to,
                limit=limit,
            ),
        )
        return page.run_id, page.events

    async def list_workflows(
        self, namespace: str = "default", **filters: Any
    ) -> list[ExecutionSummary]:
        """Executions matching the filters (those of ``Engine.list_workflows``), newest first."""
        unknown = set(filters) - _LIST_FILTERS
        if unknown:
            raise InvalidArgumentError(sorted(unknown)[0], "unknown filter")
        params = {"namespace": namespace}
        for name in ("status", "workflow_type", "workflow_id"):
            if filters.get(name):
                params[name] = str(filters[name])
        for name in ("started_after", "started_before"):
            ms = filters.get(f"{name}_ms")
            if ms is not None:
                params[name] = _iso(int(ms))
        if filters.get("limit") is not None:
            params["limit"] = str(int(filters["limit"]))
        found = await self._get(WorkflowList, f"{API_PREFIX}/workflows", params=params)
        return found.workflows

    async def wait_for_close(
        self, namespace: str, workflow_id: str, run_id: str, timeout: float | None = None
    ) -> tuple[str, HistoryEvent]:
        """Wait until a run closes (long polls of at most ``poll_timeout`` each).

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            wait = self.poll_timeout
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - loop.time()))
            reply = await self._get(
                ResultReply,
                self._wf(workflow_id, "/result"),
                params=self._params(namespace, run_id, wait=f"{wait:.3f}"),
                timeout=wait + self.margin,
            )
            if reply.status != "running" and reply.close_event is not None:
                return reply.status, reply.close_event
            if deadline is not None and loop.time() >= deadline:
                raise TimeoutError(f"workflow {workflow_id!r} did not close in time")

    async def query_workflow(
        self,
        namespace: str,
        workflow_id: str,
        run_id: str | None,
        query_type: str,
        args: msgspec.Raw,
        *,
        timeout: float = 10.0,
    ) -> msgspec.Raw:
        """Ask the workflow a question (answered by a worker of its task queue)."""
        answer = await self._post(
            QueryResponse,
            self._wf(workflow_id, "/query"),
            QueryBody(query_type=query_type, args=args, timeout=timeout),
            params=self._params(namespace, run_id),
            timeout=max(timeout, 0.0) + self.margin,
        )
        return answer.result

    # ------------------------------------------------------------------ schedules

    @staticmethod
    def _sched(schedule_id: str, suffix: str = "") -> str:
        if not isinstance(schedule_id, str) or not schedule_id:
            raise InvalidArgumentError("schedule_id", "must be a non-empty string")
        return f"{API_PREFIX}/schedules/{quote(schedule_id, safe='')}{suffix}"

    @contextlib.contextmanager
    def _schedule_errors(self, schedule_id: str) -> Iterator[None]:
        """Raise the schedule errors the server names (problem ``cadenza_error``) as their
        own classes."""
        try:
            yield
        except NotFoundError as exc:
            if "schedule" in str(exc):
                raise ScheduleNotFoundError(schedule_id) from None
            raise
        except ServerError as exc:
            if getattr(exc, "status", None) == 409:
                raise ScheduleAlreadyExistsError(schedule_id) from None
            raise

    @staticmethod
    def _spec_body(spec: Any) -> dict[str, Any]:
        if isinstance(spec, ScheduleSpec):
            return msgspec.to_builtins(spec)  # type: ignore[no-any-return]
        if isinstance(spec, Mapping):
            return msgspec.to_builtins(dict(spec))  # type: ignore[no-any-return]
        raise InvalidArgumentError("spec", "expected a schedule spec (a mapping with 'kind')")

    async def create_schedule(
        self,
        namespace: str,
        schedule_id: str,
        spec: ScheduleSpec | Mapping[str, Any],
        action: ScheduleAction,
        *,
        identity: str = "",
    ) -> ScheduleDescription:
        """Create a schedule (``POST /api/v1/schedules``)."""
        body = CreateScheduleBody(
            schedule_id=schedule_id,
            spec=self._spec_body(spec),
            action=ActionBody(**msgspec.structs.asdict(action)),
            identity=identity,
        )
        with self._schedule_errors(schedule_id):
            return await self._post(
                ScheduleDescription,
                f"{API_PREFIX}/schedules",
                body,
                params={"namespace": namespace},
            )

    async def update_schedule(
        self,
        namespace: str,
        schedule_id: str,
        *,
        spec: ScheduleSpec | Mapping[str, Any] | None = None,
        action: ScheduleAction | None = None,
        identity: str = "",
    ) -> ScheduleDescription:
        """Replace a schedule's spec and/or action."""
        body = UpdateScheduleBody(
            spec=self._spec_body(spec) if spec is not None else None,
            action=ActionBody(**msgspec.structs.asdict(action)) if action is not None else None,
            identity=identity,
        )
        with self._schedule_errors(schedule_id):
            return await self._post(
                ScheduleDescription,
                self._sched(schedule_id, "/update"),
                body,
                params={"namespace": namespace},
            )

    async def describe_schedule(self, namespace: str, schedule_id: str) -> ScheduleDescription:
        """Spec, action, state, next fire times and last runs of a schedule."""
        with self._schedule_errors(schedule_id):
            return await self._get(
                ScheduleDescription, self._sched(schedule_id), params={"namespace": namespace}
            )

    async def list_schedules(
        self, namespace: str = "default", *, after: str = "", limit: int = 100
    ) -> list[ScheduleSummary]:
        """Schedules of a namespace ordered by id."""
        params = {"namespace": namespace, "limit": str(int(limit))}
        if after:
            params["after"] = after
        found = await self._get(ScheduleList, f"{API_PREFIX}/schedules", params=params)
        return found.schedules

    async def pause_schedule(
        self, namespace: str, schedule_id: str, *, note: str = "", identity: str = ""
    ) -> None:
        """Pause a schedule."""
        with self._schedule_errors(schedule_id):
            await self._call(
                "POST",
                self._sched(schedule_id, "/pause"),
                params={"namespace": namespace},
                body=NoteBody(note=note, identity=identity),
            )

    async def unpause_schedule(
        self, namespace: str, schedule_id: str, *, note: str = "", identity: str = ""
    ) -> None:
        """Unpause a schedule."""
        with self._schedule_errors(schedule_id):
            await self._call(
                "POST",
                self._sched(schedule_id, "/unpause"),
                params={"namespace": namespace},
                body=NoteBody(note=note, identity=identity),
            )

    async def trigger_schedule(
        self, namespace: str, schedule_id: str, *, overlap: str = "", identity: str = ""
    ) -> TriggerResult:
        """Fire a schedule now."""
        with self._schedule_errors(schedule_id):
            return await self._post(
                TriggerResult,
                self._sched(schedule_id, "/trigger"),
                TriggerBody(overlap=overlap, identity=identity),
                params={"namespace": namespace},
            )

    async def backfill_schedule(
        self,
        namespace: str,
        schedule_id: str,
        start: datetime,
        end: datetime,
        *,
        overlap: str = "",
        identity: str = "",
    ) -> BackfillResult:
        """Run a schedule's fires of a past range now."""
        with self._schedule_errors(schedule_id):
            return await self._post(
                BackfillResult,
                self._sched(schedule_id, "/backfill"),
                BackfillBody(start=start, end=end, overlap=overlap, identity=identity),
                params={"namespace": namespace},
            )

    async def delete_schedule(
        self, namespace: str, schedule_id: str, *, identity: str = "", reason: str = ""
    ) -> None:
        """Delete a schedule."""
        with self._schedule_errors(schedule_id):
            await self._call(
                "DELETE",
                self._sched(schedule_id),
                params={"namespace": namespace},
                body=DeleteScheduleBody(reason=reason, identity=identity),
            )

    async def preview_schedule(
        self,
        spec: ScheduleSpec | Mapping[str, Any],
        *,
        count: int = 10,
        after: datetime | None = None,
        schedule_id: str = "",
    ) -> list[FireTimeView]:
        """The next fire times of a spec, without creating it."""
        found = await self._post(
            FireTimeList,
            f"{API_PREFIX}/schedules/preview",
            PreviewBody(
                spec=self._spec_body(spec), count=count, after=after, schedule_id=schedule_id
            ),
        )
        return found.fire_times

    async def get_schedule_history(
        self, namespace: str, schedule_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[ScheduleEvent]:
        """A page of a schedule's audit log (hashes as stored)."""
        with self._schedule_errors(schedule_id):
            page = await self._get(
                ScheduleEventPage,
                self._sched(schedule_id, "/events"),
                params={"namespace": namespace, "after": str(after), "limit": str(limit)},
            )
        return page.events

    # ------------------------------------------------------------------ worker operations

    async def poll_workflow_task(
        self,
        namespace: str,
        task_queue: str,
        worker_id: str,
        *,
        workflow_types: frozenset[str] = frozenset(),
        timeout: float | None = None,
    ) -> WorkflowTaskInfo | None:
        """Long-poll a workflow task; None when none came within the poll."""
        wait = self._poll_wait(timeout)
        data = await self._call(
            "POST",
            f"{API_PREFIX}/worker/workflow-tasks/poll",
            body=PollWorkflowTaskBody(
                namespace=namespace,
                task_queue=task_queue,
                worker_id=worker_id,
                workflow_types=sorted(workflow_types),
                timeout=wait,
            ),
            timeout=wait + self.margin,
        )
        return None if data is None else decode_response(data, WorkflowTaskInfo)

    async def poll_workflow_tasks(
        self,
        namespace: str,
        task_queue: str,
        worker_id: str,
        *,
        workflow_types: frozenset[str] = frozenset(),
        timeout: float | None = None,
        max_tasks: int = 1,
    ) -> list[WorkflowTaskInfo]:
        """Long-poll up to ``max_tasks`` workflow tasks in one request; [] when none came."""
        wait = self._poll_wait(timeout)
        data = await self._call(
            "POST",
            f"{API_PREFIX}/worker/workflow-tasks/poll-many",
            body=PollWorkflowTasksBody(
                namespace=namespace,
                task_queue=task_queue,
                worker_id=worker_id,
                workflow_types=sorted(workflow_types),
                timeout=wait,
                max_tasks=max_tasks,
            ),
            timeout=wait + self.margin,
        )
        return [] if data is None else decode_response(data, WorkflowTaskBatch).tasks

    async def complete_workflow_task(
        self,
        token: TaskToken,
        commands: list[Command],
        *,
        identity: str = "",
        sticky: bool = True,
        force_new_task: bool = False,
    ) -> str:
        """Record a workflow task's commands; ``completed`` or ``unhandled_command``.

        Completions made while others are on their way travel together in the next request
        (``complete-many``); each is still recorded and answered on its own.

        Raises:
            StaleTaskError: the task is no longer current.
        """
        body = CompleteWorkflowTaskBody(
            token=token,
            commands=commands,
            identity=identity,
            sticky=sticky,
            force_new_task=force_new_task,
        )
        try:
            return await self._completions.call(body)
        except ShardOwnershipLostError:
            # Another server owns the run's shard: the single route is forwarded there.
            reply = await self._post(
                CompleteWorkflowTaskResponse, f"{API_PREFIX}/worker/workflow-tasks/complete", body
            )
            return reply.outcome

    async def _complete_many(
        self, items: Sequence[CompleteWorkflowTaskBody]
    ) -> list[str | BaseException]:
        reply = await self._post(
            CompleteWorkflowTasksResponse,
            f"{API_PREFIX}/worker/workflow-tasks/complete-many",
            CompleteWorkflowTasksBody(completions=list(items)),
        )
        return [
            error_from_problem(r.problem) if r.problem is not None else str(r.outcome)
            for r in reply.results
        ]

    async def fail_workflow_task(
        self, token: TaskToken, *, cause: str, failure: Failure, identity: str = ""
    ) -> None:
        """Record a failed workflow task."""
        await self._call(
            "POST",
            f"{API_PREFIX}/worker/workflow-tasks/fail",
            body=FailWorkflowTaskBody(token=token, cause=cause, failure=failure, identity=identity),
        )

    async def respond_query(
        self, query_id: str, result: msgspec.Raw | None, error: str | None
    ) -> None:
        """Answer a query handed out by :meth:`poll_workflow_task`."""
        await self._call(
            "POST",
            f"{API_PREFIX}/worker/queries/respond",
            body=RespondQueryBody(
                query_id=query_id,
                result=result if result is not None else msgspec.Raw(b"null"),
                error=error,
            ),
        )

    async def release_sticky(self, worker_id: str) -> None:
        """Give up a shutting-down worker's sticky workflow tasks."""
        await self._call(
            "POST",
            f"{API_PREFIX}/worker/sticky/release",
            body=ReleaseStickyBody(worker_id=worker_id),
        )

    async def poll_activity_task(
        self,
        namespace: str,
        task_queue: str,
        worker_id: str,
        *,
        activity_types: frozenset[str] = frozenset(),
        timeout: float | None = None,
    ) -> ActivityTaskInfo | None:
        """Long-poll an activity attempt; None when none came within the poll."""
        wait = self._poll_wait(timeout)
        data = await self._call(
            "POST",
            f"{API_PREFIX}/worker/activity-tasks/poll",
            body=PollActivityTaskBody(
                namespace=namespace,
                task_queue=task_queue,
                worker_id=worker_id,
                activity_types=sorted(activity_types),
                timeout=wait,
            ),
            timeout=wait + self.margin,
        )
        return None if data is None else decode_response(data, ActivityTaskInfo)

    async def poll_activity_tasks(
        self,
        namespace: str,
        task_queue: str,
        worker_id: str,
        *,
        activity_types: frozenset[str] = frozenset(),
        timeout: float | None = None,
        max_tasks: int = 1,
    ) -> list[ActivityTaskInfo]:
        """Long-poll up to ``max_tasks`` activity attempts in one request; [] when none came."""
        wait = self._poll_wait(timeout)
        data = await self._call(
            "POST",
            f"{API_PREFIX}/worker/activity-tasks/poll-many",
            body=PollActivityTasksBody(
                namespace=namespace,
                task_queue=task_queue,
                worker_id=worker_id,
                activity_types=sorted(activity_types),
                timeout=wait,
                max_tasks=max_tasks,
            ),
            timeout=wait + self.margin,
        )
        return [] if data is None else decode_response(data, ActivityTaskBatch).tasks

    async def complete_activity(
        self, token: TaskToken, result: msgspec.Raw, *, identity: str = ""
    ) -> bool:
        """Record an attempt's result; False when the attempt was no longer current.

        Results reported while others are on their way travel together in the next request
        (``activity-tasks/complete-many``); each is still recorded and answered on its own.
        """
        body = CompleteActivityBody(token=token, result=result, identity=identity)
        try:
            return await self._activity_results.call(body)
        except ShardOwnershipLostError:
            # Another server owns the run's shard: the single route is forwarded there.
            reply = await self._post(Accepted, f"{API_PREFIX}/worker/activity-tasks/complete", body)
            return reply.accepted

    async def _complete_activities(
        self, items: Sequence[CompleteActivityBody]
    ) -> list[bool | BaseException]:
        reply = await self._post(
            CompleteActivitiesResponse,
            f"{API_PREFIX}/worker/activity-tasks/complete-many",
            CompleteActivitiesBody(completions=list(items)),
        )
        return [
            error_from_problem(r.problem) if r.problem is not None else bool(r.accepted)
            for r in reply.results
        ]

    async def fail_activity(
        self, token: TaskToken, failure: Failure, *, identity: str = ""
    ) -> bool:
        """Record a failed attempt; False when the attempt was no longer current."""
        reply = await self._post(
            Accepted,
            f"{API_PREFIX}/worker/activity-tasks/fail",
            FailActivityBody(token=token, failure=failure, identity=identity),
        )
        return reply.accepted

    async def report_activity_canceled(
        self, token: TaskToken, details: msgspec.Raw, *, identity: str = ""
    ) -> bool:
        """Report that an activity stopped after a cancel request."""
        reply = await self._post(
            Accepted,
            f"{API_PREFIX}/worker/activity-tasks/canceled",
            ActivityCanceledBody(token=token, details=details, identity=identity),
        )
        return reply.accepted

    async def heartbeat_activity(self, token: TaskToken, details: list[Any]) -> HeartbeatResponse:
        """Store an attempt's progress; ``cancel_requested`` tells it to stop."""
        return await self._post(
            HeartbeatResponse,
            f"{API_PREFIX}/worker/activity-tasks/heartbeat",
            HeartbeatBody(token=token, details=list(details)),
        )
