"""Argument parsing and dispatch for the ``cadenza`` command."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import pkgutil
import sys
from collections.abc import Sequence

from cadenza.history import CadenzaError, InvalidArgumentError


class CliError(Exception):
    """A command failed in a way the user must fix; printed to stderr with exit status 2."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse exits 2 on usage errors already; keep its behaviour but name the program.
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the parser with every ``cmd_*`` module of this package registered."""
    parser = _Parser(prog="cadenza", description="Cadenza: durable workflows and job scheduling.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    package = importlib.import_module("cadenza.frontend.cli")
    for module_info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if module_info.name.startswith("cmd_"):
            module = importlib.import_module(f"cadenza.frontend.cli.{module_info.name}")
            module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cadenza`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        result = handler(args)
        if inspect.isawaitable(result):
            result = asyncio.run(result)
        return int(result or 0)
    except CliError as exc:
        print(f"cadenza: {exc}", file=sys.stderr)
        return exc.status
    except InvalidArgumentError as exc:
        print(f"cadenza: {exc}", file=sys.stderr)
        return 2
    except CadenzaError as exc:
        print(f"cadenza: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
