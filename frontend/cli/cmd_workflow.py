"""``cadenza workflow start|list|describe|signal|cancel|terminate|result``."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson

from cadenza.frontend.cli._common import add_config_arguments, service_for
from cadenza.frontend.cli._main import CliError
from cadenza.sdk import Client


def register(subparsers: Any) -> None:
    """Add the ``workflow`` subcommand group."""
    parser = subparsers.add_parser("workflow", help="start and manage workflow executions")
    sub = parser.add_subparsers(dest="workflow_command", metavar="ACTION", required=True)

    start = sub.add_parser("start", help="start a workflow")
    start.add_argument("workflow_type")
    start.add_argument("--id", required=True, dest="workflow_id")
    start.add_argument("--task-queue", "-q", default="default")
    start.add_argument("--input", default="[]", help="JSON array of arguments")
    start.add_argument("--wait", action="store_true", help="wait for and print the result")
    start.set_defaults(handler=start_cmd, read_only=False)

    listing = sub.add_parser("list", help="list executions")
    listing.add_argument("--status", default=None)
    listing.add_argument("--type", dest="workflow_type", default=None)
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=list_cmd)

    for name, handler in (("describe", describe_cmd), ("result", result_cmd)):
        action = sub.add_parser(name, help=f"{name} an execution")
        action.add_argument("workflow_id")
        action.add_argument("--run-id", default=None)
        action.set_defaults(handler=handler)
        add_config_arguments(action)

    signal = sub.add_parser("signal", help="send a signal")
    signal.add_argument("workflow_id")
    signal.add_argument("signal_name")
    signal.add_argument("--input", default="[]", help="JSON array of arguments")
    signal.set_defaults(handler=signal_cmd, read_only=False)

    for name, handler in (("cancel", cancel_cmd), ("terminate", terminate_cmd)):
        action = sub.add_parser(name, help=f"{name} an execution")
        action.add_argument("workflow_id")
        action.add_argument("--reason", default="")
        action.set_defaults(handler=handler, read_only=False)
        add_config_arguments(action)

    for action in (start, listing, signal):
        add_config_arguments(action)


def _json_args(text: str) -> list[Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CliError(f"--input: not valid JSON ({exc})") from None
    if not isinstance(value, list):
        raise CliError("--input: must be a JSON array of arguments")
    return value


async def start_cmd(args: argparse.Namespace) -> int:
    """Start one execution."""
    async with service_for(args) as (service, namespace):
        client = Client(service, namespace=namespace, identity="cli")
        handle = await client.start_workflow(
            args.workflow_type,
            *_json_args(args.input),
            id=args.workflow_id,
            task_queue=args.task_queue,
        )
        print(f"started {args.workflow_id} run {handle.first_execution_run_id}")
        if args.wait:
            print(orjson.dumps(await handle.result()).decode())
    return 0


async def list_cmd(args: argparse.Namespace) -> int:
    """List executions, newest first."""
    async with service_for(args) as (service, namespace):
        rows = await service.list_workflows(
            namespace, status=args.status, workflow_type=args.workflow_type, limit=args.limit
        )
    if args.json:
        print(orjson.dumps([_row(r) for r in rows]).decode())
        return 0
    for r in rows:
        started = datetime.fromtimestamp(r.start_time_ms / 1000, tz=UTC).strftime(
            "%Y-%m-%d %H:%M:%S"
        )
        print(f"{r.status:<17} {started}Z  {r.workflow_type:<28} {r.workflow_id}  ({r.run_id})")
    return 0


def _row(r: Any) -> dict[str, Any]:
    if hasattr(r, "__struct_fields__"):
        return msgspec.to_builtins(r)
    return {name: getattr(r, name) for name in r.__slots__}


async def describe_cmd(args: argparse.Namespace) -> int:
    """Print an execution's description as JSON."""
    async with service_for(args) as (service, namespace):
        description = await service.describe_workflow(namespace, args.workflow_id, args.run_id)
    print(orjson.dumps(msgspec.to_builtins(description), option=orjson.OPT_INDENT_2).decode())
    return 0


async def result_cmd(args: argparse.Namespace) -> int:
    """Wait for and print the result."""
    async with service_for(args) as (service, namespace):
        client = Client(service, namespace=namespace, identity="cli")
        result = await client.get_workflow_handle(args.workflow_id, run_id=args.run_id).result()
    print(orjson.dumps(result).decode())
    return 0


async def signal_cmd(args: argparse.Namespace) -> int:
    """Send a signal."""
    async with service_for(args) as (service, namespace):
        client = Client(service, namespace=namespace, identity="cli")
        await client.get_workflow_handle(args.workflow_id).signal(
            args.signal_name, *_json_args(args.input)
        )
    print("signal sent")
    return 0


async def cancel_cmd(args: argparse.Namespace) -> int:
    """Request cancellation."""
    async with service_for(args) as (service, namespace):
        await (
            Client(service, namespace=namespace, identity="cli")
            .get_workflow_handle(args.workflow_id)
            .cancel(reason=args.reason)
        )
    print("cancel requested")
    return 0


async def terminate_cmd(args: argparse.Namespace) -> int:
    """Terminate."""
    async with service_for(args) as (service, namespace):
        await (
            Client(service, namespace=namespace, identity="cli")
            .get_workflow_handle(args.workflow_id)
            .terminate(reason=args.reason)
        )
    print("terminated")
    return 0
