"""Configuration errors of the e-mail activity: non-retryable, naming the field, sent nothing."""

from __future__ import annotations

import base64
from typing import Any

import msgspec
import pytest

from cadenza.activities._email import (
    EmailAttachment,
    EmailConfig,
    send_email,
    validate_email_config,
)
from cadenza.history import ApplicationError, InvalidArgumentError


def step(smtp_port: int, **overrides: Any) -> dict[str, Any]:
    """A job-step style configuration (plain dict, ``from`` spelled as in job files)."""
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": smtp_port,
        "security": "none",
        "from": "batch@bank.example.vn",
        "to": ["ops@bank.example.vn"],
        "subject": "Report",
        "text": "body",
    }
    for key, value in overrides.items():
        if value is _DROP:
            base.pop(key, None)
        else:
            base[key] = value
    return base


_DROP = object()


async def config_error(cfg: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(ApplicationError) as err:
        await send_email(cfg)
    # Validation runs before any connection: nothing listens on the port, so reaching the
    # network would have produced a retryable SMTPConnectError instead.
    assert err.value.type == "InvalidEmailConfig", err.value.message
    assert err.value.non_retryable
    assert isinstance(err.value.__cause__, InvalidArgumentError)
    detail = err.value.details[0]
    assert err.value.message.startswith(f"invalid e-mail configuration: {detail['field']}: ")
    return detail["field"], detail["reason"]


CASES: list[tuple[str, dict[str, Any], str]] = [
    ("bad address", {"to": ["not-an-address"]}, "to[0]"),
    ("two @", {"to": ["ok@bank.example.vn", "a@b@bank.example.vn"]}, "to[1]"),
    ("unbalanced <", {"cc": ["Audit <audit@bank.example.vn"]}, "cc[0]"),
    ("bad domain", {"bcc": ["x@-bad-.vn"]}, "bcc[0]"),
    ("unquoted comma", {"from": "Ops, Team <ops@bank.example.vn>"}, "from"),
    ("two in one", {"to": ["a@bank.example.vn, b@bank.example.vn"]}, "to[0]"),
    ("non-ascii address", {"to": ["nguyễn@bank.example.vn"]}, "to[0]"),
    ("reply_to", {"reply_to": "nobody"}, "reply_to"),
    ("no recipients", {"to": []}, "to"),
    ("too many", {"bcc": [f"u{i}@bank.example.vn" for i in range(1000)]}, "to"),
    ("subject injection", {"subject": "Hi\r\nBcc: evil@attacker.example"}, "subject"),
    ("reserved header", {"headers": {"Bcc": "evil@attacker.example"}}, "headers.Bcc"),
    ("reserved header case", {"headers": {"message-id": "<x@y>"}}, "headers.message-id"),
    ("bad header name", {"headers": {"X Bad": "1"}}, "headers.X Bad"),
    ("header injection", {"headers": {"X-Ok": "1\nBcc: evil@attacker.example"}}, "headers.X-Ok"),
    ("no body", {"text": _DROP}, "text"),
    (
        "two contents",
        {"attachments": [{"filename": "a", "text": "x", "path": "/x"}]},
        "attachments[0]",
    ),
    ("no content", {"attachments": [{"filename": "a"}]}, "attachments[0]"),
    (
        "path as name",
        {"attachments": [{"filename": "../etc/x", "text": "x"}]},
        "attachments[0].filename",
    ),
    ("bad base64", {"attachments": [{"filename": "a", "base64": "@@@"}]}, "attachments[0].base64"),
    (
        "bad type",
        {"attachments": [{"filename": "a", "text": "x", "content_type": "csv"}]},
        "attachments[0].content_type",
    ),
    (
        "missing file",
        {"attachments": [{"filename": "a", "path": "/nonexistent/a.csv"}]},
        "attachments[0].path",
    ),
    ("password alone", {"password": "pw"}, "username"),
    ("username alone", {"username": "robot"}, "password"),
    ("both passwords", {"username": "u", "password": "p", "password_env": "P"}, "password_env"),
    ("env name", {"username": "u", "password_env": "NOT A NAME"}, "password_env"),
    ("env unset", {"username": "u", "password_env": "CADENZA_TEST_UNSET_VAR_X"}, "password_env"),
    ("port", {"port": 70000}, "port"),
    ("timeout", {"timeout": 0}, "timeout"),
    ("host", {"host": "bad host"}, "host"),
    ("ca_bundle without TLS", {"ca_bundle": "/etc/ssl/ca.pem"}, "ca_bundle"),
    ("ca_bundle missing", {"security": "tls", "ca_bundle": "/nonexistent/ca.pem"}, "ca_bundle"),
    ("max size", {"max_message_bytes": 0}, "max_message_bytes"),
    ("unknown field", {"bogus": 1}, "bogus"),
    ("missing field", {"subject": _DROP}, "subject"),
    ("wrong type", {"port": "25x"}, "port"),
    ("security", {"security": "ssl"}, "security"),
    ("nested unknown", {"attachments": [{"filename": "a", "txt": "x"}]}, "attachments[0].txt"),
    ("to as string", {"to": "ops@bank.example.vn"}, "to"),
]


async def test_config_that_is_not_a_mapping() -> None:
    field, _ = await config_error(["not", "a", "mapping"])  # type: ignore[arg-type]
    assert field == "config"


@pytest.mark.parametrize(("overrides", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_config_errors_name_the_field(unused_port: int, overrides, field: str) -> None:
    got_field, reason = await config_error(step(unused_port, **overrides))
    assert got_field == field
    assert reason


async def test_directory_as_attachment_path(unused_port: int, tmp_path) -> None:
    cfg = step(unused_port, attachments=[{"filename": "d", "path": str(tmp_path)}])
    field, reason = await config_error(cfg)
    assert field == "attachments[0].path" and "regular file" in reason


async def test_attachment_outside_the_file_roots_is_refused(unused_port: int) -> None:
    cfg = step(unused_port, attachments=[{"filename": "p", "path": "/etc/passwd"}])
    field, reason = await config_error(cfg)
    assert field == "attachments[0].path" and "outside the allowed file roots" in reason


async def test_size_limit_on_known_content(unused_port: int) -> None:
    cfg = step(
        unused_port,
        max_message_bytes=1000,
        attachments=[{"filename": "big.txt", "text": "x" * 2000}],
    )
    field, reason = await config_error(cfg)
    assert field == "attachments" and "1000" in reason


async def test_size_limit_on_a_file(unused_port: int, tmp_path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * 5000)
    cfg = step(
        unused_port, max_message_bytes=4000, attachments=[{"filename": "b", "path": str(big)}]
    )
    field, reason = await config_error(cfg)
    assert field == "attachments[0].path" and "5000 bytes" in reason


async def test_size_limit_counts_the_message_as_sent(unused_port: int) -> None:
    """3,000 raw bytes fit a 3,500-byte limit, but not once base64-encoded (~4,100)."""
    raw = base64.b64encode(b"\x01" * 3000).decode()
    cfg = step(unused_port, max_message_bytes=3500, attachments=[{"filename": "b", "base64": raw}])
    field, reason = await config_error(cfg)
    assert field == "max_message_bytes" and "as sent" in reason


def test_validate_can_be_called_without_sending() -> None:
    cfg = EmailConfig(host="smtp.bank.example.vn", from_="a@bank.example.vn", subject="s", text="t")
    with pytest.raises(InvalidArgumentError) as err:
        validate_email_config(cfg)
    assert err.value.field == "to"
    ok = msgspec.structs.replace(cfg, to=["b@bank.example.vn"])
    validate_email_config(ok)  # does not raise


def test_from_is_spelled_from_in_files() -> None:
    cfg = EmailConfig(
        host="smtp.bank.example.vn",
        from_="a@bank.example.vn",
        to=["b@bank.example.vn"],
        subject="s",
        text="t",
        password="hunter2-secret",
        username="u",
        attachments=[EmailAttachment(filename="x.bin", base64="AAAA" * 10)],
    )
    encoded = msgspec.json.decode(msgspec.json.encode(cfg))
    assert encoded["from"] == "a@bank.example.vn" and "from_" not in encoded
    assert msgspec.convert(encoded, EmailConfig) == cfg
    text = repr(cfg)
    assert "hunter2-secret" not in text and "••••••" in text
    assert "AAAA" not in text  # attachment content is summarised, not dumped
    assert "hunter2-secret" not in repr(list(cfg.__rich_repr__()))


@pytest.mark.parametrize(
    ("value", "display", "addr"),
    [
        ("ops@bank.example.vn", "", "ops@bank.example.vn"),
        ("<ops@bank.example.vn>", "", "ops@bank.example.vn"),
        ("Ops Desk <ops@bank.example.vn>", "Ops Desk", "ops@bank.example.vn"),
        ('"Doe, Jane" <jane@bank.example.vn>', "Doe, Jane", "jane@bank.example.vn"),
        ('"Say \\"hi\\"" <hi@bank.example.vn>', 'Say "hi"', "hi@bank.example.vn"),
        (
            "Nguyễn Văn An <an.nguyen+batch@bank.example.vn>",
            "Nguyễn Văn An",
            "an.nguyen+batch@bank.example.vn",
        ),
        ("root@localhost", "", "root@localhost"),
    ],
)
def test_accepted_address_forms(value: str, display: str, addr: str) -> None:
    from cadenza.activities._email import _parse_address

    parsed = _parse_address("to[0]", value)
    assert (parsed.display_name, parsed.addr_spec) == (display, addr)
