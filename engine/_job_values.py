"""Values shared by the job expression language: errors, secret placeholders, the context.

Split from :mod:`cadenza.engine._job_expr` so that the filters (``_job_filters``) and the
parser can both use them without importing each other.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from cadenza.history import InvalidArgumentError
from cadenza.timers._spec import DEFAULT_TIMEZONE

__all__ = [
    "ExpressionError",
    "SecretRef",
    "SecretString",
    "TemplateContext",
    "TemplateError",
    "stringify",
]


# --------------------------------------------------------------------------- errors


class TemplateError(InvalidArgumentError):
    """A template or expression that does not parse, or a reference that cannot be resolved.

    Attributes:
        field: Where the text came from (e.g. ``steps[2].config.url``).
        reason: What is wrong, naming the reference or the column.
        column: 1-based column in the text of a syntax error, else ``None``.
        reference: The reference that could not be resolved, else ``None``.
    """

    def __init__(
        self,
        field: str,
        reason: str,
        *,
        column: int | None = None,
        reference: str | None = None,
    ) -> None:
        super().__init__(field, reason)
        self.column = column
        self.reference = reference


class ExpressionError(TemplateError):
    """A condition (``when``) that does not parse or cannot be evaluated."""


class EvalError(Exception):
    """An evaluation failure inside the language (wrapped into TemplateError by the API)."""

    def __init__(self, message: str, reference: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reference = reference


class MissingError(EvalError):
    """A reference that names something absent (the ``default`` filter catches it)."""


# --------------------------------------------------------------------------- secrets


class SecretRef(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="secret_ref"):
    """Stands for the value of a secret variable in a rendered configuration.

    Rendering never puts a secret's plain value into a step's configuration (which would be
    recorded in the history); the activity resolves the reference at run time. Encoded as
    ``{"kind": "secret_ref", "name": "DB_PASSWORD"}``.

    Attributes:
        name: The variable's name.
    """

    name: str

    def __str__(self) -> str:
        return "${" + self.name + "}"


class SecretString(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="secret_string"
):
    """A string built from literal text and secret references (``"Bearer ${TOKEN}"``).

    Attributes:
        parts: The pieces in order: literal strings and :class:`SecretRef`.
    """

    parts: list[str | SecretRef]

    def __str__(self) -> str:
        return "".join(str(part) for part in self.parts)


# --------------------------------------------------------------------------- context


@dataclass(frozen=True, kw_only=True)
class TemplateContext:
    """What templates and conditions read. Plain data; build one per step evaluation.

    Attributes:
        variables: Variable values by name, job scope already merged over global scope (see
            ``JobDefinition.resolve_variables``).
        secrets: Names of the variables that are secret; they render as :class:`SecretRef`
            unless ``reveal_secret`` is given.
        steps: Per step id, a mapping with ``output`` (the step's result) and ``status``.
        trigger: ``source`` (``scheduled``, ``manual``, ``webhook``) and ``payload``.
        execution: ``id`` and whatever else the interpreter exposes.
        schedule: ``nominal_time`` (an aware datetime), ``id``, ``timezone``.
        locals: Extra names, e.g. the ``for_each`` item variable.
        timezone: Zone of the date helpers; default: ``schedule["timezone"]``, else
            ``Asia/Ho_Chi_Minh``.
        reveal_secret: When given, secret variables render as ``reveal_secret(name)`` (for
            the activity at run time); when ``None`` (default) as :class:`SecretRef`.
    """

    variables: Mapping[str, Any] = field(default_factory=dict)
    secrets: frozenset[str] = frozenset()
    steps: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    trigger: Mapping[str, Any] = field(default_factory=dict)
    execution: Mapping[str, Any] = field(default_factory=dict)
    schedule: Mapping[str, Any] = field(default_factory=dict)
    locals: Mapping[str, Any] = field(default_factory=dict)
    timezone: str | None = None
    reveal_secret: Callable[[str], Any] | None = None

    @property
    def zone(self) -> ZoneInfo:
        """The zone the date helpers compute in."""
        return zone_named(self.timezone or self.schedule.get("timezone") or DEFAULT_TIMEZONE)

    def with_locals(self, **values: Any) -> TemplateContext:
        """A copy with extra local names (e.g. ``item=...`` inside ``for_each``)."""
        return replace(self, locals={**self.locals, **values})


@functools.lru_cache(maxsize=64)
def zone_named(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except Exception:
        raise EvalError(f"unknown time zone {name!r}") from None


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, datetime):
        return "a date-time"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, SecretRef | SecretString):
        return "a secret"
    return type(value).__name__


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def stringify(value: Any) -> str:
    """How a value is embedded in text.

    Strings as they are; ``null`` as the empty string; booleans as ``true``/``false``; numbers
    as written; dates and date-times in ISO-8601; lists and mappings as JSON.
    """
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value.total_seconds())
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, msgspec.EncodeError):
        return str(value)
