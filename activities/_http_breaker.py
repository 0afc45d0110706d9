"""Per-host circuit breakers of the HTTP activity, and their Prometheus gauge.

A breaker protects a failing host from a storm of retries and the worker from waiting on it:

* **closed** — requests go through; each failure (connection error, timeout, 5xx) is remembered.
  When ``failure_threshold`` failures fall within the last ``window`` seconds, it **opens**.
* **open** — requests fail at once with a retryable ``HttpCircuitOpen`` error whose
  ``next_retry_delay`` is the rest of the cool-down, so the retry policy comes back just when the
  host may be tried again.
* **half-open** — after ``cool_down`` seconds one trial request goes through (others still fail
  fast). Its success **closes** the breaker; its failure opens it for another cool-down.

Successes in the closed state do not erase failures: the breaker counts failures in a sliding
window, not consecutive ones. A 429 answer is neither (the host is alive but busy; its
``Retry-After`` is honoured instead).

The breakers live in one process-wide :class:`CircuitBreakerRegistry` (worker attempts of many
workflows share the view of a host). Its clock can be replaced, and :func:`reset_circuit_breakers`
empties it, so tests neither sleep nor leak state into each other. The state of each host is
exported as the gauge ``cadenza_http_circuit_state{host}``: 0 closed, 1 open, 2 half-open.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from prometheus_client import Gauge

from cadenza.activities._http_config import CircuitBreakerConfig
from cadenza.activities._http_errors import HTTP_CIRCUIT_OPEN, http_error
from cadenza.history import ApplicationError

CIRCUIT_STATE = Gauge(
    "cadenza_http_circuit_state",
    "State of the HTTP activity's circuit breaker per host: 0 closed, 1 open, 2 half-open.",
    ["host"],
)


class CircuitState(enum.IntEnum):
    """Breaker states, valued as exported by the gauge."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


@dataclass(eq=False)
class _Breaker:
    host: str
    state: CircuitState = CircuitState.CLOSED
    failures: deque[float] = field(default_factory=deque)
    opened_at: float = 0.0
    cool_down: float = 30.0
    trial_in_flight: bool = False

    def reported_state(self, now: float) -> CircuitState:
        """The state as seen from outside: an open breaker past its cool-down is half-open."""
        if self.state is CircuitState.OPEN and now >= self.opened_at + self.cool_down:
            return CircuitState.HALF_OPEN
        return self.state


@dataclass(frozen=True, eq=False)
class Permit:
    """Leave to send one request to ``host``; hand it back with one of the ``record_*`` calls.

    Attributes:
        host: The breaker's host key.
        trial: True for the single trial request of a half-open breaker.
    """

    host: str
    trial: bool
    config: CircuitBreakerConfig


class CircuitBreakerRegistry:
    """All breakers of the process, keyed by ``host:port``.

    Thread-safe (sync activities may share it); never awaits, so it is also safe on one loop.

    Args:
        clock: Monotonic seconds; replaceable for tests.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._breakers: dict[str, _Breaker] = {}

    def _get(self, host: str) -> _Breaker:
        breaker = self._breakers.get(host)
        if breaker is None:
            breaker = self._breakers[host] = _Breaker(host)
            CIRCUIT_STATE.labels(host=host).set_function(
                lambda b=breaker: float(b.reported_state(self.clock()))
            )
        return breaker

    def state(self, host: str) -> CircuitState:
        """The state of ``host``'s breaker now (closed if it was never used)."""
        with self._lock:
            breaker = self._breakers.get(host)
            return CircuitState.CLOSED if breaker is None else breaker.reported_state(self.clock())

    def acquire(self, host: str, config: CircuitBreakerConfig) -> Permit:
        """Ask to send a request to ``host``.

        Raises:
            ApplicationError: ``HttpCircuitOpen`` (retryable) when the breaker is open, or
                half-open with its trial request still running.
        """
        with self._lock:
            now = self.clock()
            breaker = self._get(host)
            if breaker.state is CircuitState.CLOSED:
                return Permit(host, False, config)
            if breaker.state is CircuitState.OPEN:
                remaining = breaker.opened_at + breaker.cool_down - now
                if remaining > 0:
                    raise _open_error(host, CircuitState.OPEN, remaining)
                breaker.state = CircuitState.HALF_OPEN
                breaker.trial_in_flight = False
            if breaker.trial_in_flight:
                raise _open_error(host, CircuitState.HALF_OPEN, None)
            breaker.trial_in_flight = True
            return Permit(host, True, config)

    def record_success(self, permit: Permit) -> None:
        """The host answered well: a half-open breaker closes."""
        with self._lock:
            breaker = self._get(permit.host)
            if permit.trial and breaker.state is CircuitState.HALF_OPEN:
                breaker.state = CircuitState.CLOSED
                breaker.failures.clear()
                breaker.trial_in_flight = False

    def record_failure(self, permit: Permit) -> None:
        """The host failed (connection error, timeout, 5xx): count it; maybe open."""
        with self._lock:
            now = self.clock()
            breaker = self._get(permit.host)
            if permit.trial and breaker.state is CircuitState.HALF_OPEN:
                self._open(breaker, now, permit.config)
                return
            if permit.trial or breaker.state is not CircuitState.CLOSED:
                return  # a straggler that started before the breaker opened
            breaker.failures.append(now)
            horizon = now - permit.config.window
            while breaker.failures and breaker.failures[0] <= horizon:
                breaker.failures.popleft()
            if len(breaker.failures) >= permit.config.failure_threshold:
                self._open(breaker, now, permit.config)

    def release(self, permit: Permit) -> None:
        """Neither success nor failure (429, cancellation): a trial slot is freed."""
        with self._lock:
            breaker = self._get(permit.host)
            if permit.trial and breaker.state is CircuitState.HALF_OPEN:
                breaker.trial_in_flight = False

    @staticmethod
    def _open(breaker: _Breaker, now: float, config: CircuitBreakerConfig) -> None:
        breaker.state = CircuitState.OPEN
        breaker.opened_at = now
        breaker.cool_down = config.cool_down
        breaker.trial_in_flight = False
        breaker.failures.clear()

    def clear(self) -> None:
        """Forget every breaker and remove their gauge series."""
        with self._lock:
            self._breakers.clear()
            CIRCUIT_STATE.clear()


def _open_error(host: str, state: CircuitState, remaining: float | None) -> ApplicationError:
    if remaining is None:
        message = f"circuit breaker for {host} is half-open and its trial request is running"
        delay = None
    else:
        message = f"circuit breaker for {host} is open for another {remaining:.1f} s"
        delay = timedelta(seconds=remaining)
    return http_error(
        message,
        type=HTTP_CIRCUIT_OPEN,
        non_retryable=False,
        next_retry_delay=delay,
        host=host,
        state=state.name.lower(),
        retry_in_s=None if remaining is None else round(remaining, 3),
    )


_registry = CircuitBreakerRegistry()


def circuit_breakers() -> CircuitBreakerRegistry:
    """The process-wide registry used by the HTTP activity."""
    return _registry


def reset_circuit_breakers(clock: Callable[[], float] | None = None) -> CircuitBreakerRegistry:
    """Forget all breakers (and their gauge series); optionally install a test clock.

    Args:
        clock: Monotonic seconds to use from now on; ``time.monotonic`` when None.

    Returns:
        The process-wide registry.
    """
    _registry.clear()
    _registry.clock = clock or time.monotonic
    return _registry
