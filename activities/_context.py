"""Activity definitions and the context an activity runs in.

This module is the lowest layer that activity code touches: the built-in activities of
``cadenza.activities`` and user activities (through ``cadenza.sdk.activity``) both use it.
The worker sets the context (a :class:`contextvars.ContextVar`) before it calls an activity,
so :func:`info`, :func:`heartbeat` and :func:`is_cancelled` work in async activities and in
sync activities run in a thread pool alike.
"""

from __future__ import annotations

import contextvars
import inspect
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, overload

from cadenza.history import InvalidArgumentError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, kw_only=True)
class ActivityInfo:
    """What an activity knows about the attempt it runs in.

    Attributes:
        activity_id: The id given by the workflow (its sequence number by default).
        activity_type: The registered name of the activity.
        attempt: 1 for the first attempt, 2 for the first retry, and so on.
        idempotency_key: Stable across every attempt of this activity:
            ``{workflow_id}/{run_id}/{scheduled_event_id}``. Pass it to whatever the activity
            calls so that a retried attempt does not repeat the effect.
        workflow_id: Business id of the calling workflow.
        run_id: Run id of the calling workflow.
        workflow_type: Type of the calling workflow.
        namespace: Namespace of the calling workflow.
        task_queue: The task queue the activity was dispatched on.
        scheduled_event_id: Id of the ``activity_task_scheduled`` event.
        scheduled_time: When the activity was first scheduled.
        started_time: When this attempt started.
        start_to_close_timeout: Limit for one attempt, if any.
        schedule_to_close_timeout: Limit for all attempts together, if any.
        heartbeat_timeout: Longest allowed gap between heartbeats, if any.
        heartbeat_details: Details of the last heartbeat of a previous attempt, for resuming.
        is_local: Whether it runs as a local activity (inside the worker that runs the
            workflow task; ``scheduled_event_id`` is 0, heartbeats are ignored).
    """

    activity_id: str
    activity_type: str
    attempt: int
    idempotency_key: str
    workflow_id: str
    run_id: str
    workflow_type: str
    namespace: str
    task_queue: str
    scheduled_event_id: int
    scheduled_time: datetime
    started_time: datetime
    start_to_close_timeout: timedelta | None = None
    schedule_to_close_timeout: timedelta | None = None
    heartbeat_timeout: timedelta | None = None
    heartbeat_details: Sequence[Any] = ()
    is_local: bool = False


class ActivityContext:
    """The runtime side of an activity attempt; the worker creates one per attempt.

    Attributes:
        info: The attempt's :class:`ActivityInfo`.
        heartbeater: Called (from any thread) with the details of each heartbeat.
        cancelled: Set when cancellation of the activity was requested.
    """

    __slots__ = ("_cancelled", "heartbeater", "info")

    def __init__(
        self,
        *,
        info: ActivityInfo,
        heartbeater: Callable[[Sequence[Any]], None],
        cancelled: threading.Event | None = None,
    ) -> None:
        self.info = info
        self.heartbeater = heartbeater
        self._cancelled = cancelled

    @property
    def cancelled(self) -> threading.Event:
        """The cancellation event, made on first use: most attempts never look at it, and an
        event (a condition and its lock) costs more than the rest of the context."""
        event = self._cancelled
        if event is None:
            with _EVENT_LOCK:
                if self._cancelled is None:
                    self._cancelled = threading.Event()
                event = self._cancelled
        return event

    def __repr__(self) -> str:
        return f"ActivityContext(info={self.info!r})"


_EVENT_LOCK = threading.Lock()
_current: contextvars.ContextVar[ActivityContext] = contextvars.ContextVar("cadenza_activity")


def _context() -> ActivityContext:
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError("not in an activity: no activity context is set") from None


def info() -> ActivityInfo:
    """The :class:`ActivityInfo` of the running attempt."""
    return _context().info


def in_activity() -> bool:
    """Whether the caller runs inside an activity attempt."""
    return _current.get(None) is not None


def heartbeat(*details: Any) -> None:
    """Report progress; the last details are handed to the next attempt after a failure.

    Heartbeats are throttled by the worker, so calling this often is cheap. When the activity
    has a heartbeat timeout, an attempt that stops heartbeating for longer is timed out.
    """
    _context().heartbeater(details)


def is_cancelled() -> bool:
    """Whether cancellation of this activity was requested (for sync activities to poll)."""
    return _context().cancelled.is_set()


def set_context(ctx: ActivityContext) -> contextvars.Token[ActivityContext]:
    """Install ``ctx`` as the current activity context (used by workers and tests)."""
    return _current.set(ctx)


def reset_context(token: contextvars.Token[ActivityContext]) -> None:
    """Undo :func:`set_context`."""
    _current.reset(token)


@dataclass(frozen=True, kw_only=True)
class ActivityDefinition:
    """The frozen definition that :func:`defn` attaches to an activity function.

    Attributes:
        name: Registered activity type name.
        fn: The function.
        is_async: True for ``async def`` functions; sync ones run in the worker's thread pool.
        arg_types: Type hints of the positional parameters, used to decode arguments.
        return_type: Return type hint, used by callers to decode the result (``Any`` if none).
    """

    name: str
    fn: Callable[..., Any]
    is_async: bool
    arg_types: tuple[Any, ...]
    return_type: Any

    @staticmethod
    def of(fn: Callable[..., Any]) -> ActivityDefinition:
        """The definition attached to ``fn``; raises if it was not decorated."""
        defn_ = getattr(fn, "__cadenza_activity_definition__", None)
        if not isinstance(defn_, ActivityDefinition):
            raise InvalidArgumentError(
                "activity", f"{getattr(fn, '__qualname__', fn)!r} is not an @activity.defn function"
            )
        return defn_


def _type_hints(fn: Callable[..., Any]) -> tuple[tuple[Any, ...], Any]:
    import typing

    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: fall back to Any
        hints = {}
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    arg_types = tuple(hints.get(p.name, Any) for p in params)
    return arg_types, hints.get("return", Any)


@overload
def defn(fn: F) -> F: ...


@overload
def defn(*, name: str | None = None) -> Callable[[F], F]: ...


def defn(fn: F | None = None, *, name: str | None = None) -> F | Callable[[F], F]:
    """Mark a function as an activity.

    Usable bare (``@activity.defn``) or with a name (``@activity.defn(name="charge")``). The
    function may be ``async def`` (runs on the worker's event loop) or plain ``def`` (runs in
    the worker's thread pool). Its parameters are decoded from JSON using their type hints.

    Raises:
        InvalidArgumentError: if the target is not a function, or the name is empty.
    """

    def decorate(f: F) -> F:
        if not callable(f) or inspect.isclass(f):
            raise InvalidArgumentError("activity", f"@activity.defn needs a function, got {f!r}")
        activity_name = name if name is not None else f.__name__
        if not activity_name:
            raise InvalidArgumentError("name", "activity name must not be empty")
        arg_types, return_type = _type_hints(f)
        definition = ActivityDefinition(
            name=activity_name,
            fn=f,
            is_async=inspect.iscoroutinefunction(f),
            arg_types=arg_types,
            return_type=return_type,
        )
        f.__cadenza_activity_definition__ = definition  # type: ignore[attr-defined]
        return f

    if fn is not None:
        return decorate(fn)
    return decorate
