"""What platform teams import: ``workflow``, ``activity``, ``Client``, ``Worker``, ``testing``.

Example::

    from cadenza.sdk import Client, Worker, activity, workflow
"""

from cadenza.history import (
    ActivityError,
    ApplicationError,
    CadenzaError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
    InvalidArgumentError,
    NonDeterminismError,
    PayloadEncodingError,
    PayloadTooLargeError,
    QueryFailedError,
    TerminatedError,
    TimeoutError,
    UnknownTypeError,
    WorkflowAlreadyStartedError,
    WorkflowClosedError,
    WorkflowFailureError,
    WorkflowNotFoundError,
)
from cadenza.sdk import activity, workflow
from cadenza.sdk._client import Client, WorkflowHandle
from cadenza.sdk._common import RetryPolicy
from cadenza.sdk._worker import Worker

__all__ = [
    "ActivityError",
    "ApplicationError",
    "CadenzaError",
    "CancelledError",
    "ChildWorkflowError",
    "Client",
    "FailureError",
    "InvalidArgumentError",
    "NonDeterminismError",
    "PayloadEncodingError",
    "PayloadTooLargeError",
    "QueryFailedError",
    "RetryPolicy",
    "TerminatedError",
    "TimeoutError",
    "UnknownTypeError",
    "Worker",
    "WorkflowAlreadyStartedError",
    "WorkflowClosedError",
    "WorkflowFailureError",
    "WorkflowHandle",
    "WorkflowNotFoundError",
    "activity",
    "workflow",
]
