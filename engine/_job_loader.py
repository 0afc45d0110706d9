"""Load job files (YAML, JSON, TOML) into :class:`JobDefinition`, with located errors.

Every problem is reported as ``FILE:LINE: FIELD: MESSAGE``, e.g.::

    jobs/nightly.yaml:14: jobs[0].steps[2].retry.maximum_attempts: expected an integer, got "three"

Loading is all or nothing: :func:`load_job_files` returns the jobs of every file only when no
file has an error, and otherwise raises :class:`JobFileError` listing every problem found (the
types of each job, then the checks of :mod:`cadenza.engine._job_check`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from cadenza.engine._job_check import Issue, check_job
from cadenza.engine._job_model import JobDefinition, Variable, variable_hook
from cadenza.engine._job_source import FORMATS, Format, SourceError, SourceMap, parse_source
from cadenza.history import InvalidArgumentError
from cadenza.timers._spec import (
    SpecFieldError,
    coerce_builtins,
    format_path,
    translate_validation_error,
)

__all__ = [
    "JobFileError",
    "JobIssue",
    "JobSet",
    "LoadedFile",
    "duplicate_calendar_names",
    "duplicate_job_names",
    "expand_paths",
    "load_job_file",
    "load_job_files",
    "load_job_set",
    "load_job_text",
]

FieldPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class JobIssue:
    """A problem of a job file, located.

    Attributes:
        file: The file as given (relative paths stay relative).
        line: 1-based line.
        field: The field path (``jobs[0].steps[2].retry``); the format name (``yaml``) for a
            syntax error; ``(file)`` for the file as a whole.
        message: What is wrong.
        severity: ``error`` or ``warning``.
    """

    file: str
    line: int
    field: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.file}:{self.line}: {self.field}: {prefix}{self.message}"


class JobFileError(InvalidArgumentError):
    """One or more job files are invalid; nothing was loaded.

    Attributes:
        issues: Every problem found (errors, and warnings if any), in file order.
    """

    def __init__(self, issues: Sequence[JobIssue]) -> None:
        errors = [issue for issue in issues if issue.severity == "error"] or list(issues)
        first = errors[0]
        super().__init__(f"{first.file}:{first.line}: {first.field}", first.message)
        self.issues = list(issues)

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues if issue.severity == "error")


@dataclass
class LoadedFile:
    """The result of reading one file: its valid jobs and every problem.

    Attributes:
        file: The file name used in messages.
        jobs: Jobs without errors, in file order.
        issues: Problems found (a job with an error is left out of ``jobs``).
        names: ``(name, line)`` of every job that names itself, valid or not (for checks
            across files).
        source_map: Lines of the fields.
        prefixes: For each job of ``jobs``, the path of the job in the file (``("jobs", 0)``,
            or ``()`` for a single-job file).
        calendars: Valid business calendars of the file (``calendars:``), as written.
        calendar_names: ``(name, line)`` of every calendar that names itself.
    """

    file: str
    jobs: list[JobDefinition] = field(default_factory=list)
    issues: list[JobIssue] = field(default_factory=list)
    names: list[tuple[str, int]] = field(default_factory=list)
    source_map: SourceMap = field(default_factory=SourceMap)
    prefixes: list[FieldPath] = field(default_factory=list)
    calendars: list[dict[str, Any]] = field(default_factory=list)
    calendar_names: list[tuple[str, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the file has no error (warnings allowed)."""
        return not any(issue.severity == "error" for issue in self.issues)

    def add(self, path: FieldPath, message: str, severity: str = "error") -> None:
        """Record a problem at ``path``."""
        self.issues.append(
            JobIssue(
                self.file,
                self.source_map.line(path),
                format_path(path) or "(file)",
                message,
                "warning" if severity == "warning" else "error",
            )
        )


def load_job_text(
    text: str,
    *,
    filename: str = "<string>",
    format: Format | None = None,
    step_types: Collection[str] | None = None,
    global_variables: Collection[str] | None = None,
    unknown_variables: Literal["error", "warning"] | None = "error",
) -> LoadedFile:
    """Read the jobs of one document. Never raises for bad content: see ``issues``.

    Args:
        text: The document.
        filename: Name used in messages; its suffix picks the format when ``format`` is None.
        format: ``yaml``, ``json`` or ``toml``.
        step_types: Registered activity names allowed as step types besides the built-ins.
        global_variables: Names of global variables (``None``: references to variables the job
            does not define are not checked).
        unknown_variables: Severity of a reference to an unknown variable.
    """
    result = LoadedFile(filename)
    fmt = format or FORMATS.get(Path(filename).suffix.lower())
    if fmt is None:
        result.issues.append(
            JobIssue(filename, 1, "(file)", "unknown format: use .yaml, .yml, .json or .toml")
        )
        return result
    try:
        parsed = parse_source(text, fmt)
    except SourceError as exc:
        result.issues.append(JobIssue(filename, exc.line, fmt, exc.message))
        return result
    result.source_map = parsed.source_map
    for path, line, message in parsed.duplicates:
        result.issues.append(JobIssue(filename, line, format_path(path), message))
    data = parsed.data
    options = (step_types, global_variables, unknown_variables)
    if data is None or data == {}:
        result.add((), "the file is empty: expected one job, or 'jobs:' with a list of jobs")
    elif isinstance(data, dict) and "calendars" in data and "name" in data:
        result.add(("calendars",), "'calendars:' goes beside 'jobs:', not inside a job")
    elif not isinstance(data, dict):
        result.add((), f"expected a mapping (one job, or 'jobs:'), got {_kind(data)}")
    elif "jobs" in data or "calendars" in data:
        for key in data:
            if key not in ("jobs", "calendars"):
                result.add(
                    (key,),
                    "unknown field: a file with 'jobs:' holds only 'jobs' and 'calendars' "
                    "(put job fields inside each job)",
                )
        jobs = data.get("jobs", [])
        if not isinstance(jobs, list):
            result.add(("jobs",), f"expected a list of jobs, got {_kind(jobs)}")
        elif not jobs and "jobs" in data:
            result.add(("jobs",), "the list of jobs is empty")
        else:
            for index, raw in enumerate(jobs):
                _load_job(result, raw, ("jobs", index), *options)
        _load_calendars(result, data.get("calendars", []))
    else:
        _load_job(result, data, (), *options)
    _check_names_in_file(result)
    return result


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


_CALENDAR_PATH = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _calendar_path(where: str) -> FieldPath:
    parts: list[str | int] = []
    for match in _CALENDAR_PATH.finditer(where):
        parts.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
    return tuple(parts)


def _load_calendars(result: LoadedFile, calendars: Any) -> None:
    if not isinstance(calendars, list):
        result.add(("calendars",), f"expected a list of calendars, got {_kind(calendars)}")
        return
    try:
        from cadenza.timers._calendar_spec import calendar_from_dict
    except ImportError:  # pragma: no cover - the calendar module is part of cadenza.timers
        calendar_from_dict = None
    first: dict[str, int] = {}
    for index, raw in enumerate(calendars):
        here: FieldPath = ("calendars", index)
        if not isinstance(raw, dict):
            result.add(here, f"expected a mapping (a calendar), got {_kind(raw)}")
            continue
        name = raw.get("name")
        if isinstance(name, str):
            line = result.source_map.line((*here, "name"))
            result.calendar_names.append((name, line))
            key = name.lower()
            if key in first:
                result.add(
                    (*here, "name"),
                    f"duplicate calendar name {name!r} (first at line {first[key]})",
                )
                continue
            first[key] = line
        if calendar_from_dict is not None:
            try:
                calendar_from_dict(raw)
            except InvalidArgumentError as exc:
                result.add((*here, *_calendar_path(exc.field)), exc.reason)
                continue
        result.calendars.append(raw)


def _load_job(
    result: LoadedFile,
    raw: Any,
    prefix: FieldPath,
    step_types: Collection[str] | None,
    global_variables: Collection[str] | None,
    unknown_variables: Literal["error", "warning"] | None,
) -> None:
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
        result.names.append((raw["name"], result.source_map.line((*prefix, "name"))))
    try:
        coerced = coerce_builtins(raw, JobDefinition, path=prefix, hooks={Variable: variable_hook})
    except SpecFieldError as exc:
        result.add(exc.path, exc.reason)
        return
    try:
        job = msgspec.convert(coerced, JobDefinition)
    except msgspec.ValidationError as exc:
        error = translate_validation_error(exc, coerced, JobDefinition, prefix=prefix)
        result.add(error.path, error.reason)
        return
    issues: list[Issue] = check_job(
        job,
        step_types=step_types,
        global_variables=global_variables,
        unknown_variables=unknown_variables,
    )
    for issue in issues:
        result.add((*prefix, *issue.path), issue.message, issue.severity)
    if not any(issue.severity == "error" for issue in issues):
        result.jobs.append(job)
        result.prefixes.append(prefix)


def _check_names_in_file(result: LoadedFile) -> None:
    first: dict[str, int] = {}
    for name, line in result.names:
        if name in first:
            result.issues.append(
                JobIssue(
                    result.file,
                    line,
                    _name_field(result, line),
                    f"duplicate job name {name!r} (first at line {first[name]})",
                )
            )
            result.jobs = [job for job in result.jobs if job.name != name]
        else:
            first[name] = line


def _name_field(result: LoadedFile, line: int) -> str:
    for path, found in result.source_map.lines.items():
        if found == line and path and path[-1] == "name":
            return format_path(path)
    return "name"


def load_job_file(
    path: str | os.PathLike[str],
    *,
    step_types: Collection[str] | None = None,
    global_variables: Collection[str] | None = None,
    unknown_variables: Literal["error", "warning"] | None = "error",
) -> LoadedFile:
    """Read one file (see :func:`load_job_text`); an unreadable file is an issue too."""
    name = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return LoadedFile(name, issues=[JobIssue(name, 1, "(file)", f"not UTF-8 text: {exc}")])
    except OSError as exc:
        return LoadedFile(name, issues=[JobIssue(name, 1, "(file)", exc.strerror or str(exc))])
    return load_job_text(
        text,
        filename=name,
        step_types=step_types,
        global_variables=global_variables,
        unknown_variables=unknown_variables,
    )


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files given, and the job files (``*.yaml *.yml *.json *.toml``) under directories.

    Directories are searched recursively, in sorted order; hidden entries are skipped.

    Raises:
        InvalidArgumentError: A path does not exist.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = [
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and p.suffix.lower() in FORMATS
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            ]
            out.extend(found)
        elif path.exists():
            out.append(path)
        else:
            raise InvalidArgumentError("path", f"{os.fspath(raw)}: no such file or directory")
    return out


def duplicate_job_names(files: Sequence[LoadedFile]) -> list[JobIssue]:
    """Issues for job names defined in more than one file (reported at the later ones)."""
    first: dict[str, tuple[str, int]] = {}
    issues: list[JobIssue] = []
    for loaded in files:
        seen_here: set[str] = set()
        for name, line in loaded.names:
            if name in seen_here:
                continue  # reported within the file
            seen_here.add(name)
            if name in first and first[name][0] != loaded.file:
                where = f"{first[name][0]}:{first[name][1]}"
                issues.append(
                    JobIssue(
                        loaded.file,
                        line,
                        _name_field(loaded, line),
                        f"duplicate job name {name!r} (also defined at {where})",
                    )
                )
            first.setdefault(name, (loaded.file, line))
    return issues


@dataclass(frozen=True)
class JobSet:
    """Everything a set of job files defines.

    Attributes:
        jobs: The jobs, in file order then position.
        calendars: The business calendars (``calendars:`` entries, as written).
    """

    jobs: list[JobDefinition]
    calendars: list[dict[str, Any]]


def duplicate_calendar_names(files: Sequence[LoadedFile]) -> list[JobIssue]:
    """Issues for calendar names defined in more than one file (names are case-insensitive)."""
    first: dict[str, tuple[str, int]] = {}
    issues: list[JobIssue] = []
    for loaded in files:
        for name, line in loaded.calendar_names:
            key = name.lower()
            if key in first and first[key][0] != loaded.file:
                where = f"{first[key][0]}:{first[key][1]}"
                issues.append(
                    JobIssue(
                        loaded.file,
                        line,
                        _name_field(loaded, line),
                        f"duplicate calendar name {name!r} (also defined at {where})",
                    )
                )
            first.setdefault(key, (loaded.file, line))
    return issues


def load_job_set(
    paths: Iterable[str | os.PathLike[str]],
    *,
    step_types: Collection[str] | None = None,
    global_variables: Collection[str] | None = None,
) -> JobSet:
    """Load the jobs and calendars of files and directories, all or nothing.

    Same arguments and errors as :func:`load_job_files`.
    """
    loaded = [
        load_job_file(path, step_types=step_types, global_variables=global_variables)
        for path in expand_paths(paths)
    ]
    issues = [issue for item in loaded for issue in item.issues]
    issues.extend(duplicate_job_names(loaded))
    issues.extend(duplicate_calendar_names(loaded))
    if any(issue.severity == "error" for issue in issues):
        raise JobFileError(issues)
    return JobSet(
        jobs=[job for item in loaded for job in item.jobs],
        calendars=[calendar for item in loaded for calendar in item.calendars],
    )


def load_job_files(
    paths: Iterable[str | os.PathLike[str]],
    *,
    step_types: Collection[str] | None = None,
    global_variables: Collection[str] | None = None,
) -> list[JobDefinition]:
    """Load every job of the given files and directories, all or nothing.

    Args:
        paths: Files, or directories searched for ``*.yaml *.yml *.json *.toml``.
        step_types: Registered activity names allowed as step types besides the built-ins.
        global_variables: Names of the global variables; when given, a reference to a variable
            that is neither the job's nor global is an error.

    Returns:
        The jobs, in file order then position.

    Raises:
        JobFileError: Any file has any error (every problem is listed, located).
        InvalidArgumentError: A path does not exist.
    """
    return load_job_set(paths, step_types=step_types, global_variables=global_variables).jobs
