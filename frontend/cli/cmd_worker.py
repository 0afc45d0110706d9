"""``cadenza worker``: run workflows and activities of modules against a server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any

from cadenza.frontend.cli._common import (
    add_config_arguments,
    configure_logging,
    load_definitions,
    settings_from,
)
from cadenza.frontend.cli._gc import freeze_startup_objects, tune_garbage_collector
from cadenza.frontend.cli._main import CliError
from cadenza.sdk import Client, Worker
from cadenza.sdk._worker import DEFAULT_MAX_CACHED_WORKFLOWS


def register(subparsers: Any) -> None:
    """Add the ``worker`` subcommand."""
    parser = subparsers.add_parser(
        "worker",
        help="run a worker for modules against a server (--server) or a database (--db)",
    )
    add_config_arguments(parser)
    parser.add_argument("--module", "-m", action="append", default=[], required=True)
    parser.add_argument("--task-queue", "-q", default="default")
    parser.add_argument("--max-activities", type=int, default=100)
    parser.add_argument(
        "--max-workflow-tasks",
        type=int,
        default=200,
        help="workflow tasks run at once (default 200)",
    )
    parser.add_argument(
        "--max-cached-workflows",
        type=int,
        default=DEFAULT_MAX_CACHED_WORKFLOWS,
        help=f"executions kept in memory between their tasks (default"
        f" {DEFAULT_MAX_CACHED_WORKFLOWS}; 0: replay every task)",
    )
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    """Poll until SIGTERM/SIGINT, then drain."""
    settings = settings_from(args)
    configure_logging(settings)
    tune_garbage_collector(settings.gc_threshold)
    workflows, activities = load_definitions(args.module)
    if not workflows and not activities:
        raise CliError("the modules define no workflows and no activities")
    target = args.server or settings.database_url
    client = await Client.connect(
        target, namespace=settings.namespace, **({"token": args.token} if args.server else {})
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with Worker(
            client,
            task_queue=args.task_queue,
            workflows=workflows,
            activities=activities,
            max_concurrent_activities=args.max_activities,
            max_concurrent_workflow_tasks=args.max_workflow_tasks,
            max_cached_workflows=args.max_cached_workflows,
        ):
            if settings.gc_threshold:
                freeze_startup_objects()
            await stop.wait()
    finally:
        await client.close()
    return 0
