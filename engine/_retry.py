"""Retry decisions for activity attempts and workflow task attempts."""

from __future__ import annotations

import random

from cadenza.history import Failure, RetryPolicySpec

DEFAULT_ACTIVITY_RETRY = RetryPolicySpec()
"""Default for activities: 1 s, doubling, capped at 100 s, unlimited attempts, 10 % jitter."""


def backoff_seconds(policy: RetryPolicySpec, attempt: int) -> float:
    """Back-off before attempt ``attempt + 1`` (without jitter)."""
    interval = policy.initial_interval * (policy.backoff_coefficient ** (attempt - 1))
    cap = policy.maximum_interval or policy.initial_interval * 100
    return min(interval, cap)


def decide_retry(
    policy: RetryPolicySpec | None,
    *,
    attempt: int,
    failure: Failure | None,
    now_ms: int,
    scheduled_ms: int,
    schedule_to_close: float | None,
    rng: random.Random | None = None,
) -> tuple[str, int | None]:
    """Whether a failed attempt is retried, and when.

    Returns ``("in_progress", next_attempt_ms)`` to retry, or a final retry state:
    ``non_retryable_failure``, ``maximum_attempts_reached`` or ``timeout`` (the next attempt
    would start after the schedule-to-close deadline), with None.
    """
    policy = policy or DEFAULT_ACTIVITY_RETRY
    if failure is not None and (
        failure.non_retryable or failure.type in policy.non_retryable_error_types
    ):
        return "non_retryable_failure", None
    if policy.maximum_attempts and attempt >= policy.maximum_attempts:
        return "maximum_attempts_reached", None
    if failure is not None and failure.next_retry_delay is not None:
        delay = max(0.0, failure.next_retry_delay)
    else:
        delay = backoff_seconds(policy, attempt)
        if policy.jitter:
            delay *= 1 + (rng or random).uniform(-policy.jitter, policy.jitter)
    next_ms = now_ms + int(delay * 1000)
    if schedule_to_close is not None and next_ms >= scheduled_ms + int(schedule_to_close * 1000):
        return "timeout", None
    return "in_progress", next_ms


def workflow_task_backoff_ms(attempt: int, cap_seconds: float) -> int:
    """Delay before retrying a failed workflow task: 0.2 s doubling up to the cap."""
    return int(min(0.2 * (2 ** max(0, attempt - 1)), cap_seconds) * 1000)
