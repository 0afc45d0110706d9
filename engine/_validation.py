"""Input checks shared by the engine's operations."""

from __future__ import annotations

from cadenza.history import InvalidArgumentError

MAX_ID_LENGTH = 1000
MAX_NAME_LENGTH = 255


def check_id(field: str, value: str, limit: int = MAX_ID_LENGTH) -> None:
    """Reject empty, over-long or non-string ids with an error naming the field."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(field, "must be a non-empty string")
    if len(value) > limit:
        raise InvalidArgumentError(field, f"is {len(value)} characters long; the limit is {limit}")
