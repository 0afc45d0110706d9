"""The ``cadenza`` command line.

Each subcommand lives in its own module ``cmd_<name>.py`` in this package, exposing
``register(subparsers)``; :func:`main` discovers them, so adding a command never edits a shared
list. Commands return an exit status: 0 success, 1 a negative result (e.g. a failed
verification or lint), 2 bad input (the message goes to stderr).
"""

from cadenza.frontend.cli._main import CliError, build_parser, main

__all__ = ["CliError", "build_parser", "main"]
