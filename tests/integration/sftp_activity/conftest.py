"""A real asyncssh SFTP server on 127.0.0.1 for the sftp activity tests.

Each test gets its own server on a free port (port 0, then the bound port is read back),
chrooted to ``tmp_path / "remote"``, with a host key generated once per session. Two accounts:
``PASSWORD_USER`` logs in with ``PASSWORD``, ``KEY_USER`` with the session's ed25519
``client_key``. The worker's file roots are ``tmp_path / "local"`` (reset afterwards).
"""

from __future__ import annotations

import asyncio
import hmac
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from cadenza.activities._local_paths import configure_file_roots

PASSWORD_USER = "settlement"
PASSWORD = "Pa55-w0rd-never-to-be-logged"
KEY_USER = "robot"


class _Server(asyncssh.SSHServer):
    """Password auth for PASSWORD_USER, public-key auth for KEY_USER."""

    def __init__(self, authorized_key: asyncssh.SSHKey, open_connections: set[int]) -> None:
        self._authorized_key = authorized_key
        self._open = open_connections

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._open.add(id(self))

    def connection_lost(self, exc: Exception | None) -> None:
        self._open.discard(id(self))

    def begin_auth(self, username: str) -> bool:
        return True  # every user must authenticate

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == PASSWORD_USER and hmac.compare_digest(password, PASSWORD)

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return (
            username == KEY_USER and key.get_fingerprint() == self._authorized_key.get_fingerprint()
        )


class _Sftp(asyncssh.SFTPServer):
    """asyncssh's file server, with a policy: nothing under ``/readonly`` may be changed
    (the tests may run as root, for whom file modes deny nothing, so the server denies), and
    opening ``/slow`` hangs (after setting ``slow_opened``) until the client goes away.
    """

    slow_opened: asyncio.Event | None = None

    @staticmethod
    def _check(path: bytes) -> None:
        if path == b"/readonly" or path.startswith(b"/readonly/"):
            raise asyncssh.SFTPPermissionDenied("Permission denied")

    async def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        if pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_APPEND):
            self._check(path)
        if path == b"/slow" and self.slow_opened is not None:
            self.slow_opened.set()
            await asyncio.sleep(60)
        return super().open(path, pflags, attrs)

    def remove(self, path: bytes) -> None:
        self._check(path)
        super().remove(path)


@dataclass(frozen=True)
class SftpServer:
    """A running test server and how to reach it."""

    port: int
    root: Path
    host_key: asyncssh.SSHKey
    open_connections: set[int]
    slow_opened: asyncio.Event

    @property
    def host_key_line(self) -> str:
        """``ssh-ed25519 AAAA...`` (what ``host_key:`` takes)."""
        return self.host_key.export_public_key().decode().strip()

    @property
    def fingerprint(self) -> str:
        """``SHA256:...`` of the host key."""
        return self.host_key.get_fingerprint("sha256")

    def config(self, operation: str, path: str, **overrides: Any) -> dict[str, Any]:
        """A dict config as a job step gives it: password login, host key pinned."""
        base: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "username": PASSWORD_USER,
            "password": PASSWORD,
            "host_key": self.host_key_line,
            "connect_timeout": 10,
            "timeout": 10,
            "operation": operation,
            "path": path,
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}


@pytest.fixture(scope="session")
def host_key() -> asyncssh.SSHKey:
    """The servers' host key."""
    return asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture(scope="session")
def client_key() -> asyncssh.SSHKey:
    """The private key KEY_USER logs in with."""
    return asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture(scope="session")
def other_key() -> asyncssh.SSHKey:
    """A key nobody trusts."""
    return asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture
def local_root(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path / "local"``: the only file root of the worker during the test."""
    root = tmp_path / "local"
    root.mkdir()
    configure_file_roots([root])
    try:
        yield root
    finally:
        configure_file_roots(None)


@pytest.fixture
async def sftp_server(
    tmp_path: Path, host_key: asyncssh.SSHKey, client_key: asyncssh.SSHKey
) -> AsyncIterator[SftpServer]:
    """An SFTP server on 127.0.0.1, chrooted to ``tmp_path / "remote"``."""
    root = tmp_path / "remote"
    (root / "readonly").mkdir(parents=True)
    chroot = str(root).encode()
    open_connections: set[int] = set()
    slow_opened = asyncio.Event()

    def sftp_factory(chan: asyncssh.SSHServerChannel) -> _Sftp:
        server = _Sftp(chan, chroot=chroot)
        server.slow_opened = slow_opened
        return server

    acceptor = await asyncssh.create_server(
        lambda: _Server(client_key, open_connections),
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        sftp_factory=sftp_factory,
        allow_scp=False,
        config=[],
        login_timeout=10,
    )
    try:
        yield SftpServer(
            port=acceptor.get_port(),
            root=root,
            host_key=host_key,
            open_connections=open_connections,
            slow_opened=slow_opened,
        )
        # The activity must have closed every connection it opened, whatever happened.
        for _ in range(500):
            if not open_connections:
                break
            await asyncio.sleep(0.01)
        assert not open_connections, f"{len(open_connections)} SSH connection(s) left open"
    finally:
        acceptor.close()
        await acceptor.wait_closed()
        await asyncio.sleep(0)


@pytest.fixture
def without_posix_rename(monkeypatch: pytest.MonkeyPatch) -> None:
    """Servers started in this test do not offer ``posix-rename@openssh.com``."""
    handler = asyncssh.sftp.SFTPServerHandler
    monkeypatch.setattr(
        handler,
        "_extensions",
        [e for e in handler._extensions if e[0] != b"posix-rename@openssh.com"],
    )


@pytest.fixture
def closed_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
