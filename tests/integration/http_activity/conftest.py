"""Fixtures for the HTTP activity tests: real aiohttp servers on 127.0.0.1, a fake clock, TLS.

Every test starts with empty circuit breakers and token cache driven by a fake clock (so breaker
cool-downs and token expiry are tested without sleeping), default process settings, and ends
with the shared client sessions closed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from cadenza.activities._context import ActivityContext, ActivityInfo, reset_context, set_context
from cadenza.activities._http import close_http_sessions, reset_http_state
from cadenza.activities._http_hosts import (
    http_activity_settings,
    restore_http_activity_settings,
)


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def _wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    step = 0.005
    for _ in range(int(timeout / step)):
        if predicate():
            return
        await asyncio.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture
def wait_until() -> Callable[..., Awaitable[None]]:
    """``await wait_until(lambda: cond)``: poll until true (fails after 10 s)."""
    return _wait_until


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
async def http_state(clock: FakeClock) -> AsyncIterator[None]:
    settings = http_activity_settings()
    reset_http_state(clock)
    yield
    await close_http_sessions()
    reset_http_state()
    restore_http_activity_settings(settings)


@dataclass
class Server:
    """A running test server: its base URL, the requests it saw, and a gate for slow handlers."""

    base: str
    port: int
    requests: list[web.Request] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def hits(self, path: str) -> int:
        return sum(1 for r in self.requests if r.path == path)


ServerFactory = Callable[..., Awaitable[Server]]
Handler = Callable[[web.Request, Server], Awaitable[web.StreamResponse]]


def _bind(handler: Handler, holder: list[Server]) -> Callable[[web.Request], Any]:
    async def bound(request: web.Request) -> web.StreamResponse:
        return await handler(request, holder[0])

    return bound


@pytest.fixture
async def serve() -> AsyncIterator[ServerFactory]:
    """Start aiohttp apps on 127.0.0.1 (port 0). ``await serve(routes, ssl_context=None)``.

    ``routes`` is a list of ``(method, path, handler)``; handlers get ``(request, server)``.
    """
    runners: list[tuple[web.AppRunner, Server]] = []

    async def start(
        routes: list[tuple[str, str, Callable[..., Awaitable[web.StreamResponse]]]],
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> Server:
        app = web.Application()
        holder: list[Server] = []

        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            holder[0].requests.append(request)
            return await handler(request)

        app.middlewares.append(record)
        for method, path, handler in routes:
            app.router.add_route(method, path, _bind(handler, holder))
        runner = web.AppRunner(app, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = runner.addresses[0][1]
        scheme = "https" if ssl_context else "http"
        server = Server(base=f"{scheme}://127.0.0.1:{port}", port=port)
        holder.append(server)
        runners.append((runner, server))
        return server

    yield start
    for runner, server in runners:
        server.release.set()
        await runner.cleanup()


@pytest.fixture
def in_activity_context() -> Iterator[ActivityInfo]:
    """Run the test inside an activity attempt (so ``info()`` works)."""
    now = dt.datetime.now(dt.UTC)
    info = ActivityInfo(
        activity_id="1",
        activity_type="http",
        attempt=2,
        idempotency_key="wf-1/run-1/5",
        workflow_id="wf-1",
        run_id="run-1",
        workflow_type="Job",
        namespace="default",
        task_queue="default",
        scheduled_event_id=5,
        scheduled_time=now,
        started_time=now,
    )
    token = set_context(ActivityContext(info=info, heartbeater=lambda details: None))
    yield info
    reset_context(token)


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def unresponsive_port() -> Iterator[int]:
    """A port whose accept queue is full, so a new connection attempt hangs (connect timeout)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


# --------------------------------------------------------------------------- TLS material


@dataclass(frozen=True)
class Pki:
    """PEM files of a throw-away CA, a server certificate for 127.0.0.1 and a client cert."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _make_pki(tmp: Path) -> Pki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def write_key(k: ec.EllipticCurvePrivateKey, name: str) -> Path:
        path = tmp / name
        path.write_bytes(
            k.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return path

    def write_cert(cert: x509.Certificate, name: str) -> Path:
        path = tmp / name
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def make_ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        ca_key = key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
            .sign(ca_key, hashes.SHA256())
        )
        return cert, ca_key

    def issue(
        ca_cert: x509.Certificate,
        ca_key: ec.EllipticCurvePrivateKey,
        cn: str,
        usage: x509.ObjectIdentifier,
        san: list[x509.GeneralName] | None,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        leaf_key = key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject)
            .public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), leaf_key

    ca_cert, ca_key = make_ca("Cadenza test CA")
    other_ca, _ = make_ca("Some other CA")
    server_cert, server_key = issue(
        ca_cert,
        ca_key,
        "127.0.0.1",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    client_cert, client_key = issue(
        ca_cert, ca_key, "cadenza-worker", ExtendedKeyUsageOID.CLIENT_AUTH, None
    )
    return Pki(
        ca=write_cert(ca_cert, "ca.pem"),
        server_cert=write_cert(server_cert, "server.pem"),
        server_key=write_key(server_key, "server.key"),
        client_cert=write_cert(client_cert, "client.pem"),
        client_key=write_key(client_key, "client.key"),
        other_ca=write_cert(other_ca, "other-ca.pem"),
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return _make_pki(tmp_path_factory.mktemp("pki"))
