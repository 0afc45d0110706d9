"""``plan``: what applying job files would create, change (field by field) and delete.

A plan compares the jobs of files with the jobs applied on a server. Definitions are compared
as JSON data (secret values removed); job-scoped secrets are compared by their plain values, so
a token re-encrypted by a key rotation is not a change, and a changed secret shows as
``variables.NAME.value: (secret changed)`` without revealing either value.

Lists of mappings with an ``id`` (steps, schedules with ids) are matched by id, so inserting a
step shows one added step instead of every later step changed: ``steps[fetch].timeout``.

Business calendars of the files (``calendars:``) are planned the same way: created, updated
(field by field, e.g. ``holidays[2].date``), unchanged, or deleted (``--prune``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import msgspec

from cadenza.engine._job_model import JobDefinition
from cadenza.engine._secrets import MASK

__all__ = [
    "CalendarChange",
    "FieldChange",
    "JobChange",
    "JobPlan",
    "SchedulePlan",
    "canonical_definition",
    "content_hash",
    "diff_values",
    "secret_changes",
]

Action = Literal["create", "update", "delete", "unchanged"]


class FieldChange(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One field that differs.

    Attributes:
        path: The field (``steps[fetch].retry.maximum_attempts``).
        kind: ``added``, ``removed`` or ``changed``.
        old: The applied value (absent when added; ``MASK`` for a secret).
        new: The value in the files (absent when removed; ``MASK`` for a secret).
    """

    path: str
    kind: Literal["added", "removed", "changed"]
    old: Any = None
    new: Any = None


class JobChange(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What happens to one job.

    Attributes:
        name: The job.
        action: ``create``, ``update``, ``delete`` or ``unchanged``.
        version: The applied version now (``None`` for a new job).
        fields: The differences, for ``update``.
        steps: Number of steps (for ``create`` and ``delete``).
        schedules: Number of schedules (for ``create`` and ``delete``).
    """

    name: str
    action: Action
    version: int | None = None
    fields: list[FieldChange] = []
    steps: int = 0
    schedules: int = 0


class CalendarChange(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What happens to one business calendar of the files (or, with ``--prune``, one stored
    calendar that is no longer in them).

    Attributes:
        name: The calendar, as written.
        action: ``create``, ``update``, ``delete`` or ``unchanged``.
        version: The stored version now (``None`` for a new calendar).
        fields: The differences, for ``update`` (``holidays[1].date``, ``weekend``).
    """

    name: str
    action: Action
    version: int | None = None
    fields: list[FieldChange] = []


class SchedulePlan(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What happens to one schedule of a job.

    Attributes:
        schedule_id: ``<job>/<schedule id or index>``.
        job: The job it belongs to.
        action: ``create``, ``update`` or ``delete``.
        fields: The differences, for ``update`` (``spec.cron``, ``spec.paused``,
            ``action.input`` when the job's snapshot changes).
    """

    schedule_id: str
    job: str
    action: Literal["create", "update", "delete"]
    fields: list[FieldChange] = []


class JobPlan(msgspec.Struct, frozen=True, kw_only=True):
    """The result of ``plan`` (and what ``apply`` did).

    Attributes:
        namespace: The target namespace.
        jobs: One entry per job of the files, then deletions, by name.
        unmanaged: Applied jobs that are not in the files and are kept (no ``--prune``).
        prune: Whether jobs not in the files are deleted.
        schedules: Schedules of the jobs to create, update or delete (also those that drifted
            from the files, e.g. paused by an operator).
        calendars: One entry per business calendar of the files, then deletions, by name
            (empty when the request carried no calendars).
        unmanaged_calendars: Stored calendars applied from this namespace that are not in the
            files and are kept (no ``--prune``).
    """

    namespace: str
    jobs: list[JobChange] = []
    unmanaged: list[str] = []
    prune: bool = False
    schedules: list[SchedulePlan] = []
    calendars: list[CalendarChange] = []
    unmanaged_calendars: list[str] = []

    @property
    def changed(self) -> list[JobChange]:
        """The entries that change something."""
        return [job for job in self.jobs if job.action != "unchanged"]

    @property
    def changed_calendars(self) -> list[CalendarChange]:
        """The calendar entries that change something."""
        return [c for c in self.calendars if c.action != "unchanged"]

    @property
    def has_changes(self) -> bool:
        """Whether applying would change anything."""
        return bool(self.changed) or bool(self.schedules) or bool(self.changed_calendars)

    def counts(self) -> dict[str, int]:
        """How many jobs per action."""
        out = {"create": 0, "update": 0, "delete": 0, "unchanged": 0}
        for job in self.jobs:
            out[job.action] += 1
        return out

    def calendar_counts(self) -> dict[str, int]:
        """How many calendars per action."""
        out = {"create": 0, "update": 0, "delete": 0, "unchanged": 0}
        for calendar in self.calendars:
            out[calendar.action] += 1
        return out

    def render(self) -> str:
        """The plan as text for people (``+`` create, ``~`` update, ``-`` delete)."""
        lines: list[str] = []
        for calendar in self.calendars:
            if calendar.action == "create":
                lines.append(f"+ calendar {calendar.name}: create")
            elif calendar.action == "delete":
                lines.append(f"- calendar {calendar.name}: delete (version {calendar.version})")
            elif calendar.action == "update":
                lines.append(
                    f"~ calendar {calendar.name}: update (version {calendar.version} -> "
                    f"{(calendar.version or 0) + 1})"
                )
                for change in calendar.fields:
                    lines.append("    " + _render_field(change))
        for job in self.jobs:
            if job.action == "create":
                lines.append(
                    f"+ job {job.name}: create ({_plural(job.steps, 'step')}, "
                    f"{_plural(job.schedules, 'schedule')})"
                )
            elif job.action == "delete":
                lines.append(
                    f"- job {job.name}: delete (version {job.version}, "
                    f"{_plural(job.schedules, 'schedule')})"
                )
            elif job.action == "update":
                lines.append(
                    f"~ job {job.name}: update (version {job.version} -> {(job.version or 0) + 1})"
                )
                for change in job.fields:
                    lines.append("    " + _render_field(change))
        marks = {"create": "+", "update": "~", "delete": "-"}
        for schedule in self.schedules:
            lines.append(
                f"{marks[schedule.action]} schedule {schedule.schedule_id}: {schedule.action}"
            )
            for change in schedule.fields:
                lines.append("    " + _render_field(change))
        for name in self.unmanaged:
            lines.append(f"  job {name}: not in the files (kept; --prune deletes it)")
        for name in self.unmanaged_calendars:
            lines.append(f"  calendar {name}: not in the files (kept; --prune deletes it)")
        counts = self.counts()
        cal = self.calendar_counts()
        if not self.has_changes:
            line = f"no changes ({_plural(counts['unchanged'], 'job')}"
            if self.calendars:
                line += f", {_plural(cal['unchanged'], 'calendar')}"
            lines.append(line + " up to date)")
        else:
            line = (
                f"plan: {counts['create']} to create, {counts['update']} to change, "
                f"{counts['delete']} to delete, {counts['unchanged']} unchanged"
            )
            if self.schedules:
                line += f"; {_plural(len(self.schedules), 'schedule')} to sync"
            if self.calendars:
                line += (
                    f"; calendars: {cal['create']} to create, {cal['update']} to change, "
                    f"{cal['delete']} to delete, {cal['unchanged']} unchanged"
                )
            lines.append(line)
        return "\n".join(lines)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _show(value: Any) -> str:
    if value == MASK:
        return MASK
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= 120 else text[:117] + "..."


def _render_field(change: FieldChange) -> str:
    if change.kind == "added":
        return f"+ {change.path}: {_show(change.new)}"
    if change.kind == "removed":
        return f"- {change.path}: {_show(change.old)}"
    return f"~ {change.path}: {_show(change.old)} -> {_show(change.new)}"


# --------------------------------------------------------------------------- canonical form


def canonical_definition(job: JobDefinition) -> str:
    """The job as canonical JSON (sorted keys, secret values removed): what is stored and
    hashed."""
    data = msgspec.to_builtins(job.without_secret_values())
    return msgspec.json.encode(_sorted(data)).decode()


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def content_hash(canonical: str) -> str:
    """``sha256:<hex>`` of a canonical definition."""
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- diff


def _keyed(items: Sequence[Any]) -> dict[str, Any] | None:
    """Items of a list of mappings that all carry a distinct ``id``, keyed by it."""
    if not items or not all(isinstance(item, Mapping) for item in items):
        return None
    ids = [item.get("id") for item in items]
    if not all(isinstance(i, str) and i for i in ids) or len(set(ids)) != len(ids):
        return None
    return {item["id"]: item for item in items}


def _join(path: str, key: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key):
        return f"{path}.{key}" if path else key
    return f"{path}[{msgspec.json.encode(key).decode()}]"


def diff_values(old: Any, new: Any, path: str = "") -> Iterator[FieldChange]:
    """The differences between two JSON values, field by field.

    Mappings are compared key by key; lists of mappings with distinct ``id`` s item by item
    (``steps[fetch]``); lists of other mappings position by position; other lists and scalars
    as whole values.
    """
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in [*new, *(k for k in old if k not in new)]:
            where = _join(path, str(key))
            if key not in old:
                yield FieldChange(path=where, kind="added", new=new[key])
            elif key not in new:
                yield FieldChange(path=where, kind="removed", old=old[key])
            else:
                yield from diff_values(old[key], new[key], where)
        return
    if isinstance(old, list) and isinstance(new, list) and old != new:
        old_keyed, new_keyed = _keyed(old), _keyed(new)
        if old_keyed is not None and new_keyed is not None:
            for key in [*new_keyed, *(k for k in old_keyed if k not in new_keyed)]:
                where = f"{path}[{key}]"
                if key not in old_keyed:
                    yield FieldChange(path=where, kind="added", new=new_keyed[key])
                elif key not in new_keyed:
                    yield FieldChange(path=where, kind="removed", old=old_keyed[key])
                else:
                    yield from diff_values(old_keyed[key], new_keyed[key], where)
            if [k for k in old_keyed if k in new_keyed] != [k for k in new_keyed if k in old_keyed]:
                yield FieldChange(
                    path=f"{path} (order)", kind="changed", old=list(old_keyed), new=list(new_keyed)
                )
            return
        if all(isinstance(i, Mapping) for i in [*old, *new]):
            for index in range(max(len(old), len(new))):
                where = f"{path}[{index}]"
                if index >= len(old):
                    yield FieldChange(path=where, kind="added", new=new[index])
                elif index >= len(new):
                    yield FieldChange(path=where, kind="removed", old=old[index])
                else:
                    yield from diff_values(old[index], new[index], where)
            return
    if old != new or isinstance(old, bool) != isinstance(new, bool):
        yield FieldChange(path=path, kind="changed", old=old, new=new)


def secret_changes(stored: Mapping[str, str], desired: Mapping[str, str]) -> list[FieldChange]:
    """Changes of job-scoped secrets, compared by plain value, shown masked."""
    out: list[FieldChange] = []
    for name in sorted(set(stored) | set(desired)):
        path = f"variables.{name}.value"
        if name not in stored:
            out.append(FieldChange(path=path, kind="added", new=MASK))
        elif name not in desired:
            out.append(FieldChange(path=path, kind="removed", old=MASK))
        elif stored[name] != desired[name]:
            out.append(FieldChange(path=path, kind="changed", old=MASK, new=MASK))
    return out
