"""``cadenza plan PATH...``: what ``apply`` would create, change (field by field) and delete."""

from __future__ import annotations

import argparse
from typing import Any

import msgspec
import orjson

from cadenza.frontend.cli._jobs_cli import add_backend_arguments, backend_for, read_job_set


def add_job_file_arguments(parser: argparse.ArgumentParser) -> None:
    """``PATH...``, ``--prune`` and ``--step-type`` (shared with ``apply``)."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="job files or directories")
    parser.add_argument(
        "--prune",
        action="store_true",
        help=(
            "also delete the jobs (and their schedules) that are not in the files, and the "
            "calendars applied from this namespace that are not in them"
        ),
    )
    parser.add_argument(
        "--step-type",
        action="append",
        default=[],
        metavar="NAME",
        help="a registered activity name allowed as step type (repeatable)",
    )
    add_backend_arguments(parser)


def register(subparsers: Any) -> None:
    """Add the ``plan`` subcommand."""
    parser = subparsers.add_parser(
        "plan",
        help="show what applying job files would change on the target",
        description=(
            "Compare job files (jobs and business calendars) with those applied on the target "
            "(--server or --db) and show what would be created (+), changed (~, field by "
            "field) and deleted (-, with --prune). Changes nothing. Exits 1 when a file is "
            "invalid."
        ),
    )
    add_job_file_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    """Lint the files, then ask the target for the plan and print it."""
    found = read_job_set(args.paths, args.step_type)
    if found is None:
        return 1
    jobs, calendars = found
    async with backend_for(args) as backend:
        plan = await backend.jobs.plan_jobs(
            backend.namespace,
            jobs,
            prune=args.prune,
            step_types=args.step_type,
            calendars=calendars,
        )
    if args.json:
        print(orjson.dumps(msgspec.to_builtins(plan), option=orjson.OPT_INDENT_2).decode())
    else:
        print(plan.render())
    return 0
