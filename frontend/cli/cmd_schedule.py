"""``cadenza schedule create|update|describe|list|pause|unpause|trigger|backfill|delete|preview``.

A spec file is one schedule spec in YAML, JSON or TOML (the fields of a job file's schedule
entry, ``docs/schedules.md``)::

    kind: cron
    cron: "0 30 1 * * ?"
    calendar: VN

``preview`` works offline: it prints the next fire times of a spec file without any server or
database. The other commands talk to a server (``--server URL``) or open the database
(``--db URL``, default the dev SQLite file) with an embedded engine; every change is recorded
in the schedule's audit log with ``--identity`` (default ``cli@<user>``).

    $ cadenza schedule preview nightly.yaml --count 3
    $ cadenza schedule create nightly nightly.yaml --workflow Report --task-queue reports
    $ cadenza schedule pause nightly --note "bank holiday freeze"
    $ cadenza schedule backfill nightly --start 2026-03-01 --end 2026-03-07T23:59:59
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import orjson

from cadenza.engine._job_source import FORMATS, SourceError, parse_source
from cadenza.engine._schedule_api import (
    OVERLAP_POLICIES,
    FireTimeView,
    ScheduleAction,
    ScheduleDescription,
)
from cadenza.frontend.cli._common import add_config_arguments, service_for, settings_from
from cadenza.frontend.cli._main import CliError
from cadenza.history import InvalidArgumentError
from cadenza.history._schedule_records import schedule_event_to_json
from cadenza.timers._schedule_eval import preview_fire_times
from cadenza.timers._spec import DEFAULT_TIMEZONE, ScheduleSpec, decode_schedule_spec

MAX_COUNT = 10_000


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``schedule`` subcommand group."""
    parser = subparsers.add_parser(
        "schedule", help="create and manage schedules (preview a spec file offline)"
    )
    sub = parser.add_subparsers(dest="schedule_command", metavar="ACTION", required=True)

    create = sub.add_parser("create", help="create a schedule from a spec file")
    create.add_argument("schedule_id", metavar="ID")
    create.add_argument("spec_file", metavar="SPEC_FILE")
    _action_arguments(create, required=True)
    create.set_defaults(handler=create_cmd, read_only=False)

    update = sub.add_parser("update", help="replace a schedule's spec and/or workflow")
    update.add_argument("schedule_id", metavar="ID")
    update.add_argument("--spec", dest="spec_file", metavar="SPEC_FILE", default=None)
    _action_arguments(update, required=False)
    update.set_defaults(handler=update_cmd, read_only=False)

    describe = sub.add_parser("describe", help="spec, state, next fire times, last runs")
    describe.add_argument("schedule_id", metavar="ID")
    describe.add_argument("--events", action="store_true", help="also print the audit log")
    describe.add_argument("--json", action="store_true")
    describe.set_defaults(handler=describe_cmd)

    listing = sub.add_parser("list", help="list schedules")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=list_cmd)

    for name, handler, text in (
        ("pause", pause_cmd, "stop firing until unpaused"),
        ("unpause", unpause_cmd, "fire again (missed fires follow the catch-up policy)"),
    ):
        action = sub.add_parser(name, help=text)
        action.add_argument("schedule_id", metavar="ID")
        action.add_argument("--note", default="", help="why (shown by describe)")
        action.set_defaults(handler=handler, read_only=False)

    trigger = sub.add_parser("trigger", help="fire now, outside the spec")
    trigger.add_argument("schedule_id", metavar="ID")
    trigger.add_argument("--overlap", choices=OVERLAP_POLICIES, default="")
    trigger.set_defaults(handler=trigger_cmd, read_only=False)

    backfill = sub.add_parser("backfill", help="run the spec's fires of a past time range")
    backfill.add_argument("schedule_id", metavar="ID")
    backfill.add_argument("--start", required=True, metavar="ISO8601")
    backfill.add_argument("--end", required=True, metavar="ISO8601")
    backfill.add_argument("--overlap", choices=OVERLAP_POLICIES, default="")
    backfill.set_defaults(handler=backfill_cmd, read_only=False)

    delete = sub.add_parser("delete", help="delete a schedule (its runs keep running)")
    delete.add_argument("schedule_id", metavar="ID")
    delete.add_argument("--reason", default="")
    delete.set_defaults(handler=delete_cmd, read_only=False)

    for action in (create, update, describe, listing, *_named(sub, "pause", "unpause")):
        _connection_arguments(action)
    for action in (trigger, backfill, delete):
        _connection_arguments(action)

    preview = sub.add_parser(
        "preview",
        help="print the next fire times of a spec file (offline)",
        description="Print the next fire times of a schedule spec file, without any server.",
    )
    preview.add_argument("spec_file", metavar="SPEC_FILE")
    preview.add_argument("--count", default="10", metavar="N", help="how many (default 10)")
    preview.add_argument("--after", metavar="ISO8601", help="start after this instant (now)")
    preview.add_argument("--id", dest="schedule_id", default="", help="schedule id (jitter seed)")
    preview.add_argument("--json", action="store_true", help="print JSON")
    preview.set_defaults(handler=preview_cmd)


def _named(sub: argparse._SubParsersAction, *names: str) -> list[argparse.ArgumentParser]:
    return [sub.choices[name] for name in names]


def _connection_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--identity", default=None, help="who makes the change (default cli@<user>)"
    )


def _action_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--workflow", required=required, help="workflow type each fire starts")
    parser.add_argument("--task-queue", "-q", default=None, help="its task queue (default)")
    parser.add_argument("--input", default=None, help="JSON array of arguments ([])")
    parser.add_argument("--execution-timeout", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--run-timeout", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--memo", default=None, help="JSON object recorded with every run")


# --------------------------------------------------------------------------- helpers


def _identity(args: argparse.Namespace) -> str:
    if args.identity:
        return str(args.identity)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli@{user}"


def read_spec_file(path_text: str) -> ScheduleSpec:
    """Load and validate one spec from a YAML, JSON or TOML file (``-``: YAML on stdin).

    Raises:
        CliError: The file cannot be read or parsed, or the spec is invalid (field named).
    """
    if path_text == "-":
        text, fmt = sys.stdin.read(), "yaml"
    else:
        path = Path(path_text)
        fmt = FORMATS.get(path.suffix.lower(), "yaml")
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise CliError(f"{path_text}: cannot read the file ({exc.strerror or exc})") from None
    try:
        data = parse_source(text, fmt).data  # type: ignore[arg-type]
    except SourceError as exc:
        raise CliError(f"{path_text}: {exc}") from None
    if not isinstance(data, dict):
        raise CliError(f"{path_text}: expected a mapping with the schedule's fields (kind: ...)")
    try:
        return decode_schedule_spec(data)
    except InvalidArgumentError as exc:
        raise CliError(f"{path_text}: {exc}") from None


def _json_value(text: str, option: str, kind: type) -> Any:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CliError(f"{option}: not valid JSON ({exc})") from None
    if not isinstance(value, kind):
        raise CliError(f"{option}: must be a JSON {'array' if kind is list else 'object'}")
    return value


def _action(args: argparse.Namespace, base: ScheduleAction | None) -> ScheduleAction | None:
    given = any(
        getattr(args, name) is not None
        for name in ("workflow", "task_queue", "input", "execution_timeout", "run_timeout", "memo")
    )
    if not given:
        return None
    fields: dict[str, Any] = msgspec.structs.asdict(base) if base is not None else {}
    if args.workflow is not None:
        fields["workflow_type"] = args.workflow
    fields.setdefault("workflow_type", "")
    if args.task_queue is not None:
        fields["task_queue"] = args.task_queue
    fields.setdefault("task_queue", "default")
    if args.input is not None:
        fields["input"] = msgspec.Raw(orjson.dumps(_json_value(args.input, "--input", list)))
    if args.memo is not None:
        fields["memo"] = _json_value(args.memo, "--memo", dict)
    for name in ("execution_timeout", "run_timeout"):
        value = getattr(args, name)
        if value is not None:
            if not value > 0:
                raise CliError(f"--{name.replace('_', '-')}: must be positive")
            fields[name] = value
    return ScheduleAction(**fields)


def _instant(text: str, option: str, zone: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"{option}: {text!r} is not an ISO-8601 date-time") from None
    if value.tzinfo is None:
        try:
            value = value.replace(tzinfo=ZoneInfo(zone))
        except (ZoneInfoNotFoundError, ValueError):
            raise CliError(f"unknown time zone {zone!r}") from None
    return value


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{value.microsecond // 1000:03d}Z" if value.microsecond >= 1000 else "Z"
    )


def _print_times(times: list[FireTimeView], zone_name: str) -> None:
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    if not times:
        print("  (no fire time)")
    width = len(str(len(times)))
    for number, fire in enumerate(times, start=1):
        local = fire.nominal_time.astimezone(zone)
        offset = local.strftime("%z")
        jitter = ""
        if fire.actual_time != fire.nominal_time:
            jitter = f"   starts {_utc(fire.actual_time)}"
        print(
            f"  {number:>{width}}  {local.strftime('%Y-%m-%d %H:%M:%S')} {offset[:3]}:{offset[3:]} "
            f"{local.strftime('%a')}   {_utc(fire.nominal_time)}{jitter}"
        )


# --------------------------------------------------------------------------- commands


def preview_cmd(args: argparse.Namespace) -> int:
    """Print the next fire times of a spec file, offline."""
    spec = read_spec_file(args.spec_file)
    try:
        count = int(args.count)
    except ValueError:
        raise CliError(f"--count: {args.count!r} is not a whole number") from None
    if not 1 <= count <= MAX_COUNT:
        raise CliError(f"--count: must be between 1 and {MAX_COUNT}, got {count}")
    after = _instant(args.after, "--after", spec.timezone) if args.after else datetime.now(UTC)
    try:
        fires = preview_fire_times(spec, after=after, count=count, schedule_id=args.schedule_id)
    except InvalidArgumentError as exc:
        raise CliError(f"{args.spec_file}: {exc}") from None
    times = [FireTimeView(nominal_time=f.nominal, actual_time=f.actual) for f in fires]
    if args.json:
        print(
            orjson.dumps(
                [{"nominal": _utc(t.nominal_time), "actual": _utc(t.actual_time)} for t in times]
            ).decode()
        )
        return 0
    print(f"schedule    {spec.kind}, time zone {spec.timezone}")
    print(f"after       {_utc(after)}")
    _print_times(times, spec.timezone)
    return 0


async def create_cmd(args: argparse.Namespace) -> int:
    """Create a schedule."""
    spec = read_spec_file(args.spec_file)
    action = _action(args, None)
    if action is None:
        raise CliError("--workflow is required")
    async with service_for(args) as (service, namespace):
        description = await service.create_schedule(
            namespace, args.schedule_id, spec, action, identity=_identity(args)
        )
    print(f"created schedule {args.schedule_id}")
    _print_times(description.next_fire_times[:3], spec.timezone)
    return 0


async def update_cmd(args: argparse.Namespace) -> int:
    """Replace a schedule's spec and/or action."""
    spec = read_spec_file(args.spec_file) if args.spec_file else None
    async with service_for(args) as (service, namespace):
        current: ScheduleDescription = await service.describe_schedule(namespace, args.schedule_id)
        action = _action(args, current.action)
        if spec is None and action is None:
            raise CliError("nothing to update: give --spec and/or --workflow/--input/...")
        before = current.version
        description = await service.update_schedule(
            namespace, args.schedule_id, spec=spec, action=action, identity=_identity(args)
        )
    changed = description.version != before
    print(f"updated schedule {args.schedule_id}" if changed else "no change")
    return 0


async def describe_cmd(args: argparse.Namespace) -> int:
    """Print a schedule's description (and audit log)."""
    async with service_for(args) as (service, namespace):
        description: ScheduleDescription = await service.describe_schedule(
            namespace, args.schedule_id
        )
        events = (
            await service.get_schedule_history(namespace, args.schedule_id) if args.events else []
        )
    if args.json:
        out = msgspec.json.decode(msgspec.json.encode(description))
        if args.events:
            out["events"] = [schedule_event_to_json(e) for e in events]
        print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        return 0
    zone = str(description.spec.get("timezone", DEFAULT_TIMEZONE))
    state = "paused" + (f" ({description.note})" if description.note else "")
    print(f"schedule    {description.schedule_id}  [{state if description.paused else 'active'}]")
    print(f"spec        {orjson.dumps(description.spec).decode()}")
    print(f"workflow    {description.action.workflow_type} on {description.action.task_queue}")
    print(
        f"runs        {description.run_count} started by the spec; "
        f"{len(description.running)} running; {description.buffered} buffered; "
        f"{description.missed_count} missed; {description.skipped_count} skipped"
    )
    print("next fires")
    _print_times(description.next_fire_times, zone)
    if description.recent_runs or description.running:
        print("last runs")
        for run in [*description.running, *description.recent_runs]:
            print(f"  {run.status:<17} {_utc(run.nominal_time)}  {run.workflow_id}  ({run.run_id})")
    for event in events:
        print(f"  #{event.event_id:<4} {event.event_type:<18} {event.identity}")
    return 0


async def list_cmd(args: argparse.Namespace) -> int:
    """List schedules."""
    async with service_for(args) as (service, namespace):
        rows = await service.list_schedules(namespace, limit=args.limit)
    if args.json:
        print(orjson.dumps([msgspec.to_builtins(r) for r in rows]).decode())
        return 0
    for r in rows:
        nxt = _utc(r.next_fire_time) if r.next_fire_time else "-"
        flag = "paused" if r.paused else "active"
        print(f"{flag:<7} {r.kind:<12} next {nxt:<24} runs {r.run_count:<6} {r.schedule_id}")
    return 0


async def pause_cmd(args: argparse.Namespace) -> int:
    """Pause a schedule."""
    async with service_for(args) as (service, namespace):
        await service.pause_schedule(
            namespace, args.schedule_id, note=args.note, identity=_identity(args)
        )
    print(f"paused schedule {args.schedule_id}")
    return 0


async def unpause_cmd(args: argparse.Namespace) -> int:
    """Unpause a schedule."""
    async with service_for(args) as (service, namespace):
        await service.unpause_schedule(
            namespace, args.schedule_id, note=args.note, identity=_identity(args)
        )
    print(f"unpaused schedule {args.schedule_id}")
    return 0


async def trigger_cmd(args: argparse.Namespace) -> int:
    """Fire a schedule now."""
    async with service_for(args) as (service, namespace):
        result = await service.trigger_schedule(
            namespace, args.schedule_id, overlap=args.overlap, identity=_identity(args)
        )
    print(
        f"{result.outcome} {result.workflow_id}"
        + (f" run {result.run_id}" if result.run_id else "")
    )
    return 0


async def backfill_cmd(args: argparse.Namespace) -> int:
    """Queue the spec's fires of a past range."""
    zone = settings_from(args).timezone
    start = _instant(args.start, "--start", zone)
    end = _instant(args.end, "--end", zone)
    async with service_for(args) as (service, namespace):
        result = await service.backfill_schedule(
            namespace, args.schedule_id, start, end, overlap=args.overlap, identity=_identity(args)
        )
    print(f"queued {result.fire_count} fires of schedule {args.schedule_id}")
    return 0


async def delete_cmd(args: argparse.Namespace) -> int:
    """Delete a schedule."""
    async with service_for(args) as (service, namespace):
        await service.delete_schedule(
            namespace, args.schedule_id, identity=_identity(args), reason=args.reason
        )
    print(f"deleted schedule {args.schedule_id}")
    return 0
