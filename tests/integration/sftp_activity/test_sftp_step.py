"""The sftp activity against a real asyncssh SFTP server on 127.0.0.1 (see conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from cadenza.activities import (
    ActivityContext,
    ActivityDefinition,
    ActivityInfo,
    reset_context,
    set_context,
)
from cadenza.activities._sftp import SftpConfig, sftp_step
from cadenza.history import ApplicationError

from .conftest import KEY_USER, PASSWORD, SftpServer

ISO_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def activity(idempotency_key: str, beats: list[Any] | None = None) -> Iterator[None]:
    now = datetime.now(UTC)
    info = ActivityInfo(
        activity_id="fetch",
        activity_type="sftp",
        attempt=1,
        idempotency_key=idempotency_key,
        workflow_id="nightly-settlement",
        run_id="run-1",
        workflow_type="job",
        namespace="default",
        task_queue="default",
        scheduled_event_id=5,
        scheduled_time=now,
        started_time=now,
    )
    sink = beats if beats is not None else []
    token = set_context(
        ActivityContext(info=info, heartbeater=lambda details: sink.append(details))
    )
    try:
        yield
    finally:
        reset_context(token)


async def failure(config: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as err:
        await sftp_step(config)
    return err.value


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".part" in p.name)


# --------------------------------------------------------------------------- list


def test_registered_as_sftp_activity() -> None:
    assert ActivityDefinition.of(sftp_step).name == "sftp"


async def test_list_with_pattern_sorted_by_name(sftp_server: SftpServer) -> None:
    inbox = sftp_server.root / "inbox"
    inbox.mkdir()
    (inbox / "settle_20250602.csv").write_bytes(b"b" * 20)
    (inbox / "settle_20250601.csv").write_bytes(b"a" * 10)
    (inbox / "notes.txt").write_text("ignore me")
    (inbox / "archive").mkdir()

    result = await sftp_step(sftp_server.config("list", "/inbox", pattern="*.csv"))
    assert result["path"] == "/inbox"
    assert [f["name"] for f in result["files"]] == ["settle_20250601.csv", "settle_20250602.csv"]
    first = result["files"][0]
    assert first["path"] == "/inbox/settle_20250601.csv"
    assert first["size"] == 10
    assert first["is_dir"] is False
    assert ISO_Z.fullmatch(first["modified"])

    everything = await sftp_step(sftp_server.config("list", "/inbox"))
    names = [f["name"] for f in everything["files"]]
    assert names == sorted(names) and len(names) == 4
    assert next(f for f in everything["files"] if f["name"] == "archive")["is_dir"] is True


async def test_list_more_than_max_files_is_an_error(sftp_server: SftpServer) -> None:
    (sftp_server.root / "many").mkdir()
    for i in range(3):
        (sftp_server.root / "many" / f"f{i}.csv").write_text("x")
    error = await failure(sftp_server.config("list", "/many", max_files=2))
    assert error.type == "SftpTooManyFiles"
    assert error.non_retryable
    assert len((await sftp_step(sftp_server.config("list", "/many", max_files=3)))["files"]) == 3


async def test_list_of_a_missing_directory(sftp_server: SftpServer) -> None:
    error = await failure(sftp_server.config("list", "/nowhere"))
    assert error.type == "SftpFileNotFound"
    assert error.non_retryable


# --------------------------------------------------------------------------- download


async def test_download_is_atomic_and_reports_sha256(
    sftp_server: SftpServer, local_root: Path
) -> None:
    content = "ngày,số tiền\n2025-06-01,1500000\n".encode() * 50_000  # ~1.6 MB: several chunks
    (sftp_server.root / "out").mkdir()
    (sftp_server.root / "out" / "settle.csv").write_bytes(content)

    beats: list[Any] = []
    with activity("wf/run/5", beats):
        result = await sftp_step(
            sftp_server.config("download", "/out/settle.csv", local_path="in/2025/settle.csv")
        )
    target = local_root / "in" / "2025" / "settle.csv"
    assert target.read_bytes() == content
    assert result == {
        "path": "/out/settle.csv",
        "local_path": str(target),
        "size": len(content),
        "sha256": sha(content),
        "skipped": False,
    }
    assert entries(target.parent) == ["settle.csv"]  # no temp left
    assert beats and beats[-1] == ({"bytes": len(content), "total": len(content)},)


async def test_download_if_exists_modes(sftp_server: SftpServer, local_root: Path) -> None:
    (sftp_server.root / "f.csv").write_bytes(b"new content\n")
    target = local_root / "f.csv"

    target.write_bytes(b"old content\n")  # same size, other content
    error = await failure(
        sftp_server.config("download", "/f.csv", local_path="f.csv", if_exists="error")
    )
    assert error.type == "SftpFileExists"
    assert error.non_retryable
    assert error.details[0]["side"] == "local"
    assert target.read_bytes() == b"old content\n"

    skipped = await sftp_step(
        sftp_server.config("download", "/f.csv", local_path="f.csv", if_exists="skip")
    )
    assert skipped["skipped"] is True
    assert skipped["sha256"] == sha(b"old content\n")
    assert target.read_bytes() == b"old content\n"

    replaced = await sftp_step(sftp_server.config("download", "/f.csv", local_path="f.csv"))
    assert replaced["skipped"] is False
    assert target.read_bytes() == b"new content\n"

    # A retry of an "error" download that already succeeded: same content, so it succeeds.
    again = await sftp_step(
        sftp_server.config("download", "/f.csv", local_path="f.csv", if_exists="error")
    )
    assert again["sha256"] == sha(b"new content\n")
    assert leftovers(local_root) == []


async def test_download_of_a_missing_file_leaves_nothing(
    sftp_server: SftpServer, local_root: Path
) -> None:
    error = await failure(sftp_server.config("download", "/missing.csv", local_path="m.csv"))
    assert error.type == "SftpFileNotFound"
    assert error.non_retryable
    assert "/missing.csv" in str(error)
    assert entries(local_root) == []


# --------------------------------------------------------------------------- read


async def test_read_text_and_max_bytes(sftp_server: SftpServer) -> None:
    data = "société;montant\nFT001;150000\n".encode("latin-1")
    (sftp_server.root / "small.csv").write_bytes(data)

    result = await sftp_step(sftp_server.config("read", "/small.csv", encoding="latin-1"))
    assert result == {
        "path": "/small.csv",
        "text": "société;montant\nFT001;150000\n",
        "size": len(data),
        "sha256": sha(data),
    }

    error = await failure(sftp_server.config("read", "/small.csv", max_bytes=10))
    assert error.type == "SftpFileTooLarge"
    assert error.non_retryable
    assert error.details[0]["max_bytes"] == 10

    (sftp_server.root / "binary.bin").write_bytes(b"ok\xff\xfe")
    bad = await failure(sftp_server.config("read", "/binary.bin"))
    assert bad.type == "SftpDecodeError"
    assert bad.details[0]["position"] == 2


# --------------------------------------------------------------------------- upload


async def test_upload_from_local_path(sftp_server: SftpServer, local_root: Path) -> None:
    content = b"id,amount\n0012345,100\n" * 80_000  # ~1.8 MB
    (local_root / "report.csv").write_bytes(content)
    (sftp_server.root / "in").mkdir()

    result = await sftp_step(
        sftp_server.config("upload", "/in/report.csv", local_path="report.csv")
    )
    assert result == {
        "path": "/in/report.csv",
        "size": len(content),
        "sha256": sha(content),
        "skipped": False,
    }
    assert (sftp_server.root / "in" / "report.csv").read_bytes() == content
    assert leftovers(sftp_server.root / "in") == []


async def test_upload_text_is_renamed_from_the_keyed_temporary_file(
    sftp_server: SftpServer,
) -> None:
    key = "nightly-settlement/run-1/5"
    temp = sftp_server.root / f"ack.txt.part-{sha(key.encode())[:12]}"
    temp.write_bytes(b"half-written by an attempt that crashed")

    with activity(key):
        result = await sftp_step(sftp_server.config("upload", "/ack.txt", text="Đã nhận ✓\n"))
    assert (sftp_server.root / "ack.txt").read_text("utf-8") == "Đã nhận ✓\n"
    assert result["sha256"] == sha("Đã nhận ✓\n".encode())
    assert not temp.exists()  # the retry wrote over the crashed attempt's temp, then renamed it
    assert leftovers(sftp_server.root) == []


async def test_upload_retry_after_success_ends_with_the_same_file(
    sftp_server: SftpServer,
) -> None:
    config = sftp_server.config("upload", "/out.csv", text="a,b\n1,2\n")
    with activity("wf/run/9"):
        first = await sftp_step(config)
        second = await sftp_step(config)  # the completion of the first was "lost"
    assert first == second
    assert (sftp_server.root / "out.csv").read_text() == "a,b\n1,2\n"
    assert leftovers(sftp_server.root) == []


async def test_upload_if_exists_error(sftp_server: SftpServer) -> None:
    target = sftp_server.root / "out.csv"
    target.write_text("someone else's file\n")
    error = await failure(
        sftp_server.config("upload", "/out.csv", text="ours\n", if_exists="error")
    )
    assert error.type == "SftpFileExists"
    assert error.non_retryable
    assert target.read_text() == "someone else's file\n"
    assert leftovers(sftp_server.root) == []

    target.unlink()
    config = sftp_server.config("upload", "/out.csv", text="ours\n", if_exists="error")
    assert (await sftp_step(config))["skipped"] is False
    retried = await sftp_step(config)  # finds exactly what it would write: success
    assert retried["skipped"] is True
    assert target.read_text() == "ours\n"


@pytest.mark.usefixtures("without_posix_rename")
async def test_upload_replace_without_posix_rename(sftp_server: SftpServer) -> None:
    (sftp_server.root / "out.csv").write_text("old\n")
    await sftp_step(sftp_server.config("upload", "/out.csv", text="new\n"))
    assert (sftp_server.root / "out.csv").read_text() == "new\n"
    assert leftovers(sftp_server.root) == []


async def test_upload_of_a_missing_local_file(sftp_server: SftpServer, local_root: Path) -> None:
    error = await failure(sftp_server.config("upload", "/x.csv", local_path="nope.csv"))
    assert error.type == "InvalidSftpConfig"
    assert error.details[0]["field"] == "local_path"


async def test_upload_into_a_missing_directory(sftp_server: SftpServer) -> None:
    error = await failure(sftp_server.config("upload", "/no/such/dir/x.csv", text="x"))
    assert error.type == "SftpFileNotFound"
    assert error.non_retryable


async def test_permission_denied_is_not_retryable(sftp_server: SftpServer) -> None:
    (sftp_server.root / "readonly" / "keep.csv").write_text("keep\n")
    error = await failure(sftp_server.config("upload", "/readonly/x.csv", text="x"))
    assert error.type == "SftpPermissionDenied"
    assert error.non_retryable
    assert error.details[0]["side"] == "remote"
    denied = await failure(sftp_server.config("delete", "/readonly/keep.csv"))
    assert denied.type == "SftpPermissionDenied"
    assert (sftp_server.root / "readonly" / "keep.csv").exists()


# --------------------------------------------------------------------------- move, delete, mkdir


async def test_move_is_idempotent(sftp_server: SftpServer) -> None:
    (sftp_server.root / "archive").mkdir()
    (sftp_server.root / "in.csv").write_text("rows\n")
    config = sftp_server.config("move", "/in.csv", to="/archive/in.csv")

    assert await sftp_step(config) == {"path": "/in.csv", "to": "/archive/in.csv", "moved": True}
    assert (sftp_server.root / "archive" / "in.csv").read_text() == "rows\n"
    again = await sftp_step(config)  # a retry after a lost completion
    assert again["moved"] is False

    missing = await failure(sftp_server.config("move", "/ghost.csv", to="/archive/ghost.csv"))
    assert missing.type == "SftpFileNotFound"
    assert missing.non_retryable


async def test_move_onto_an_existing_file(sftp_server: SftpServer) -> None:
    (sftp_server.root / "a.csv").write_text("a\n")
    (sftp_server.root / "b.csv").write_text("b\n")
    error = await failure(sftp_server.config("move", "/a.csv", to="/b.csv"))
    assert error.type == "SftpFileExists"
    assert error.non_retryable
    assert (sftp_server.root / "b.csv").read_text() == "b\n"

    await sftp_step(sftp_server.config("move", "/a.csv", to="/b.csv", if_exists="replace"))
    assert (sftp_server.root / "b.csv").read_text() == "a\n"
    assert not (sftp_server.root / "a.csv").exists()


async def test_delete_and_missing_ok(sftp_server: SftpServer) -> None:
    (sftp_server.root / "done.csv").write_text("x")
    assert await sftp_step(sftp_server.config("delete", "/done.csv")) == {
        "path": "/done.csv",
        "deleted": True,
    }
    assert not (sftp_server.root / "done.csv").exists()
    assert (await sftp_step(sftp_server.config("delete", "/done.csv")))["deleted"] is False
    error = await failure(sftp_server.config("delete", "/done.csv", missing_ok=False))
    assert error.type == "SftpFileNotFound"


async def test_mkdir_with_parents(sftp_server: SftpServer) -> None:
    config = sftp_server.config("mkdir", "/out/2025/06")
    assert await sftp_step(config) == {"path": "/out/2025/06", "created": True}
    assert (sftp_server.root / "out" / "2025" / "06").is_dir()
    assert (await sftp_step(config))["created"] is False  # exists: fine

    error = await failure(sftp_server.config("mkdir", "/a/b", parents=False))
    assert error.type == "SftpFileNotFound"
    (sftp_server.root / "file").write_text("x")
    clash = await failure(sftp_server.config("mkdir", "/file"))
    assert clash.type == "SftpFileExists"


# --------------------------------------------------------------------------- auth and host keys


async def test_public_key_auth(sftp_server: SftpServer, client_key: asyncssh.SSHKey) -> None:
    (sftp_server.root / "k.txt").write_text("by key\n")
    config = sftp_server.config(
        "read",
        "/k.txt",
        username=KEY_USER,
        password=None,
        private_key=client_key.export_private_key().decode(),
    )
    assert (await sftp_step(config))["text"] == "by key\n"

    encrypted = client_key.export_private_key("pkcs8-pem", passphrase="open sesame").decode()
    config.update(private_key=encrypted, passphrase="open sesame")
    assert (await sftp_step(SftpConfig(**config)))["text"] == "by key\n"

    # ssh-keygen's default: OpenSSH format, encrypted with bcrypt-pbkdf.
    openssh = client_key.export_private_key("openssh", passphrase="open sesame").decode()
    assert openssh.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    config.update(private_key=openssh, passphrase="open sesame")
    assert (await sftp_step(SftpConfig(**config)))["text"] == "by key\n"


async def test_wrong_password_is_not_retryable_and_never_revealed(
    sftp_server: SftpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-but-still-secret"
    error = await failure(sftp_server.config("list", "/", password=wrong))
    assert error.type == "SftpAuthenticationFailed"
    assert error.non_retryable
    (sftp_server.root / "ok.txt").write_text("fine")
    result = await sftp_step(sftp_server.config("read", "/ok.txt"))  # the right password
    invalid = await failure(sftp_server.config("list", "/", bogus=True))
    assert caplog.records  # asyncssh and the activity did log
    for secret in (wrong, PASSWORD):
        assert secret not in caplog.text
        assert secret not in str(error) and secret not in repr(error.details)
        assert secret not in str(invalid) and secret not in repr(invalid.details)
        assert secret not in repr(result)
        assert secret not in repr(error.__cause__)


async def test_wrong_key_is_not_retryable(
    sftp_server: SftpServer, other_key: asyncssh.SSHKey
) -> None:
    error = await failure(
        sftp_server.config(
            "list",
            "/",
            username=KEY_USER,
            password=None,
            private_key=other_key.export_private_key().decode(),
        )
    )
    assert error.type == "SftpAuthenticationFailed"
    assert error.non_retryable


async def test_wrong_host_key_is_a_mismatch(
    sftp_server: SftpServer, other_key: asyncssh.SSHKey
) -> None:
    other_line = other_key.export_public_key().decode().strip()
    error = await failure(sftp_server.config("list", "/", host_key=other_line))
    assert error.type == "SftpHostKeyMismatch"
    assert error.non_retryable
    assert sftp_server.fingerprint in str(error)  # what the server presented, to compare

    by_fingerprint = await failure(
        sftp_server.config(
            "list", "/", host_key=None, host_key_fingerprint=other_key.get_fingerprint()
        )
    )
    assert by_fingerprint.type == "SftpHostKeyMismatch"

    other_host = f"[sftp.other.test]:{sftp_server.port} {sftp_server.host_key_line}\n"
    by_known_hosts = await failure(
        sftp_server.config("list", "/", host_key=None, known_hosts=other_host)
    )
    assert by_known_hosts.type == "SftpHostKeyMismatch"


async def test_host_key_by_fingerprint_and_known_hosts(sftp_server: SftpServer) -> None:
    (sftp_server.root / "x").write_text("x")
    by_fingerprint = sftp_server.config(
        "list", "/", host_key=None, host_key_fingerprint=sftp_server.fingerprint
    )
    assert (await sftp_step(by_fingerprint))["files"]
    known_hosts = (
        "# ssh-keyscan -p PORT 127.0.0.1\n"
        f"[127.0.0.1]:{sftp_server.port} {sftp_server.host_key_line}\n"
    )
    by_known_hosts = sftp_server.config("list", "/", host_key=None, known_hosts=known_hosts)
    assert (await sftp_step(by_known_hosts))["files"]
    keyscan_line = sftp_server.config(
        "list", "/", host_key=f"127.0.0.1 {sftp_server.host_key_line}"
    )
    assert (await sftp_step(keyscan_line))["files"]


async def test_insecure_skip_host_key_warns(
    sftp_server: SftpServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = sftp_server.config("list", "/", host_key=None, insecure_skip_host_key=True)
    with caplog.at_level(logging.WARNING, logger="cadenza.activities.sftp"):
        await sftp_step(config)
    assert any(
        r.levelno == logging.WARNING and "insecure_skip_host_key" in r.getMessage()
        for r in caplog.records
    )


# --------------------------------------------------------------------------- connection failures


async def test_closed_port_is_a_retryable_connection_error(
    sftp_server: SftpServer, closed_port: int
) -> None:
    error = await failure(sftp_server.config("list", "/", port=closed_port))
    assert error.type == "SftpConnectionError"
    assert not error.non_retryable


async def test_server_that_never_answers_times_out_retryably(sftp_server: SftpServer) -> None:
    release = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await release.wait()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        error = await failure(sftp_server.config("list", "/", port=port, connect_timeout=0.3))
        assert error.type == "SftpTimeout"
        assert not error.non_retryable
    finally:
        release.set()
        for writer in writers:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        server.close()
        await server.wait_closed()


async def test_cancel_closes_the_connection_and_leaves_no_temp_file(
    sftp_server: SftpServer, local_root: Path
) -> None:
    (sftp_server.root / "slow").write_text("never read")
    task = asyncio.create_task(
        sftp_step(sftp_server.config("download", "/slow", local_path="slow.csv"))
    )
    await asyncio.wait_for(sftp_server.slow_opened.wait(), 10)
    assert sftp_server.open_connections
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert entries(local_root) == []
    # (the fixture then checks that the server saw the connection closed)


# --------------------------------------------------------------------------- as a job step


class _SecretBackend:
    """What a worker asks for the secrets of a running job step."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets

    async def activity_secrets(self, ref: Any) -> dict[str, str]:
        return dict(self.secrets)

    async def run_variables(self, namespace: str, names: list[str]) -> dict[str, Any]:
        return {}


async def test_job_step_resolves_the_secret_password_at_run_time(
    sftp_server: SftpServer, local_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from cadenza.sdk._job_activities import secret_aware

    caplog.set_level(logging.DEBUG)
    (sftp_server.root / "settle_20250601.csv").write_text("id,amount\n1,100\n")
    config = sftp_server.config(
        "download",
        "/settle_20250601.csv",
        local_path="settle.csv",
        password={"kind": "secret_ref", "name": "SFTP_PASSWORD"},  # as the history holds it
    )
    step = secret_aware(sftp_step, _SecretBackend({"SFTP_PASSWORD": PASSWORD}))
    with activity("nightly-settlement/run-1/5"):
        result = await step(config)
    assert result["local_path"] == str(local_root / "settle.csv")
    assert (local_root / "settle.csv").read_text() == "id,amount\n1,100\n"

    wrong = secret_aware(sftp_step, _SecretBackend({"SFTP_PASSWORD": "Wr0ng-secret-value"}))
    with activity("nightly-settlement/run-1/6"), pytest.raises(ApplicationError) as err:
        await wrong(config)
    assert err.value.type == "SftpAuthenticationFailed"
    assert err.value.non_retryable
    assert PASSWORD not in caplog.text and "Wr0ng-secret-value" not in caplog.text
