"""``cadenza apply PATH... [--prune]``: make the target's jobs match the files."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cadenza.frontend.cli._jobs_cli import backend_for, default_identity, read_job_files
from cadenza.frontend.cli.cmd_plan import add_job_file_arguments


def register(subparsers: Any) -> None:
    """Add the ``apply`` subcommand."""
    parser = subparsers.add_parser(
        "apply",
        help="apply job files: create, update (and with --prune delete) jobs and schedules",
        description=(
            "Apply job files to the target (--server or --db): all or nothing (an invalid file "
            "changes nothing and exits 1), idempotent (a second apply says 'no changes'). Each "
            "changed job gets a new version recorded with --identity; its schedules follow."
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
    jobs = read_job_files(args.paths, args.step_type)
    if jobs is None:
        return 1
    async with backend_for(args, write=True) as backend:
        result = await backend.jobs.apply_jobs(
            backend.namespace,
            jobs,
            prune=args.prune,
            step_types=args.step_type,
            identity=args.identity or default_identity(),
        )
    print(result.plan.render())
    for name, version in sorted(result.versions.items()):
        print(f"applied {name} version {version}")
    for line in result.schedules:
        print(line)
    for problem in result.schedule_errors:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if result.schedule_errors else 0
