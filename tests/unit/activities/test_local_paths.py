"""Local paths of the file and SFTP activities stay inside the configured roots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cadenza.activities._local_paths import configure_file_roots, file_roots, resolve_local_path
from cadenza.history import InvalidArgumentError


@pytest.fixture(autouse=True)
def _reset_roots() -> Iterator[None]:
    yield
    configure_file_roots(None)


def test_relative_paths_resolve_under_the_first_root(tmp_path: Path) -> None:
    configure_file_roots([tmp_path / "", tmp_path.parent])
    assert resolve_local_path("in/a.csv", "path") == tmp_path.resolve() / "in" / "a.csv"


def test_dotdot_and_links_cannot_escape(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    configure_file_roots([root])
    with pytest.raises(InvalidArgumentError, match=r"^path: '\.\./outside/x' is outside"):
        resolve_local_path("../outside/x", "path")
    with pytest.raises(InvalidArgumentError, match=r"^local_path: 'link/x' is outside"):
        resolve_local_path("link/x", "local_path")
    with pytest.raises(InvalidArgumentError, match="outside"):
        resolve_local_path("/etc/passwd", "path")
    assert resolve_local_path(str(root / "sub" / "x"), "path") == root.resolve() / "sub" / "x"


@pytest.mark.parametrize(("value", "reason"), [("", "empty"), ("a\x00b", "NUL"), (3, "text")])
def test_bad_paths_name_the_field(tmp_path: Path, value: object, reason: str) -> None:
    configure_file_roots([tmp_path])
    with pytest.raises(InvalidArgumentError, match=rf"^to: .*{reason}"):
        resolve_local_path(value, "to")


def test_roots_come_from_the_environment_and_must_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CADENZA_FILE_ROOTS", f"{tmp_path}:{tmp_path / 'missing'}")
    with pytest.raises(InvalidArgumentError, match=r"CADENZA_FILE_ROOTS\[1\]: .* not an existing"):
        file_roots()
    monkeypatch.setenv("CADENZA_FILE_ROOTS", str(tmp_path))
    assert file_roots() == (tmp_path.resolve(),)
    monkeypatch.delenv("CADENZA_FILE_ROOTS")
    assert file_roots() == (Path.cwd().resolve(),)
