"""The job file model: declarative multi-step jobs as msgspec structs.

A job file holds one job (its fields at the top level) or many (``jobs: [...]``). A job has
metadata, schedules (:mod:`cadenza.timers._spec`), the triggers it accepts, a timeout, a default
retry policy, variables and steps. Steps form a directed acyclic graph through ``depends_on``;
:func:`topological_order` gives the order the interpreter runs them in.

The structs only describe; :mod:`cadenza.engine._job_loader` reads files into them and
:mod:`cadenza.engine._job_check` validates what the types alone cannot (unique ids, known
references, cycles, templates). ``docs/jobs.md`` is the reference of the format.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeAlias

import msgspec
from msgspec import Meta

from cadenza.history import InvalidArgumentError
from cadenza.timers._spec import AnyScheduleSpec, Duration, SpecFieldError, format_path

__all__ = [
    "BUILTIN_STEP_TYPES",
    "JOB_NAME_PATTERN",
    "STEP_ID_PATTERN",
    "VARIABLE_NAME_PATTERN",
    "Compensate",
    "DependencyCycleError",
    "ForEach",
    "JobDefinition",
    "JobFile",
    "RetryPolicy",
    "Step",
    "TriggerKind",
    "Variable",
    "find_cycle",
    "topological_order",
]

JOB_NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9_.-]{0,98}[a-z0-9])?$"
"""A job name: a slug of lower-case letters, digits, ``_ . -`` (at most 100 characters)."""

STEP_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*$"
"""A step id: a name that expressions can reference (``fetch``, ``load_rows``, ``send-mail``)."""

VARIABLE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
"""A variable name, as written in ``${NAME}``."""

BUILTIN_STEP_TYPES = frozenset({"http", "sql", "email", "file", "sftp", "workflow"})
"""Step types every server knows; any registered activity name is allowed besides."""

TriggerKind: TypeAlias = Literal["scheduled", "manual", "webhook"]


class _Model(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Base of the job file structs."""


class RetryPolicy(_Model, kw_only=True):
    """How a failed step is retried. The delay before attempt ``n + 1`` is
    ``min(initial_interval * backoff_coefficient ** (n - 1), maximum_interval)``.

    Attributes:
        initial_interval: Delay before the first retry. Default 1 s.
        backoff_coefficient: Growth of the delay per attempt, at least 1. Default 2.0.
        maximum_interval: Cap of the delay. Default ``None``: 100 * ``initial_interval``.
        maximum_attempts: Attempts in total, the first included; 1 means no retry and 0 means
            unlimited (bounded by the step's timeout). Default 3.
        non_retryable_error_types: Error type names (``ApplicationError.type``) that fail the
            step at once.
    """

    initial_interval: Duration = timedelta(seconds=1)
    backoff_coefficient: Annotated[float, Meta(ge=1.0)] = 2.0
    maximum_interval: Duration | None = None
    maximum_attempts: Annotated[int, Meta(ge=0)] = 3
    non_retryable_error_types: list[str] = []

    @property
    def effective_maximum_interval(self) -> timedelta:
        """``maximum_interval``, or 100 * ``initial_interval`` when it is not set."""
        return self.maximum_interval or self.initial_interval * 100

    def errors(self) -> list[InvalidArgumentError]:
        """Problems the types do not catch (each names the field)."""
        problems = []
        if self.initial_interval <= timedelta(0):
            problems.append(InvalidArgumentError("initial_interval", "must be positive"))
        if self.maximum_interval is not None and self.maximum_interval < self.initial_interval:
            problems.append(
                InvalidArgumentError("maximum_interval", "must not be less than initial_interval")
            )
        return problems


class Variable(_Model, kw_only=True):
    """A job-scoped variable. In files, a plain value (``LIMIT: 100``) is short for
    ``{value: 100}``.

    Attributes:
        value: The value: text, a number, a boolean, a list or a mapping. For a secret, the
            encrypted token (``v1:...``, see ``docs/secrets.md``), or nothing to use the global
            secret of the same name.
        secret: A secret renders as a reference resolved by the activity at run time; its value
            is masked everywhere and never written to a history. Default false.
        description: What it is for.
    """

    value: Any = None
    secret: bool = False
    description: str = ""


class Compensate(_Model, kw_only=True):
    """``on_failure: {compensate: STEP}``: run step ``STEP`` when this one fails for good,
    then fail the job.

    Attributes:
        compensate: The id of the compensation step.
    """

    compensate: str


OnFailure: TypeAlias = Literal["fail", "continue"] | Compensate
"""``fail`` (default) fails the job; ``continue`` records the failure (status ``failed``) and goes
on as if the step had completed, so its dependents still run and may test
``steps.ID.status == "failed"``; ``{compensate: STEP}`` runs the compensation step, then fails the
job."""


class ForEach(_Model, kw_only=True):
    """Run a step once per item of a list (the partitioning pattern of Spring Batch).

    Attributes:
        items: The list, or a template that renders to one
            (``"{{ steps.list.output.files }}"``).
        concurrency: How many items run at the same time, at least 1. Default 1.
        item_var: The name under which templates see the current item; written ``as`` in
            files. Default ``item``. Inside the step, ``{{ item }}`` and ``{{ item_index }}``
            (the 0-based position, named ``<as>_index``) are available.
    """

    items: str | list[Any]
    concurrency: Annotated[int, Meta(ge=1)] = 1
    item_var: str = msgspec.field(name="as", default="item")

    @property
    def index_var(self) -> str:
        """The name of the 0-based item position (``item_index`` by default)."""
        return f"{self.item_var}_index"


_ID_SCHEMA = Meta(extra_json_schema={"pattern": STEP_ID_PATTERN})


class Step(_Model, kw_only=True):
    """One unit of work: an activity call with its configuration.

    Attributes:
        id: Unique within the job; other steps and templates refer to it.
        type: ``http``, ``sql``, ``email``, ``file``, ``sftp``, ``workflow`` (a child workflow),
            or the name of any registered activity.
        description: What it does.
        config: The activity's input; strings may hold templates (rendered just before the
            step runs).
        depends_on: Ids of the steps that must finish first.
        when: A condition; when false the step is skipped (status ``skipped``). Evaluated once,
            before ``for_each`` expands.
        retry: Retry policy; replaces the job's ``retry`` as a whole. Default: the job's.
        timeout: Limit of one attempt (start to close). Default: none.
        on_failure: ``fail`` (default), ``continue`` or ``{compensate: STEP}``.
        for_each: Run once per item of a list, see :class:`ForEach`.
    """

    id: Annotated[str, _ID_SCHEMA]
    type: str
    description: str = ""
    config: dict[str, Any] = {}
    depends_on: list[str] = []
    when: str | None = None
    retry: RetryPolicy | None = None
    timeout: Duration | None = None
    on_failure: OnFailure = "fail"
    for_each: ForEach | None = None

    @property
    def compensation_step(self) -> str | None:
        """The id named by ``on_failure: {compensate: ...}``, else ``None``."""
        return self.on_failure.compensate if isinstance(self.on_failure, Compensate) else None


class JobDefinition(_Model, kw_only=True):
    """A declarative job.

    Attributes:
        name: Unique slug (``nightly-reconciliation``): lower-case letters, digits, ``_ . -``.
        description: What the job does.
        owner: Who to ask (a team or an e-mail address).
        tags: Free labels for filtering.
        schedules: When it runs by itself (any kind and policy of ``cadenza.timers``).
        triggers: How a run may be started: ``scheduled``, ``manual``, ``webhook``. Default
            ``[scheduled, manual]``.
        execution_timeout: Limit of a whole run. Default: none.
        retry: Default retry policy of the steps.
        variables: Job-scoped variables; they override global variables of the same name.
        steps: At least one.
    """

    name: Annotated[str, Meta(extra_json_schema={"pattern": JOB_NAME_PATTERN})]
    description: str = ""
    owner: str = ""
    tags: list[str] = []
    schedules: list[AnyScheduleSpec] = []
    triggers: Annotated[
        list[TriggerKind], Meta(extra_json_schema={"default": ["scheduled", "manual"]})
    ] = msgspec.field(default_factory=lambda: ["scheduled", "manual"])
    execution_timeout: Duration | None = None
    retry: RetryPolicy = RetryPolicy()
    variables: dict[str, Variable] = {}
    steps: Annotated[list[Step], Meta(min_length=1)]

    def step(self, step_id: str) -> Step:
        """The step with this id.

        Raises:
            KeyError: No such step.
        """
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def retry_for(self, step: Step) -> RetryPolicy:
        """The retry policy that applies to ``step`` (its own, else the job's)."""
        return step.retry if step.retry is not None else self.retry

    def compensation_step_ids(self) -> frozenset[str]:
        """Ids of the steps named by some ``on_failure: {compensate: ...}``.

        They run only as compensation, never in the normal order.
        """
        return frozenset(s.compensation_step for s in self.steps if s.compensation_step)

    def schedule_id(self, index: int) -> str:
        """The stable id of the ``index``-th schedule: ``<job>/<schedule id or index>``."""
        spec = self.schedules[index]
        return f"{self.name}/{spec.id or index}"

    def resolve_variables(
        self,
        global_variables: Mapping[str, Any] | None = None,
        global_secrets: Collection[str] = (),
    ) -> tuple[dict[str, Any], frozenset[str]]:
        """Merge job variables over global ones, for a ``TemplateContext``.

        Args:
            global_variables: Global values by name (secret ones may be omitted or tokens).
            global_secrets: Names of the global variables that are secret.

        Returns:
            ``(values, secret_names)``. A job variable hides a global one of the same name,
            secret or not.
        """
        values = dict(global_variables or {})
        secrets = set(global_secrets)
        for name, variable in self.variables.items():
            values[name] = variable.value
            if variable.secret:
                secrets.add(name)
            else:
                secrets.discard(name)
        return values, frozenset(secrets)

    def without_secret_values(self) -> JobDefinition:
        """A copy whose secret variables have no value (for snapshots, exports and APIs)."""
        if not any(v.secret and v.value is not None for v in self.variables.values()):
            return self
        variables = {
            name: msgspec.structs.replace(v, value=None) if v.secret else v
            for name, v in self.variables.items()
        }
        return msgspec.structs.replace(self, variables=variables)


class JobFile(_Model, kw_only=True):
    """A file of several jobs and business calendars. A file may instead hold one job's fields
    at the top level.

    Attributes:
        jobs: The jobs, each with a unique name.
        calendars: Business calendars that schedules may name, in the format of
            ``docs/calendars.md`` (validated by ``cadenza.timers``' ``calendar_from_dict``).
    """

    jobs: list[JobDefinition] = []
    calendars: list[
        Annotated[
            dict[str, Any],
            Meta(
                description="A business calendar: name, weekend, holidays, ... (docs/calendars.md)"
            ),
        ]
    ] = []


# --------------------------------------------------------------------------- variables in files


def variable_hook(raw: Any, path: tuple[str | int, ...]) -> Any:
    """Turn a variable as written in a file into the :class:`Variable` form.

    ``{value: ..., secret: ..., description: ...}`` (with ``value`` or ``secret``) is the long
    form; anything else is a plain value. Checks the long form's fields itself, because
    msgspec cannot name the dict key of an error inside ``variables``.

    Raises:
        SpecFieldError: A long form with a field of the wrong type or an unknown field.
    """
    if isinstance(raw, dict) and ("value" in raw or "secret" in raw):
        for key in raw:
            if key not in ("value", "secret", "description"):
                raise SpecFieldError(
                    (*path, str(key)), "unknown field; known fields: value, secret, description"
                )
        if "secret" in raw and not isinstance(raw["secret"], bool):
            raise SpecFieldError((*path, "secret"), "expected a boolean (true or false)")
        if "description" in raw and not isinstance(raw["description"], str):
            raise SpecFieldError((*path, "description"), "expected a string")
        return raw
    return {"value": raw}


# --------------------------------------------------------------------------- graph


class DependencyCycleError(InvalidArgumentError):
    """Steps depend on each other in a circle.

    Attributes:
        cycle: The step ids along the cycle, the first repeated at the end
            (``["a", "b", "a"]``).
    """

    def __init__(self, cycle: Sequence[str], field: str = "steps") -> None:
        super().__init__(field, "dependency cycle: " + " -> ".join(cycle))
        self.cycle = list(cycle)


def find_cycle(steps: Iterable[Step]) -> list[str] | None:
    """A dependency cycle among ``steps`` (``["a", "b", "a"]``), or ``None``.

    Unknown ids in ``depends_on`` are ignored here (they are reported separately).
    """
    graph = {step.id: [d for d in step.depends_on] for step in steps}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for start in graph:
        if state.get(start):
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        trail: list[str] = [start]
        state[start] = 1
        while stack:
            node, index = stack[-1]
            deps = graph[node]
            if index < len(deps):
                stack[-1] = (node, index + 1)
                dep = deps[index]
                if dep not in graph:
                    continue
                if state.get(dep) == 1:
                    return [*trail[trail.index(dep) :], dep]
                if not state.get(dep):
                    state[dep] = 1
                    stack.append((dep, 0))
                    trail.append(dep)
            else:
                state[node] = 2
                stack.pop()
                trail.pop()
    return None


def topological_order(steps: Sequence[Step]) -> list[Step]:
    """The steps in an order where each comes after everything it depends on.

    Among steps that are ready at the same time, file order is kept, so the order is
    deterministic (workflow replays rely on it). Dependencies on ids that are not in
    ``steps`` are ignored.

    Raises:
        DependencyCycleError: The steps depend on each other in a circle (named in the error).
    """
    cycle = find_cycle(steps)
    if cycle is not None:
        raise DependencyCycleError(cycle)
    position = {step.id: i for i, step in enumerate(steps)}
    waiting = {
        step.id: len({d for d in step.depends_on if d in position and d != step.id})
        for step in steps
    }
    dependents: dict[str, list[str]] = {step.id: [] for step in steps}
    for step in steps:
        for dep in set(step.depends_on):
            if dep in position and dep != step.id:
                dependents[dep].append(step.id)
    ready = [position[s.id] for s in steps if waiting[s.id] == 0]
    heapq.heapify(ready)
    out: list[Step] = []
    while ready:
        step = steps[heapq.heappop(ready)]
        out.append(step)
        for child in dependents[step.id]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, position[child])
    return out


def upstream(steps: Sequence[Step]) -> dict[str, frozenset[str]]:
    """For every step id, the ids it depends on directly or transitively."""
    by_id = {step.id: step for step in steps}
    memo: dict[str, frozenset[str]] = {}

    def visit(step_id: str, seen: frozenset[str]) -> frozenset[str]:
        if step_id in memo:
            return memo[step_id]
        result: set[str] = set()
        for dep in by_id[step_id].depends_on:
            if dep in by_id and dep not in seen:
                result.add(dep)
                result |= visit(dep, seen | {dep})
        memo[step_id] = frozenset(result)
        return memo[step_id]

    return {step.id: visit(step.id, frozenset({step.id})) for step in steps}


def step_path(index: int, *rest: str | int) -> str:
    """``steps[2].retry`` style path of a step field."""
    return format_path(("steps", index, *rest))
