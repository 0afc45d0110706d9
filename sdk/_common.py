"""Options shared by workflows and activities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from cadenza.history import InvalidArgumentError, RetryPolicySpec


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How failed activity attempts are retried.

    Attributes:
        initial_interval: Back-off before the first retry (default 1 s).
        backoff_coefficient: Each back-off is this many times the previous one (default 2.0).
        maximum_interval: Cap on the back-off (default 100 × ``initial_interval``).
        maximum_attempts: Attempts in all, the first included; 0 means unlimited (default).
        non_retryable_error_types: Error type names (``ApplicationError.type`` or the
            exception class name) that are never retried.
        jitter: Each back-off is randomized by ± this fraction (default 0.1) so that many
            failing activities do not retry in lock step.
    """

    initial_interval: timedelta = timedelta(seconds=1)
    backoff_coefficient: float = 2.0
    maximum_interval: timedelta | None = None
    maximum_attempts: int = 0
    non_retryable_error_types: Sequence[str] = field(default_factory=tuple)
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.initial_interval <= timedelta(0):
            raise InvalidArgumentError("retry_policy.initial_interval", "must be positive")
        if self.backoff_coefficient < 1:
            raise InvalidArgumentError("retry_policy.backoff_coefficient", "must be at least 1.0")
        if self.maximum_interval is not None and self.maximum_interval < self.initial_interval:
            raise InvalidArgumentError(
                "retry_policy.maximum_interval", "must not be less than initial_interval"
            )
        if self.maximum_attempts < 0:
            raise InvalidArgumentError("retry_policy.maximum_attempts", "must be 0 or more")
        if not 0 <= self.jitter < 1:
            raise InvalidArgumentError("retry_policy.jitter", "must be in [0, 1)")

    def to_spec(self) -> RetryPolicySpec:
        """The form stored in events."""
        return RetryPolicySpec(
            initial_interval=self.initial_interval.total_seconds(),
            backoff_coefficient=self.backoff_coefficient,
            maximum_interval=self.maximum_interval.total_seconds()
            if self.maximum_interval
            else 0.0,
            maximum_attempts=self.maximum_attempts,
            non_retryable_error_types=list(self.non_retryable_error_types),
            jitter=self.jitter,
        )


def seconds(value: timedelta | float | None, field_name: str) -> float | None:
    """A timeout option as seconds (None stays None); rejects zero and negative values."""
    if value is None:
        return None
    secs = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if secs <= 0:
        raise InvalidArgumentError(field_name, "must be positive")
    return secs
