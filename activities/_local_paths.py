"""Where the built-in ``file`` and ``sftp`` activities may read and write on the worker's disk.

A job file is written by one team and run by a worker another team operates, so a step must not
be able to read ``/etc/shadow`` or overwrite the worker's own code. Local paths are confined to
a set of *file roots*: directories given by ``configure_file_roots`` or by the environment
variable ``CADENZA_FILE_ROOTS`` (``os.pathsep``-separated), and by default the worker's working
directory. A relative path is taken under the first root; an absolute one must lie inside one of
them after symbolic links are followed, so neither ``..`` nor a link can escape.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cadenza.history import InvalidArgumentError

__all__ = ["configure_file_roots", "file_roots", "resolve_local_path"]

ENV_VAR = "CADENZA_FILE_ROOTS"

_configured: tuple[Path, ...] | None = None


def configure_file_roots(roots: Sequence[str | os.PathLike[str]] | None) -> None:
    """Set the directories local paths must lie in (``None``: back to the environment/default).

    Raises:
        InvalidArgumentError: a root is empty or is not an existing directory.
    """
    global _configured
    if roots is None:
        _configured = None
        return
    _configured = _checked_roots([os.fspath(r) for r in roots], "roots")


def file_roots() -> tuple[Path, ...]:
    """The allowed roots, resolved (the configured ones, else ``CADENZA_FILE_ROOTS``, else the
    current working directory)."""
    if _configured is not None:
        return _configured
    raw = os.environ.get(ENV_VAR, "")
    entries = [e for e in raw.split(os.pathsep) if e.strip()]
    if entries:
        return _checked_roots(entries, ENV_VAR)
    return (Path.cwd().resolve(),)


def resolve_local_path(path: object, field: str) -> Path:
    """The absolute, link-free form of ``path`` if it lies inside a file root.

    Args:
        path: The path as the configuration gave it (text).
        field: The configuration field it came from, named in errors (``path``, ``local_path``).

    Raises:
        InvalidArgumentError: not text, empty, holds a NUL byte, or lies outside every root.
    """
    if not isinstance(path, str):
        raise InvalidArgumentError(field, f"expected a path as text, got {type(path).__name__}")
    if not path.strip():
        raise InvalidArgumentError(field, "must not be empty")
    if "\x00" in path:
        raise InvalidArgumentError(field, "must not contain a NUL character")
    roots = file_roots()
    candidate = Path(os.path.expanduser(path)) if path.startswith("~") else Path(path)
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    resolved = candidate.resolve(strict=False)
    for root in roots:
        if resolved == root or resolved.is_relative_to(root):
            return resolved
    allowed = ", ".join(str(r) for r in roots)
    raise InvalidArgumentError(
        field,
        f"{path!r} is outside the allowed file roots ({allowed}); "
        f"set {ENV_VAR} on the worker to allow another directory",
    )


def _checked_roots(entries: list[str], field: str) -> tuple[Path, ...]:
    roots: list[Path] = []
    for i, entry in enumerate(entries):
        root = Path(os.path.expanduser(entry.strip())).resolve(strict=False)
        if not root.is_dir():
            raise InvalidArgumentError(f"{field}[{i}]", f"{entry!r} is not an existing directory")
        roots.append(root)
    if not roots:
        raise InvalidArgumentError(field, "give at least one directory")
    return tuple(roots)
