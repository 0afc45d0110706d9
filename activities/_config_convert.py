"""Turning a job step's ``config`` mapping into an activity's config struct, with errors that
name the field (shared by the ``email``, ``file`` and ``sftp`` activities)."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from cadenza.history import InvalidArgumentError

__all__ = ["ReprSummary", "convert_config", "validation_error_field"]

T = TypeVar("T", bound=msgspec.Struct)

_AT_PATH = re.compile(r"(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.DOTALL)
_NAMED_FIELD = re.compile(r"(?:missing required|unknown) field `([^`]+)`")


def validation_error_field(exc: msgspec.ValidationError) -> tuple[str, str]:
    """``(field path, reason)`` of a msgspec validation error; the path is ``""`` for the
    top level (``to[2]``, ``attachments[0].path``; a missing or unknown key is named too)."""
    m = _AT_PATH.fullmatch(str(exc))
    message = m["msg"] if m else str(exc)
    path = ((m and m["path"]) or "").lstrip(".")
    named = _NAMED_FIELD.search(message)
    if named:
        path = f"{path}.{named[1]}" if path else named[1]
    return path, message


def convert_config(config: Any, struct_type: type[T]) -> T:
    """``config`` itself if it is a ``struct_type``, else the mapping converted into one.

    Raises:
        InvalidArgumentError: not a mapping, or a wrong key or type, naming the field.
    """
    if isinstance(config, struct_type):
        return config
    if not isinstance(config, dict):
        name = struct_type.__name__
        article = "an" if name[0] in "AEIOU" else "a"
        raise InvalidArgumentError(
            "config", f"expected {article} {name} or a mapping, got {type(config).__name__}"
        )
    try:
        return msgspec.convert(config, struct_type)
    except msgspec.ValidationError as exc:
        path, message = validation_error_field(exc)
        raise InvalidArgumentError(path or "config", message) from None


class ReprSummary(str):
    """A string whose repr is itself (``<123 chars>`` or a mask inside a config's repr)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)
