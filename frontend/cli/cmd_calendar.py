"""``cadenza calendar``: look at business calendars.

``cadenza calendar show NAME --year YYYY [--json]`` lists a calendar's holidays and make-up
working days of one year: a table for people, or with ``--json`` a JSON array of objects with
``date`` (YYYY-MM-DD), ``kind`` (``holiday`` or ``makeup_workday``) and ``name``.
``cadenza calendar list`` prints the names of the known calendars.

Offline (the default) they show the built-in calendars. With ``--server URL`` (and ``--token``,
or ``CADENZA_SERVER`` / ``CADENZA_TOKEN``) they ask a server (``GET /api/v1/calendars...``), so
the calendars stored by ``cadenza apply`` from job files are shown as the server uses them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from cadenza.frontend.cli._main import CliError
from cadenza.history import InvalidArgumentError, NotFoundError
from cadenza.timers._calendars import (
    MAX_YEAR,
    MIN_YEAR,
    CalendarEntry,
    calendar_names,
    get_calendar,
)

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``calendar show`` and ``calendar list`` to the ``cadenza`` parser."""
    parser = subparsers.add_parser(
        "calendar",
        help="business calendars: holidays and make-up working days",
        description="Inspect business calendars (holidays and make-up working days).",
    )
    sub = parser.add_subparsers(dest="calendar_command", metavar="SUBCOMMAND")
    parser.set_defaults(handler=_missing_subcommand(parser))

    show = sub.add_parser(
        "show",
        help="list a calendar's holidays and make-up working days of a year",
        description="List the holidays and make-up working days of one year.",
    )
    show.add_argument("name", metavar="NAME", help="calendar name, e.g. VN or weekends-only")
    show.add_argument("--year", required=True, metavar="YYYY", help="the year to list")
    show.add_argument("--json", action="store_true", help="print a JSON array")
    _add_server_arguments(show)
    show.set_defaults(handler=_show)

    listing = sub.add_parser("list", help="list the known calendars")
    _add_server_arguments(listing)
    listing.set_defaults(handler=_list)


def _add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        metavar="URL",
        default=os.environ.get("CADENZA_SERVER"),
        help="ask a running server (its stored calendars too) instead of the built-ins "
        "(or CADENZA_SERVER)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("CADENZA_TOKEN", ""),
        help="the server's worker token (or CADENZA_TOKEN)",
    )


def _missing_subcommand(parser: argparse.ArgumentParser):  # type: ignore[no-untyped-def]
    def handler(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return handler


def _parse_year(text: str) -> int:
    try:
        year = int(text)
    except ValueError:
        raise CliError(f"--year: expected a year YYYY, got {text!r}") from None
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise CliError(f"--year: must be between {MIN_YEAR} and {MAX_YEAR}, got {year}")
    return year


def _print_entries(name: str, year: int, entries: Sequence[CalendarEntry], as_json: bool) -> None:
    if as_json:
        payload = [{"date": e.date.isoformat(), "kind": e.kind, "name": e.name} for e in entries]
        sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
        return
    rows = [
        (e.date.isoformat(), _WEEKDAYS[e.date.weekday()], e.kind, e.source, e.name) for e in entries
    ]
    header = ("DATE", "DAY", "KIND", "SOURCE", "NAME")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = [f"{name} {year}: {len(entries)} entries"]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]))
    sys.stdout.write("\n".join(lines) + "\n")


def _show(args: argparse.Namespace) -> int | Any:
    year = _parse_year(args.year)
    if getattr(args, "server", None):
        return _show_remote(args, year)
    try:
        calendar = get_calendar(args.name)
        entries = calendar.entries(year)
    except InvalidArgumentError as exc:
        raise CliError(str(exc.reason if exc.field == "calendar" else exc)) from None
    _print_entries(calendar.name, year, entries, args.json)
    return 0


async def _show_remote(args: argparse.Namespace, year: int) -> int:
    from cadenza.frontend.remote import RemoteService

    remote = RemoteService(args.server, token=args.token or "")
    try:
        described = await remote.describe_calendar(args.name, year)
    except NotFoundError as exc:
        raise CliError(str(exc)) from None
    finally:
        await remote.close()
    _print_entries(described.calendar.name, year, described.entries, args.json)
    return 0


def _list(args: argparse.Namespace) -> int | Any:
    if getattr(args, "server", None):
        return _list_remote(args)
    for name in calendar_names():
        calendar = get_calendar(name)
        description = getattr(calendar, "description", "")
        sys.stdout.write(f"{name}\t{description}\n" if description else f"{name}\n")
    return 0


async def _list_remote(args: argparse.Namespace) -> int:
    from cadenza.frontend.remote import RemoteService

    remote = RemoteService(args.server, token=args.token or "")
    try:
        found = await remote.list_calendars()
    finally:
        await remote.close()
    for summary in found:
        source = summary.source + (f" v{summary.version}" if summary.version else "")
        line = f"{summary.name}\t{source}"
        sys.stdout.write(f"{line}\t{summary.description}\n" if summary.description else line + "\n")
    return 0
