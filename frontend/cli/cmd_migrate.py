"""``cadenza migrate``: apply pending schema migrations."""

from __future__ import annotations

import argparse
from typing import Any

from cadenza.frontend.cli._common import add_config_arguments, ensure_sqlite_folder, settings_from
from cadenza.history import SqlStore


def register(subparsers: Any) -> None:
    """Add the ``migrate`` subcommand."""
    parser = subparsers.add_parser("migrate", help="apply pending database migrations")
    add_config_arguments(parser, server=False)
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    """Apply migrations and say which."""
    settings = settings_from(args)
    ensure_sqlite_folder(settings.database_url)
    store = SqlStore(settings.database_url)
    try:
        applied = await store.migrate()
    finally:
        await store.close()
    if applied:
        print(f"applied migrations {', '.join(map(str, applied))}")
    else:
        print("schema is up to date")
    return 0
