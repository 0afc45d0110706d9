"""``cadenza server``: a production server process (engine + HTTP API), no worker."""

from __future__ import annotations

import argparse
from typing import Any

from cadenza.frontend.cli._common import add_config_arguments, configure_logging, settings_from
from cadenza.frontend.cli._serve import serve


def register(subparsers: Any) -> None:
    """Add the ``server`` subcommand."""
    parser = subparsers.add_parser(
        "server",
        help="run a server (engine + API) on PostgreSQL; several share the shards",
        description="Run the engine and the HTTP API. Workers connect with `cadenza worker`.",
    )
    add_config_arguments(parser, server=False)
    parser.add_argument("--host", default=None, help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="listen port (default 7233)")
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT."""
    settings = settings_from(args, http_host=args.host, http_port=args.port)
    configure_logging(settings)
    return await serve(settings, tune_gc=True)
