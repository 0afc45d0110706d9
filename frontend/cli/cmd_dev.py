"""``cadenza dev``: everything in one process on a SQLite file — the first thing to run."""

from __future__ import annotations

import argparse
from typing import Any

from cadenza.frontend.cli._common import (
    add_config_arguments,
    configure_logging,
    ensure_sqlite_folder,
    load_definitions,
    settings_from,
)
from cadenza.frontend.cli._serve import serve


def register(subparsers: Any) -> None:
    """Add the ``dev`` subcommand."""
    parser = subparsers.add_parser(
        "dev",
        help="run engine, console and a worker in one process on SQLite",
        description=(
            "Run the engine, the web console/API and (with --module) a worker in one process. "
            "Data goes to a SQLite file (default .cadenza/dev.db)."
        ),
    )
    add_config_arguments(parser, server=False)
    parser.add_argument(
        "--module",
        "-m",
        action="append",
        default=[],
        help="module (dotted or .py path) with workflows/activities",
    )
    parser.add_argument("--task-queue", "-q", default="default", help="task queue of the worker")
    parser.add_argument("--host", default=None, help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="listen port (default 7233)")
    parser.add_argument("--jobs", action="append", default=[], help="job files or folders to load")
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    """Start everything and run until interrupted."""
    settings = settings_from(args, http_host=args.host, http_port=args.port)
    ensure_sqlite_folder(settings.database_url)
    configure_logging(settings)
    workflows, activities = load_definitions(args.module)
    return await serve(
        settings,
        workflows=workflows,
        activities=activities,
        task_queue=args.task_queue,
        jobs=args.jobs,
        tune_gc=True,
    )
