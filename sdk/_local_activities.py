"""Running local activities inside the worker that runs the workflow task.

A local activity is not dispatched through the server. When the workflow code waits and local
activities are pending, the worker runs them all (concurrently), applying each one's retry
policy with local back-off, and hands the outcomes back to the workflow instance, which goes on
in the same workflow task. Each final outcome becomes a ``local_activity`` marker command,
recorded with the task's completion; replay returns the recorded outcome and never runs the
function again.

Nothing is recorded before the task completes: if the worker dies first, the task times out
and another worker runs the local activities again (at least once, like normal activities).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from cadenza.activities import ActivityContext, ActivityDefinition, ActivityInfo
from cadenza.engine import decide_retry
from cadenza.history import (
    ApplicationError,
    Failure,
    LocalActivityMarker,
    PayloadEncodingError,
    failure_from_exception,
)
from cadenza.history import TimeoutError as ActivityTimeoutError
from cadenza.sdk._converter import decode_args, encode_value
from cadenza.sdk._instance import LocalActivityCall, WorkflowInstance

Invoker = Callable[[ActivityDefinition, list[Any], ActivityContext], Awaitable[Any]]


def decode_activity_args(definition: ActivityDefinition, payload: msgspec.Raw) -> list[Any]:
    """An activity's arguments, typed by its signature; input that does not fit fails the
    attempt for good (retrying cannot fix it)."""
    try:
        return decode_args(payload, definition.arg_types)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ApplicationError(
            f"arguments do not match activity {definition.name!r}: "
            f"{_which_argument(definition, payload) or exc}",
            type="InvalidInput",
            non_retryable=True,
        ) from None


def _which_argument(definition: ActivityDefinition, payload: msgspec.Raw) -> str | None:
    """'argument 1 (order: Order): Expected `object`, got `str`', for the first argument that
    does not fit its parameter; None if the payload is not a JSON array at all."""
    try:
        raws = msgspec.json.decode(bytes(payload), type=list[msgspec.Raw])
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    names = [
        p.name
        for p in inspect.signature(definition.fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    for index, (raw, type_) in enumerate(zip(raws, definition.arg_types, strict=False)):
        try:
            decode_args(msgspec.json.encode([raw]), [type_])
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            name = names[index] if index < len(names) else f"arg{index + 1}"
            shown = getattr(type_, "__name__", None) or repr(type_)
            return f"argument {index + 1} ({name}: {shown}): {exc}"
    return None


def _ignore_heartbeat(details: Sequence[Any]) -> None:
    """Local activities do not heartbeat: there is no server-side attempt to keep alive."""


def _now() -> datetime:
    return datetime.now(UTC)


async def run_local_activity(
    instance: WorkflowInstance,
    call: LocalActivityCall,
    definition: ActivityDefinition,
    invoke: Invoker,
) -> LocalActivityMarker:
    """Run one local activity with its retries; returns its final outcome (never raises,
    except when cancelled)."""
    loop = asyncio.get_running_loop()
    started = _now()
    start_ms = int(loop.time() * 1000)
    deadline = loop.time() + call.schedule_to_close_timeout
    attempt = 0

    def outcome(
        *, result: msgspec.Raw | None = None, failure: Failure | None = None, retry_state: str = ""
    ) -> LocalActivityMarker:
        return LocalActivityMarker(
            seq=call.seq,
            activity_id=call.activity_id,
            activity_type=call.activity_type,
            attempt=attempt,
            result=result if result is not None else msgspec.Raw(b"null"),
            failure=failure,
            retry_state=retry_state,
            started_time=started,
            completed_time=_now(),
        )

    while True:
        attempt += 1
        remaining = deadline - loop.time()
        if call.start_to_close_timeout < remaining:
            limit, timeout_type = call.start_to_close_timeout, "start_to_close"
        else:
            limit, timeout_type = max(remaining, 0.0), "schedule_to_close"
        info = ActivityInfo(
            activity_id=call.activity_id,
            activity_type=call.activity_type,
            attempt=attempt,
            idempotency_key=f"{instance.workflow_id}/{instance.run_id}/local-{call.seq}",
            workflow_id=instance.workflow_id,
            run_id=instance.run_id,
            workflow_type=instance.definition.name,
            namespace=instance.namespace,
            task_queue=instance.task_queue,
            scheduled_event_id=0,
            scheduled_time=started,
            started_time=_now(),
            start_to_close_timeout=timedelta(seconds=call.start_to_close_timeout),
            schedule_to_close_timeout=timedelta(seconds=call.schedule_to_close_timeout),
            is_local=True,
        )
        ctx = ActivityContext(info=info, heartbeater=_ignore_heartbeat)
        failure: Failure | None = None
        timed_out = False
        try:
            payload = await _attempt(call, definition, invoke, ctx, limit)
        except _AttemptTimedOut:
            timed_out = True
            failure = failure_from_exception(
                ActivityTimeoutError(
                    f"local activity {call.activity_type!r} attempt {attempt} timed out "
                    f"({timeout_type}, {limit:g} s)",
                    timeout_type=timeout_type,
                ),
                with_stack=False,
            )
            if timeout_type == "schedule_to_close":
                return outcome(failure=failure, retry_state="timeout")
        except Exception as exc:  # the activity's failure is its outcome
            failure = failure_from_exception(exc)
        else:
            return outcome(result=payload)
        now_ms = int(loop.time() * 1000)
        retry_state, next_ms = decide_retry(
            call.retry_policy,
            attempt=attempt,
            failure=None if timed_out else failure,
            now_ms=now_ms,
            scheduled_ms=start_ms,
            schedule_to_close=call.schedule_to_close_timeout,
        )
        if retry_state != "in_progress" or next_ms is None:
            return outcome(failure=failure, retry_state=retry_state)
        await asyncio.sleep((next_ms - now_ms) / 1000)


class _AttemptTimedOut(Exception):
    """An attempt ran past its start-to-close timeout."""


async def _attempt(
    call: LocalActivityCall,
    definition: ActivityDefinition,
    invoke: Invoker,
    ctx: ActivityContext,
    limit: float,
) -> msgspec.Raw:
    """One attempt, awaited in the caller's task under a start-to-close timeout.

    The activity runs in this task rather than a task of its own: an attempt costs one timer,
    where a separate task cost a task, a wait future, a timer and their callbacks. At the
    timeout the context's ``cancelled`` is set and then the task is cancelled. An activity
    that swallows the cancellation holds the attempt until it returns, and the attempt still
    counts as timed out; the workflow task's own deadline hands the batch over to the next
    task meanwhile.
    """
    args = decode_activity_args(definition, call.input)
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("a local activity attempt runs in a task")
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        ctx.cancelled.set()  # before the cancellation, so the activity's cleanup sees it
        task.cancel()

    timer = asyncio.get_running_loop().call_later(limit, expire)
    try:
        result = await invoke(definition, args, ctx)
    except asyncio.CancelledError:
        ctx.cancelled.set()
        if expired and task.uncancel() == 0:
            raise _AttemptTimedOut from None
        raise  # cancelled from outside (the instance was dropped)
    finally:
        timer.cancel()
    if expired:  # it swallowed the cancellation; the attempt still overran
        task.uncancel()
        raise _AttemptTimedOut
    try:
        return encode_value(result, "result")
    except PayloadEncodingError as exc:
        raise ApplicationError(str(exc), type="PayloadEncodingError", non_retryable=True) from None
