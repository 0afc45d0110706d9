"""``cadenza history show|export|verify WORKFLOW_ID``: read, export and audit a history.

``verify`` recomputes the hash chain on this side from the events it reads (it does not trust
the server's word) and checks that the chain ends at the execution's recorded last hash.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC
from typing import Any

import orjson

from cadenza.frontend.cli._common import add_config_arguments, service_for
from cadenza.history import HistoryEvent, event_to_json, verify_chain


def register(subparsers: Any) -> None:
    """Add the ``history`` subcommand group."""
    parser = subparsers.add_parser("history", help="show, export or verify a workflow's history")
    sub = parser.add_subparsers(dest="history_command", metavar="ACTION", required=True)
    for name, handler, text in (
        ("show", show, "print the history as a table"),
        ("export", export, "write the history as JSON lines"),
        ("verify", verify, "verify the hash chain (exit 1 with the first bad event)"),
    ):
        action = sub.add_parser(name, help=text)
        action.add_argument("workflow_id")
        action.add_argument("--run-id", default=None, help="a specific run (default: the latest)")
        add_config_arguments(action)
        if name == "export":
            action.add_argument("--output", "-o", default="-", help="file (default: stdout)")
        action.set_defaults(handler=handler)


async def _events(
    service: Any, namespace: str, workflow_id: str, run_id: str | None
) -> tuple[str, list[HistoryEvent]]:
    events: list[HistoryEvent] = []
    after = 0
    while True:
        run_id, page = await service.get_history(
            namespace, workflow_id, run_id, after=after, limit=1000
        )
        events.extend(page)
        if len(page) < 1000:
            return run_id or "", events
        after = page[-1].event_id


def _summary(event: HistoryEvent) -> str:
    data = event_to_json(event)["attributes"]
    data.pop("type", None)
    for key in ("input", "result"):
        if key in data:
            text = orjson.dumps(data[key]).decode()
            data[key] = text if len(text) <= 60 else text[:57] + "..."
    text = " ".join(f"{k}={v}" for k, v in data.items() if v not in ("", None, [], {}))
    return text if len(text) <= 110 else text[:107] + "..."


async def show(args: argparse.Namespace) -> int:
    """Print one line per event."""
    async with service_for(args) as (service, namespace):
        run_id, events = await _events(service, namespace, args.workflow_id, args.run_id)
    print(f"workflow {args.workflow_id} run {run_id}: {len(events)} events")
    for event in events:
        when = event.event_time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        print(f"{event.event_id:>5}  {when}Z  {event.event_type:<42} {_summary(event)}")
    return 0


async def export(args: argparse.Namespace) -> int:
    """JSON lines, one event each, hashes included."""
    async with service_for(args) as (service, namespace):
        run_id, events = await _events(service, namespace, args.workflow_id, args.run_id)
    lines = b"".join(
        orjson.dumps({"workflow_id": args.workflow_id, "run_id": run_id, **event_to_json(e)})
        + b"\n"
        for e in events
    )
    if args.output == "-":
        sys.stdout.buffer.write(lines)
        sys.stdout.flush()
    else:
        await asyncio.to_thread(_write, args.output, lines)
    return 0


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


async def verify(args: argparse.Namespace) -> int:
    """Recompute the chain; exit 1 with the first bad event."""
    async with service_for(args) as (service, namespace):
        description = await service.describe_workflow(namespace, args.workflow_id, args.run_id)
        run_id, events = await _events(service, namespace, args.workflow_id, description.run_id)
    verdict = verify_chain(namespace, args.workflow_id, run_id, events)
    if verdict.ok and events and events[-1].hash != description.last_hash:
        print(
            f"FAILED at event {events[-1].event_id}: the chain does not end at the recorded last hash",
            file=sys.stderr,
        )
        return 1
    if verdict.ok and len(events) != description.history_length:
        print(f"FAILED: {description.history_length - len(events)} events missing", file=sys.stderr)
        return 1
    if not verdict.ok:
        print(f"FAILED at event {verdict.first_bad_event_id}: {verdict.reason}", file=sys.stderr)
        return 1
    last = events[-1].hash if events else ""
    print(f"OK: {verdict.events_checked} events of run {run_id} verify; last hash {last}")
    return 0
