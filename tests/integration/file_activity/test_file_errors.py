"""Errors of the file activity: bad configuration names its field, missing and malformed files,
permissions, file roots, and the retryable/non-retryable classification."""

from __future__ import annotations

import errno
import os
import zipfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cadenza.activities._file import file_step
from cadenza.activities._file_config import FileConfig, os_error, validate_file_config
from cadenza.history import ApplicationError, InvalidArgumentError


async def failure(config: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as err:
        await file_step(config)
    return err.value


async def config_error(config: Any) -> str:
    err = await failure(config)
    assert err.type == "InvalidFileConfig", err.message
    assert err.non_retryable
    detail = err.details[0]
    assert err.message.startswith(f"invalid file configuration: {detail['field']}: ")
    return str(detail["field"])


READ = {"operation": "read", "path": "a.csv"}
WRITE = {"operation": "write", "path": "a.csv", "rows": [{"a": "1"}]}

CASES: list[tuple[str, dict[str, Any], str]] = [
    ("no operation", {"path": "a.csv"}, "operation"),
    ("bad operation", {**READ, "operation": "rename"}, "operation"),
    ("no path", {"operation": "read"}, "path"),
    ("empty path", {**READ, "path": "  "}, "path"),
    ("unknown key", {**READ, "sheeet": "x"}, "sheeet"),
    ("wrong type", {**READ, "header": "yes"}, "header"),
    ("bad format", {**READ, "format": "xml"}, "format"),
    ("no extension", {**READ, "path": "data.dat"}, "format"),
    ("long delimiter", {**READ, "delimiter": ",,"}, "delimiter"),
    ("quote delimiter", {**READ, "delimiter": '"'}, "delimiter"),
    ("unknown encoding", {**READ, "encoding": "utf-9"}, "encoding"),
    ("binary codec", {**READ, "encoding": "base64"}, "encoding"),
    ("sheet on csv", {**READ, "sheet": "S"}, "sheet"),
    ("negative sheet", {**READ, "path": "a.xlsx", "sheet": -1}, "sheet"),
    ("duplicate column", {**READ, "columns": ["a", "a"]}, "columns[1]"),
    ("empty column", {**READ, "columns": [""]}, "columns[0]"),
    ("zero max_rows", {**READ, "max_rows": 0}, "max_rows"),
    ("negative offset", {**READ, "offset": -1}, "offset"),
    ("negative skip", {**READ, "skip_rows": -2}, "skip_rows"),
    ("limit over max", {**READ, "limit": 11, "max_rows": 10}, "limit"),
    ("text and infer", {**READ, "as_text": True, "infer_types": True}, "infer_types"),
    ("infer on excel", {**READ, "path": "a.xlsx", "infer_types": True}, "infer_types"),
    ("max_bytes on csv", {**READ, "max_bytes": 10}, "max_bytes"),
    ("rows on read", {**READ, "rows": []}, "rows"),
    ("to on read", {**READ, "to": "b.csv"}, "to"),
    ("no rows", {"operation": "write", "path": "a.csv"}, "rows"),
    ("no text", {"operation": "write", "path": "a.txt"}, "text"),
    ("rows for text", {"operation": "write", "path": "a.txt", "text": "", "rows": []}, "rows"),
    ("xls write", {**WRITE, "path": "a.xls"}, "path"),
    ("sheet too long", {**WRITE, "path": "a.xlsx", "sheet": "x" * 32}, "sheet"),
    ("sheet bad char", {**WRITE, "path": "a.xlsx", "sheet": "a/b"}, "sheet"),
    ("sheet index on write", {**WRITE, "path": "a.xlsx", "sheet": 0}, "sheet"),
    ("append parquet", {**WRITE, "path": "a.parquet", "if_exists": "append"}, "if_exists"),
    ("append excel", {**WRITE, "path": "a.xlsx", "if_exists": "append"}, "if_exists"),
    ("append json array", {**WRITE, "path": "a.json", "if_exists": "append"}, "if_exists"),
    ("bad if_exists", {**WRITE, "if_exists": "skip"}, "if_exists"),
    ("list rows no columns", {**WRITE, "rows": [["1"]]}, "columns"),
    ("list row too short", {**WRITE, "columns": ["a", "b"], "rows": [["1", "2"], ["3"]]}, "rows[1]"),
    ("scalar row", {**WRITE, "rows": [{"a": 1}, 5]}, "rows[1]"),
    ("bad type name", {**WRITE, "types": {"a": "money"}}, "types.a"),
    ("type of no column", {**WRITE, "types": {"b": "int"}}, "types.b"),
    ("bad typed value", {**WRITE, "rows": [{"a": "1"}, {"a": "x"}], "types": {"a": "int"}},
     "rows[1].a"),
    ("bad date", {**WRITE, "rows": [{"a": "01/06/2025"}], "types": {"a": "date"}}, "rows[0].a"),
    ("unencodable", {**WRITE, "path": "b.csv", "rows": [{"a": "Nguyễn"}], "encoding": "latin-1"}, "encoding"),
    ("json_lines on csv", {**WRITE, "json_lines": True}, "json_lines"),
    ("move without to", {"operation": "move", "path": "a.csv"}, "to"),
    ("move append", {"operation": "move", "path": "a", "to": "b", "if_exists": "append"},
     "if_exists"),
    ("list max_files", {"operation": "list", "path": ".", "max_files": 0}, "max_files"),
    ("list format", {"operation": "list", "path": ".", "format": "csv"}, "format"),
    ("delete with to", {"operation": "delete", "path": "a.csv", "to": "b"}, "to"),
    ("outside roots", {**READ, "path": "/etc/passwd.csv"}, "path"),
    ("dot-dot escape", {**READ, "path": "../outside.csv"}, "path"),
    ("to outside roots", {"operation": "copy", "path": "a.csv", "to": "/tmp/x.csv"}, "to"),
    ("not a mapping", ["read", "a.csv"], "config"),  # type: ignore[dict-item]
]  # fmt: skip


@pytest.mark.parametrize(("config", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_bad_configuration_names_its_field(
    root: Path, config: dict[str, Any], field: str
) -> None:
    (root / "a.csv").write_text("a\n1\n")
    before = sorted(os.listdir(root))
    assert await config_error(config) == field
    assert sorted(os.listdir(root)) == before  # nothing written


def test_validate_file_config_is_pure_and_returns_the_format() -> None:
    assert validate_file_config(FileConfig(operation="read", path="/x/a.XLSX")) == "excel"
    assert validate_file_config(FileConfig(operation="read", path="a.ndjson")) == "json"
    assert validate_file_config(FileConfig(operation="delete", path="a.bin")) is None
    with pytest.raises(InvalidArgumentError) as err:
        validate_file_config(FileConfig(operation="read", path="a.csv", limit=-1))
    assert err.value.field == "limit"
    shown = repr(FileConfig(operation="write", path="a.txt", text="secret payload"))
    assert "secret payload" not in shown and "text=<14 chars>" in shown


# --------------------------------------------------------------------------- the file system


async def test_missing_file_is_not_retryable_and_names_the_path(root: Path) -> None:
    for name in ("missing.csv", "missing.xlsx", "missing.parquet", "missing.json", "x.txt"):
        err = await failure({"operation": "read", "path": name})
        assert err.type == "FileNotFound" and err.non_retryable
        assert err.details[0]["path"] == str(root / name)
        assert str(root / name) in err.message
    err = await failure({"operation": "list", "path": "no-such-dir"})
    assert err.type == "FileNotFound"


async def test_directory_where_a_file_is_expected(root: Path) -> None:
    (root / "dir.csv").mkdir()
    assert await config_error({"operation": "read", "path": "dir.csv"}) == "path"
    assert await config_error({**WRITE, "path": "dir.csv"}) == "path"
    assert await config_error({"operation": "delete", "path": "dir.csv"}) == "path"
    (root / "file.txt").write_text("x")
    assert await config_error({"operation": "list", "path": "file.txt"}) == "path"
    os.mkfifo(root / "pipe.csv")  # opening it would block the worker thread forever
    assert await config_error({"operation": "read", "path": "pipe.csv"}) == "path"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
async def test_permission_denied_is_not_retryable(root: Path) -> None:
    secret = root / "secret.csv"
    secret.write_text("a\n1\n")
    secret.chmod(0)
    try:
        err = await failure({"operation": "read", "path": "secret.csv"})
    finally:
        secret.chmod(0o600)
    assert err.type == "FilePermissionDenied" and err.non_retryable


def test_os_errors_are_classified() -> None:
    cases = [
        (FileNotFoundError(errno.ENOENT, "No such file", "/d/a"), "FileNotFound", True),
        (PermissionError(errno.EACCES, "Permission denied", "/d/a"), "FilePermissionDenied", True),
        (PermissionError(errno.EPERM, "Operation not permitted", "/d/a"),
         "FilePermissionDenied", True),
        (FileExistsError(errno.EEXIST, "exists", "/d/a"), "FileExists", True),
        (OSError(errno.ENOSPC, "No space left on device", "/d/a"), "DiskFull", False),
        (OSError(errno.EDQUOT, "Disk quota exceeded", "/d/a"), "DiskFull", False),
        (OSError(errno.EIO, "Input/output error", "/d/a"), "FileSystemError", False),
    ]  # fmt: skip
    for exc, type_, non_retryable in cases:
        err = os_error(exc)
        assert (err.type, err.non_retryable) == (type_, non_retryable), exc
        assert err.details[0]["path"] == "/d/a"


async def test_symlink_out_of_the_roots_is_rejected(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_text("a\n1\n")
    (root / "link.csv").symlink_to(outside)
    assert await config_error({"operation": "read", "path": "link.csv"}) == "path"
    assert await config_error({"operation": "delete", "path": "link.csv"}) == "path"
    assert outside.exists()


# --------------------------------------------------------------------------- malformed files


async def invalid_file(root: Path, name: str, content: bytes, **options: Any) -> ApplicationError:
    (root / name).write_bytes(content)
    err = await failure({"operation": "read", "path": name, **options})
    assert err.type == "InvalidFile", err.message
    assert err.non_retryable
    assert err.details[0]["path"] == str(root / name)
    assert err.message.startswith(f"{root / name}: ")
    return err


async def test_malformed_csv(root: Path) -> None:
    err = await invalid_file(root, "q.csv", b'a,b\n1,2\n3,"unterminated\n4,5\n')
    assert "line" in err.message
    err = await invalid_file(root, "junk.csv", b'a,b\n1,"x"y\n')
    assert "line 2" in err.message
    err = await invalid_file(root, "count.csv", b"a,b\n1,2\n3,4,5\n")
    assert err.details[0]["line"] == 3 and "3 fields, expected 2" in err.message
    err = await invalid_file(root, "short.csv", b"a,b,c\n1,2\n", skip_rows=0)
    assert err.details[0]["line"] == 2


async def test_undecodable_bytes_name_line_and_byte_offset(root: Path) -> None:
    body = b"id,name\n" + b"001,An\n" * 5000 + b"002,Nguy\xe1\xbb\n003,B\n"
    err = await invalid_file(root, "enc.csv", body)
    detail = err.details[0]
    assert detail["line"] == 5002
    assert detail["byte"] == body.index(b"\xe1\xbb")
    assert "utf-8" in err.message and "e1 bb" in err.message
    err = await invalid_file(root, "enc.txt", "chào".encode("utf-16-le"))
    assert err.details[0]["byte"] == 4  # c \0 h \0 are valid UTF-8; à is e0 00
    err = await invalid_file(root, "enc.jsonl", b'{"a": "\xff"}\n')
    assert err.details[0]["line"] == 1


async def test_malformed_excel(root: Path) -> None:
    await invalid_file(root, "text.xlsx", b"this is not a workbook")
    zip_path = root / "empty.zip"
    with zipfile.ZipFile(zip_path, "w") as z:
        z.writestr("hello.txt", "not excel")
    await invalid_file(root, "zip.xlsx", zip_path.read_bytes())
    await invalid_file(root, "csv.xls", b"a,b\n1,2\n")


async def test_malformed_parquet(root: Path) -> None:
    await invalid_file(root, "garbage.parquet", b"PAR1 definitely not parquet")
    pq.write_table(pa.table({"n": list(range(1000))}), root / "good.parquet")
    good = (root / "good.parquet").read_bytes()
    await invalid_file(root, "truncated.parquet", good[: len(good) // 2])
    middle = len(good) // 3
    corrupt = good[:middle] + bytes(200) + good[middle + 200 :]
    (root / "corrupt.parquet").write_bytes(corrupt)
    err = await failure({"operation": "read", "path": "corrupt.parquet"})
    assert err.type == "InvalidFile" and err.non_retryable


async def test_malformed_json(root: Path) -> None:
    err = await invalid_file(root, "bad.json", b'[{"a": 1},, {"a": 2}]')
    assert "invalid JSON" in err.message
    err = await invalid_file(root, "bad.jsonl", b'{"a": 1}\n{"a": \n')
    assert err.details[0]["line"] == 2
    err = await invalid_file(root, "scalars.json", b"[1, 2]")
    assert "item 0" in err.message and "expected a JSON object" in err.message
