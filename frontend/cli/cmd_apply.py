"""``cadenza apply PATH... [--prune]``: make the target's jobs match the files."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cadenza.frontend.cli._jobs_cli import backend_for, default_identity, read_job_set
from cadenza.frontend.cli.cmd_plan import add_job_file_arguments


def register(subparsers: Any) -> None:
    """Add the ``apply`` subcommand."""
    parser = subparsers.add_parser(
        "apply",
        help="apply job files: create, update (and with --prune delete) jobs and schedules",
        description=(
            "Apply job files to the target (--server or --db): all or nothing (an invalid file "
            "changes nothing and exits 1), idempotent (a second apply says 'no changes'). Each "
            "changed job gets a new version recorded with --identity; its schedules follow. "
            "The business calendars of the files are stored with the jobs and used by every "
            "server."
        ),
    )
    add_job_file_arguments(parser)
    parser.add_argument(
        "--identity",
        default=None,
        metavar="NAME",
        help="who applies, recorded with each new version (default: user@host)",
    )
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    """Lint the files, apply them, print what changed."""
    found = read_job_set(args.paths, args.step_type)
    if found is None:
        return 1
    jobs, calendars = found
    async with backend_for(args, write=True) as backend:
        result = await backend.jobs.apply_jobs(
            backend.namespace,
            jobs,
            prune=args.prune,
            step_types=args.step_type,
            identity=args.identity or default_identity(),
            calendars=calendars,
        )
    print(result.plan.render())
    deleted = {c.name for c in result.plan.calendars if c.action == "delete"}
    for name, version in sorted(result.calendar_versions.items()):
        if name in deleted:
            print(f"deleted calendar {name} (was version {version})")
        else:
            print(f"applied calendar {name} version {version}")
    for name, version in sorted(result.versions.items()):
        print(f"applied {name} version {version}")
    for line in result.schedules:
        print(line)
    for problem in result.schedule_errors:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if result.schedule_errors else 0
