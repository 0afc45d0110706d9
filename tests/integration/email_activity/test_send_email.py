"""The e-mail activity against real aiosmtpd servers started by the tests."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import email.policy
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import msgspec
import pytest

from cadenza.activities import (
    ActivityContext,
    ActivityDefinition,
    ActivityInfo,
    reset_context,
    set_context,
)
from cadenza.activities._email import EmailAttachment, EmailConfig, send_email
from cadenza.history import ApplicationError


def config(port: int, **overrides: Any) -> EmailConfig:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "local_hostname": "worker.test",
        "from_": "Cadenza Batch <batch@bank.example.vn>",
        "to": ["ops@bank.example.vn"],
        "subject": "Nightly reconciliation 2025-06-01",
        "text": "All 1,204 rows matched.\n",
        "timeout": 10.0,
    }
    base.update(overrides)
    return EmailConfig(**base)


def parse(raw: bytes) -> EmailMessage:
    """Parse a message as received (CRLF line ends on the wire, LF in Python's text)."""
    message = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


@contextlib.contextmanager
def activity(idempotency_key: str, attempt: int = 1) -> Iterator[None]:
    now = datetime.now(UTC)
    info = ActivityInfo(
        activity_id="1",
        activity_type="email",
        attempt=attempt,
        idempotency_key=idempotency_key,
        workflow_id="nightly-recon/2025-06-01T17:00:00Z",
        run_id="run-1",
        workflow_type="cadenza.job",
        namespace="default",
        task_queue="default",
        scheduled_event_id=7,
        scheduled_time=now,
        started_time=now,
    )
    token = set_context(ActivityContext(info=info, heartbeater=lambda details: None))
    try:
        yield
    finally:
        reset_context(token)


async def failure(cfg: EmailConfig | dict[str, Any]) -> ApplicationError:
    with pytest.raises(ApplicationError) as err:
        await send_email(cfg)
    return err.value


# --------------------------------------------------------------------------- delivery


def test_registered_as_email_activity() -> None:
    definition = ActivityDefinition.of(send_email)
    assert definition.name == "email"
    assert definition.is_async


async def test_plain_message_envelope_and_headers(smtp_server) -> None:
    server = smtp_server()
    result = await send_email(
        config(
            server.port,
            to=["ops@bank.example.vn", '"Trần, Minh" <minh@bank.example.vn>'],
            cc=["Audit <audit@bank.example.vn>"],
            bcc=["archive@bank.example.vn", "OPS@bank.example.vn"],
            reply_to="noreply-desk@bank.example.vn",
            headers={"X-Batch-Id": "recon-2025-06-01", "Auto-Submitted": "auto-generated"},
        )
    )
    [got] = server.received
    assert got.mail_from == "batch@bank.example.vn"
    # Every recipient is in the envelope exactly once (the upper-case duplicate is dropped).
    assert got.rcpt_tos == [
        "ops@bank.example.vn",
        "minh@bank.example.vn",
        "audit@bank.example.vn",
        "archive@bank.example.vn",
    ]
    assert not got.tls and not got.authenticated

    message = parse(got.content)
    assert message["From"] == "Cadenza Batch <batch@bank.example.vn>"
    assert [a.addr_spec for a in message["To"].addresses] == [
        "ops@bank.example.vn",
        "minh@bank.example.vn",
    ]
    assert message["To"].addresses[1].display_name == "Trần, Minh"
    assert message["Cc"] == "Audit <audit@bank.example.vn>"
    assert message["Reply-To"] == "noreply-desk@bank.example.vn"
    assert message["Subject"] == "Nightly reconciliation 2025-06-01"
    assert message["X-Batch-Id"] == "recon-2025-06-01"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"] is not None and message["Date"].datetime is not None
    # Bcc recipients got the mail but appear in no header.
    assert message["Bcc"] is None
    assert b"archive@bank.example.vn" not in got.content
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == "All 1,204 rows matched.\n"

    assert result["message_id"] == message["Message-ID"]
    assert result["message_id"].endswith("@bank.example.vn>")
    assert result["accepted"] == got.rcpt_tos
    assert result["refused"] == {}
    assert "queued as TEST" in result["response"]
    assert result["size"] == len(got.content)
    # JSON-safe: survives a msgspec round trip unchanged.
    assert msgspec.json.decode(msgspec.json.encode(result)) == result


async def test_text_and_html_make_multipart_alternative(smtp_server) -> None:
    server = smtp_server()
    text = "Đối soát xong: 1.204 giao dịch khớp.\n"
    html = "<p>Đối soát xong: <b>1.204</b> giao dịch khớp.</p>\n"
    await send_email(
        config(server.port, subject="Báo cáo đối soát ngày 01/06", text=text, html=html)
    )
    message = parse(server.received[0].content)
    assert server.received[0].content.isascii()  # 7-bit safe for any relay
    assert message["Subject"] == "Báo cáo đối soát ngày 01/06"
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content() == text
    assert parts[1].get_content() == html


async def test_html_only_body(smtp_server) -> None:
    server = smtp_server()
    await send_email(config(server.port, text=None, html="<h1>Done</h1>"))
    message = parse(server.received[0].content)
    assert message.get_content_type() == "text/html"
    assert message.get_content().strip() == "<h1>Done</h1>"


async def test_attachments_arrive_byte_equal(smtp_server, tmp_path) -> None:
    server = smtp_server()
    binary = os.urandom(150_000) + b"\r\n\x00\xff" * 10
    pdf = tmp_path / "settlement 2025-06-01.pdf"
    pdf_bytes = b"%PDF-1.7\n" + os.urandom(40_000)
    pdf.write_bytes(pdf_bytes)
    csv_text = 'id,amount,note\n1,100000,Thanh toán\n2,250000,"a, b"\r\n'
    await send_email(
        config(
            server.port,
            text="See attached.",
            html="<p>See attached.</p>",
            attachments=[
                EmailAttachment(filename="rows.csv", text=csv_text),
                EmailAttachment(
                    filename="dump.bin",
                    content_type="application/x-cadenza-dump",
                    base64=base64.encodebytes(binary).decode(),  # wrapped lines are fine
                ),
                EmailAttachment(filename="settlement.pdf", path=str(pdf)),
            ],
        )
    )
    message = parse(server.received[0].content)
    assert message.get_content_type() == "multipart/mixed"
    body, *attachments = list(message.iter_parts())
    assert body.get_content_type() == "multipart/alternative"
    assert [a.get_filename() for a in attachments] == ["rows.csv", "dump.bin", "settlement.pdf"]
    assert [a.get_content_type() for a in attachments] == [
        "text/csv",
        "application/x-cadenza-dump",
        "application/pdf",
    ]
    assert all(a.get_content_disposition() == "attachment" for a in attachments)
    assert attachments[0].get_param("charset") == "utf-8"
    assert attachments[0].get_payload(decode=True) == csv_text.encode("utf-8")
    assert attachments[1].get_payload(decode=True) == binary
    assert attachments[2].get_payload(decode=True) == pdf_bytes


async def test_dict_config_as_a_job_step_gives_it(smtp_server) -> None:
    server = smtp_server()
    step_config = {
        "host": "127.0.0.1",
        "port": server.port,
        "security": "none",
        "local_hostname": "worker.test",
        "from": "batch@bank.example.vn",
        "to": ["ops@bank.example.vn"],
        "subject": "From a job file",
        "text": "rendered by the job layer",
        "attachments": [{"filename": "a.txt", "text": "hello"}],
    }
    result = await send_email(step_config)
    message = parse(server.received[0].content)
    assert message["Subject"] == "From a job file"
    assert result["accepted"] == ["ops@bank.example.vn"]


async def test_message_id_is_derived_from_the_idempotency_key(smtp_server) -> None:
    server = smtp_server()
    cfg = config(server.port)
    key = "nightly-recon/2025-06-01T17:00:00Z/run-1/7"
    with activity(key, attempt=1):
        first = await send_email(cfg)
    with activity(key, attempt=2):  # a retry of the same activity
        second = await send_email(cfg)
    with activity(key + "-other"):
        other = await send_email(cfg)
    outside_1 = await send_email(cfg)
    outside_2 = await send_email(cfg)

    ids = [parse(r.content)["Message-ID"] for r in server.received]
    assert ids == [
        first["message_id"],
        second["message_id"],
        other["message_id"],
        outside_1["message_id"],
        outside_2["message_id"],
    ]
    assert first["message_id"] == second["message_id"]
    assert other["message_id"] != first["message_id"]
    assert outside_1["message_id"] != outside_2["message_id"]
    assert key not in first["message_id"]  # the key is hashed, not exposed
    assert first["message_id"].startswith("<") and first["message_id"].endswith("@bank.example.vn>")


# --------------------------------------------------------------------------- TLS and AUTH


async def test_starttls_with_ca_bundle_and_auth_plain(
    smtp_server, pki, smtp_credentials, caplog
) -> None:
    user, password = smtp_credentials
    caplog.set_level(logging.DEBUG)
    server = smtp_server(tls_context=pki.server_context(), require_starttls=True, auth=True)
    await send_email(
        config(
            server.port,
            host="localhost",
            security="starttls",
            ca_bundle=str(pki.ca_pem),
            username=user,
            password=password,
        )
    )
    [got] = server.received
    assert got.tls and got.authenticated
    assert server.recorder.auth_attempts == [("PLAIN", user, True)]
    assert password not in caplog.text


async def test_auth_login_when_the_server_offers_only_login(
    smtp_server, pki, smtp_credentials
) -> None:
    user, password = smtp_credentials
    server = smtp_server(
        tls_context=pki.server_context(),
        require_starttls=True,
        auth=True,
        auth_exclude_mechanism=["PLAIN"],
    )
    await send_email(
        config(
            server.port,
            security="starttls",
            ca_bundle=str(pki.ca_pem),
            username=user,
            password=password,
        )
    )
    assert server.received[0].authenticated
    assert server.recorder.auth_attempts == [("LOGIN", user, True)]


async def test_wrong_password_is_not_retryable_and_not_revealed(
    smtp_server, pki, smtp_credentials, caplog
) -> None:
    user, _ = smtp_credentials
    caplog.set_level(logging.DEBUG)
    server = smtp_server(tls_context=pki.server_context(), require_starttls=True, auth=True)
    wrong = "Wr0ng-Passw0rd-123"
    cfg = config(
        server.port,
        security="starttls",
        ca_bundle=str(pki.ca_pem),
        username=user,
        password=wrong,
    )
    err = await failure(cfg)
    assert err.non_retryable
    assert err.type == "SMTPAuthenticationError"
    assert err.details[0]["code"] == 535
    assert server.received == []
    assert server.recorder.auth_attempts[0][2] is False
    assert wrong not in str(err) and wrong not in repr(err.details)
    assert wrong not in caplog.text
    assert wrong not in repr(cfg) and "••••••" in repr(cfg)


async def test_password_from_the_workers_environment(
    smtp_server, pki, smtp_credentials, monkeypatch
) -> None:
    user, password = smtp_credentials
    monkeypatch.setenv("CADENZA_TEST_SMTP_PASSWORD", password)
    server = smtp_server(tls_context=pki.server_context(), require_starttls=True, auth=True)
    cfg = config(
        server.port,
        security="starttls",
        ca_bundle=str(pki.ca_pem),
        username=user,
        password_env="CADENZA_TEST_SMTP_PASSWORD",
    )
    await send_email(cfg)
    assert server.received[0].authenticated
    assert password not in msgspec.json.encode(cfg).decode()  # what a history would hold


async def test_implicit_tls_with_ca_bundle(smtp_server, pki) -> None:
    server = smtp_server(ssl_context=pki.server_context())
    await send_email(config(server.port, security="tls", ca_bundle=str(pki.ca_pem)))
    assert server.received[0].tls


async def test_untrusted_certificate_is_not_retryable(smtp_server, pki) -> None:
    starttls = smtp_server(tls_context=pki.server_context(), require_starttls=True)
    implicit = smtp_server(ssl_context=pki.server_context())
    cases = [
        config(starttls.port, security="starttls"),  # system trust store: unknown CA
        config(starttls.port, security="starttls", ca_bundle=str(pki.other_ca_pem)),
        config(implicit.port, security="tls", ca_bundle=str(pki.other_ca_pem)),
    ]
    for cfg in cases:
        err = await failure(cfg)
        assert err.non_retryable, cfg
        assert err.type == "TLSCertificateError"
        assert "certificate" in err.message
    assert starttls.received == [] and implicit.received == []


async def test_host_name_is_checked_against_the_certificate(smtp_server, pki) -> None:
    # Signed by the trusted CA, but issued to mail.other.test, not to 127.0.0.1.
    server = smtp_server(ssl_context=pki.server_context(other_name=True))
    err = await failure(config(server.port, security="tls", ca_bundle=str(pki.ca_pem)))
    assert err.non_retryable
    assert err.type == "TLSCertificateError"
    assert "mismatch" in err.message or "127.0.0.1" in err.message
    assert server.received == []


async def test_validate_certs_false_accepts_an_untrusted_certificate(smtp_server, pki) -> None:
    server = smtp_server(tls_context=pki.server_context(), require_starttls=True)
    await send_email(config(server.port, security="starttls", validate_certs=False))
    assert server.received[0].tls


async def test_starttls_required_but_not_offered_is_not_retryable(smtp_server) -> None:
    server = smtp_server()  # no TLS at all
    err = await failure(config(server.port, security="starttls"))
    assert err.non_retryable
    assert "STARTTLS" in err.message
    assert server.received == []


async def test_tls_to_a_plain_port_is_not_retryable(smtp_server) -> None:
    server = smtp_server()
    err = await failure(config(server.port, security="tls"))
    assert server.received == []
    assert err.non_retryable
    assert err.type == "TLSError"


# --------------------------------------------------------------------------- failures


async def test_4xx_data_reply_is_retryable(smtp_server) -> None:
    server = smtp_server(data_reply="451 4.3.0 Try again later")
    err = await failure(config(server.port))
    assert not err.non_retryable
    assert err.type == "SMTPDataError"
    assert err.details[0] == {"code": 451, "message": "4.3.0 Try again later"}


async def test_5xx_data_reply_is_not_retryable(smtp_server) -> None:
    server = smtp_server(data_reply="554 5.7.1 Message rejected as spam")
    err = await failure(config(server.port))
    assert err.non_retryable
    assert err.details[0]["code"] == 554


async def test_some_recipients_refused_is_a_success_that_lists_them(smtp_server) -> None:
    server = smtp_server(refuse_rcpt={"ghost@bank.example.vn": "550 5.1.1 User unknown"})
    result = await send_email(
        config(server.port, to=["ops@bank.example.vn"], cc=["ghost@bank.example.vn"])
    )
    assert server.received[0].rcpt_tos == ["ops@bank.example.vn"]
    assert result["accepted"] == ["ops@bank.example.vn"]
    assert result["refused"] == {
        "ghost@bank.example.vn": {"code": 550, "message": "5.1.1 User unknown"}
    }


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [("550 5.1.1 User unknown", False), ("450 4.2.1 Mailbox busy", True)],
)
async def test_every_recipient_refused(smtp_server, reply: str, retryable: bool) -> None:
    server = smtp_server(refuse_rcpt={"ops@bank.example.vn": reply})
    err = await failure(config(server.port))
    assert err.non_retryable is not retryable
    assert err.type == "SMTPRecipientsRefused"
    assert err.details[0]["refused"]["ops@bank.example.vn"]["code"] == int(reply[:3])
    assert server.received == []


async def test_connection_refused_is_retryable(unused_port: int) -> None:
    port = unused_port
    err = await failure(config(port))
    assert not err.non_retryable
    assert err.type == "SMTPConnectError"
    assert f"127.0.0.1:{port}" in err.message


async def test_server_that_never_answers_times_out_retryably() -> None:
    connections: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)  # accept and say nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        err = await failure(config(port, timeout=0.3))
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()
    assert not err.non_retryable
    assert err.type in {"SMTPTimeout", "SMTPConnectError"}
    assert "timed out" in err.message.lower()
