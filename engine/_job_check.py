"""Checks of a job definition that its types alone cannot express.

Used by the loader (every load is checked) and by ``cadenza lint``. Each problem is an
:class:`Issue` with the path of the field inside the job, so the loader can point at the line
of the file.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from cadenza.engine._job_expr import ROOT_NAMES, Reference, compile_expression
from cadenza.engine._job_model import (
    BUILTIN_STEP_TYPES,
    JOB_NAME_PATTERN,
    STEP_ID_PATTERN,
    VARIABLE_NAME_PATTERN,
    JobDefinition,
    RetryPolicy,
    Step,
    find_cycle,
    upstream,
)
from cadenza.engine._job_template import compile_template, iter_strings
from cadenza.engine._job_values import TemplateError
from cadenza.timers._spec import format_path

__all__ = ["Issue", "check_job"]

Path = tuple[str | int, ...]
Severity = Literal["error", "warning"]

_JOB_NAME = re.compile(JOB_NAME_PATTERN)
_STEP_ID = re.compile(STEP_ID_PATTERN)
_VARIABLE = re.compile(VARIABLE_NAME_PATTERN)
_STEP_FIELDS = ("output", "status")


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem of a job, located by field path.

    Attributes:
        path: Path of the field inside the job (``("steps", 2, "depends_on", 0)``).
        message: What is wrong.
        severity: ``error`` (the job cannot be loaded) or ``warning``.
    """

    path: Path
    message: str
    severity: Severity = "error"

    @property
    def field(self) -> str:
        """The path formatted as ``steps[2].depends_on[0]``."""
        return format_path(self.path)


def check_job(
    job: JobDefinition,
    *,
    step_types: Collection[str] | None = None,
    global_variables: Collection[str] | None = None,
    unknown_variables: Severity | None = "error",
) -> list[Issue]:
    """Every problem of ``job`` that its types do not catch.

    Args:
        job: The decoded job.
        step_types: Registered activity names allowed as step types, besides the built-in
            ones (``http``, ``sql``, ``email``, ``file``, ``sftp``, ``workflow``).
        global_variables: Names of the global variables. ``None``: unknown; then references
            to variables that the job does not define are not reported.
        unknown_variables: Severity of a reference to a variable that is neither the job's nor
            global (``None``: not reported).

    Returns:
        The issues in file order; empty when the job is valid.
    """
    return list(_Checker(job, step_types, global_variables, unknown_variables).run())


class _Checker:
    def __init__(
        self,
        job: JobDefinition,
        step_types: Collection[str] | None,
        global_variables: Collection[str] | None,
        unknown_variables: Severity | None,
    ) -> None:
        self.job = job
        self.types = BUILTIN_STEP_TYPES | frozenset(step_types or ())
        self.globals = None if global_variables is None else frozenset(global_variables)
        self.unknown_variables = unknown_variables
        self.ids = {step.id for step in job.steps}
        self.compensation = job.compensation_step_ids()

    def run(self) -> Iterator[Issue]:
        job = self.job
        if not _JOB_NAME.match(job.name):
            yield Issue(
                ("name",),
                f"{job.name!r} is not a valid job name: use lower-case letters, digits, "
                "'_', '.', '-' (at most 100, starting and ending with a letter or digit)",
            )
        yield from self._triggers()
        yield from self._schedules()
        if job.execution_timeout is not None and job.execution_timeout <= timedelta(0):
            yield Issue(("execution_timeout",), "must be positive")
        yield from _retry(job.retry, ("retry",))
        for name in job.variables:
            if not _VARIABLE.match(name):
                yield Issue(
                    ("variables", name),
                    f"{name!r} is not a valid variable name (letters, digits, '_'; "
                    "not starting with a digit)",
                )
        yield from self._steps()

    def _triggers(self) -> Iterator[Issue]:
        seen: set[str] = set()
        for i, trigger in enumerate(self.job.triggers):
            if trigger in seen:
                yield Issue(("triggers", i), f"trigger {trigger!r} is listed twice")
            seen.add(trigger)
        if not self.job.triggers:
            yield Issue(("triggers",), "at least one trigger is needed")
        if self.job.schedules and "scheduled" not in seen:
            yield Issue(
                ("triggers",),
                "the job has schedules but does not allow the 'scheduled' trigger",
            )

    def _schedules(self) -> Iterator[Issue]:
        seen: dict[str, int] = {}
        for i, spec in enumerate(self.job.schedules):
            for problem in spec.errors():
                parts: list[str | int] = list(problem.field.split("."))
                yield Issue(("schedules", i, *parts), problem.reason)
            if spec.id:
                if spec.id in seen:
                    yield Issue(
                        ("schedules", i, "id"),
                        f"duplicate schedule id {spec.id!r} (first at schedules[{seen[spec.id]}])",
                    )
                seen.setdefault(spec.id, i)

    def _steps(self) -> Iterator[Issue]:
        first: dict[str, int] = {}
        for i, step in enumerate(self.job.steps):
            here: Path = ("steps", i)
            if not _STEP_ID.match(step.id) or len(step.id) > 64:
                yield Issue(
                    (*here, "id"),
                    f"{step.id!r} is not a valid step id: letters, digits, '_' and inner '-', "
                    "not starting with a digit, at most 64 characters",
                )
            if step.id in first:
                yield Issue(
                    (*here, "id"),
                    f"duplicate step id {step.id!r} (first at steps[{first[step.id]}])",
                )
            else:
                first[step.id] = i
            if step.type not in self.types:
                known = ", ".join(sorted(self.types))
                yield Issue(
                    (*here, "type"),
                    f"unknown step type {step.type!r} (known: {known}; register the activity "
                    "or pass it to lint with --step-type)",
                )
            yield from self._step_links(step, here)
            if step.timeout is not None and step.timeout <= timedelta(0):
                yield Issue((*here, "timeout"), "must be positive")
            if step.retry is not None:
                yield from _retry(step.retry, (*here, "retry"))
            yield from self._for_each(step, here)
        cycle = find_cycle(self.job.steps)
        ancestors: dict[str, frozenset[str]] | None = None
        if cycle is not None:
            index = next(i for i, s in enumerate(self.job.steps) if s.id == cycle[0])
            yield Issue(("steps", index, "depends_on"), "dependency cycle: " + " -> ".join(cycle))
        else:
            ancestors = upstream(self.job.steps)
        for i, step in enumerate(self.job.steps):
            yield from self._expressions(
                step, ("steps", i), None if ancestors is None else ancestors[step.id]
            )

    def _step_links(self, step: Step, here: Path) -> Iterator[Issue]:
        seen: set[str] = set()
        for j, dep in enumerate(step.depends_on):
            where = (*here, "depends_on", j)
            if dep == step.id:
                yield Issue(where, f"dependency cycle: {dep} -> {dep}")
            elif dep not in self.ids:
                yield Issue(where, f"unknown step {dep!r} in depends_on")
            elif dep in seen:
                yield Issue(where, f"{dep!r} is listed twice", "warning")
            elif dep in self.compensation and step.id not in self.compensation:
                yield Issue(
                    where,
                    f"{dep!r} is a compensation step (it runs only on failure); "
                    "a normal step cannot depend on it",
                )
            seen.add(dep)
        target = step.compensation_step
        if target is not None:
            where = (*here, "on_failure", "compensate")
            if target == step.id:
                yield Issue(where, "a step cannot compensate itself")
            elif target not in self.ids:
                yield Issue(where, f"unknown compensation step {target!r}")

    def _for_each(self, step: Step, here: Path) -> Iterator[Issue]:
        spec = step.for_each
        if spec is None:
            return
        where = (*here, "for_each")
        if not _VARIABLE.match(spec.item_var) or spec.item_var in ROOT_NAMES:
            yield Issue(
                (*where, "as"),
                f"{spec.item_var!r} cannot name the item: use a name of letters, digits, '_' "
                f"other than {', '.join(sorted(ROOT_NAMES))}",
            )
        if isinstance(spec.items, str):
            try:
                template = compile_template(spec.items, field=format_path((*where, "items")))
            except TemplateError:
                return  # reported with the other templates
            if template.is_literal:
                yield Issue(
                    (*where, "items"),
                    "must be a list or a template that renders to a list "
                    '(e.g. "{{ steps.list.output.files }}")',
                )

    def _expressions(
        self, step: Step, here: Path, ancestors: frozenset[str] | None
    ) -> Iterator[Issue]:
        """Parse ``when``, ``config`` and ``for_each.items``; check their references.

        ``ancestors`` is ``None`` when the steps have a cycle (then reading a step that is not
        upstream cannot be judged and is not reported).
        """
        for_each = step.for_each
        item_names: frozenset[str] = frozenset()
        if for_each is not None:
            item_names = frozenset({for_each.item_var, for_each.index_var})
        if step.when is not None:
            where = (*here, "when")
            try:
                refs = compile_expression(step.when, field=format_path(where)).references()
            except TemplateError as exc:
                yield Issue(where, exc.reason)
            else:
                for ref in refs:
                    yield from self._reference(ref, where, step, ancestors, frozenset(), True)
        sources: list[tuple[tuple[str, ...], Any]] = [(("config",), step.config)]
        if for_each is not None:
            sources.append((("for_each", "items"), for_each.items))
        for sub, value in sources:
            for path, text in iter_strings(value, (*here, *sub)):
                try:
                    template = compile_template(text, field=format_path(path))
                except TemplateError as exc:
                    yield Issue(path, exc.reason)
                    continue
                locals_ = item_names if sub == ("config",) else frozenset()
                for ref in template.references():
                    yield from self._reference(ref, path, step, ancestors, locals_, False)

    def _reference(
        self,
        ref: Reference,
        where: Path,
        step: Step,
        ancestors: frozenset[str] | None,
        locals_: frozenset[str],
        condition: bool,
    ) -> Iterator[Issue]:
        if ref.root in locals_:
            return
        if ref.root not in ROOT_NAMES:
            hint = ""
            if step.for_each is not None and ref.root in (
                step.for_each.item_var,
                step.for_each.index_var,
            ):
                hint = " (the for_each item is not available in 'when' nor in 'items')"
            yield Issue(
                where,
                f"{ref}: unknown name {ref.root!r}; references start with "
                f"{', '.join(sorted(ROOT_NAMES))}"
                + (", or the for_each item" if not hint else "")
                + hint,
            )
            return
        if ref.root == "vars":
            yield from self._variable(ref, where, condition)
        elif ref.root == "steps":
            yield from self._step_reference(ref, where, step, ancestors)

    def _variable(self, ref: Reference, where: Path, condition: bool) -> Iterator[Issue]:
        name = ref.variable
        if name is None:
            yield Issue(where, f"{ref}: 'vars' must be followed by a variable name")
            return
        variable = self.job.variables.get(name)
        if variable is None:
            if self.globals is not None and name not in self.globals and self.unknown_variables:
                known = sorted(set(self.job.variables) | self.globals)
                yield Issue(
                    where,
                    f"unknown variable {name!r} (not a job variable nor a global one"
                    + (f"; known: {', '.join(known[:15])}" if known else "")
                    + ")",
                    self.unknown_variables,
                )
            return
        if variable.secret and condition:
            yield Issue(where, f"secret variable {name!r} cannot be used in a condition")
        elif variable.secret and len(ref.path) > 1:
            yield Issue(where, f"{ref}: cannot read into secret variable {name!r}")

    def _step_reference(
        self, ref: Reference, where: Path, step: Step, ancestors: frozenset[str] | None
    ) -> Iterator[Issue]:
        target = ref.step
        if target is None:
            yield Issue(where, f"{ref}: 'steps' must be followed by a step id")
            return
        if target not in self.ids:
            yield Issue(where, f"{ref}: unknown step {target!r}")
            return
        if len(ref.path) < 2 or ref.path[1] not in _STEP_FIELDS:
            yield Issue(where, f"{ref}: use steps.{target}.output(.PATH) or steps.{target}.status")
            return
        if target == step.id:
            yield Issue(where, f"{ref}: a step cannot read its own result")
        elif ancestors is not None and target not in ancestors and step.id not in self.compensation:
            yield Issue(
                where,
                f"{ref}: step {step.id!r} reads step {target!r} but does not depend on it "
                f"(add {target!r} to depends_on)",
            )


def _retry(policy: RetryPolicy, where: Path) -> Iterator[Issue]:
    for problem in policy.errors():
        yield Issue((*where, problem.field), problem.reason)
