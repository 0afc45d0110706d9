"""Real SMTP servers (aiosmtpd) and a throw-away PKI for the e-mail activity tests.

Every server listens on 127.0.0.1 on a free port, records what it received, and is stopped at
the end of the test. Certificates are generated per session with ``cryptography``: a test CA,
a server certificate for ``localhost``/``127.0.0.1`` signed by it, and an unrelated CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cadenza.activities._local_paths import configure_file_roots


@pytest.fixture(autouse=True)
def _file_roots(tmp_path: Path) -> Iterator[None]:
    """Attachments given by path must lie in the file roots: the test's own folder."""
    configure_file_roots([tmp_path])
    yield
    configure_file_roots(None)


GOOD_USER = "batch-robot"
GOOD_PASSWORD = "c0rrect-h0rse-battery-staple"


# --------------------------------------------------------------------------- PKI


@dataclass(frozen=True)
class Pki:
    ca_pem: Path
    other_ca_pem: Path
    server_cert: Path
    server_key: Path
    other_name_cert: Path
    other_name_key: Path

    def server_context(self, *, other_name: bool = False) -> ssl.SSLContext:
        """Server side: the localhost certificate, or one for ``mail.other.test`` only."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if other_name:
            context.load_cert_chain(self.other_name_cert, self.other_name_key)
        else:
            context.load_cert_chain(self.server_cert, self.server_key)
        return context


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    names: list[x509.GeneralName],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA, a server certificate for localhost/127.0.0.1 it signed, and another CA."""
    root = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = _ca("Cadenza Test CA")
    _, other_cert = _ca("Unrelated CA")
    pem = serialization.Encoding.PEM
    (root / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (root / "other-ca.pem").write_bytes(other_cert.public_bytes(pem))
    leaves = {
        "server": [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        "other-name": [x509.DNSName("mail.other.test")],
    }
    for stem, names in leaves.items():
        key, cert = _leaf(ca_key, ca_cert, names)
        (root / f"{stem}.pem").write_bytes(cert.public_bytes(pem))
        (root / f"{stem}.key").write_bytes(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
    return Pki(
        ca_pem=root / "ca.pem",
        other_ca_pem=root / "other-ca.pem",
        server_cert=root / "server.pem",
        server_key=root / "server.key",
        other_name_cert=root / "other-name.pem",
        other_name_key=root / "other-name.key",
    )


# --------------------------------------------------------------------------- SMTP


@dataclass
class Received:
    """One message as the server got it."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    authenticated: bool


@dataclass
class Recorder:
    """aiosmtpd handler: records messages; can refuse chosen recipients or every DATA."""

    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    received: list[Received] = field(default_factory=list)
    auth_attempts: list[tuple[str, str, bool]] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        reply = self.refuse_rcpt.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        self.received.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                content=envelope.original_content,
                # session.ssl is set after STARTTLS; implicit TLS shows on the transport.
                tls=session.ssl is not None
                or server.transport.get_extra_info("ssl_object") is not None,
                authenticated=bool(session.authenticated),
            )
        )
        return "250 2.0.0 Ok: queued as TEST"

    def authenticator(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == GOOD_USER.encode()
            and auth_data.password == GOOD_PASSWORD.encode()
        )
        user = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "?"
        self.auth_attempts.append((mechanism, user, ok))
        return AuthResult(success=ok, handled=False)


class _TrackingSMTP(SMTP):
    """aiosmtpd's SMTP protocol, counting the connections that are still open."""

    def __init__(self, *args: Any, open_connections: set[int], lock: threading.Lock, **kw: Any):
        super().__init__(*args, **kw)
        self._open = open_connections
        self._lock = lock

    def connection_made(self, transport: Any) -> None:
        with self._lock:  # called again after STARTTLS: a set keeps one entry per connection
            self._open.add(id(self))
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        with self._lock:
            self._open.discard(id(self))


class _TrackingController(Controller):
    """A Controller that can wait until its server side has closed every connection.

    Stopping the server thread while a connection is still closing leaves that socket
    unclosed (a ResourceWarning later, at garbage collection, in whatever test runs then), so
    the fixture waits for the connections to end before it stops the server.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_connections: set[int] = set()
        self._lock = threading.Lock()

    def factory(self) -> SMTP:
        return _TrackingSMTP(
            self.handler,
            open_connections=self.open_connections,
            lock=self._lock,
            **self.SMTP_kwargs,
        )

    def wait_until_idle(self, deadline: float = 10.0) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            with self._lock:
                if not self.open_connections:
                    return
            time.sleep(0.005)
        raise AssertionError(f"SMTP server still has {len(self.open_connections)} connection(s)")


@dataclass
class SmtpServer:
    controller: Controller
    recorder: Recorder

    @property
    def port(self) -> int:
        return self.controller.port

    @property
    def received(self) -> list[Received]:
        return self.recorder.received


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def unused_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on."""
    return free_port()


@pytest.fixture
def smtp_credentials() -> tuple[str, str]:
    """The user and password the servers' authenticator accepts."""
    return GOOD_USER, GOOD_PASSWORD


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., SmtpServer]]:
    """Factory: ``smtp_server(**options)`` starts a recording SMTP server on 127.0.0.1.

    Options: ``refuse_rcpt={address: reply}`` refuses those recipients, ``data_reply="451 ..."``
    answers every DATA with that reply, ``auth=True`` checks AUTH against
    :func:`smtp_credentials`; the rest go to aiosmtpd (``tls_context=`` for STARTTLS,
    ``ssl_context=`` for implicit TLS, ``require_starttls=``, ``auth_exclude_mechanism=``).
    """
    started: list[_TrackingController] = []

    def start(
        *,
        refuse_rcpt: dict[str, str] | None = None,
        data_reply: str | None = None,
        auth: bool = False,
        **kwargs: Any,
    ) -> SmtpServer:
        recorder = Recorder(refuse_rcpt=refuse_rcpt or {}, data_reply=data_reply)
        if auth:
            kwargs.setdefault("authenticator", recorder.authenticator)
        last_error: Exception | None = None
        for _ in range(5):  # the free port may be taken between probing and binding
            controller = _TrackingController(
                recorder,
                hostname="127.0.0.1",
                port=free_port(),
                server_hostname="smtp.test",
                ready_timeout=10,
                **kwargs,
            )
            try:
                controller.start()
            except OSError as exc:
                last_error = exc
                continue
            started.append(controller)
            return SmtpServer(controller=controller, recorder=recorder)
        raise RuntimeError(f"could not start the SMTP server: {last_error}")

    yield start
    for controller in started:
        try:
            controller.wait_until_idle()
        finally:
            controller.stop()
