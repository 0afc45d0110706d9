"""The built-in ``sftp`` activity: list, download, read, upload, move, delete and mkdir over
SFTP with asyncssh.

What it guarantees:

* The configuration is validated before anything else (a bad field fails for good, naming the
  field); the server's host key is verified unless a test explicitly opts out.
* ``password``, ``private_key`` and ``passphrase`` never appear in a log record, a ``repr``, an
  error or a result; no SSH agent, ``~/.ssh`` key, ``~/.ssh/config`` or ``known_hosts`` file of
  the worker is ever used: only what the configuration gives.
* Every network step is bounded: ``connect_timeout`` for connecting and authenticating,
  ``timeout`` for each SFTP request (each chunk of a transfer, so a large file may take longer
  as long as it keeps moving).
* Transfers are atomic: a download is written to a temporary file next to ``local_path`` and
  renamed over it; an upload is written to ``path + ".part-<key>"`` on the server and renamed
  over ``path`` (``posix-rename@openssh.com`` when the server has it). ``<key>`` is derived from
  the activity's idempotency key, so a retry overwrites the temporary file of the attempt it
  retries instead of leaving another one behind.
* Retry-safe: repeating an operation whose completion was lost ends in the same state and
  succeeds (``move`` of a file already moved, ``delete`` of a file already gone, ``mkdir`` of an
  existing directory, ``if_exists: error`` finding the very content it was about to write).
* Failures are classified: connection problems and timeouts are retryable; authentication, host
  key mismatch, missing files and permission errors are not.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fnmatch
import hashlib
import logging
import os
import posixpath
import secrets
import stat as stat_
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cadenza.activities._context import defn, heartbeat, in_activity, info
from cadenza.activities._sftp_config import (
    PreparedSftp,
    SftpConfig,
    config_error,
    prepare_sftp,
    scrub,
)
from cadenza.activities._ssh import asyncssh
from cadenza.history import ApplicationError, InvalidArgumentError

__all__ = ["SftpConfig", "sftp_step"]

log = logging.getLogger("cadenza.activities.sftp")

T = TypeVar("T")

_CHUNK = 1024 * 1024  # per read/write call; asyncssh splits it into parallel SFTP requests
_CLOSE_TIMEOUT = 5.0
_CLEANUP_TIMEOUT = 10.0
_MAX_REASON_CHARS = 300


class _LocalError(Exception):
    """An OSError of the worker's own file system (not of the network)."""

    def __init__(self, error: OSError, path: Path) -> None:
        super().__init__(str(error))
        self.error = error
        self.path = path


class _HostKeyCheck(asyncssh.SSHClient):
    """Compares the server key with ``host_key_fingerprint``; remembers what was presented.

    asyncssh calls :meth:`validate_host_public_key` only for a key that ``known_hosts`` does not
    already trust, so with ``known_hosts``/``host_key`` it only records the key for the error
    message.
    """

    def __init__(self, fingerprint: str | None) -> None:
        self._fingerprint = fingerprint
        self.presented: str | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        """Whether ``key`` is the server key the configuration names."""
        fingerprint = key.get_fingerprint("sha256")
        self.presented = f"{key.get_algorithm()} {fingerprint}"
        return self._fingerprint is not None and fingerprint == self._fingerprint


@dataclass
class _Run:
    """One operation on one open SFTP session."""

    prep: PreparedSftp
    sftp: asyncssh.SFTPClient

    @property
    def config(self) -> SftpConfig:
        return self.prep.config

    async def call(self, awaitable: Awaitable[T]) -> T:
        """Await one SFTP request, bounded by ``timeout``."""
        return await asyncio.wait_for(awaitable, self.config.timeout)

    async def stat(self, path: str) -> asyncssh.SFTPAttrs | None:
        """The attributes of ``path``, or None when it does not exist."""
        try:
            return await self.call(self.sftp.stat(path))
        except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath):
            return None


# --------------------------------------------------------------------------- helpers


def _is_dir(attrs: asyncssh.SFTPAttrs) -> bool:
    if attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY:
        return True
    return attrs.permissions is not None and stat_.S_ISDIR(attrs.permissions)


def _iso(mtime: float | None) -> str | None:
    if mtime is None:
        return None
    return datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short_key() -> str:
    """12 hex digits: from the idempotency key inside an activity (stable across retries)."""
    if in_activity():
        return hashlib.sha256(info().idempotency_key.encode()).hexdigest()[:12]
    return secrets.token_hex(6)


def _progress(done: int, total: int | None) -> None:
    if in_activity():
        heartbeat({"bytes": done, "total": total})


async def _local(path: Path, fn: Callable[..., T], *args: Any) -> T:
    """Run blocking work on the local file ``path`` in a thread; its OSErrors become
    :class:`_LocalError` (naming ``path``)."""
    try:
        return await asyncio.to_thread(fn, *args)
    except OSError as exc:
        raise _LocalError(exc, path) from exc


def _digest_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not supported here (e.g. Windows); the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _flush(fh: Any) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _place(tmp: Path, target: Path, replace: bool) -> bool:
    """Move ``tmp`` to ``target``; without ``replace``, never over an existing file.

    Returns False (and leaves ``tmp``) when ``target`` exists and ``replace`` is false.
    """
    if replace:
        os.replace(tmp, target)
    else:
        try:
            os.link(tmp, target)  # atomic "create if absent"
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            if target.exists():  # no hard links on this file system
                return False
            os.replace(tmp, target)
        else:
            tmp.unlink()
    _fsync_dir(target.parent)
    return True


@contextlib.asynccontextmanager
async def _remote_file(run: _Run, path: str, mode: str) -> AsyncIterator[asyncssh.SFTPClientFile]:
    """An open remote file (binary). Closed on the way out: checked after success (a server may
    report a write error only then), best-effort and briefly after a failure or cancellation,
    when closing the connection releases the handle anyway."""
    handle = await run.call(run.sftp.open(path, mode, encoding=None))
    try:
        yield handle
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(handle.close(), min(_CLOSE_TIMEOUT, run.config.timeout))
        raise
    await run.call(handle.close())


async def _remote_digest(run: _Run, path: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    async with _remote_file(run, path, "rb") as handle:
        while chunk := await run.call(handle.read(_CHUNK)):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


async def _same_remote(run: _Run, path: str, size: int, sha256: str) -> bool:
    """Whether the remote file ``path`` holds exactly ``size`` bytes with this digest."""
    attrs = await run.stat(path)
    if attrs is None or _is_dir(attrs) or (attrs.size is not None and attrs.size != size):
        return False
    return await _remote_digest(run, path) == (size, sha256)


def _error(
    prep: PreparedSftp, message: str, type_: str, *, retryable: bool, **details: Any
) -> ApplicationError:
    cfg = prep.config
    text = scrub(
        f"SFTP {cfg.host}:{cfg.port}: {cfg.operation} {cfg.path!r}: {message}", prep.secrets
    )
    return ApplicationError(
        text,
        {
            "host": cfg.host,
            "port": cfg.port,
            "operation": cfg.operation,
            "path": cfg.path,
            **details,
        },
        type=type_,
        non_retryable=not retryable,
    )


def _exists_error(prep: PreparedSftp, path: str, side: str) -> ApplicationError:
    where = "the local file" if side == "local" else "the remote file"
    return _error(
        prep,
        f"{where} {path!r} already exists with other content (if_exists: error)",
        "SftpFileExists",
        retryable=False,
        side=side,
        target=path,
    )


def _not_a_file(prep: PreparedSftp, path: str) -> ApplicationError:
    return _error(prep, f"{path!r} is a directory, not a file", "SftpNotAFile", retryable=False)


# --------------------------------------------------------------------------- operations


async def _list(run: _Run) -> dict[str, Any]:
    cfg, prep = run.config, run.prep
    attrs = await run.call(run.sftp.stat(cfg.path))
    if not _is_dir(attrs):
        raise _error(run.prep, "is not a directory", "SftpNotADirectory", retryable=False)
    files: list[dict[str, Any]] = []

    async def collect() -> None:
        async for entry in run.sftp.scandir(cfg.path):
            name = entry.filename
            if not isinstance(name, str) or name in (".", ".."):
                continue
            if not fnmatch.fnmatchcase(name, prep.pattern):
                continue
            if len(files) >= prep.max_files:
                raise _error(
                    run.prep,
                    f"more than max_files ({prep.max_files}) entries match {prep.pattern!r}",
                    "SftpTooManyFiles",
                    retryable=False,
                    max_files=prep.max_files,
                )
            files.append(
                {
                    "name": name,
                    "path": posixpath.join(cfg.path, name),
                    "size": entry.attrs.size,
                    "modified": _iso(entry.attrs.mtime),
                    "is_dir": _is_dir(entry.attrs),
                }
            )

    await run.call(collect())
    files.sort(key=lambda f: f["name"])
    return {"path": cfg.path, "files": files}


async def _read(run: _Run) -> dict[str, Any]:
    cfg, prep = run.config, run.prep
    limit = prep.max_bytes
    attrs = await run.call(run.sftp.stat(cfg.path))
    if _is_dir(attrs):
        raise _not_a_file(run.prep, cfg.path)

    def too_large(size: int | str) -> ApplicationError:
        return _error(
            run.prep,
            f"the file is {size} bytes, more than max_bytes ({limit}); use download instead",
            "SftpFileTooLarge",
            retryable=False,
            max_bytes=limit,
        )

    if attrs.size is not None and attrs.size > limit:
        raise too_large(attrs.size)
    buffer = bytearray()
    async with _remote_file(run, cfg.path, "rb") as handle:
        while chunk := await run.call(handle.read(min(_CHUNK, limit + 1 - len(buffer)))):
            buffer += chunk
            if len(buffer) > limit:  # the file grew after stat()
                raise too_large(f"more than {limit}")
    data = bytes(buffer)
    try:
        text = data.decode(prep.encoding)
    except UnicodeDecodeError as exc:
        raise _error(
            run.prep,
            f"cannot be decoded as {prep.encoding}: {exc.reason} at byte {exc.start}",
            "SftpDecodeError",
            retryable=False,
            encoding=prep.encoding,
            position=exc.start,
        ) from None
    return {
        "path": cfg.path,
        "text": text,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


async def _download(run: _Run) -> dict[str, Any]:
    cfg, prep = run.config, run.prep
    target = prep.local_path
    if target is None:  # validated; keeps the type checker informed
        raise InvalidArgumentError("local_path", "is required for download")
    policy = prep.if_exists

    def result(size: int, sha256: str, skipped: bool) -> dict[str, Any]:
        return {
            "path": cfg.path,
            "local_path": str(target),
            "size": size,
            "sha256": sha256,
            "skipped": skipped,
        }

    if await _local(target, target.is_dir):
        raise config_error(InvalidArgumentError("local_path", f"{str(target)!r} is a directory"))
    local_exists = await _local(target, target.exists)
    if policy == "skip" and local_exists:
        return result(*await _local(target, _digest_file, target), skipped=True)

    attrs = await run.call(run.sftp.stat(cfg.path))
    if _is_dir(attrs):
        raise _not_a_file(run.prep, cfg.path)
    if policy == "error" and local_exists:
        local_size = (await _local(target, target.stat)).st_size
        if attrs.size is not None and local_size != attrs.size:
            raise _exists_error(run.prep, str(target), "local")

    if prep.create_dirs:
        await _local(target.parent, target.parent.mkdir, 0o777, True, True)
    elif not await _local(target.parent, target.parent.is_dir):
        raise config_error(
            InvalidArgumentError("local_path", f"directory {str(target.parent)!r} does not exist")
        )
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.part")
    digest = hashlib.sha256()
    done = 0
    try:
        fh = await _local(tmp, open, tmp, "xb")
        try:
            async with _remote_file(run, cfg.path, "rb") as handle:
                while chunk := await run.call(handle.read(_CHUNK)):
                    digest.update(chunk)
                    await _local(tmp, fh.write, chunk)
                    done += len(chunk)
                    _progress(done, attrs.size)
            await _local(tmp, _flush, fh)
        finally:
            await _local(tmp, fh.close)
        if attrs.size is not None and done != attrs.size:
            raise _error(
                run.prep,
                f"the file changed during the download ({attrs.size} bytes at the start, "
                f"{done} read); it may still be being written",
                "SftpTransferIncomplete",
                retryable=True,
            )
        sha256 = digest.hexdigest()
        placed = await _local(target, _place, tmp, target, policy == "replace")
        if not placed:
            existing = await _local(target, _digest_file, target)
            if policy == "skip":
                return result(*existing, skipped=True)
            if existing != (done, sha256):
                raise _exists_error(run.prep, str(target), "local")
    finally:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(tmp.unlink, True)
    return result(done, sha256, skipped=False)


async def _upload(run: _Run) -> dict[str, Any]:
    cfg, prep = run.config, run.prep
    source = prep.local_path
    if source is not None and not await _local(source, source.is_file):
        raise config_error(
            InvalidArgumentError("local_path", f"{str(source)!r} is not an existing file")
        )
    if prep.if_exists == "error":
        existing = await run.stat(cfg.path)
        if existing is not None:
            if _is_dir(existing):
                raise _not_a_file(run.prep, cfg.path)
            if prep.data is not None:
                size, sha256 = len(prep.data), hashlib.sha256(prep.data).hexdigest()
            else:
                size, sha256 = await _local(source, _digest_file, source)
            if await _same_remote(run, cfg.path, size, sha256):
                # A retry after a lost completion: the file is already what we would write.
                return {"path": cfg.path, "size": size, "sha256": sha256, "skipped": True}
            raise _exists_error(run.prep, cfg.path, "remote")

    tmp = f"{cfg.path}.part-{_short_key()}"
    renamed = False
    try:
        size, sha256 = await _send(run, tmp, source)
        attrs = await run.call(run.sftp.stat(tmp))
        if attrs.size is not None and attrs.size != size:
            raise _error(
                run.prep,
                f"the server holds {attrs.size} bytes of {size} sent",
                "SftpTransferIncomplete",
                retryable=True,
            )
        if prep.if_exists == "replace":
            await _rename_over(run, tmp, cfg.path)
        else:
            try:
                await run.call(run.sftp.rename(tmp, cfg.path))  # plain rename: never overwrites
            except (asyncssh.SFTPFailure, asyncssh.SFTPFileAlreadyExists):
                if await run.stat(cfg.path) is None:
                    raise
                if not await _same_remote(run, cfg.path, size, sha256):
                    raise _exists_error(run.prep, cfg.path, "remote") from None
                return {"path": cfg.path, "size": size, "sha256": sha256, "skipped": True}
        renamed = True
    finally:
        if not renamed:  # also on cancellation: do not leave the temporary file behind
            with contextlib.suppress(Exception):
                await asyncio.wait_for(run.sftp.remove(tmp), min(_CLEANUP_TIMEOUT, cfg.timeout))
    return {"path": cfg.path, "size": size, "sha256": sha256, "skipped": False}


async def _send(run: _Run, tmp: str, source: Path | None) -> tuple[int, str]:
    """Write the upload's content to ``tmp`` on the server; returns (size, sha256)."""
    digest = hashlib.sha256()
    done = 0
    total = len(run.prep.data) if run.prep.data is not None else None
    fh = await _local(source, open, source, "rb") if source is not None else None
    try:
        async with _remote_file(run, tmp, "wb") as handle:
            while True:
                if fh is not None:
                    chunk = await _local(source, fh.read, _CHUNK)  # type: ignore[arg-type]
                else:
                    chunk = (run.prep.data or b"")[done : done + _CHUNK]
                if not chunk:
                    break
                await run.call(handle.write(chunk))
                digest.update(chunk)
                done += len(chunk)
                _progress(done, total)
    finally:
        if fh is not None:
            await asyncio.to_thread(fh.close)
    return done, digest.hexdigest()


async def _rename_over(run: _Run, src: str, dst: str) -> None:
    """Rename ``src`` to ``dst``, replacing it: atomically when the server can."""
    try:
        await run.call(run.sftp.posix_rename(src, dst))
        return
    except asyncssh.SFTPOpUnsupported:
        pass
    try:
        await run.call(run.sftp.rename(src, dst))
    except (asyncssh.SFTPFailure, asyncssh.SFTPFileAlreadyExists):
        if await run.stat(dst) is None:
            raise
        # The server has no atomic replace: dst is missing for the moment between these two.
        await run.call(run.sftp.remove(dst))
        await run.call(run.sftp.rename(src, dst))


async def _move(run: _Run) -> dict[str, Any]:
    cfg, prep = run.config, run.prep
    to = cfg.to or ""
    result = {"path": cfg.path, "to": to, "moved": True}
    try:
        if prep.if_exists == "replace":
            await _rename_over(run, cfg.path, to)
        else:
            await run.call(run.sftp.rename(cfg.path, to))
    except (
        asyncssh.SFTPNoSuchFile,
        asyncssh.SFTPNoSuchPath,
        asyncssh.SFTPFailure,
        asyncssh.SFTPFileAlreadyExists,
    ) as exc:
        # Servers differ in which they check first, the source or the target.
        source_gone = await run.stat(cfg.path) is None
        target_there = await run.stat(to) is not None
        if source_gone and target_there:
            return {**result, "moved": False}  # moved by an earlier attempt
        if (
            prep.if_exists == "error"
            and target_there
            and not isinstance(exc, asyncssh.SFTPNoSuchFile | asyncssh.SFTPNoSuchPath)
        ):
            raise _error(
                run.prep,
                f"the target {to!r} already exists (if_exists: error)",
                "SftpFileExists",
                retryable=False,
                side="remote",
                target=to,
            ) from None
        raise
    return result


async def _delete(run: _Run) -> dict[str, Any]:
    cfg = run.config
    try:
        await run.call(run.sftp.remove(cfg.path))
    except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath):
        if not run.prep.missing_ok:
            raise
        return {"path": cfg.path, "deleted": False}
    return {"path": cfg.path, "deleted": True}


async def _mkdir(run: _Run) -> dict[str, Any]:
    cfg = run.config

    async def check_existing() -> bool:
        attrs = await run.stat(cfg.path)
        if attrs is None:
            return False
        if not _is_dir(attrs):
            raise _error(
                run.prep,
                "exists and is not a directory",
                "SftpFileExists",
                retryable=False,
                side="remote",
                target=cfg.path,
            )
        return True

    if await check_existing():
        return {"path": cfg.path, "created": False}
    try:
        if run.prep.parents:
            await run.call(run.sftp.makedirs(cfg.path, exist_ok=True))
        else:
            await run.call(run.sftp.mkdir(cfg.path))
    except (asyncssh.SFTPFailure, asyncssh.SFTPFileAlreadyExists):
        if await check_existing():  # created concurrently
            return {"path": cfg.path, "created": False}
        raise
    return {"path": cfg.path, "created": True}


_OPERATIONS: dict[str, Callable[[_Run], Awaitable[dict[str, Any]]]] = {
    "list": _list,
    "read": _read,
    "download": _download,
    "upload": _upload,
    "move": _move,
    "delete": _delete,
    "mkdir": _mkdir,
}


# --------------------------------------------------------------------------- connection


@contextlib.asynccontextmanager
async def _session(
    prep: PreparedSftp, checker: _HostKeyCheck
) -> AsyncIterator[asyncssh.SFTPClient]:
    """An authenticated SFTP session; the connection is closed on every way out."""
    cfg = prep.config
    conn = await asyncssh.connect(
        cfg.host,
        cfg.port,
        username=cfg.username,
        password=cfg.password,
        password_auth=cfg.password is not None,
        kbdint_auth=cfg.password is not None,
        client_keys=[prep.client_key] if prep.client_key is not None else None,
        known_hosts=prep.known_hosts,
        client_factory=lambda: checker,
        # Only what the configuration gives: no agent, no ~/.ssh keys, config or CA bundle.
        agent_path=None,
        config=[],
        x509_trusted_certs=None,
        gss_kex=False,
        gss_auth=False,
        connect_timeout=cfg.connect_timeout,
    )
    try:
        sftp = await asyncio.wait_for(conn.start_sftp_client(), cfg.timeout)
        try:
            yield sftp
        finally:
            sftp.exit()
    finally:
        conn.close()
        try:
            await asyncio.wait_for(conn.wait_closed(), _CLOSE_TIMEOUT)
        except TimeoutError:
            conn.abort()
        except BaseException:  # cancelled while closing: drop the socket now
            conn.abort()
            raise


def _truncate(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON_CHARS else text[: _MAX_REASON_CHARS - 1] + "…"


def _classify(exc: BaseException, prep: PreparedSftp, checker: _HostKeyCheck) -> ApplicationError:
    """Turn an asyncssh, OS or timeout error into a retryable or non-retryable one."""
    cfg = prep.config
    if isinstance(exc, _LocalError):
        reason = exc.error.strerror or str(exc.error)
        if isinstance(exc.error, PermissionError):
            return _error(
                prep,
                f"local {str(exc.path)!r}: permission denied",
                "SftpPermissionDenied",
                retryable=False,
                side="local",
            )
        return _error(
            prep,
            f"local {str(exc.path)!r}: {reason}",
            "SftpLocalIOError",
            retryable=True,
            side="local",
        )
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        presented = f"; the server presented {checker.presented}" if checker.presented else ""
        return _error(
            prep,
            "the server's host key does not match the configured "
            f"{'host_key_fingerprint' if cfg.host_key_fingerprint else 'known_hosts/host_key'}"
            f"{presented}",
            "SftpHostKeyMismatch",
            retryable=False,
        )
    if isinstance(exc, asyncssh.PermissionDenied):
        return _error(
            prep,
            f"authentication as {cfg.username!r} failed (wrong password or key, or the account "
            "is not allowed)",
            "SftpAuthenticationFailed",
            retryable=False,
        )
    if isinstance(exc, asyncssh.KeyExchangeFailed | asyncssh.ProtocolNotSupported):
        return _error(
            prep,
            f"SSH negotiation failed: {_truncate(exc.reason)}",
            "SftpProtocolError",
            retryable=False,
        )
    if isinstance(exc, TimeoutError):
        return _error(prep, "timed out", "SftpTimeout", retryable=True)
    if isinstance(exc, asyncssh.SFTPNoSuchFile | asyncssh.SFTPNoSuchPath):
        return _error(
            prep,
            f"no such file or directory ({_truncate(exc.reason)})",
            "SftpFileNotFound",
            retryable=False,
        )
    if isinstance(exc, asyncssh.SFTPPermissionDenied | asyncssh.SFTPWriteProtect):
        return _error(
            prep,
            f"permission denied ({_truncate(exc.reason)})",
            "SftpPermissionDenied",
            retryable=False,
            side="remote",
        )
    if isinstance(exc, asyncssh.SFTPFileAlreadyExists):
        return _error(
            prep,
            f"already exists ({_truncate(exc.reason)})",
            "SftpFileExists",
            retryable=False,
            side="remote",
        )
    if isinstance(exc, asyncssh.SFTPConnectionLost | asyncssh.SFTPNoConnection):
        return _error(
            prep,
            f"connection lost ({_truncate(exc.reason)})",
            "SftpConnectionError",
            retryable=True,
        )
    if isinstance(exc, asyncssh.SFTPError):
        # Path problems (not a directory, is a directory, directory not empty, bad name) and
        # unsupported operations will not change on retry; a full disk or generic failure may.
        permanent = isinstance(
            exc,
            asyncssh.SFTPOpUnsupported
            | asyncssh.SFTPBadMessage
            | asyncssh.SFTPNotADirectory
            | asyncssh.SFTPFileIsADirectory
            | asyncssh.SFTPDirNotEmpty
            | asyncssh.SFTPInvalidFilename
            | asyncssh.SFTPInvalidParameter,
        )
        return _error(
            prep,
            f"the server refused: {_truncate(exc.reason)}",
            "SftpServerError",
            retryable=not permanent,
            code=exc.code,
        )
    if isinstance(exc, asyncssh.DisconnectError | asyncssh.ChannelOpenError | OSError):
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        return _error(
            prep,
            f"connection failed ({type(exc).__name__}: {_truncate(str(reason))})",
            "SftpConnectionError",
            retryable=True,
        )
    return _error(prep, f"{type(exc).__name__}: {_truncate(str(exc))}", "SftpError", retryable=True)


# --------------------------------------------------------------------------- activity


@defn(name="sftp")
async def sftp_step(config: Any) -> dict[str, Any]:
    """Run one SFTP operation: the built-in ``sftp`` activity.

    Args:
        config: An :class:`SftpConfig`, or a dict with the same keys, as
            ``workflow.execute_activity("sftp", {...})`` or a job step's ``config:`` gives it.
            The dict is converted here, so a wrong key or type fails as a non-retryable
            configuration error that names the field.

    Returns:
        By ``operation``: ``list`` → ``{"path", "files": [{"name", "path", "size",
        "modified", "is_dir"}]}``; ``download`` → ``{"path", "local_path", "size", "sha256",
        "skipped"}``; ``read`` → ``{"path", "text", "size", "sha256"}``; ``upload`` →
        ``{"path", "size", "sha256", "skipped"}``; ``move`` → ``{"path", "to", "moved"}``;
        ``delete`` → ``{"path", "deleted"}``; ``mkdir`` → ``{"path", "created"}``.

    Raises:
        ApplicationError: ``InvalidSftpConfig`` (non-retryable, details name the field);
            ``SftpHostKeyMismatch``, ``SftpAuthenticationFailed``, ``SftpFileNotFound``,
            ``SftpPermissionDenied``, ``SftpFileExists``, ``SftpFileTooLarge`` and the other
            non-retryable failures; retryable ``SftpConnectionError``, ``SftpTimeout``,
            ``SftpTransferIncomplete``, ``SftpLocalIOError``.
    """
    secrets_: tuple[str, ...] = ()
    if isinstance(config, dict | SftpConfig):
        get = config.get if isinstance(config, dict) else lambda k: getattr(config, k, None)
        secrets_ = tuple(
            v
            for v in (get("password"), get("passphrase"), get("private_key"))
            if isinstance(v, str) and v.strip()
        )
    try:
        prep = await asyncio.to_thread(prepare_sftp, config)
    except InvalidArgumentError as exc:
        raise config_error(exc, secrets_) from None
    cfg = prep.config
    if cfg.insecure_skip_host_key:
        log.warning(
            "sftp %s:%d: host key verification is OFF (insecure_skip_host_key: true); "
            "use this only for tests",
            cfg.host,
            cfg.port,
        )
    checker = _HostKeyCheck(prep.fingerprint)
    try:
        async with _session(prep, checker) as sftp:
            result = await _OPERATIONS[cfg.operation](_Run(prep=prep, sftp=sftp))
    except ApplicationError:
        raise
    except Exception as exc:
        raise _classify(exc, prep, checker) from exc
    log.info(
        "sftp %s %r on %s@%s:%d done",
        cfg.operation,
        cfg.path,
        cfg.username,
        cfg.host,
        cfg.port,
    )
    return result
