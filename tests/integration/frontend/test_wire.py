"""The wire format: errors survive the trip server → problem+json → client, field names of
decode errors, and the body structs refuse unknown fields."""

from __future__ import annotations

import msgspec
import pytest

from cadenza.engine import StaleTaskError
from cadenza.frontend._wire import (
    AccessDeniedError,
    CompleteWorkflowTaskBody,
    Problem,
    ServerError,
    StartWorkflowBody,
    decode_body,
    decode_problem,
    encode,
    error_from_problem,
    problem_from_error,
)
from cadenza.history import (
    CadenzaError,
    ConditionFailedError,
    InvalidArgumentError,
    NonDeterminismError,
    NotFoundError,
    PayloadEncodingError,
    PayloadTooLargeError,
    QueryFailedError,
    ShardOwnershipLostError,
    StoreError,
    StoreUnavailableError,
    UnknownTypeError,
    WorkflowAlreadyStartedError,
    WorkflowClosedError,
    WorkflowNotFoundError,
)

ERRORS: list[CadenzaError] = [
    InvalidArgumentError("workflow_id", "must be a non-empty string"),
    PayloadEncodingError("args[0]", "cannot be encoded as JSON"),
    PayloadTooLargeError("input", "payload is 3000000 bytes"),
    UnknownTypeError("workflow_type", "'X' is not registered"),
    WorkflowNotFoundError("order/1"),
    WorkflowNotFoundError("order/1", "run-9"),
    WorkflowAlreadyStartedError("order/1", "run-1", "a run with this id is running"),
    WorkflowClosedError("order/1", "run-1", "completed", "signal"),
    ShardOwnershipLostError(3, 17),
    StaleTaskError("workflow task r/5 attempt 1 is no longer current"),
    QueryFailedError("no worker answered query 'q' within 10 s"),
    NotFoundError("schedule 'x' not found"),
    StoreError("run r: too many concurrent writers"),
    ConditionFailedError("lost"),
    StoreUnavailableError("database unreachable"),
    NonDeterminismError("command mismatch"),
    CadenzaError("something"),
]

ATTRS = ("field", "reason", "workflow_id", "run_id", "workflow_status", "operation", "shard_id")


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_errors_round_trip(error: CadenzaError) -> None:
    problem = problem_from_error(error, instance="/api/v1/x")
    assert problem.status == getattr(error, "status", 500)
    wire = encode(problem)
    rebuilt = error_from_problem(decode_problem(wire, problem.status, ""))
    assert type(rebuilt) is type(error)
    assert str(rebuilt) == str(error)
    for name in ATTRS:
        assert getattr(rebuilt, name, None) == getattr(error, name, None), name


def test_unknown_classes_fall_back_by_content() -> None:
    class SecretError(InvalidArgumentError):
        pass

    rebuilt = error_from_problem(problem_from_error(SecretError("key", "unknown key id")))
    assert type(rebuilt) is InvalidArgumentError
    assert (rebuilt.field, rebuilt.reason) == ("key", "unknown key id")

    def plain(status: int) -> CadenzaError:
        return error_from_problem(Problem(title="t", status=status, detail="d"))

    assert type(plain(404)) is NotFoundError
    assert type(plain(503)) is StoreUnavailableError
    assert type(plain(413)) is PayloadTooLargeError
    denied = plain(401)
    assert isinstance(denied, AccessDeniedError) and denied.status == 401
    failed = plain(502)
    assert isinstance(failed, ServerError) and failed.status == 502

    not_json = decode_problem(b"<html>Bad Gateway</html>", 502, "Bad Gateway")
    assert not_json.status == 502 and "Bad Gateway" in not_json.detail


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b'{"workflow_id": "w", "workflow_type": "t", "task_queue": "q", "x": 1}', "x"),
        (b'{"workflow_type": "t", "task_queue": "q"}', "workflow_id"),
        (b'{"workflow_id": 1, "workflow_type": "t", "task_queue": "q"}', "workflow_id"),
        (
            b'{"workflow_id": "w", "workflow_type": "t", "task_queue": "q",'
            b' "retry_policy": {"maximum_attempts": "x"}}',
            "retry_policy.maximum_attempts",
        ),
        (
            b'{"workflow_id": "w", "workflow_type": "t", "task_queue": "q",'
            b' "retry_policy": {"bogus": 1}}',
            "retry_policy.bogus",
        ),
        (b"{oops", "body"),
        (b'"a string"', "body"),
    ],
)
def test_decode_errors_name_the_field(data: bytes, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        decode_body(data, StartWorkflowBody)
    assert info.value.field == field


def test_empty_body_is_an_empty_object_and_commands_decode() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        decode_body(b"", StartWorkflowBody)
    assert info.value.field == "workflow_id"
    body = decode_body(
        b'{"token": [1, "default", "w", "r", 2, 1], "commands": ['
        b'{"command": "start_timer", "timer_id": "t", "duration": 1.5},'
        b'{"command": "complete_workflow", "result": {"a": [1, 2]}}]}',
        CompleteWorkflowTaskBody,
    )
    assert body.token.workflow_id == "w" and body.token.attempt == 1
    assert body.commands[0].duration == 1.5
    assert bytes(body.commands[1].result) == b'{"a": [1, 2]}'  # payload bytes kept verbatim
    # And the encoded form decodes to the same thing.
    assert msgspec.json.decode(encode(body), type=CompleteWorkflowTaskBody) == body
