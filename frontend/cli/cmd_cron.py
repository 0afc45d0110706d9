"""``cadenza cron next``: the next fire times of a cron expression.

Operators use it to check a schedule before they deploy it::

    $ cadenza cron next "0 30 2 * * ?" --tz Europe/Berlin --after 2026-03-28T00:00:00Z --count 3
    expression  0 30 2 * * ?  (Quartz: 0 30 2 * * ?)
    time zone   Europe/Berlin, DST policy: quartz
      1  2026-03-28 02:30:00 +01:00 Sat   2026-03-28T01:30:00Z
      2  2026-03-30 02:30:00 +02:00 Mon   2026-03-30T00:30:00Z
      3  2026-03-31 02:30:00 +02:00 Tue   2026-03-31T00:30:00Z

With ``--json`` it prints a JSON array of UTC instants (``"2026-03-28T01:30:00Z"``).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cadenza.frontend.cli._main import CliError
from cadenza.history import InvalidArgumentError
from cadenza.timers._cron import AmbiguousTime, CronDstPolicy, NonexistentTime, parse_cron

DEFAULT_ZONE = "Asia/Ho_Chi_Minh"
MAX_COUNT = 10_000


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``cron`` and its ``next`` subcommand."""
    cron = subparsers.add_parser("cron", help="cron expressions: check them before deploying")
    sub = cron.add_subparsers(dest="cron_command", metavar="SUBCOMMAND")
    cron.set_defaults(handler=lambda _args: _usage(cron))
    nxt = sub.add_parser(
        "next",
        help="print the next fire times of a cron expression",
        description=(
            "Print the next fire times of a Quartz (6-7 fields), Unix (5 fields) or @macro cron "
            "expression, computed exactly as Quartz does unless a DST policy is given."
        ),
    )
    nxt.add_argument("expression", metavar="EXPR", help='e.g. "0 0/15 8-17 ? * MON-FRI"')
    nxt.add_argument(
        "--tz",
        default=DEFAULT_ZONE,
        metavar="ZONE",
        help=f"IANA time zone the expression reads (default {DEFAULT_ZONE})",
    )
    nxt.add_argument(
        "--after",
        metavar="ISO8601",
        help="start after this instant (default: now); without an offset it is a wall time in --tz",
    )
    nxt.add_argument("--count", default="10", metavar="N", help="how many fire times (default 10)")
    nxt.add_argument("--json", action="store_true", help="print a JSON array of UTC instants")
    nxt.add_argument(
        "--nonexistent",
        default="quartz",
        choices=[m.value for m in NonexistentTime],
        help="DST policy for wall times skipped by the clock (default quartz)",
    )
    nxt.add_argument(
        "--ambiguous",
        default="quartz",
        choices=[m.value for m in AmbiguousTime],
        help="DST policy for wall times that occur twice (default quartz)",
    )
    nxt.set_defaults(handler=_next)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CliError(
            f"--tz: unknown time zone {name!r} (use an IANA name such as {DEFAULT_ZONE})"
        ) from None


def _after(text: str | None, zone: ZoneInfo) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            f"--after: {text!r} is not an ISO-8601 date-time (e.g. 2026-03-28T00:00:00Z)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value


def _count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise CliError(f"--count: {text!r} is not a whole number") from None
    if not 1 <= count <= MAX_COUNT:
        raise CliError(f"--count: must be between 1 and {MAX_COUNT}, got {count}")
    return count


def _next(args: argparse.Namespace) -> int:
    try:
        cron = parse_cron(args.expression)
    except InvalidArgumentError as exc:
        raise CliError(f"invalid cron expression {args.expression!r}: {exc}") from None
    zone = _zone(args.tz)
    after = _after(args.after, zone)
    count = _count(args.count)
    policy = CronDstPolicy(nonexistent=args.nonexistent, ambiguous=args.ambiguous)
    times = cron.next_times(after, zone, count, dst=policy)
    if args.json:
        print(json.dumps([t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in times]))
        return 0
    quartz = " | ".join(cron.quartz)
    print(f"expression  {cron.expression}  ({cron.kind}; Quartz: {quartz})")
    dst = "quartz" if policy.is_quartz else f"{policy.nonexistent}/{policy.ambiguous}"
    print(f"time zone   {args.tz}, DST policy: {dst}")
    print(f"after       {after.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}")
    if not times:
        print("  (no fire time: the expression never fires again)")
    width = len(str(len(times)))
    for number, instant in enumerate(times, start=1):
        local = instant.astimezone(zone)
        offset = local.strftime("%z")
        offset = f"{offset[:3]}:{offset[3:]}"
        print(
            f"  {number:>{width}}  {local.strftime('%Y-%m-%d %H:%M:%S')} {offset} "
            f"{local.strftime('%a')}   {instant.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        )
    return 0
