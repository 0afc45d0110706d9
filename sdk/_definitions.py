"""Workflow definitions: the ``@workflow.defn`` class decorator and its method decorators.

Decorators validate their target when the module is imported and attach a frozen definition,
so a mistake (two ``@workflow.run`` methods, a sync run method, a query that is a coroutine)
fails at import time, not when the first task arrives.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from cadenza.history import InvalidArgumentError

C = TypeVar("C", bound=type)
F = TypeVar("F", bound=Callable[..., Any])

_RUN_ATTR = "__cadenza_workflow_run__"
_SIGNAL_ATTR = "__cadenza_workflow_signal__"
_QUERY_ATTR = "__cadenza_workflow_query__"
_DEFN_ATTR = "__cadenza_workflow_definition__"


@dataclass(frozen=True, kw_only=True)
class HandlerDefinition:
    """A signal or query handler of a workflow class."""

    name: str
    method_name: str
    arg_types: tuple[Any, ...]
    is_async: bool


@dataclass(frozen=True, kw_only=True)
class WorkflowDefinition:
    """What ``@workflow.defn`` attaches to a workflow class.

    Attributes:
        name: Registered workflow type name (the class name unless given).
        cls: The class; one instance is created per execution.
        run_method: Name of the ``@workflow.run`` method.
        arg_types: Type hints of the run method's parameters.
        return_type: Its return type hint.
        signals: Signal handlers by signal name.
        queries: Query handlers by query name.
    """

    name: str
    cls: type
    run_method: str
    arg_types: tuple[Any, ...]
    return_type: Any
    signals: dict[str, HandlerDefinition] = field(default_factory=dict)
    queries: dict[str, HandlerDefinition] = field(default_factory=dict)

    @staticmethod
    def of(target: Any) -> WorkflowDefinition:
        """The definition of a workflow class, or of the class of a bound run method."""
        definition = getattr(target, _DEFN_ATTR, None)
        if definition is None and not inspect.isclass(target):
            owner = getattr(target, "__self__", None)
            definition = getattr(owner, _DEFN_ATTR, None)
        if not isinstance(definition, WorkflowDefinition):
            raise InvalidArgumentError(
                "workflow",
                f"{getattr(target, '__qualname__', target)!r} is not a @workflow.defn class",
            )
        return definition


def _hints(fn: Callable[..., Any], skip_self: bool) -> tuple[tuple[Any, ...], Any]:
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if skip_self and params:
        params = params[1:]
    return tuple(hints.get(p.name, Any) for p in params), hints.get("return", Any)


@overload
def defn(cls: C) -> C: ...


@overload
def defn(*, name: str | None = None) -> Callable[[C], C]: ...


def defn(cls: C | None = None, *, name: str | None = None) -> C | Callable[[C], C]:
    """Mark a class as a workflow. It needs exactly one ``async`` ``@workflow.run`` method.

    Raises:
        InvalidArgumentError: the class has no run method, several, or a sync one; a signal
            or query name is used twice.
    """

    def decorate(target: C) -> C:
        if not inspect.isclass(target):
            raise InvalidArgumentError("workflow", f"@workflow.defn needs a class, got {target!r}")
        run_methods: list[str] = []
        signals: dict[str, HandlerDefinition] = {}
        queries: dict[str, HandlerDefinition] = {}
        for attr_name, member in inspect.getmembers(target, inspect.isfunction):
            if getattr(member, _RUN_ATTR, False):
                run_methods.append(attr_name)
            signal_name = getattr(member, _SIGNAL_ATTR, None)
            if signal_name is not None:
                if signal_name in signals:
                    raise InvalidArgumentError("signal", f"signal {signal_name!r} defined twice")
                signals[signal_name] = HandlerDefinition(
                    name=signal_name,
                    method_name=attr_name,
                    arg_types=_hints(member, True)[0],
                    is_async=inspect.iscoroutinefunction(member),
                )
            query_name = getattr(member, _QUERY_ATTR, None)
            if query_name is not None:
                if query_name in queries:
                    raise InvalidArgumentError("query", f"query {query_name!r} defined twice")
                queries[query_name] = HandlerDefinition(
                    name=query_name,
                    method_name=attr_name,
                    arg_types=_hints(member, True)[0],
                    is_async=False,
                )
        if len(run_methods) != 1:
            raise InvalidArgumentError(
                "workflow",
                f"{target.__qualname__} needs exactly one @workflow.run method, has {len(run_methods)}",
            )
        run = getattr(target, run_methods[0])
        if not inspect.iscoroutinefunction(run):
            raise InvalidArgumentError(
                "workflow", f"{target.__qualname__}.{run_methods[0]} must be async"
            )
        arg_types, return_type = _hints(run, True)
        workflow_name = name if name is not None else target.__name__
        if not workflow_name:
            raise InvalidArgumentError("name", "workflow name must not be empty")
        definition = WorkflowDefinition(
            name=workflow_name,
            cls=target,
            run_method=run_methods[0],
            arg_types=arg_types,
            return_type=return_type,
            signals=signals,
            queries=queries,
        )
        setattr(target, _DEFN_ATTR, definition)
        # The run function is shared with the class: `Client.start_workflow(MyFlow.run, …)`.
        setattr(run, _DEFN_ATTR, definition)
        return target

    if cls is not None:
        return decorate(cls)
    return decorate


def run(fn: F) -> F:
    """Mark the ``async`` entry method of a workflow class."""
    if not inspect.iscoroutinefunction(fn):
        raise InvalidArgumentError("workflow.run", f"{fn.__qualname__} must be an async method")
    setattr(fn, _RUN_ATTR, True)
    return fn


@overload
def signal(fn: F) -> F: ...


@overload
def signal(*, name: str | None = None) -> Callable[[F], F]: ...


def signal(fn: F | None = None, *, name: str | None = None) -> F | Callable[[F], F]:
    """Mark a method as a signal handler (sync or async); its name is the method name unless
    given."""

    def decorate(f: F) -> F:
        setattr(f, _SIGNAL_ATTR, name or f.__name__)
        return f

    return decorate(fn) if fn is not None else decorate


@overload
def query(fn: F) -> F: ...


@overload
def query(*, name: str | None = None) -> Callable[[F], F]: ...


def query(fn: F | None = None, *, name: str | None = None) -> F | Callable[[F], F]:
    """Mark a sync method as a query handler: it reads the workflow's state and must not
    change it or await anything."""

    def decorate(f: F) -> F:
        if inspect.iscoroutinefunction(f):
            raise InvalidArgumentError("workflow.query", f"{f.__qualname__} must not be async")
        setattr(f, _QUERY_ATTR, name or f.__name__)
        return f

    return decorate(fn) if fn is not None else decorate
