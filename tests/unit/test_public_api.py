"""The public surface of each package changes only on purpose: update these lists with it."""

from __future__ import annotations

import importlib

import pytest

EXPECTED = {
    "cadenza.sdk": {
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
    },
    "cadenza.sdk.workflow": {
        "RetryPolicy",
        "WorkflowInfo",
        "continue_as_new",
        "defn",
        "execute_activity",
        "execute_child_workflow",
        "execute_local_activity",
        "in_workflow",
        "info",
        "is_replaying",
        "now",
        "patched",
        "query",
        "random",
        "run",
        "signal",
        "sleep",
        "start_activity",
        "start_child_workflow",
        "start_local_activity",
        "uuid4",
        "wait_condition",
    },
    "cadenza.sdk.activity": {
        "ActivityInfo",
        "defn",
        "heartbeat",
        "in_activity",
        "info",
        "is_cancelled",
    },
}


@pytest.mark.parametrize("module_name", sorted(EXPECTED))
def test_exports_are_pinned(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert set(module.__all__) >= EXPECTED[module_name]
    extra = set(module.__all__) - EXPECTED[module_name]
    assert not extra, f"new public names in {module_name}: {sorted(extra)} — pin them here"


@pytest.mark.parametrize(
    "module_name",
    [
        "cadenza.history",
        "cadenza.engine",
        "cadenza.timers",
        "cadenza.activities",
        "cadenza.frontend",
        "cadenza.sdk",
    ],
)
def test_every_exported_name_exists(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert len(set(module.__all__)) == len(module.__all__), "duplicate names in __all__"
    for name in module.__all__:
        assert hasattr(module, name), f"{module_name}.{name} is in __all__ but missing"
