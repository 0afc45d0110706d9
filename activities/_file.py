"""The built-in ``file`` activity: read, write, list, move, copy and delete files on the worker.

A job step ``{type: file, config: {operation: read, path: ...}}`` becomes one call of
:func:`file_step`. Formats: CSV, Excel (``.xlsx .xlsm .xls .ods`` read, ``.xlsx .xlsm``
written), Parquet, JSON (an array of objects or JSON lines) and plain text.

What it guarantees:

* The configuration is validated before any file is touched; a bad field fails the activity for
  good (``InvalidFileConfig``, non-retryable) with a message naming the field.
* Every path lies inside the worker's file roots (``CADENZA_FILE_ROOTS``).
* A read returns only JSON-safe values, at most ``max_rows`` rows unless it is paged
  (``offset``/``limit``/``has_more``), and the file's size and SHA-256.
* A write is atomic: the content goes to a temporary file in the target's directory, is
  fsynced, and only then takes the target's name. A crash or a retry never leaves a half-written
  file at ``path``. A retry of the same activity finds what its earlier attempt wrote and
  succeeds instead of failing (``if_exists: error``) or appending twice (``if_exists: append``).
* ``move`` is idempotent: when the source is gone and the destination exists, an earlier attempt
  moved it and the activity succeeds.
* Errors are classified: a missing file, a permission problem and a malformed file are not
  retryable; a full disk and other I/O errors are.
"""

from __future__ import annotations

import asyncio
import errno
import fnmatch
import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from cadenza.activities._context import defn, in_activity, info
from cadenza.activities._file_config import (
    FileConfig,
    Format,
    coerce_file_config,
    config_error,
    os_error,
    too_large,
    validate_file_config,
)
from cadenza.activities._file_formats import (
    READERS,
    WRITERS,
    Table,
    table_of,
    write_csv,
    write_text,
)
from cadenza.activities._local_paths import resolve_local_path
from cadenza.history import ApplicationError, InvalidArgumentError

__all__ = ["file_step"]

log = logging.getLogger("cadenza.activities.file")

TEMP_SUFFIX = ".cadenza-tmp"
"""Suffix of the temporary files of atomic writes (``list`` never shows them)."""

MARKER_XATTR = "user.cadenza.activity"
"""Extended attribute naming the activity (idempotency key) that wrote a file, where the file
system supports it; it lets a retry recognise its own earlier write."""

# Temporary files of writes in progress: ours, and the ``sftp`` activity's downloads.
_IN_PROGRESS_RE = re.compile(r"\..+\.(?:[0-9a-z_]+\.cadenza-tmp|[0-9a-f]{12}\.part)\Z")

_NO_HARDLINK = {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOSYS, errno.EOPNOTSUPP}
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class _Attempt:
    """Who runs the operation: the activity's idempotency key and attempt, when in one."""

    key: str | None = None
    number: int = 1

    @classmethod
    def current(cls) -> _Attempt:
        if not in_activity():
            return cls()
        current = info()
        return cls(key=current.idempotency_key, number=current.attempt)


@defn(name="file")
async def file_step(config: Any) -> dict[str, Any]:
    """Run one file operation: the built-in ``file`` activity.

    Args:
        config: A :class:`FileConfig`, or a dict with the same keys, as a job step's
            ``config:`` or ``workflow.execute_activity("file", {...})`` gives it. The dict is
            converted here, so a wrong key or type fails as a non-retryable configuration error
            that names the field.

    Returns:
        A small JSON-safe dict; its shape depends on the operation:

        * ``read``: ``{"path", "format", "columns", "rows", "row_count", "has_more", "size",
          "sha256"}`` (``"sheet"`` too for Excel); the text format gives ``{"path", "format",
          "text", "size", "sha256"}``.
        * ``write``: ``{"path", "format", "row_count", "size", "sha256"}`` (no ``row_count``
          for text).
        * ``list``: ``{"path", "files": [{"name", "path", "size", "modified"}]}``.
        * ``move``: ``{"path", "to", "size", "already_moved"}``.
        * ``copy``: ``{"path", "to", "size", "sha256"}``.
        * ``delete``: ``{"path", "deleted"}``.

    Raises:
        ApplicationError: non-retryable with type ``InvalidFileConfig`` (bad configuration,
            path outside the file roots, unknown column or sheet), ``FileNotFound``,
            ``FilePermissionDenied``, ``FileExists``, ``InvalidFile`` (malformed content) or
            ``FileTooLarge``; retryable with type ``DiskFull`` or ``FileSystemError``.
    """
    try:
        config = coerce_file_config(config)
        fmt = validate_file_config(config)
    except InvalidArgumentError as exc:
        raise config_error(exc) from exc
    attempt = _Attempt.current()
    operation = _OPERATIONS[config.operation]
    try:
        result = await asyncio.to_thread(operation, config, fmt, attempt)
    except InvalidArgumentError as exc:
        raise config_error(exc) from exc
    except OSError as exc:
        raise os_error(exc, config.path) from exc
    log.info("file %s %s done", config.operation, result.get("path"))
    return result


# --------------------------------------------------------------------------- helpers


def _sha256_of(fh: BinaryIO) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: fh.read(_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _sha256_path(path: Path) -> str:
    with open(path, "rb") as fh:
        return _sha256_of(fh)


def _marker(path: Path) -> str | None:
    try:
        return os.getxattr(path, MARKER_XATTR).decode("utf-8", "replace")
    except (OSError, AttributeError):  # no such attribute, or no xattr support
        return None


def _set_marker(path: Path, attempt: _Attempt) -> None:
    if attempt.key is None:
        return
    try:
        os.setxattr(path, MARKER_XATTR, attempt.key.encode("utf-8"))
    except (OSError, AttributeError):
        log.debug("no extended attributes on %s; retries compare content only", path)


def _is_own_earlier_write(path: Path, sha256: str, attempt: _Attempt) -> bool:
    """Whether ``path`` is what an earlier attempt of this same activity wrote."""
    if attempt.key is None or _sha256_path(path) != sha256:
        return False
    marker = _marker(path)
    return marker == attempt.key or (marker is None and attempt.number > 1)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a directory
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _prepare_parent(target: Path, create_dirs: bool, field: str) -> None:
    parent = target.parent
    if parent.is_dir():
        return
    if not create_dirs:
        raise InvalidArgumentError(
            field, f"directory {parent} does not exist (create_dirs is false)"
        )
    parent.mkdir(parents=True, exist_ok=True)


def _exists_error(target: Path) -> FileExistsError:
    return FileExistsError(errno.EEXIST, "already exists", str(target))


def _not_a_directory(path: Path, field: str) -> None:
    if path.is_dir():
        raise InvalidArgumentError(field, f"{path} is a directory, not a file")


def _readable_file(path: Path, field: str) -> None:
    """Reject directories, and devices, sockets and pipes (opening a pipe would block)."""
    _not_a_directory(path, field)
    if path.exists() and not path.is_file():
        raise InvalidArgumentError(field, f"{path} is not a regular file")


def atomic_write(
    target: Path,
    produce: Callable[[BinaryIO], None],
    *,
    if_exists: str,
    create_dirs: bool,
    attempt: _Attempt,
    field: str = "path",
    keep_existing: bool = False,
) -> tuple[int, str]:
    """Write ``target`` through a temporary file in its directory; returns (size, sha256).

    With ``keep_existing`` (appends) the current content is copied first and ``produce`` adds
    to it. ``if_exists="error"`` publishes with a hard link, which fails atomically when the
    name is taken, so two writers can never overwrite each other.
    """
    if if_exists == "error" and attempt.key is None and target.exists():
        raise _exists_error(target)  # outside an activity there is no earlier attempt
    _prepare_parent(target, create_dirs, field)
    mode: int | None = None
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        pass
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                    suffix=TEMP_SUFFIX)  # fmt: skip
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b") as out:
            if keep_existing and mode is not None:
                with open(target, "rb") as existing:
                    shutil.copyfileobj(existing, out, _CHUNK)
            produce(out)
            out.flush()
            os.fsync(out.fileno())
            size = out.tell()
            out.seek(0)
            sha256 = _sha256_of(out)
        os.chmod(tmp, mode if mode is not None else 0o666 & ~_umask())
        _set_marker(tmp, attempt)
        if if_exists == "error":
            _publish_new(tmp, target, sha256, attempt)
        else:
            os.replace(tmp, target)
        _fsync_dir(target.parent)
        return size, sha256
    finally:
        tmp.unlink(missing_ok=True)


def _publish_new(tmp: Path, target: Path, sha256: str, attempt: _Attempt) -> None:
    try:
        os.link(tmp, target)
    except FileExistsError:
        if _is_own_earlier_write(target, sha256, attempt):
            log.info("%s already written by an earlier attempt of this activity", target)
            return
        raise _exists_error(target) from None
    except OSError as exc:
        if exc.errno not in _NO_HARDLINK:
            raise
        # No hard links here (some network and FUSE file systems): check, then rename.
        if target.exists():
            if _is_own_earlier_write(target, sha256, attempt):
                return
            raise _exists_error(target) from None
        os.replace(tmp, target)


# --------------------------------------------------------------------------- operations


def _format(fmt: Format | None) -> Format:
    if fmt is None:  # validate_file_config always gives one for read and write
        raise InvalidArgumentError("format", "is required")
    return fmt


def _read(config: FileConfig, fmt_: Format | None, attempt: _Attempt) -> dict[str, Any]:
    fmt = _format(fmt_)
    path = resolve_local_path(config.path, "path")
    _readable_file(path, "path")
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if fmt == "text" and size > config.max_bytes:
            raise too_large(
                path, "max_bytes", config.max_bytes, f"is {size} bytes, more than max_bytes"
            )
        sha256 = _sha256_of(fh)
        fh.seek(0)
        body = READERS[fmt](fh, path, config)
    return {"path": str(path), "format": fmt, **body, "size": size, "sha256": sha256}


def _write(config: FileConfig, fmt_: Format | None, attempt: _Attempt) -> dict[str, Any]:
    fmt = _format(fmt_)
    path = resolve_local_path(config.path, "path")
    _not_a_directory(path, "path")
    table = table_of(config) if fmt != "text" else None
    append = config.if_exists == "append"
    result: dict[str, Any] = {"path": str(path), "format": fmt}
    if table is not None:
        result["row_count"] = len(table.rows)
    if append and attempt.key is not None and path.exists() and _marker(path) == attempt.key:
        log.info("%s: the append was done by an earlier attempt of this activity", path)
        with open(path, "rb") as fh:
            return {**result, "size": os.fstat(fh.fileno()).st_size, "sha256": _sha256_of(fh)}

    def produce(out: BinaryIO) -> None:
        position = out.tell()
        if position:
            out.seek(-1, os.SEEK_END)
            last = out.read(1)  # also moves back to the end
            if table is not None and last != b"\n":
                out.write(b"\n")
        if table is None:
            write_text(out, config.text or "", config)
        elif fmt == "csv":
            if position and config.header:
                _check_header(path, table, config)
            write_csv(out, table, config, header=config.header and not position)
        else:
            WRITERS[fmt](out, table, config)

    size, sha256 = atomic_write(
        path,
        produce,
        if_exists=config.if_exists,
        create_dirs=config.create_dirs,
        attempt=attempt,
        keep_existing=append,
    )
    return {**result, "size": size, "sha256": sha256}


def _check_header(path: Path, table: Table, config: FileConfig) -> None:
    """For an append: check that the existing CSV's header names the rows' columns."""
    read_config = FileConfig(
        operation="read", path=config.path, format="csv", delimiter=config.delimiter,
        encoding=config.encoding, limit=0,
    )  # fmt: skip
    with open(path, "rb") as fh:
        existing = READERS["csv"](fh, path, read_config)["columns"]
    if existing != table.columns:
        raise InvalidArgumentError(
            "rows",
            f"cannot append: {path} has the columns {existing}, the rows have {table.columns}",
        )


def _list(config: FileConfig, fmt: Format | None, attempt: _Attempt) -> dict[str, Any]:
    root = resolve_local_path(config.path, "path")
    if not root.exists():
        raise FileNotFoundError(errno.ENOENT, "directory not found", str(root))
    if not root.is_dir():
        raise InvalidArgumentError("path", f"{root} is not a directory")
    found: list[tuple[str, Path]] = []

    def take(name: str, full: Path) -> None:
        if fnmatch.fnmatchcase(full.name, config.pattern) and not _IN_PROGRESS_RE.match(full.name):
            found.append((name, full))
            if len(found) > config.max_files:
                raise ApplicationError(
                    f"{root}: more than {config.max_files} files match {config.pattern!r}; "
                    "raise max_files or narrow the pattern",
                    {"path": str(root), "field": "max_files", "limit": config.max_files},
                    type="TooManyFiles",
                    non_retryable=True,
                )

    if config.recursive:
        for directory, dirs, files in os.walk(root, onerror=_raise):
            dirs.sort()
            base = Path(directory)
            for name in files:
                full = base / name
                if full.is_file():
                    take(full.relative_to(root).as_posix(), full)
    else:
        with os.scandir(root) as entries:
            for entry in entries:
                if entry.is_file():
                    take(entry.name, Path(entry.path))
    files = []
    for name, full in sorted(found):
        try:
            st = full.stat()
        except FileNotFoundError:  # deleted while listing
            continue
        modified = datetime.fromtimestamp(st.st_mtime, UTC)
        files.append(
            {
                "name": name,
                "path": str(full),
                "size": st.st_size,
                "modified": modified.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
    return {"path": str(root), "files": files}


def _raise(exc: OSError) -> None:
    raise exc


def _move(config: FileConfig, fmt: Format | None, attempt: _Attempt) -> dict[str, Any]:
    src = resolve_local_path(config.path, "path")
    dst = resolve_local_path(config.to, "to")
    if src == dst:
        raise InvalidArgumentError("to", "is the same file as path")
    _not_a_directory(dst, "to")
    result: dict[str, Any] = {"path": str(src), "to": str(dst)}
    if not src.exists():
        if dst.is_file():
            log.info("%s was already moved to %s (an earlier attempt)", src, dst)
            return {**result, "size": dst.stat().st_size, "already_moved": True}
        raise FileNotFoundError(errno.ENOENT, "file not found", str(src))
    _readable_file(src, "path")
    _prepare_parent(dst, config.create_dirs, "to")
    size = src.stat().st_size
    if config.if_exists == "error":
        try:
            os.link(src, dst)
        except FileExistsError:
            # Left by an earlier attempt that linked or copied it but did not remove the source?
            if not (
                os.path.samefile(src, dst) or _is_own_earlier_write(dst, _sha256_path(src), attempt)
            ):
                raise _exists_error(dst) from None
        except OSError as exc:
            if exc.errno not in _NO_HARDLINK:
                raise
            if dst.exists():
                raise _exists_error(dst) from None
            _copy_then_replace(src, dst, attempt)
        src.unlink()
    else:
        try:
            os.replace(src, dst)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            _copy_then_replace(src, dst, attempt)
            src.unlink()
    _fsync_dir(dst.parent)
    _fsync_dir(src.parent)
    return {**result, "size": size, "already_moved": False}


def _copy_then_replace(src: Path, dst: Path, attempt: _Attempt) -> None:
    """Move across file systems: an atomic copy into ``dst``'s directory (the caller removes
    ``src`` afterwards)."""

    def produce(out: BinaryIO) -> None:
        with open(src, "rb") as fh:
            shutil.copyfileobj(fh, out, _CHUNK)

    atomic_write(dst, produce, if_exists="replace", create_dirs=False, attempt=attempt)


def _copy(config: FileConfig, fmt: Format | None, attempt: _Attempt) -> dict[str, Any]:
    src = resolve_local_path(config.path, "path")
    dst = resolve_local_path(config.to, "to")
    if src == dst:
        raise InvalidArgumentError("to", "is the same file as path")
    _readable_file(src, "path")
    _not_a_directory(dst, "to")
    with open(src, "rb") as fh:

        def produce(out: BinaryIO) -> None:
            shutil.copyfileobj(fh, out, _CHUNK)

        size, sha256 = atomic_write(
            dst,
            produce,
            if_exists=config.if_exists,
            create_dirs=config.create_dirs,
            attempt=attempt,
            field="to",
        )
    return {"path": str(src), "to": str(dst), "size": size, "sha256": sha256}


def _delete(config: FileConfig, fmt: Format | None, attempt: _Attempt) -> dict[str, Any]:
    path = resolve_local_path(config.path, "path")
    if path.is_dir():
        raise InvalidArgumentError("path", f"{path} is a directory; delete removes files only")
    try:
        path.unlink()
    except FileNotFoundError:
        if not config.missing_ok:
            raise
        return {"path": str(path), "deleted": False}
    _fsync_dir(path.parent)
    return {"path": str(path), "deleted": True}


_OPERATIONS: dict[str, Callable[[FileConfig, Format | None, _Attempt], dict[str, Any]]] = {
    "read": _read,
    "write": _write,
    "list": _list,
    "move": _move,
    "copy": _copy,
    "delete": _delete,
}
