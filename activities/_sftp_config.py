"""Configuration of the built-in ``sftp`` activity: the struct, its validation, and preparation.

:class:`SftpConfig` is what a job step's ``config:`` (or an SDK workflow's dict) holds.
:func:`validate_sftp_config` checks everything that needs neither the network, the worker's file
system nor the secrets (so ``cadenza lint`` can call it on a step); :func:`prepare_sftp` runs
when the activity runs: it validates, imports the private key, resolves the local path inside the
worker's file roots and computes the effective defaults.

Secrets (``password``, ``private_key``, ``passphrase``) are masked by ``repr`` and never put into
an error message: errors about them name the field and say what is wrong, never the value.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from cadenza.activities._config_convert import ReprSummary, convert_config
from cadenza.activities._local_paths import resolve_local_path
from cadenza.activities._ssh import asyncssh
from cadenza.history import ApplicationError, InvalidArgumentError

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_FILES",
    "DEFAULT_TIMEOUT",
    "SftpConfig",
    "validate_sftp_config",
]

DEFAULT_CONNECT_TIMEOUT = 15.0
"""Seconds allowed for TCP connect, SSH handshake, host key check and authentication."""

DEFAULT_TIMEOUT = 300.0
"""Seconds allowed for each SFTP request (each stat, rename, and each chunk of a transfer)."""

DEFAULT_MAX_FILES = 10_000
"""Most entries a ``list`` may return."""

DEFAULT_MAX_BYTES = 1024 * 1024
"""Largest file a ``read`` may return: 1 MiB."""

Operation = Literal["list", "download", "read", "upload", "move", "delete", "mkdir"]

_MASK = "••••••"
_HOST_RE = re.compile(r"[A-Za-z0-9._:\[\]-]+")
_FINGERPRINT_RE = re.compile(r"SHA256:(?P<b64>[A-Za-z0-9+/]{43})=?")
_KNOWN_HOSTS_MARKERS = ("@cert-authority", "@revoked")

# Fields that only some operations use (``path`` and the connection fields are used by all).
_OPERATION_FIELDS: dict[str, frozenset[str]] = {
    "list": frozenset({"pattern", "max_files"}),
    "download": frozenset({"local_path", "if_exists", "create_dirs"}),
    "read": frozenset({"encoding", "max_bytes"}),
    "upload": frozenset({"local_path", "text", "encoding", "if_exists"}),
    "move": frozenset({"to", "if_exists"}),
    "delete": frozenset({"missing_ok"}),
    "mkdir": frozenset({"parents"}),
}
_OPTIONAL_FIELDS = frozenset().union(*_OPERATION_FIELDS.values())
_IF_EXISTS: dict[str, tuple[str, ...]] = {
    "download": ("replace", "error", "skip"),
    "upload": ("replace", "error"),
    "move": ("error", "replace"),  # the first one is the default
}


class SftpConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Configuration of the ``sftp`` activity: one server, one operation.

    Attributes:
        host: SFTP server host name or IP address.
        port: SSH port; default 22.
        username: The account to log in as.
        password: Password (SSH ``password`` and ``keyboard-interactive`` auth). A secret:
            masked in ``repr``, never logged, never in an error or a result.
        private_key: A private key as text (OpenSSH ``-----BEGIN OPENSSH PRIVATE KEY-----`` or
            PEM/PKCS#8) for public-key auth. A secret. With ``password`` too, both are offered.
        passphrase: Passphrase of an encrypted ``private_key``. A secret.
        known_hosts: Host keys in OpenSSH ``known_hosts`` format (``host key-type base64``
            lines, as ``ssh-keyscan`` prints them); the server's key must match an entry for
            ``host`` (``[host]:port`` when the port is not 22).
        host_key: The server's public key as one line, ``ssh-ed25519 AAAA...`` (a leading host
            name, as in ``ssh-keyscan`` output, is accepted).
        host_key_fingerprint: The SHA-256 fingerprint of the server's key, ``SHA256:...``, as
            ``ssh-keygen -lf`` prints it.
        insecure_skip_host_key: Accept any server key (only for tests: it allows a
            man-in-the-middle to read the files and the password); default False. Exactly one of
            ``known_hosts``, ``host_key``, ``host_key_fingerprint`` is required otherwise.
        connect_timeout: Seconds for connecting, key exchange and authentication; default 15.
        timeout: Seconds for each SFTP request (each chunk of a transfer), default 300.
        operation: ``list``, ``download``, ``read``, ``upload``, ``move``, ``delete`` or
            ``mkdir``.
        path: The remote path the operation works on.
        pattern: ``list``: glob on entry names (``*.csv``); default ``*``.
        max_files: ``list``: most entries returned (more is an error); default 10000.
        local_path: ``download``: where to write; ``upload``: what to send. Confined to the
            worker's file roots (``CADENZA_FILE_ROOTS``).
        text: ``upload``: content to send instead of ``local_path``.
        encoding: ``read``: how to decode the file; ``upload``: how to encode ``text``;
            default ``utf-8``.
        max_bytes: ``read``: largest file accepted; default 1 MiB.
        if_exists: What to do when the target exists. ``download``: ``replace`` (default),
            ``error`` or ``skip``; ``upload``: ``replace`` (default) or ``error``; ``move``:
            ``error`` (default) or ``replace``.
        create_dirs: ``download``: create missing local parent directories; default True.
        to: ``move``: the new remote path.
        missing_ok: ``delete``: a missing file is a success; default True.
        parents: ``mkdir``: create missing parent directories too; default True.
    """

    host: str
    port: int = 22
    username: str
    password: str | None = None
    private_key: str | None = None
    passphrase: str | None = None
    known_hosts: str | None = None
    host_key: str | None = None
    host_key_fingerprint: str | None = None
    insecure_skip_host_key: bool = False
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    timeout: float = DEFAULT_TIMEOUT
    operation: Operation
    path: str
    pattern: str | None = None
    max_files: int | None = None
    local_path: str | None = None
    text: str | None = None
    encoding: str | None = None
    max_bytes: int | None = None
    if_exists: Literal["replace", "error", "skip"] | None = None
    create_dirs: bool | None = None
    to: str | None = None
    missing_ok: bool | None = None
    parents: bool | None = None

    def _shown(self) -> Iterator[tuple[str, Any]]:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value is None:
                continue
            if name in ("password", "private_key", "passphrase"):
                yield name, ReprSummary(_MASK)
            elif name in ("text", "known_hosts"):
                yield name, ReprSummary(f"<{len(value)} chars>")
            else:
                yield name, value

    def __repr__(self) -> str:
        return f"SftpConfig({', '.join(f'{k}={v!r}' for k, v in self._shown())})"

    def __rich_repr__(self) -> Iterator[tuple[str, Any]]:
        """What ``rich`` shows: the same masked view as ``repr``."""
        return self._shown()


@dataclass(frozen=True, kw_only=True, repr=False)
class PreparedSftp:
    """A validated configuration with its effective defaults and imported keys (internal).

    Attributes:
        config: The configuration.
        known_hosts: What asyncssh's ``known_hosts`` option gets: an ``SSHKnownHosts``, a
            ``(trusted keys, CA keys, revoked keys)`` tuple, or None (no check).
        fingerprint: The expected SHA-256 fingerprint, for ``host_key_fingerprint``.
        client_key: The imported ``private_key``.
        local_path: ``local_path`` resolved inside the file roots.
        data: ``upload`` of ``text``: the encoded bytes.
        secrets: The secret values, to scrub from any text that leaves the activity.
    """

    config: SftpConfig
    known_hosts: Any
    fingerprint: str | None
    client_key: asyncssh.SSHKey | None
    local_path: Path | None
    data: bytes | None
    secrets: tuple[str, ...]

    def __repr__(self) -> str:
        return f"PreparedSftp({self.config!r})"

    @property
    def pattern(self) -> str:
        """``list`` glob, default ``*``."""
        return self.config.pattern if self.config.pattern is not None else "*"

    @property
    def max_files(self) -> int:
        """``list`` limit, default :data:`DEFAULT_MAX_FILES`."""
        value = self.config.max_files
        return value if value is not None else DEFAULT_MAX_FILES

    @property
    def max_bytes(self) -> int:
        """``read`` limit, default :data:`DEFAULT_MAX_BYTES`."""
        value = self.config.max_bytes
        return value if value is not None else DEFAULT_MAX_BYTES

    @property
    def encoding(self) -> str:
        """Text encoding, default UTF-8."""
        return self.config.encoding or "utf-8"

    @property
    def if_exists(self) -> str:
        """The ``if_exists`` policy, defaulted per operation."""
        if self.config.if_exists is not None:
            return self.config.if_exists
        return _IF_EXISTS.get(self.config.operation, ("replace",))[0]

    @property
    def create_dirs(self) -> bool:
        """``download``: create local parents, default True."""
        return self.config.create_dirs is not False

    @property
    def missing_ok(self) -> bool:
        """``delete``: a missing file is fine, default True."""
        return self.config.missing_ok is not False

    @property
    def parents(self) -> bool:
        """``mkdir``: create parents, default True."""
        return self.config.parents is not False


# --------------------------------------------------------------------------- validation


def _no_control(field: str, value: str) -> None:
    if any(c in value for c in "\r\n\x00"):
        raise InvalidArgumentError(field, "must not contain line breaks or NUL characters")


def _remote_path(field: str, value: str, *, file: bool) -> None:
    if not value or not value.strip():
        raise InvalidArgumentError(field, "must not be empty")
    _no_control(field, value)
    if file and (value.endswith("/") or value.rsplit("/", 1)[-1] in (".", "..")):
        raise InvalidArgumentError(field, f"{value!r} must name a file, not a directory")


def _positive(field: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise InvalidArgumentError(field, "must be a positive number of seconds")


def _public_key(field: str, line: str) -> asyncssh.SSHKey:
    """Import one public key line; a leading host name (``ssh-keyscan`` style) is skipped."""
    text = line.strip()
    try:
        return asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError):
        pass
    parts = text.split(None, 1)
    if len(parts) == 2:
        try:
            return asyncssh.import_public_key(parts[1])
        except (asyncssh.KeyImportError, ValueError):
            pass
    raise InvalidArgumentError(
        field, "is not an SSH public key line (e.g. 'ssh-ed25519 AAAAC3Nza...')"
    )


def _check_known_hosts(text: str) -> asyncssh.SSHKnownHosts:
    """Parse known_hosts text, rejecting lines asyncssh would silently skip."""
    entries = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        field = f"known_hosts[line {number}]"
        parts = line.split()
        if parts[0] in _KNOWN_HOSTS_MARKERS:
            parts = parts[1:]
        if len(parts) < 3:
            raise InvalidArgumentError(
                field, "expected 'host-pattern key-type base64-key' (as ssh-keyscan prints)"
            )
        _public_key(field, " ".join(parts[1:]))
        entries += 1
    if entries == 0:
        raise InvalidArgumentError(
            "known_hosts",
            "holds no host key entry (give the text of known_hosts lines, not a file name)",
        )
    try:
        return asyncssh.import_known_hosts(text)
    except ValueError as exc:
        raise InvalidArgumentError("known_hosts", str(exc)) from None


def _fingerprint(value: str) -> str:
    m = _FINGERPRINT_RE.fullmatch(value.strip())
    if not m:
        raise InvalidArgumentError(
            "host_key_fingerprint",
            f"{value!r} is not a SHA-256 fingerprint ('SHA256:' and 43 base64 characters, as "
            "'ssh-keygen -lf' prints it; MD5 fingerprints are not accepted)",
        )
    try:
        base64.b64decode(m["b64"] + "=", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgumentError("host_key_fingerprint", "is not valid base64") from None
    return f"SHA256:{m['b64']}"


def _host_key_setting(config: SftpConfig) -> tuple[Any, str | None]:
    given = [
        name
        for name in ("known_hosts", "host_key", "host_key_fingerprint")
        if getattr(config, name) is not None
    ]
    if len(given) > 1:
        raise InvalidArgumentError(
            given[1],
            "give only one of known_hosts, host_key or host_key_fingerprint "
            f"(got {', '.join(given)})",
        )
    if config.insecure_skip_host_key:
        if given:
            raise InvalidArgumentError(
                "insecure_skip_host_key", f"cannot be combined with {given[0]}"
            )
        return None, None
    if not given:
        raise InvalidArgumentError(
            "known_hosts",
            "the server's host key must be verified: give known_hosts, host_key or "
            "host_key_fingerprint (see 'ssh-keyscan'); insecure_skip_host_key: true is "
            "for tests only",
        )
    if config.known_hosts is not None:
        return _check_known_hosts(config.known_hosts), None
    if config.host_key is not None:
        _no_control("host_key", config.host_key.strip())
        return ([_public_key("host_key", config.host_key)], [], []), None
    # Fingerprint: no key is trusted up front; the client callback compares fingerprints.
    return ([], [], []), _fingerprint(config.host_key_fingerprint or "")


def _check_operation_fields(config: SftpConfig) -> None:
    op = config.operation
    allowed = _OPERATION_FIELDS[op]
    for name in sorted(_OPTIONAL_FIELDS - allowed):
        if getattr(config, name) is not None:
            users = sorted(o for o, fields in _OPERATION_FIELDS.items() if name in fields)
            raise InvalidArgumentError(
                name, f"is not used by operation {op!r} (only by {', '.join(users)})"
            )
    if config.if_exists is not None and config.if_exists not in _IF_EXISTS[op]:
        raise InvalidArgumentError(
            "if_exists",
            f"{config.if_exists!r} is not allowed for {op}: use one of {', '.join(_IF_EXISTS[op])}",
        )


def validate_sftp_config(config: SftpConfig) -> None:
    """Check everything that can be checked without the network, files or secret values.

    The activity calls it first; tools such as ``cadenza lint`` can call it on job steps.

    Raises:
        InvalidArgumentError: naming the first offending field and the reason.
    """
    if not config.host or not _HOST_RE.fullmatch(config.host):
        raise InvalidArgumentError("host", f"{config.host!r} is not a host name or IP address")
    if not 1 <= config.port <= 65535:
        raise InvalidArgumentError("port", f"{config.port} is not a TCP port (1-65535)")
    if not config.username or not config.username.strip():
        raise InvalidArgumentError("username", "must not be empty")
    _no_control("username", config.username)
    if config.password is None and config.private_key is None:
        raise InvalidArgumentError(
            "password", "give a password, a private_key, or both to authenticate"
        )
    if config.passphrase is not None and config.private_key is None:
        raise InvalidArgumentError("passphrase", "is only used with private_key")
    _host_key_setting(config)
    _positive("connect_timeout", config.connect_timeout)
    _positive("timeout", config.timeout)

    _check_operation_fields(config)
    op = config.operation
    _remote_path("path", config.path, file=op in ("download", "read", "upload"))
    if op == "list":
        pattern = config.pattern if config.pattern is not None else "*"
        if not pattern or "/" in pattern:
            raise InvalidArgumentError("pattern", "must be a non-empty glob on names, without '/'")
        _no_control("pattern", pattern)
        if config.max_files is not None and config.max_files <= 0:
            raise InvalidArgumentError("max_files", "must be a positive number")
    if config.encoding is not None:
        try:
            codecs.lookup(config.encoding)
        except LookupError:
            raise InvalidArgumentError(
                "encoding", f"{config.encoding!r} is not a known text encoding"
            ) from None
    if config.max_bytes is not None and config.max_bytes <= 0:
        raise InvalidArgumentError("max_bytes", "must be a positive number of bytes")
    if op in ("download", "upload"):
        if op == "upload" and (config.local_path is None) == (config.text is None):
            raise InvalidArgumentError(
                "local_path", "give exactly one of local_path or text as the content to upload"
            )
        if op == "download" and config.local_path is None:
            raise InvalidArgumentError("local_path", "is required for download")
    if config.encoding is not None and op == "upload" and config.text is None:
        raise InvalidArgumentError("encoding", "is only used with text")
    if op == "move":
        if config.to is None:
            raise InvalidArgumentError("to", "is required for move")
        _remote_path("to", config.to, file=True)
        if config.to == config.path:
            raise InvalidArgumentError("to", "is the same path as path")


# --------------------------------------------------------------------------- preparation


def coerce_sftp_config(config: Any) -> SftpConfig:
    """An :class:`SftpConfig` from itself or from a dict (as a job step gives it).

    Raises:
        InvalidArgumentError: a wrong key or type, naming the field.
    """
    return convert_config(config, SftpConfig)


def _client_key(config: SftpConfig) -> asyncssh.SSHKey | None:
    if config.private_key is None:
        return None
    text = config.private_key.strip()
    if not text:
        raise InvalidArgumentError("private_key", "must not be empty")
    try:
        return asyncssh.import_private_key(text + "\n", config.passphrase)
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError, ValueError) as exc:
        # asyncssh's reasons are fixed texts (never key material); scrubbed again by the caller.
        reason = str(exc)
        if "Passphrase must be specified" in reason:
            raise InvalidArgumentError(
                "passphrase", "is required: private_key is encrypted"
            ) from None
        if config.passphrase is not None and (
            "decrypt" in reason.lower() or "passphrase" in reason.lower()
        ):
            raise InvalidArgumentError("passphrase", "does not decrypt private_key") from None
        raise InvalidArgumentError(
            "private_key",
            f"cannot be imported ({reason}); give the key's text in OpenSSH or PEM format",
        ) from None


def prepare_sftp(config: Any) -> PreparedSftp:
    """Coerce, validate, import the key and resolve the local path (blocking: run in a thread).

    Raises:
        InvalidArgumentError: naming the offending field.
    """
    config = coerce_sftp_config(config)
    validate_sftp_config(config)
    known_hosts, fingerprint = _host_key_setting(config)
    local_path = None
    if config.local_path is not None:
        local_path = resolve_local_path(config.local_path, "local_path")
    data = None
    if config.text is not None:
        try:
            data = config.text.encode(config.encoding or "utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidArgumentError(
                "text",
                f"cannot be encoded as {config.encoding or 'utf-8'} ({exc.reason} at "
                f"character {exc.start})",
            ) from None
    secrets = tuple(
        s for s in (config.password, config.passphrase, config.private_key) if s and s.strip()
    )
    return PreparedSftp(
        config=config,
        known_hosts=known_hosts,
        fingerprint=fingerprint,
        client_key=_client_key(config),
        local_path=local_path,
        data=data,
        secrets=secrets,
    )


def config_error(exc: InvalidArgumentError, secrets: tuple[str, ...] = ()) -> ApplicationError:
    """The non-retryable ``InvalidSftpConfig`` error for a rejected field."""
    reason = scrub(exc.reason, secrets)
    return ApplicationError(
        f"invalid SFTP configuration: {exc.field}: {reason}",
        {"field": exc.field, "reason": reason},
        type="InvalidSftpConfig",
        non_retryable=True,
    )


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret value (and each line of a multi-line one) masked."""
    for secret in secrets:
        pieces = [secret.strip()] + [line.strip() for line in secret.splitlines()]
        for i, piece in enumerate(pieces):
            # Whole values from 3 characters; single lines of a key only when long enough not
            # to mask ordinary words.
            if len(piece) >= (3 if i == 0 else 16) and piece in text:
                text = text.replace(piece, _MASK)
    return text
