"""``cadenza secrets new-key|encrypt|rotate-key``: keys and tokens of secret variables."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cadenza.engine._secrets import generate_key
from cadenza.frontend.cli._jobs_cli import add_backend_arguments, backend_for
from cadenza.frontend.cli._main import CliError


def register(subparsers: Any) -> None:
    """Add the ``secrets`` subcommand group."""
    parser = subparsers.add_parser("secrets", help="encryption keys and tokens of secrets")
    sub = parser.add_subparsers(dest="secrets_command", metavar="ACTION", required=True)

    new_key = sub.add_parser(
        "new-key",
        help="print a new random AES-256 key",
        description=(
            "Print a new key as ID:BASE64 for secret_keys (CADENZA_SECRET_KEYS). Add it as "
            "the active key, keep the old one, then run `cadenza secrets rotate-key`."
        ),
    )
    new_key.add_argument("--id", dest="key_id", default="key1", help="the key id (default key1)")
    new_key.set_defaults(handler=new_key_cmd)

    encrypt = sub.add_parser(
        "encrypt",
        help="encrypt a value into a token for a job file",
        description=(
            "Print a v1:... token of VALUE for variable NAME of --job (for a job file's "
            "`variables: {NAME: {secret: true, value: TOKEN}}`), or of a global variable. The "
            "token only decrypts for that job and name. VALUE '-' reads it from stdin."
        ),
    )
    encrypt.add_argument("name")
    encrypt.add_argument("value", help="the plain value, or '-' to read it from stdin")
    encrypt.add_argument("--job", default="", help="the job whose variable it is")
    encrypt.set_defaults(handler=encrypt_cmd)

    rotate = sub.add_parser(
        "rotate-key",
        help="re-encrypt every stored secret under the active key",
        description=(
            "Re-encrypt every secret (global and job-scoped, every namespace) under the active "
            "key. Idempotent; a token that does not decrypt is reported and left alone (exit 1)."
        ),
    )
    rotate.set_defaults(handler=rotate_cmd)

    for action in (encrypt, rotate):
        add_backend_arguments(action)


def new_key_cmd(args: argparse.Namespace) -> int:
    """Print a new key."""
    print(f"{args.key_id}:{generate_key()}")
    return 0


async def encrypt_cmd(args: argparse.Namespace) -> int:
    """Print a token."""
    value = sys.stdin.readline().rstrip("\r\n") if args.value == "-" else args.value
    if not value:
        raise CliError("the value must not be empty")
    async with backend_for(args) as backend:
        token = await backend.jobs.encrypt_secret(args.name, value, job=args.job)
    print(token)
    return 0


async def rotate_cmd(args: argparse.Namespace) -> int:
    """Rotate every secret to the active key."""
    async with backend_for(args) as backend:
        report = await backend.jobs.rotate_secret_key()
    for name in report.rotated:
        print(f"rotated {name}")
    for name in report.skipped:
        print(f"skipped {name} (changed meanwhile; run again)")
    for problem in report.failed:
        print(f"error: {problem}", file=sys.stderr)
    print(
        f"active key {report.active_key}: {len(report.rotated)} rotated, "
        f"{report.unchanged} already current, {len(report.failed)} failed"
    )
    return 1 if report.failed else 0
