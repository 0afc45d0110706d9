"""Activities that job runs call: the built-in step types made secret-aware, and the variables
activity.

A rendered step configuration never holds a secret's plain value: it holds placeholders
(``{"kind": "secret_ref", "name": "API_TOKEN"}``), which is what the history records. The
wrappers here resolve them **inside the activity, at run time**: they ask the server for the
secrets that this running attempt's recorded input references (the server checks that the
attempt is running and belongs to a job run), substitute them, register them with the process's
log masking filter for the duration of the call, and scrub them from the result and from any
error before either goes back into the history.

The server is reached through the worker's service: an in-process :class:`Engine` or a
:class:`~cadenza.frontend.remote.RemoteService` (``POST /api/v1/worker/job-secrets``). Pass it
to :func:`job_activities`; without one, the backend registered with :func:`use_job_backend`
(``load_jobs_into`` registers its engine) is used.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec

from cadenza.activities import ActivityDefinition, defn, info
from cadenza.engine import Engine
from cadenza.engine._job_contract import VARIABLES_ACTIVITY, JobVariables
from cadenza.engine._job_template import contains_secrets, resolve_secrets
from cadenza.engine._jobs import ActivityRef, jobs_for
from cadenza.engine._secrets import SecretMaskingFilter, redact
from cadenza.engine._variables import masking_filter
from cadenza.history import (
    ApplicationError,
    CadenzaError,
    InvalidArgumentError,
    NotFoundError,
)

__all__ = [
    "JobBackend",
    "builtin_step_activities",
    "secret_aware",
    "use_job_backend",
    "variables_activity",
]

log = logging.getLogger("cadenza.sdk.jobs")


class JobBackend(Protocol):
    """What job activities ask the server (``JobService`` in process, ``RemoteService`` over
    HTTP)."""

    async def run_variables(self, namespace: str, names: Sequence[str]) -> JobVariables: ...

    async def activity_secrets(self, ref: ActivityRef) -> dict[str, str]: ...


_default_backend: list[JobBackend] = []


def backend_of(service: Any) -> JobBackend:
    """The job backend of a service: an :class:`Engine`, a ``Client`` or a ``RemoteService``.

    Raises:
        InvalidArgumentError: The service cannot answer job requests.
    """
    service = getattr(service, "service", service)  # a Client
    if isinstance(service, Engine):
        return jobs_for(service)
    if hasattr(service, "activity_secrets") and hasattr(service, "run_variables"):
        return service  # type: ignore[no-any-return]
    raise InvalidArgumentError(
        "service",
        f"{type(service).__name__} cannot serve job runs (need an Engine or RemoteService)",
    )


def use_job_backend(service: Any) -> None:
    """Make ``service`` the backend of job activities created without one (``cadenza dev``)."""
    _default_backend[:] = [backend_of(service)]


def _resolver(service: Any) -> Callable[[], JobBackend]:
    if service is not None:
        backend = backend_of(service)
        return lambda: backend

    def default() -> JobBackend:
        if not _default_backend:
            raise ApplicationError(
                "job activities have no server to ask for variables and secrets: pass the "
                "worker's client to job_activities(client)",
                type="JobBackendMissing",
                non_retryable=True,
            )
        return _default_backend[0]

    return default


def _scrubbed(exc: BaseException, scrub: Callable[[str], str], secrets: list[str]) -> Exception:
    """A copy of an activity's error without any secret value in it (for the history)."""
    if isinstance(exc, ApplicationError):
        return ApplicationError(
            scrub(exc.message),
            *redact(list(exc.details), secrets),
            type=exc.type,
            non_retryable=exc.non_retryable,
            next_retry_delay=exc.next_retry_delay,
        )
    return ApplicationError(scrub(str(exc)), type=type(exc).__name__)


async def _ask_secrets(backend: Callable[[], JobBackend]) -> dict[str, str]:
    attempt = info()
    ref = ActivityRef(
        namespace=attempt.namespace,
        workflow_id=attempt.workflow_id,
        run_id=attempt.run_id,
        scheduled_event_id=attempt.scheduled_event_id,
        attempt=attempt.attempt,
    )
    try:
        return await backend().activity_secrets(ref)
    except NotFoundError as exc:
        raise ApplicationError(str(exc), type="SecretNotFound", non_retryable=True) from None
    except InvalidArgumentError as exc:
        raise ApplicationError(str(exc), type="SecretUnavailable", non_retryable=True) from None
    except CadenzaError as exc:  # the server is unreachable or busy: retry
        raise ApplicationError(str(exc), type="SecretUnavailable") from None


def secret_aware(fn: Callable[..., Any], service: Any = None) -> Callable[..., Any]:
    """An activity with ``fn``'s name that resolves secret placeholders of its one argument
    (the step configuration) at run time, then calls ``fn``.

    Secret values are registered with :func:`~cadenza.engine._variables.masking_filter` while
    ``fn`` runs, and replaced by the mask in its result and in its error.

    Args:
        fn: An ``@activity.defn`` function taking the configuration (async or sync).
        service: Where to ask for secrets (see :func:`backend_of`); default: the backend of
            :func:`use_job_backend`.
    """
    definition = ActivityDefinition.of(fn)
    backend = _resolver(service)

    async def run_step(config: Any) -> Any:
        secrets: dict[str, str] = {}
        if contains_secrets(config):
            secrets = await _ask_secrets(backend)

            def lookup(name: str) -> str:
                if name not in secrets:
                    raise ApplicationError(
                        f"secret {name!r} was not resolved for this step",
                        type="SecretNotFound",
                        non_retryable=True,
                    )
                return secrets[name]

            config = resolve_secrets(config, lookup)
        values = [v for v in secrets.values() if v]
        process_filter = masking_filter()
        for value in values:
            process_filter.register(value)
        try:
            if definition.is_async:
                result = await definition.fn(config)
            else:
                call = functools.partial(definition.fn, config)
                result = await asyncio.to_thread(contextvars.copy_context().run, call)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not values:
                raise
            raise _scrubbed(exc, SecretMaskingFilter(values).scrub, values) from None
        finally:
            for value in values:
                process_filter.unregister(value)
        return redact(result, values) if values else result

    run_step.__name__ = f"job_step_{definition.name.replace('.', '_')}"
    run_step.__qualname__ = run_step.__name__
    run_step.__doc__ = f"The {definition.name!r} activity with run-time secret resolution."
    return defn(name=definition.name)(run_step)


def variables_activity(service: Any = None) -> Callable[..., Any]:
    """The activity that reads the global variables a run needs (:data:`VARIABLES_ACTIVITY`).

    Its result (plain values, and only the *names* of secret variables) is recorded in the
    run's history, so templates render the same on every replay.
    """
    backend = _resolver(service)

    async def job_variables(names: list[str]) -> dict[str, Any]:
        result = await backend().run_variables(info().namespace, names)
        return msgspec.to_builtins(result)  # type: ignore[no-any-return]

    return defn(name=VARIABLES_ACTIVITY)(job_variables)


_BUILTIN_MODULES = (
    ("cadenza.activities._http", "http_request"),
    ("cadenza.activities._sql", "sql_query"),
    ("cadenza.activities._email", "send_email"),
    ("cadenza.activities._file", "file_step"),
    ("cadenza.activities._sftp", "sftp_step"),
)


def builtin_step_activities() -> list[Callable[..., Any]]:
    """The built-in step activities available in this installation (``http``, ``sql``,
    ``email``; ``file`` and ``sftp`` when installed)."""
    found: list[Callable[..., Any]] = []
    for module_name, attribute in _BUILTIN_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        fn = getattr(module, attribute, None)
        if fn is not None:
            found.append(fn)
    return found
