"""``cadenza job run|list|show``: run applied jobs by hand and look at them."""

from __future__ import annotations

import argparse
import contextlib
import sys
from datetime import timedelta
from typing import Any

import msgspec
import orjson

from cadenza.frontend.cli._jobs_cli import add_backend_arguments, backend_for, default_identity
from cadenza.frontend.cli._main import CliError
from cadenza.history import WorkflowFailureError


def register(subparsers: Any) -> None:
    """Add the ``job`` subcommand group."""
    parser = subparsers.add_parser("job", help="run, list and show declarative jobs")
    sub = parser.add_subparsers(dest="job_command", metavar="ACTION", required=True)

    run = sub.add_parser(
        "run",
        help="start a manual run of a job (and wait for its result)",
        description=(
            "Start a run of an applied job now, with --input as its trigger payload. With "
            "--wait, wait for the run and print its summary (exit 1 if it failed). With --db "
            "and --wait, the run executes in this process (no server may use the database)."
        ),
    )
    run.add_argument("name", help="the job")
    run.add_argument("--input", default=None, help="JSON trigger payload (trigger.payload)")
    run.add_argument("--wait", action="store_true", help="wait for and print the result")
    run.add_argument("--timeout", type=float, default=None, help="seconds to wait at most")
    run.add_argument("--id", dest="workflow_id", default=None, help="workflow id of the run")
    run.add_argument("--identity", default=None, help="who starts it (default: user@host)")
    run.set_defaults(handler=run_cmd)

    listing = sub.add_parser("list", help="list applied jobs")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=list_cmd)

    show = sub.add_parser("show", help="show a job: definition and versions")
    show.add_argument("name", help="the job")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=show_cmd)

    for action in (run, listing, show):
        add_backend_arguments(action)


def _dump(value: Any) -> str:
    return orjson.dumps(msgspec.to_builtins(value), option=orjson.OPT_INDENT_2).decode()


def _payload(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CliError(f"--input: not valid JSON ({exc})") from None


@contextlib.asynccontextmanager
async def _local_worker(engine: Any):  # type: ignore[no-untyped-def]
    """A job worker on an embedded engine, for ``--db --wait``."""
    from cadenza.activities import close_builtin_resources
    from cadenza.sdk import Client
    from cadenza.sdk._job_interpreter import job_worker

    worker = job_worker(Client(engine, namespace=engine.settings.namespace, identity="cli"))
    try:
        async with worker:
            yield
    finally:
        await close_builtin_resources()  # HTTP sessions and SQL pools of this event loop


async def run_cmd(args: argparse.Namespace) -> int:
    """Start a run; with --wait, print its summary."""
    from cadenza.sdk import Client

    payload = _payload(args.input)
    async with backend_for(args, write=True) as backend:
        started = await backend.jobs.run_job(
            backend.namespace,
            args.name,
            input=payload,
            identity=args.identity or default_identity(),
            workflow_id=args.workflow_id,
        )
        print(f"started {started.workflow_id} run {started.run_id}")
        if not args.wait:
            return 0
        client = Client(backend.service, namespace=backend.namespace, identity="cli")
        handle = client.get_workflow_handle(started.workflow_id, run_id=started.run_id)
        timeout = timedelta(seconds=args.timeout) if args.timeout else None
        worker = (
            _local_worker(backend.engine)
            if backend.engine is not None
            else contextlib.nullcontext()
        )
        async with worker:
            try:
                result = await handle.result(timeout=timeout)
            except WorkflowFailureError as exc:
                cause = exc.__cause__
                details = getattr(cause, "details", ())
                print(f"run failed: {cause or exc}", file=sys.stderr)
                if details:
                    print(_dump(details[0]))
                return 1
            except TimeoutError:
                print(f"still running after {args.timeout:g} s", file=sys.stderr)
                return 1
    print(_dump(result))
    return 0


async def list_cmd(args: argparse.Namespace) -> int:
    """List applied jobs."""
    async with backend_for(args) as backend:
        jobs = await backend.jobs.list_jobs(backend.namespace)
    if args.json:
        print(_dump(jobs))
        return 0
    for job in jobs:
        schedules = ", ".join(job.schedules) or "-"
        print(
            f"{job.name:<32} v{job.version:<4} {job.steps} steps  schedules: {schedules}  "
            f"applied {job.applied_at} by {job.applied_by}"
        )
    if not jobs:
        print("no jobs applied")
    return 0


async def show_cmd(args: argparse.Namespace) -> int:
    """Show one job."""
    async with backend_for(args) as backend:
        described = await backend.jobs.describe_job(backend.namespace, args.name)
    if args.json:
        print(_dump(described))
        return 0
    job = described.job
    print(f"job {job.name} version {job.version} ({job.content_hash})")
    if job.description:
        print(f"  {job.description}")
    print(f"  owner: {job.owner or '-'}  tags: {', '.join(job.tags) or '-'}")
    print(f"  triggers: {', '.join(job.triggers)}  schedules: {', '.join(job.schedules) or '-'}")
    print("versions:")
    for version in described.versions:
        print(f"  v{version.version} {version.change} {version.applied_at} by {version.applied_by}")
    print("definition:")
    print(_dump(described.definition))
    return 0
