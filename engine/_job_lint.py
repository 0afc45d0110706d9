"""``cadenza lint``: validate job files before they are deployed.

Checks everything the loader checks (syntax, types, unknown fields, step references,
dependency cycles, step types, templates and conditions, schedules including cron syntax,
calendars) plus what needs a view across files: duplicate job and calendar names, calendars
that schedules name but nobody defines (a warning), and variables that are neither the job's
nor global. Global variable names come from a ``--vars`` file; without one, unknown variables
are warnings (the server may define them), with one they are errors.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cadenza.engine._job_loader import (
    JobIssue,
    LoadedFile,
    duplicate_calendar_names,
    duplicate_job_names,
    expand_paths,
    load_job_file,
)
from cadenza.engine._job_source import FORMATS, SourceError, parse_source
from cadenza.history import InvalidArgumentError

__all__ = ["LintReport", "lint_paths", "read_variable_names"]


@dataclass
class LintReport:
    """What ``lint`` found.

    Attributes:
        files: Every file read, with its jobs and issues.
        issues: Every issue, in file order (cross-file issues after the file's own).
    """

    files: list[LoadedFile] = field(default_factory=list)
    issues: list[JobIssue] = field(default_factory=list)

    @property
    def errors(self) -> list[JobIssue]:
        """The issues of severity ``error``."""
        return [issue for issue in self.issues if issue.severity == "error"]

    @property
    def warnings(self) -> list[JobIssue]:
        """The issues of severity ``warning``."""
        return [issue for issue in self.issues if issue.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when there is no error."""
        return not self.errors

    @property
    def job_count(self) -> int:
        """Number of valid jobs."""
        return sum(len(f.jobs) for f in self.files)

    def summary(self) -> str:
        """One line: files, jobs, errors and warnings."""

        def plural(count: int, word: str) -> str:
            return f"{count} {word}{'' if count == 1 else 's'}"

        files = plural(len(self.files), "file")
        jobs = plural(self.job_count, "valid job")
        return (
            f"{files}, {jobs}, {plural(len(self.errors), 'error')}, "
            f"{plural(len(self.warnings), 'warning')}"
        )


def read_variable_names(path: str | os.PathLike[str]) -> frozenset[str]:
    """Names of the global variables listed in a YAML, JSON or TOML file.

    The file holds a mapping (names are its keys), a ``variables:`` mapping, or a list of names.

    Raises:
        InvalidArgumentError: The file cannot be read or has another shape.
    """
    name = os.fspath(path)
    fmt = FORMATS.get(Path(name).suffix.lower())
    if fmt is None:
        raise InvalidArgumentError("vars", f"{name}: unknown format (use .yaml, .json or .toml)")
    try:
        data: Any = parse_source(Path(name).read_text(encoding="utf-8"), fmt).data
    except OSError as exc:
        raise InvalidArgumentError("vars", f"{name}: {exc.strerror or exc}") from None
    except SourceError as exc:
        raise InvalidArgumentError("vars", f"{name}:{exc.line}: {exc.message}") from None
    if isinstance(data, dict) and set(data) == {"variables"}:
        data = data["variables"]
    if data is None:
        return frozenset()
    if isinstance(data, dict):
        return frozenset(str(key) for key in data)
    if isinstance(data, list) and all(isinstance(item, str) for item in data):
        return frozenset(data)
    raise InvalidArgumentError(
        "vars", f"{name}: expected a mapping of variables or a list of names"
    )


def lint_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    step_types: Collection[str] | None = None,
    global_variables: Collection[str] | None = None,
) -> LintReport:
    """Lint files and directories (``*.yaml *.yml *.json *.toml`` under them).

    Args:
        paths: Files or directories.
        step_types: Registered activity names allowed as step types besides the built-ins.
        global_variables: Names of the global variables; ``None`` when unknown (then unknown
            variables are warnings rather than errors).

    Raises:
        InvalidArgumentError: A path does not exist.
    """
    report = LintReport()
    severity = "warning" if global_variables is None else "error"
    for path in expand_paths(paths):
        loaded = load_job_file(
            path,
            step_types=step_types,
            global_variables=frozenset(global_variables or ()),
            unknown_variables=severity,
        )
        report.files.append(loaded)
        report.issues.extend(loaded.issues)
    report.issues.extend(duplicate_job_names(report.files))
    report.issues.extend(duplicate_calendar_names(report.files))
    report.issues.extend(_unknown_calendars(report.files))
    return report


def _unknown_calendars(files: list[LoadedFile]) -> list[JobIssue]:
    """Warnings for schedules naming a calendar that is neither built in nor in the files.

    A warning, not an error: the server may have the calendar registered already.
    """
    try:
        from cadenza.timers._calendars import get_calendar
    except ImportError:  # pragma: no cover - the calendar module is part of cadenza.timers
        return []
    defined = {name.lower() for f in files for name, _ in f.calendar_names}
    issues: list[JobIssue] = []
    for loaded in files:
        before = len(loaded.issues)
        for job, prefix in zip(loaded.jobs, loaded.prefixes, strict=True):
            for index, spec in enumerate(job.schedules):
                if spec.calendar is None or spec.calendar.lower() in defined:
                    continue
                try:
                    get_calendar(spec.calendar)
                except InvalidArgumentError as exc:
                    loaded.add(
                        (*prefix, "schedules", index, "calendar"),
                        f"{exc.reason}; nor is it defined under 'calendars:' in these files",
                        "warning",
                    )
        issues.extend(loaded.issues[before:])
    return issues
