"""``cadenza vars set|get|list|delete``: global variables; secrets are shown masked."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec
import orjson

from cadenza.frontend.cli._jobs_cli import add_backend_arguments, backend_for, default_identity
from cadenza.frontend.cli._main import CliError


def register(subparsers: Any) -> None:
    """Add the ``vars`` subcommand group."""
    parser = subparsers.add_parser(
        "vars", help="global variables of jobs (secrets stored encrypted, shown masked)"
    )
    sub = parser.add_subparsers(dest="vars_command", metavar="ACTION", required=True)

    set_ = sub.add_parser(
        "set",
        help="create or replace a variable",
        description=(
            "Set a global variable. VALUE is read as JSON when it parses (500, true, "
            '["a"], {"k": 1}), else as text; --text keeps it text. A --secret is text, '
            "encrypted with the configured key; give '-' to read it from stdin (keeps it out "
            "of the shell history)."
        ),
    )
    set_.add_argument("name")
    set_.add_argument("value", help="the value, or '-' to read it from stdin")
    set_.add_argument("--secret", action="store_true", help="store encrypted, show masked")
    set_.add_argument("--text", action="store_true", help="never parse VALUE as JSON")
    set_.add_argument("--description", default="", help="what it is for")
    set_.set_defaults(handler=set_cmd)

    get = sub.add_parser("get", help="show a variable (a secret masked)")
    get.add_argument("name")
    get.set_defaults(handler=get_cmd)

    listing = sub.add_parser("list", help="list variables (secrets masked)")
    listing.add_argument(
        "--all", action="store_true", help="also the job-scoped secrets given in job files"
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=list_cmd)

    delete = sub.add_parser("delete", help="delete a variable")
    delete.add_argument("name")
    delete.set_defaults(handler=delete_cmd)

    for action in (set_, get, listing, delete):
        add_backend_arguments(action)


def read_stdin_line() -> str:
    """One line of standard input, without its line break."""
    return sys.stdin.readline().rstrip("\r\n")


def _value(args: argparse.Namespace) -> Any:
    raw = read_stdin_line() if args.value == "-" else args.value
    if args.secret or args.text:
        return raw
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


def _show(view: Any) -> str:
    value = view.value if isinstance(view.value, str) else orjson.dumps(view.value).decode()
    kind = " (secret)" if view.secret else ""
    scope = "" if view.scope == "global" else f" [{view.scope}]"
    note = f"  # {view.description}" if view.description else ""
    return f"{view.name}{scope} = {value}{kind}{note}"


async def set_cmd(args: argparse.Namespace) -> int:
    """Set a variable."""
    value = _value(args)
    if args.secret and not value:
        raise CliError("a secret must not be empty")
    async with backend_for(args) as backend:
        view = await backend.jobs.set_variable(
            backend.namespace,
            args.name,
            value,
            secret=args.secret,
            description=args.description,
            identity=default_identity(),
        )
    print(_show(view))
    return 0


async def get_cmd(args: argparse.Namespace) -> int:
    """Show a variable."""
    async with backend_for(args) as backend:
        view = await backend.jobs.get_variable(backend.namespace, args.name)
    print(_show(view))
    return 0


async def list_cmd(args: argparse.Namespace) -> int:
    """List variables."""
    async with backend_for(args) as backend:
        views = await backend.jobs.list_variables(
            backend.namespace, scope="all" if args.all else None
        )
    if args.json:
        print(orjson.dumps(msgspec.to_builtins(views), option=orjson.OPT_INDENT_2).decode())
        return 0
    for view in views:
        print(_show(view))
    if not views:
        print("no variables")
    return 0


async def delete_cmd(args: argparse.Namespace) -> int:
    """Delete a variable."""
    async with backend_for(args) as backend:
        await backend.jobs.delete_variable(
            backend.namespace, args.name, identity=default_identity()
        )
    print(f"deleted {args.name}")
    return 0
