"""The one error tree of Cadenza.

The root is :class:`CadenzaError`. It lives in ``cadenza.history`` because that is the bottom
layer: every other part may import it, and it imports nothing of theirs.

Three branches:

* :class:`FailureError` — failures that are written into a history (an activity that failed,
  a workflow that failed, a cancellation, a timeout). They carry a message, a type name, a
  non-retryable flag, JSON-safe details and a cause chain, and they convert to and from the
  :class:`Failure` struct that is stored in events.
* :class:`StoreError` — the database said no: a lost compare-and-swap, a stale fencing token,
  an unreachable server. Driver exceptions are translated into this branch in one place
  (``cadenza.history._store``).
* :class:`InvalidArgumentError` and friends — bad input from a caller, rejected before anything
  is written. Each names the field and the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import msgspec


class Failure(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A failure as it is stored in a history event.

    Attributes:
        message: Human-readable message.
        type: Error type name (the exception class name, or an application-chosen name).
        source: Where it came from: ``application``, ``timeout``, ``canceled``, ``terminated``,
            ``activity``, ``child_workflow``, ``server``.
        non_retryable: True when a retry policy must not retry it.
        details: JSON-safe details given by the code that raised it.
        stack_trace: The formatted stack trace, when one is known.
        cause: The failure that caused this one, if any.
    """

    message: str
    type: str = "Error"
    source: str = "application"
    non_retryable: bool = False
    details: list[Any] = []
    stack_trace: str = ""
    next_retry_delay: float | None = None
    cause: Failure | None = None


class CadenzaError(Exception):
    """Root of every error Cadenza raises on purpose."""


# --------------------------------------------------------------------------- bad input


class InvalidArgumentError(CadenzaError, ValueError):
    """A caller gave a value that cannot be accepted. Nothing was written.

    Attributes:
        field: The name (or dotted path) of the offending field.
        reason: Why it was rejected.
    """

    status = 400

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class PayloadEncodingError(InvalidArgumentError):
    """A value could not be encoded as a JSON payload."""


class PayloadTooLargeError(InvalidArgumentError):
    """An encoded payload is larger than the configured limit."""

    status = 413


class NotFoundError(CadenzaError, LookupError):
    """The named object does not exist."""

    status = 404


class WorkflowNotFoundError(NotFoundError):
    """No execution matches the workflow id (and run id, when one was given)."""

    def __init__(self, workflow_id: str, run_id: str | None = None) -> None:
        where = f"{workflow_id!r}" + (f" run {run_id!r}" if run_id else "")
        super().__init__(f"workflow {where} not found")
        self.workflow_id = workflow_id
        self.run_id = run_id


class WorkflowAlreadyStartedError(CadenzaError):
    """A start was rejected because of the workflow id conflict or reuse policy."""

    status = 409

    def __init__(self, workflow_id: str, run_id: str, reason: str) -> None:
        super().__init__(f"workflow {workflow_id!r} already started (run {run_id}): {reason}")
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.reason = reason


class WorkflowClosedError(CadenzaError):
    """The operation needs a running execution, but this one has closed."""

    status = 409

    def __init__(self, workflow_id: str, run_id: str, status: str, operation: str) -> None:
        super().__init__(
            f"cannot {operation}: workflow {workflow_id!r} run {run_id} is already {status}"
        )
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.workflow_status = status
        self.operation = operation


class UnknownTypeError(InvalidArgumentError):
    """A workflow or activity type that no worker on the task queue has registered."""


class QueryFailedError(CadenzaError):
    """A query could not be answered (unknown query name, handler raised, no worker)."""

    status = 400


# --------------------------------------------------------------------------- store


class StoreError(CadenzaError):
    """The database refused or failed an operation."""

    status = 503


class ConditionFailedError(StoreError):
    """A compare-and-swap lost: someone else appended first. Retry from a fresh read.

    Attributes:
        lost_runs: When a group-commit batch lost, the ``(shard_id, run_id)`` of each write that
            lost (empty when unknown, e.g. a unique index refused a row), so that the others can
            be written again without them.
    """

    def __init__(self, message: str, *, lost_runs: frozenset[tuple[int, str]] = frozenset()):
        super().__init__(message)
        self.lost_runs = lost_runs


class ShardOwnershipLostError(StoreError):
    """This process no longer owns the shard (its fencing token is stale). It must not write."""

    def __init__(self, shard_id: int, range_id: int) -> None:
        super().__init__(f"shard {shard_id}: ownership lost (stale range_id {range_id})")
        self.shard_id = shard_id
        self.range_id = range_id


class StoreUnavailableError(StoreError):
    """The database could not be reached or timed out."""


# --------------------------------------------------------------------------- failures


class FailureError(CadenzaError):
    """Base of failures that are recorded in histories.

    Attributes:
        message: The message.
        failure: The stored form, when this error was rebuilt from a history.
    """

    source = "application"

    def __init__(self, message: str, *, failure: Failure | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.failure = failure

    @property
    def cause(self) -> BaseException | None:
        """The error this one wraps, if any."""
        return self.__cause__


class ApplicationError(FailureError):
    """An error raised on purpose by workflow or activity code.

    Raised from an activity, it fails the attempt (retried unless ``non_retryable``); raised
    from a workflow, it fails the workflow.

    Args:
        message: Human-readable message.
        *details: JSON-safe details.
        type: Type name used by ``RetryPolicy.non_retryable_error_types``; defaults to the
            class name.
        non_retryable: If True, no retry policy retries it.
        next_retry_delay: Overrides the retry policy's back-off for the next attempt (used
            e.g. for HTTP ``Retry-After``).
    """

    def __init__(
        self,
        message: str,
        *details: Any,
        type: str | None = None,
        non_retryable: bool = False,
        next_retry_delay: timedelta | None = None,
        failure: Failure | None = None,
    ) -> None:
        super().__init__(message, failure=failure)
        self.details: Sequence[Any] = details
        self.type = type or self.__class__.__name__
        self.non_retryable = non_retryable
        self.next_retry_delay = next_retry_delay


class CancelledError(FailureError):
    """The execution or activity was canceled."""

    source = "canceled"


class TerminatedError(FailureError):
    """The execution was terminated by an operator."""

    source = "terminated"


class TimeoutError(FailureError):
    """A timeout elapsed.

    Attributes:
        timeout_type: ``start_to_close``, ``schedule_to_close``, ``schedule_to_start``,
            ``heartbeat``, ``workflow_run`` or ``workflow_execution``.
        last_heartbeat_details: Details of the last heartbeat, for heartbeat timeouts.
    """

    source = "timeout"

    def __init__(
        self,
        message: str,
        *,
        timeout_type: str,
        last_heartbeat_details: Sequence[Any] = (),
        failure: Failure | None = None,
    ) -> None:
        super().__init__(message, failure=failure)
        self.timeout_type = timeout_type
        self.last_heartbeat_details = last_heartbeat_details


class ActivityError(FailureError):
    """An activity failed for good; the reason is in ``__cause__``."""

    source = "activity"

    def __init__(
        self,
        message: str,
        *,
        activity_type: str,
        activity_id: str,
        scheduled_event_id: int,
        attempt: int,
        retry_state: str,
        failure: Failure | None = None,
    ) -> None:
        super().__init__(message, failure=failure)
        self.activity_type = activity_type
        self.activity_id = activity_id
        self.scheduled_event_id = scheduled_event_id
        self.attempt = attempt
        self.retry_state = retry_state


class ChildWorkflowError(FailureError):
    """A child workflow failed, timed out, was canceled or terminated; see ``__cause__``."""

    source = "child_workflow"

    def __init__(
        self,
        message: str,
        *,
        workflow_type: str,
        workflow_id: str,
        run_id: str,
        failure: Failure | None = None,
    ) -> None:
        super().__init__(message, failure=failure)
        self.workflow_type = workflow_type
        self.workflow_id = workflow_id
        self.run_id = run_id


class WorkflowFailureError(CadenzaError):
    """Raised by a client's ``result()`` when the workflow did not complete; see ``__cause__``."""

    def __init__(self, workflow_id: str, run_id: str, status: str) -> None:
        super().__init__(f"workflow {workflow_id!r} run {run_id} {status}")
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.status = status


class NonDeterminismError(CadenzaError):
    """Replaying a history produced a command that does not match the recorded event."""


# --------------------------------------------------------------------------- conversion


def _format_stack(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, chain=False))


def failure_from_exception(exc: BaseException, *, with_stack: bool = True) -> Failure:
    """Convert an exception (and its ``__cause__`` chain) into a stored :class:`Failure`."""
    cause = exc.__cause__
    cause_failure = failure_from_exception(cause, with_stack=with_stack) if cause else None
    stack = _format_stack(exc) if with_stack else ""
    if isinstance(exc, ApplicationError):
        return Failure(
            message=exc.message,
            type=exc.type,
            source="application",
            non_retryable=exc.non_retryable,
            details=_json_safe_list(exc.details),
            stack_trace=stack,
            next_retry_delay=(
                exc.next_retry_delay.total_seconds() if exc.next_retry_delay is not None else None
            ),
            cause=cause_failure,
        )
    if isinstance(exc, TimeoutError):
        return Failure(
            message=exc.message,
            type="TimeoutError",
            source="timeout",
            details=[exc.timeout_type, *_json_safe_list(exc.last_heartbeat_details)],
            stack_trace=stack,
            cause=cause_failure,
        )
    if isinstance(exc, FailureError):
        if exc.failure is not None:
            return exc.failure
        return Failure(
            message=exc.message,
            type=type(exc).__name__,
            source=exc.source,
            stack_trace=stack,
            cause=cause_failure,
        )
    return Failure(
        message=str(exc) or type(exc).__name__,
        type=type(exc).__name__,
        source="application",
        stack_trace=stack,
        cause=cause_failure,
    )


def exception_from_failure(failure: Failure) -> FailureError:
    """Rebuild an exception from a stored :class:`Failure` (the inverse of the above)."""
    exc: FailureError
    if failure.source == "timeout":
        timeout_type = failure.details[0] if failure.details else "unknown"
        exc = TimeoutError(
            failure.message,
            timeout_type=str(timeout_type),
            last_heartbeat_details=failure.details[1:],
            failure=failure,
        )
    elif failure.source == "canceled":
        exc = CancelledError(failure.message, failure=failure)
    elif failure.source == "terminated":
        exc = TerminatedError(failure.message, failure=failure)
    else:
        exc = ApplicationError(
            failure.message,
            *failure.details,
            type=failure.type,
            non_retryable=failure.non_retryable,
            next_retry_delay=(
                timedelta(seconds=failure.next_retry_delay)
                if failure.next_retry_delay is not None
                else None
            ),
            failure=failure,
        )
    if failure.cause is not None:
        exc.__cause__ = exception_from_failure(failure.cause)
    return exc


def _json_safe_list(values: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        try:
            out.append(msgspec.json.decode(msgspec.json.encode(value)))
        except (TypeError, msgspec.EncodeError, ValueError):
            out.append(repr(value))
    return out
