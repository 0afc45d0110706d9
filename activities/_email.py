"""The built-in e-mail activity: one message sent over SMTP with aiosmtplib.

The activity takes final strings. In job files, ``subject``, ``text`` and ``html`` (and any other
field) may hold templates; the job layer renders them before the activity is scheduled, so the
activity never evaluates a template itself.

What it guarantees:

* The configuration is validated before anything else happens; a bad field fails the activity
  for good (non-retryable) with a message that names the field (``to[2]``,
  ``attachments[0].path``, ...).
* Bcc recipients receive the message but appear in no header.
* Inside an activity, the ``Message-ID`` is derived from the activity's idempotency key, so
  every retry of the same activity sends the same ``Message-ID`` and receivers (or their
  filters) can drop duplicates when a retry repeats a send whose reply was lost.
* SMTP failures are classified: connection errors, timeouts and 4xx replies are retryable;
  5xx replies (unknown user, authentication failed, message rejected), TLS certificate errors
  and unsupported features are not.
* The password is never logged and never shown by ``repr``; the result is a small JSON-safe dict.
"""

from __future__ import annotations

import asyncio
import base64 as b64
import binascii
import email.policy
import email.utils
import hashlib
import logging
import math
import mimetypes
import os
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any, Literal

import aiosmtplib
import msgspec

from cadenza.activities._config_convert import ReprSummary, convert_config
from cadenza.activities._context import defn, in_activity, info
from cadenza.activities._local_paths import resolve_local_path
from cadenza.history import ApplicationError, InvalidArgumentError

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "EmailAttachment",
    "EmailConfig",
    "send_email",
    "validate_email_config",
]

log = logging.getLogger("cadenza.activities.email")

DEFAULT_MAX_MESSAGE_BYTES = 20 * 1024 * 1024
"""Default limit of one message as sent (headers, bodies and base64 attachments): 20 MiB."""

MAX_RECIPIENTS = 1000
"""Most recipients (to + cc + bcc) one message may have."""

_MASK = "••••••"
_MAX_REPLY_CHARS = 300
_DEFAULT_PORTS = {"none": 25, "starttls": 587, "tls": 465}

# Headers the activity writes itself; setting them through ``headers`` is an error.
_RESERVED_HEADERS = frozenset(
    h.casefold()
    for h in (
        "From",
        "To",
        "Cc",
        "Bcc",
        "Reply-To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
    )
)
_HEADER_NAME_RE = re.compile(r"[!-9;-~]+")  # printable ASCII except ':' (RFC 5322 ftext)
_CONTENT_TYPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*")
_LOCAL_PART_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_DOMAIN_RE = re.compile(
    r"(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_HOST_RE = re.compile(r"[A-Za-z0-9._:\[\]-]+")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ANGLE_RE = re.compile(r"\s*(?P<display>.*?)\s*<(?P<addr>[^<>]*)>\s*", re.DOTALL)


class EmailAttachment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One attachment. Give its content in exactly one of ``text``, ``base64`` or ``path``.

    Attributes:
        filename: The name the recipient sees (a name, not a path).
        content_type: MIME type, e.g. ``text/csv``; default: guessed from ``filename``, else
            ``application/octet-stream``.
        text: Content as text, sent UTF-8 encoded (``charset=utf-8`` for ``text/*`` types).
        base64: Content as base64 (whitespace and line breaks are ignored), for binary data
            from a previous step's output.
        path: A file on the worker, e.g. a file written by a previous step. It is read when
            the activity runs and must lie inside the worker's file roots
            (``CADENZA_FILE_ROOTS``, default the working directory; relative paths are taken
            under the first root).
    """

    filename: str
    content_type: str | None = None
    text: str | None = None
    base64: str | None = None
    path: str | None = None

    def __repr__(self) -> str:
        if self.text is not None:
            content = f"text=<{len(self.text)} chars>"
        elif self.base64 is not None:
            content = f"base64=<{len(self.base64)} chars>"
        else:
            content = f"path={self.path!r}"
        return (
            f"EmailAttachment(filename={self.filename!r}, "
            f"content_type={self.content_type!r}, {content})"
        )


class EmailConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Configuration of the ``email`` activity: the SMTP server and one message.

    In JSON, YAML and TOML the sender field is spelled ``from``; in Python it is ``from_``.

    Attributes:
        host: SMTP server host name or IP address.
        port: SMTP port; default 25 for ``security="none"``, 587 for ``"starttls"``, 465 for
            ``"tls"``.
        security: ``"starttls"`` (default: connect in plain text, then upgrade with STARTTLS,
            which must succeed), ``"tls"`` (implicit TLS from the first byte, "SMTPS") or
            ``"none"`` (no encryption; only for a relay on a trusted network).
        username: User for SMTP AUTH (PLAIN or LOGIN, as the server offers); default: no AUTH.
        password: Password for SMTP AUTH. A secret: masked in ``repr`` and never logged. In job
            files, give it as a secret variable reference.
        password_env: Instead of ``password``: the name of an environment variable on the
            worker that holds it, read when the activity runs, so that the password never
            enters a workflow history (for SDK workflows).
        timeout: Seconds allowed for connecting and for each SMTP command; default 30.
        validate_certs: Verify the server's certificate and host name; default True.
        ca_bundle: Path to a PEM file of CA certificates to trust instead of the system's
            (for an internal CA); default: the system trust store.
        local_hostname: Name sent in EHLO; default: this host's fully qualified name.
        from_: Sender address, ``"Name <addr@example.com>"`` or ``"addr@example.com"``; it is
            also the envelope sender (``MAIL FROM``).
        to: Recipient addresses shown in ``To``.
        cc: Recipient addresses shown in ``Cc``.
        bcc: Recipient addresses that receive the message but appear in no header.
        reply_to: Address for replies (``Reply-To``); default none.
        subject: The subject line (final text; templates are rendered by the job layer).
        text: Plain-text body.
        html: HTML body. With ``text`` too, the message is ``multipart/alternative``.
        headers: Extra headers, e.g. ``{"X-Batch-Id": "2025-06-01"}``. The headers the
            activity writes itself (From, To, Cc, Bcc, Reply-To, Subject, Date, Message-ID,
            MIME-Version, Content-*) cannot be set here.
        attachments: Files to attach.
        max_message_bytes: Limit of the whole message as sent (base64 attachments included);
            default 20 MiB. A larger message fails without being sent.
    """

    host: str
    port: int | None = None
    security: Literal["none", "starttls", "tls"] = "starttls"
    username: str | None = None
    password: str | None = None
    password_env: str | None = None
    timeout: float = 30.0
    validate_certs: bool = True
    ca_bundle: str | None = None
    local_hostname: str | None = None
    from_: str = msgspec.field(name="from")
    to: list[str] = []
    cc: list[str] = []
    bcc: list[str] = []
    reply_to: str | None = None
    subject: str
    text: str | None = None
    html: str | None = None
    headers: dict[str, str] = {}
    attachments: list[EmailAttachment] = []
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    def _shown(self) -> Iterator[tuple[str, Any]]:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if name == "password" and value is not None:
                yield name, _MASK
            elif name in ("text", "html") and value is not None:
                yield name, ReprSummary(f"<{len(value)} chars>")
            else:
                yield name, value

    def __repr__(self) -> str:
        return f"EmailConfig({', '.join(f'{k}={v!r}' for k, v in self._shown())})"

    def __rich_repr__(self) -> Iterator[tuple[str, Any]]:
        """What ``rich`` shows: the same masked view as ``repr``."""
        return self._shown()


# --------------------------------------------------------------------------- validation


def _no_line_breaks(field: str, value: str) -> None:
    if any(c in value for c in "\r\n\x00"):
        raise InvalidArgumentError(field, "must not contain line breaks or NUL characters")


def _parse_address(field: str, value: Any) -> Address:
    """Parse ``"Name <local@domain>"``, ``"<local@domain>"`` or ``"local@domain"``.

    A display name containing ``, ; < > " @`` must be quoted (``"Doe, Jane" <j@x.vn>``).
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(field, "an e-mail address is required")
    _no_line_breaks(field, value)
    m = _ANGLE_RE.fullmatch(value)
    if m:
        display, addr = m["display"], m["addr"].strip()
        if display.startswith('"'):
            inner = display[1:-1] if len(display) >= 2 and display.endswith('"') else None
            if inner is None or '"' in re.sub(r"\\.", "", inner):
                raise InvalidArgumentError(field, f"{value!r} has unbalanced quotes")
            name = re.sub(r"\\(.)", r"\1", inner)
        elif any(c in display for c in '"<>,;@'):
            raise InvalidArgumentError(
                field,
                f'{value!r}: quote a display name that contains , ; < > " or @ '
                '(e.g. "Doe, Jane" <jane@example.com>)',
            )
        else:
            name = display
    else:
        name, addr = "", value.strip()
    if any(c.isspace() or c in '<>,;"' for c in addr):
        raise InvalidArgumentError(
            field,
            f"{value!r} is not one well-formed address: give one address per list item, "
            "as addr@domain or Name <addr@domain>",
        )
    local, sep, domain = addr.rpartition("@")
    if not sep or not local or not domain:
        raise InvalidArgumentError(field, f"{addr!r} is not an e-mail address (local@domain)")
    if not addr.isascii():
        raise InvalidArgumentError(
            field, f"{addr!r}: non-ASCII addresses are not supported; use the xn-- domain form"
        )
    if (
        not _LOCAL_PART_RE.fullmatch(local)
        or local.startswith(".")
        or local.endswith(".")
        or ".." in local
    ):
        raise InvalidArgumentError(field, f"{addr!r} has an invalid local part")
    if not _DOMAIN_RE.fullmatch(domain):
        raise InvalidArgumentError(field, f"{addr!r} has an invalid domain")
    try:
        return Address(display_name=name, addr_spec=addr)
    except (ValueError, IndexError) as exc:  # defensive: the checks above should catch it
        raise InvalidArgumentError(field, f"{value!r} is not a valid address: {exc}") from None


def _decode_base64(field: str, value: str) -> bytes:
    compact = "".join(value.split())
    try:
        return b64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgumentError(field, "is not valid base64") from None


def validate_email_config(config: EmailConfig) -> None:
    """Check everything that can be checked without the network or the file system.

    The activity calls it first; tools such as ``cadenza lint`` can call it on job steps.

    Raises:
        InvalidArgumentError: naming the first offending field (``to[1]``,
            ``attachments[0].filename``, ``headers.X-Foo``, ...) and the reason.
    """
    if not config.host or not _HOST_RE.fullmatch(config.host):
        raise InvalidArgumentError("host", f"{config.host!r} is not a host name or IP address")
    if config.port is not None and not 1 <= config.port <= 65535:
        raise InvalidArgumentError("port", f"{config.port} is not a TCP port (1-65535)")
    if not (math.isfinite(config.timeout) and config.timeout > 0):
        raise InvalidArgumentError("timeout", "must be a positive number of seconds")
    if config.ca_bundle is not None:
        if config.security == "none":
            raise InvalidArgumentError(
                "ca_bundle", 'is only used with security "starttls" or "tls"'
            )
        if not config.ca_bundle:
            raise InvalidArgumentError("ca_bundle", "must be a path to a PEM file")
    if config.password is not None and config.password_env is not None:
        raise InvalidArgumentError("password_env", "give password or password_env, not both")
    if config.password_env is not None and not _ENV_NAME_RE.fullmatch(config.password_env):
        raise InvalidArgumentError("password_env", "is not an environment variable name")
    has_password = config.password is not None or config.password_env is not None
    if config.username is not None or has_password:
        if not config.username:
            raise InvalidArgumentError("username", "is required when a password is given")
        if not has_password:
            raise InvalidArgumentError("password", "is required when a username is given")
        _no_line_breaks("username", config.username)
    if config.local_hostname is not None and not _HOST_RE.fullmatch(config.local_hostname):
        raise InvalidArgumentError("local_hostname", "is not a host name")

    _parse_address("from", config.from_)
    total = 0
    for field in ("to", "cc", "bcc"):
        for i, value in enumerate(getattr(config, field)):
            _parse_address(f"{field}[{i}]", value)
            total += 1
    if total == 0:
        raise InvalidArgumentError("to", "at least one recipient (to, cc or bcc) is required")
    if total > MAX_RECIPIENTS:
        raise InvalidArgumentError("to", f"{total} recipients; at most {MAX_RECIPIENTS} allowed")
    if config.reply_to is not None:
        _parse_address("reply_to", config.reply_to)

    _no_line_breaks("subject", config.subject)
    if config.text is None and config.html is None:
        raise InvalidArgumentError("text", "give a body: text, html, or both")

    for name, value in config.headers.items():
        field = f"headers.{name}"
        if not _HEADER_NAME_RE.fullmatch(name):
            raise InvalidArgumentError(field, "header names are printable ASCII without ':'")
        if name.casefold() in _RESERVED_HEADERS:
            raise InvalidArgumentError(
                field, "is set by the e-mail activity; use the matching option instead"
            )
        _no_line_breaks(field, value)

    if config.max_message_bytes <= 0:
        raise InvalidArgumentError("max_message_bytes", "must be a positive number of bytes")
    known_size = len((config.text or "").encode()) + len((config.html or "").encode())
    for i, attachment in enumerate(config.attachments):
        known_size += _validate_attachment(i, attachment)
    if known_size > config.max_message_bytes:
        raise InvalidArgumentError(
            "attachments",
            f"bodies and attachments are {known_size} bytes, more than max_message_bytes "
            f"({config.max_message_bytes})",
        )


def _validate_attachment(i: int, attachment: EmailAttachment) -> int:
    prefix = f"attachments[{i}]"
    name = attachment.filename
    if not name or not name.strip():
        raise InvalidArgumentError(f"{prefix}.filename", "must not be empty")
    _no_line_breaks(f"{prefix}.filename", name)
    if "/" in name or "\\" in name or name in (".", ".."):
        raise InvalidArgumentError(
            f"{prefix}.filename", "is a name, not a path: put the file's location in path"
        )
    if attachment.content_type is not None and not _CONTENT_TYPE_RE.fullmatch(
        attachment.content_type
    ):
        raise InvalidArgumentError(
            f"{prefix}.content_type", f"{attachment.content_type!r} is not a MIME type (type/sub)"
        )
    given = [k for k in ("text", "base64", "path") if getattr(attachment, k) is not None]
    if len(given) != 1:
        raise InvalidArgumentError(
            prefix,
            "give the content in exactly one of text, base64 or path"
            + (f" (got {', '.join(given)})" if given else ""),
        )
    if attachment.text is not None:
        return len(attachment.text.encode())
    if attachment.base64 is not None:
        return len(_decode_base64(f"{prefix}.base64", attachment.base64))
    if not attachment.path:
        raise InvalidArgumentError(f"{prefix}.path", "must not be empty")
    return 0  # read when the activity runs


# --------------------------------------------------------------------------- building


@dataclass(frozen=True, kw_only=True)
class _Prepared:
    data: bytes
    sender: str
    recipients: list[str]
    message_id: str


def _unique(addresses: Iterator[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for addr in addresses:
        key = addr.casefold()
        if key not in seen:
            seen.add(key)
            out.append(addr)
    return out


def _message_id(domain: str) -> str:
    if in_activity():
        key = info().idempotency_key
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
        return f"<{digest}.cadenza@{domain}>"
    return email.utils.make_msgid(domain=domain)


def _body_cte(text: str) -> str:
    """7bit when it is plain short-lined ASCII, else quoted-printable: safe for every server."""
    if text.isascii() and all(len(line) <= 998 for line in text.splitlines()):
        return "7bit"
    return "quoted-printable"


def _read_file(field: str, given: str, limit: int) -> bytes:
    # Confined to the worker's file roots: a job must not mail out /etc/shadow.
    path = str(resolve_local_path(given, field))
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise InvalidArgumentError(field, f"file {path!r} does not exist") from None
    except OSError as exc:
        raise InvalidArgumentError(field, f"cannot read {path!r}: {exc.strerror}") from None
    if not os.path.isfile(path):
        raise InvalidArgumentError(field, f"{path!r} is not a regular file")
    if size > limit:
        raise InvalidArgumentError(
            field, f"file {path!r} is {size} bytes, more than max_message_bytes ({limit})"
        )
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise InvalidArgumentError(field, f"cannot read {path!r}: {exc.strerror}") from None
    if len(data) > limit:  # the file grew after stat()
        raise InvalidArgumentError(field, f"file {path!r} is larger than max_message_bytes")
    return data


def _build(config: EmailConfig) -> _Prepared:
    """Build and serialize the message (runs in a thread: it may read files)."""
    sender = _parse_address("from", config.from_)
    to = [_parse_address(f"to[{i}]", v) for i, v in enumerate(config.to)]
    cc = [_parse_address(f"cc[{i}]", v) for i, v in enumerate(config.cc)]
    bcc = [_parse_address(f"bcc[{i}]", v) for i, v in enumerate(config.bcc)]

    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    if to:
        msg["To"] = to
    if cc:
        msg["Cc"] = cc
    if config.reply_to is not None:
        msg["Reply-To"] = _parse_address("reply_to", config.reply_to)
    msg["Subject"] = config.subject
    msg["Date"] = email.utils.formatdate(localtime=True)
    message_id = _message_id(sender.domain)
    msg["Message-ID"] = message_id
    for name, value in config.headers.items():
        msg[name] = value

    if config.text is not None:
        msg.set_content(config.text, cte=_body_cte(config.text))
        if config.html is not None:
            msg.add_alternative(config.html, subtype="html", cte=_body_cte(config.html))
    elif config.html is not None:
        msg.set_content(config.html, subtype="html", cte=_body_cte(config.html))

    limit = config.max_message_bytes
    for i, attachment in enumerate(config.attachments):
        prefix = f"attachments[{i}]"
        if attachment.text is not None:
            content = attachment.text.encode("utf-8")
        elif attachment.base64 is not None:
            content = _decode_base64(f"{prefix}.base64", attachment.base64)
        else:
            content = _read_file(f"{prefix}.path", attachment.path or "", limit)
        ctype = (
            attachment.content_type
            or mimetypes.guess_type(attachment.filename)[0]
            or "application/octet-stream"
        )
        maintype, subtype = ctype.split("/", 1)
        params = {"charset": "utf-8"} if maintype == "text" else None
        msg.add_attachment(
            content,
            maintype=maintype,
            subtype=subtype,
            filename=attachment.filename,
            params=params,
        )

    data = msg.as_bytes(policy=email.policy.SMTP)
    if len(data) > limit:
        raise InvalidArgumentError(
            "max_message_bytes",
            f"the message is {len(data)} bytes as sent, more than the limit of {limit}",
        )
    recipients = _unique(a.addr_spec for a in [*to, *cc, *bcc])
    return _Prepared(
        data=data, sender=sender.addr_spec, recipients=recipients, message_id=message_id
    )


def _tls_context(config: EmailConfig) -> ssl.SSLContext | None:
    if config.security == "none":
        return None
    try:
        context = ssl.create_default_context(cafile=config.ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InvalidArgumentError(
            "ca_bundle", f"cannot load {config.ca_bundle!r}: {reason}"
        ) from None
    if not config.validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


# --------------------------------------------------------------------------- errors


def _truncate(text: str, limit: int = _MAX_REPLY_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _config_error(exc: InvalidArgumentError) -> ApplicationError:
    return ApplicationError(
        f"invalid e-mail configuration: {exc}",
        {"field": exc.field, "reason": exc.reason},
        type="InvalidEmailConfig",
        non_retryable=True,
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _reply_error(where: str, code: int, message: str, type_: str) -> ApplicationError:
    retryable = 400 <= code < 500
    return ApplicationError(
        f"{where}: the server replied {code} {_truncate(message)}",
        {"code": code, "message": _truncate(message)},
        type=type_,
        non_retryable=not retryable,
    )


def _classify(exc: BaseException, config: EmailConfig, port: int) -> ApplicationError:
    """Turn an aiosmtplib/OS error into a retryable or non-retryable ApplicationError."""
    where = f"SMTP {config.host}:{port}"
    for link in _chain(exc):
        if isinstance(link, ssl.SSLCertVerificationError):
            return ApplicationError(
                f"{where}: TLS certificate verification failed: {link.verify_message}",
                type="TLSCertificateError",
                non_retryable=True,
            )
        if isinstance(link, ssl.SSLError):
            return ApplicationError(
                f"{where}: TLS failed ({link.reason or link}); check security and port",
                type="TLSError",
                non_retryable=True,
            )
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = {
            r.recipient: {"code": r.code, "message": _truncate(r.message)} for r in exc.recipients
        }
        retryable = any(400 <= r.code < 500 for r in exc.recipients)
        codes = ", ".join(sorted({str(r.code) for r in exc.recipients}))
        return ApplicationError(
            f"{where}: every recipient was refused ({codes})",
            {"refused": refused},
            type="SMTPRecipientsRefused",
            non_retryable=not retryable,
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return _reply_error(
            f"{where}: authentication as {config.username!r} failed",
            exc.code,
            exc.message,
            "SMTPAuthenticationError",
        )
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return _reply_error(
            f"{where}: sender {exc.sender!r} refused", exc.code, exc.message, "SMTPSenderRefused"
        )
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return _reply_error(f"{where}: message refused", exc.code, exc.message, "SMTPDataError")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _reply_error(where, exc.code, exc.message, "SMTPResponseError")
    if isinstance(exc, TimeoutError):  # SMTPTimeoutError is a TimeoutError too
        return ApplicationError(f"{where}: timed out ({_truncate(str(exc))})", type="SMTPTimeout")
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected | OSError):
        return ApplicationError(
            f"{where}: connection failed ({_truncate(str(exc))})", type="SMTPConnectError"
        )
    if isinstance(exc, aiosmtplib.SMTPException | ValueError):
        # Unsupported STARTTLS/AUTH/SMTPUTF8 and similar: retrying will not change the server.
        return ApplicationError(
            f"{where}: {_truncate(str(exc))}", type="SMTPNotSupported", non_retryable=True
        )
    return ApplicationError(f"{where}: {type(exc).__name__}: {_truncate(str(exc))}")


# --------------------------------------------------------------------------- activity


def _coerce(config: Any) -> EmailConfig:
    return convert_config(config, EmailConfig)


def _password(config: EmailConfig) -> str | None:
    if config.password_env is None:
        return config.password
    value = os.environ.get(config.password_env)
    if value is None:
        raise InvalidArgumentError(
            "password_env", f"environment variable {config.password_env!r} is not set"
        )
    return value


def _prepare(config: EmailConfig) -> tuple[ssl.SSLContext | None, _Prepared, str | None]:
    """Validate, load the TLS trust store and build the message (in a thread: it reads files)."""
    validate_email_config(config)
    return _tls_context(config), _build(config), _password(config)


@defn(name="email")
async def send_email(config: Any) -> dict[str, Any]:
    """Send one e-mail over SMTP: the built-in ``email`` activity.

    Args:
        config: An :class:`EmailConfig`, or a dict with the same keys (``from``, not ``from_``),
            as ``workflow.execute_activity("email", {...})`` or a job step's ``config:`` gives
            it. The dict is converted here, so a wrong key or type fails as a non-retryable
            configuration error that names the field.

    Returns:
        ``{"message_id": "<...>", "accepted": [addresses], "refused": {address: {"code":
        int, "message": str}}, "response": str, "size": int}``: the ``Message-ID`` sent, the
        envelope recipients the server accepted, those it refused (the send succeeds when at
        least one recipient is accepted), the server's final reply, and the message size in
        bytes.

    Raises:
        ApplicationError: non-retryable for a bad configuration (type ``InvalidEmailConfig``,
            details name the field), 5xx replies, TLS certificate failures and unsupported
            features; retryable for connection failures, timeouts and 4xx replies.
    """
    try:
        config = _coerce(config)
        tls_context, prepared, password = await asyncio.to_thread(_prepare, config)
    except InvalidArgumentError as exc:
        raise _config_error(exc) from exc

    port = config.port or _DEFAULT_PORTS[config.security]
    smtp = aiosmtplib.SMTP(
        hostname=config.host,
        port=port,
        use_tls=config.security == "tls",
        start_tls=config.security == "starttls",
        tls_context=tls_context,
        timeout=config.timeout,
        local_hostname=config.local_hostname,
    )
    transport: asyncio.Transport | None = None
    try:
        try:
            await smtp.connect()  # TCP, TLS or STARTTLS, EHLO
            transport = smtp.transport
            if config.username is not None:
                await smtp.login(config.username, password or "")
            refused, response = await smtp.sendmail(
                prepared.sender, prepared.recipients, prepared.data
            )
        except Exception as exc:
            raise _classify(exc, config, port) from exc
    finally:
        await _close(smtp, transport, config.timeout)

    refused_out = {
        addr: {"code": reply.code, "message": _truncate(reply.message)}
        for addr, reply in refused.items()
    }
    accepted = [r for r in prepared.recipients if r not in refused]
    log.info(
        "e-mail %s sent via %s:%d to %d recipient(s), %d refused",
        prepared.message_id,
        config.host,
        port,
        len(accepted),
        len(refused_out),
    )
    return {
        "message_id": prepared.message_id,
        "accepted": accepted,
        "refused": refused_out,
        "response": _truncate(response),
        "size": len(prepared.data),
    }


async def _close(
    smtp: aiosmtplib.SMTP, transport: asyncio.Transport | None, seconds: float
) -> None:
    """QUIT politely, then release the socket before the activity returns.

    A failure here must not fail a message that was already accepted. After QUIT (or a
    failure), the TLS close handshake is skipped: the transport is aborted, which closes the
    socket on the next turn of the event loop instead of leaving it open in the background
    for up to 30 seconds waiting for the server's close_notify.
    """
    if smtp.is_connected:
        try:
            await smtp.quit(timeout=seconds)
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            smtp.close()
    if transport is not None:
        transport.abort()
    # Let the close callbacks scheduled above (ours or aiosmtplib's) run now.
    await asyncio.sleep(0)
