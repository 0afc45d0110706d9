"""``cadenza lint PATH...``: validate job files; exit 1 when any has an error."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cadenza.engine._job_lint import lint_paths, read_variable_names
from cadenza.frontend.cli._main import CliError
from cadenza.history import InvalidArgumentError


def register(subparsers: Any) -> None:
    """Add the ``lint`` subcommand."""
    parser = subparsers.add_parser(
        "lint",
        help="validate job files (schema, references, cycles, cron, templates, variables)",
        description=(
            "Validate job files and directories of them (*.yaml, *.yml, *.json, *.toml). "
            "Prints FILE:LINE: FIELD: MESSAGE for every problem and a summary; exits 1 when "
            "there is an error, 0 when clean."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="job files or directories")
    parser.add_argument(
        "--vars",
        metavar="FILE",
        help=(
            "file listing the global variables (a mapping or a list of names); with it, "
            "unknown variables are errors, without it warnings"
        ),
    )
    parser.add_argument(
        "--step-type",
        action="append",
        default=[],
        metavar="NAME",
        help="a registered activity name allowed as step type (repeatable)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="print errors only, no warnings or summary"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Lint the paths; print the issues and a summary."""
    try:
        global_variables = read_variable_names(args.vars) if args.vars else None
        report = lint_paths(
            args.paths, step_types=args.step_type, global_variables=global_variables
        )
    except InvalidArgumentError as exc:
        raise CliError(exc.reason) from None
    for issue in report.issues:
        if issue.severity == "error" or not args.quiet:
            print(issue)
    if not args.quiet:
        verdict = "ok" if report.ok else "failed"
        print(f"lint {verdict}: {report.summary()}", file=sys.stdout)
    return 0 if report.ok else 1
