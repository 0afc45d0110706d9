"""Pieces shared by the job commands (``plan``, ``apply``, ``job``, ``vars``, ``secrets``).

Each command talks to a server over HTTP (``--server URL``, through ``RemoteService``) or to
the database directly (``--db URL``, an embedded engine; default: the dev SQLite file). Both
are wrapped so that the commands call the same methods: those of
:class:`~cadenza.frontend._remote_jobs.RemoteJobs`.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from cadenza.engine import Engine
from cadenza.engine._job_lint import lint_paths
from cadenza.engine._job_model import JobDefinition
from cadenza.engine._jobs import JobService, jobs_for
from cadenza.frontend.cli._common import (
    add_config_arguments,
    ensure_sqlite_folder,
    settings_from,
)
from cadenza.frontend.cli._main import CliError
from cadenza.history import InvalidArgumentError

__all__ = [
    "Backend",
    "add_backend_arguments",
    "backend_for",
    "default_identity",
    "read_job_files",
    "read_job_set",
]


def default_identity() -> str:
    """``user@host`` of whoever runs the command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """``--server``/``--token`` or ``--db``, ``--config``, ``--namespace``."""
    add_config_arguments(parser)


class _LocalJobs:
    """The ``RemoteJobs`` methods on an embedded engine."""

    def __init__(self, service: JobService) -> None:
        self.service = service

    async def list_jobs(self, namespace: str) -> Any:
        return await self.service.list_jobs(namespace)

    async def describe_job(self, namespace: str, name: str) -> Any:
        return await self.service.describe_job(namespace, name)

    async def plan_jobs(
        self,
        namespace: str,
        jobs: Sequence[JobDefinition],
        *,
        prune: bool = False,
        step_types: Sequence[str] = (),
        calendars: Sequence[Any] | None = None,
    ) -> Any:
        return await self.service.plan(namespace, jobs, prune=prune, calendars=calendars)

    async def apply_jobs(
        self,
        namespace: str,
        jobs: Sequence[JobDefinition],
        *,
        prune: bool = False,
        step_types: Sequence[str] = (),
        identity: str = "",
        calendars: Sequence[Any] | None = None,
    ) -> Any:
        return await self.service.apply(
            namespace, jobs, prune=prune, identity=identity, calendars=calendars
        )

    async def run_job(self, namespace: str, name: str, **options: Any) -> Any:
        return await self.service.run_job(namespace, name, **options)

    async def list_variables(self, namespace: str, *, scope: str | None = None) -> Any:
        return await self.service.vars.list_variables(namespace, scope=scope)

    async def get_variable(self, namespace: str, name: str) -> Any:
        return await self.service.vars.get_variable(namespace, name)

    async def set_variable(self, namespace: str, name: str, value: Any, **options: Any) -> Any:
        view, _ = await self.service.vars.set_variable(namespace, name, value, **options)
        return view

    async def delete_variable(self, namespace: str, name: str, *, identity: str = "") -> None:
        await self.service.vars.delete_variable(namespace, name, identity=identity)

    async def rotate_secret_key(self) -> Any:
        return await self.service.vars.rotate_key()

    async def encrypt_secret(self, name: str, value: str, *, job: str = "") -> str:
        scope = f"job/{job}" if job else "global"
        return self.service.vars.encrypt_for(scope, name, value)


@dataclass
class Backend:
    """What a job command talks to.

    Attributes:
        jobs: The job, variable and secret methods (``RemoteJobs`` or the local equivalent).
        service: The workflow service (``RemoteService`` or the embedded ``Engine``).
        namespace: The namespace of the command.
        engine: The embedded engine, or None with ``--server``.
    """

    jobs: Any
    service: Any
    namespace: str
    engine: Engine | None = None


@contextlib.asynccontextmanager
async def backend_for(args: argparse.Namespace, *, write: bool = False) -> AsyncIterator[Backend]:
    """A server (``--server``) or an embedded engine on the database (``--db``).

    Args:
        write: The command changes runs or schedules: the embedded engine takes its shards
            (so no server may run on the same database meanwhile; use ``--server`` then).
    """
    try:
        settings = settings_from(args)
    except InvalidArgumentError as exc:
        raise CliError(str(exc)) from None
    if getattr(args, "server", None):
        from cadenza.frontend.remote import RemoteService

        remote = RemoteService(args.server, token=getattr(args, "token", ""))
        try:
            yield Backend(jobs=remote, service=remote, namespace=settings.namespace)
        finally:
            await remote.close()
        return
    ensure_sqlite_folder(settings.database_url)
    engine = Engine(settings)
    await engine.start(take_shards=write)
    try:
        yield Backend(
            jobs=_LocalJobs(jobs_for(engine)),
            service=engine,
            namespace=settings.namespace,
            engine=engine,
        )
    finally:
        await engine.stop()


def read_job_set(
    paths: Sequence[str], step_types: Sequence[str]
) -> tuple[list[JobDefinition], list[dict[str, Any]]] | None:
    """Lint and load the job files: their jobs and their business calendars (``calendars:``
    entries as JSON data). Print every error (``FILE:LINE: FIELD: MESSAGE``) and return None
    when there is one (nothing must change then). Warnings are left to ``cadenza lint``: the
    target knows its global variables and calendars."""
    try:
        report = lint_paths(paths, step_types=step_types)
    except InvalidArgumentError as exc:
        raise CliError(exc.reason) from None
    for issue in report.errors:
        print(issue, file=sys.stderr)
    if not report.ok:
        print(f"nothing changed: {report.summary()}", file=sys.stderr)
        return None
    jobs = [job for loaded in report.files for job in loaded.jobs]
    calendars = [msgspec.to_builtins(c) for loaded in report.files for c in loaded.calendars]
    return jobs, calendars


def read_job_files(paths: Sequence[str], step_types: Sequence[str]) -> list[JobDefinition] | None:
    """The jobs of :func:`read_job_set` (None when a file has an error)."""
    found = read_job_set(paths, step_types)
    return None if found is None else found[0]
