"""Atomic writes and if_exists, retries of the same activity, list, move, copy and delete."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest

from cadenza.activities._file import TEMP_SUFFIX, file_step
from cadenza.history import ApplicationError

ROWS = [{"id": "001", "name": "Hà Nội"}, {"id": "002", "name": "Huế"}]


async def run(**config: Any) -> dict[str, Any]:
    return await file_step(config)


async def failure(**config: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as err:
        await file_step(config)
    return err.value


def leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.name.endswith(TEMP_SUFFIX)]


# --------------------------------------------------------------------------- writes


async def test_write_is_atomic_and_leaves_no_temporary_file(root: Path) -> None:
    for name in ("out/a.csv", "out/a.xlsx", "out/a.parquet", "out/a.json", "out/a.txt"):
        options = {"text": "hello"} if name.endswith(".txt") else {"rows": ROWS}
        result = await run(operation="write", path=name, **options)
        assert result["size"] == (root / name).stat().st_size
    assert leftovers(root) == []
    mode = stat.S_IMODE((root / "out/a.csv").stat().st_mode)
    assert mode & 0o644 == 0o644  # a normal file, not mkstemp's 0600


async def test_a_failing_write_keeps_the_old_file_and_leaves_no_temporary(root: Path) -> None:
    await run(operation="write", path="keep.csv", rows=ROWS)
    before = (root / "keep.csv").read_bytes()
    rows = [{"id": str(i), "name": "ok"} for i in range(100)] + [{"id": "x", "name": "Đà Nẵng"}]
    err = await failure(
        operation="write", path="keep.csv", rows=rows, encoding="ascii", if_exists="replace"
    )
    assert err.type == "InvalidFileConfig" and err.details[0]["field"] == "encoding"
    assert "rows[100]" in err.message
    assert (root / "keep.csv").read_bytes() == before
    assert leftovers(root) == []


async def test_if_exists_error_replace_and_create_dirs(root: Path) -> None:
    await run(operation="write", path="r.csv", rows=ROWS)
    err = await failure(operation="write", path="r.csv", rows=ROWS[:1])
    assert err.type == "FileExists" and err.non_retryable
    assert err.details[0]["path"] == str(root / "r.csv")
    assert (root / "r.csv").read_text().count("\n") == 3

    result = await run(operation="write", path="r.csv", rows=ROWS[:1], if_exists="replace")
    assert (root / "r.csv").read_text() == "id,name\n001,Hà Nội\n"
    assert result["row_count"] == 1

    err = await failure(operation="write", path="new/dir/r.csv", rows=ROWS, create_dirs=False)
    assert err.type == "InvalidFileConfig" and err.details[0]["field"] == "path"
    assert not (root / "new").exists()
    await run(operation="write", path="new/dir/r.csv", rows=ROWS)
    assert (root / "new/dir/r.csv").is_file()


async def test_append_to_csv_json_lines_and_text(root: Path) -> None:
    first = await run(operation="write", path="log.csv", rows=ROWS[:1], if_exists="append")
    second = await run(operation="write", path="log.csv", rows=ROWS[1:], if_exists="append")
    assert (root / "log.csv").read_text() == "id,name\n001,Hà Nội\n002,Huế\n"
    assert second["row_count"] == 1 and second["size"] > first["size"]
    assert (await run(operation="read", path="log.csv"))["rows"] == ROWS

    (root / "noeol.csv").write_text("id,name\n000,x")  # no final newline
    await run(operation="write", path="noeol.csv", rows=ROWS[:1], if_exists="append")
    assert (root / "noeol.csv").read_text() == "id,name\n000,x\n001,Hà Nội\n"

    err = await failure(
        operation="write", path="log.csv", rows=[{"name": "x", "id": "9"}], if_exists="append"
    )
    assert err.type == "InvalidFileConfig" and "cannot append" in err.message

    await run(operation="write", path="e.jsonl", rows=ROWS[:1], if_exists="append")
    await run(operation="write", path="e.jsonl", rows=ROWS[1:], if_exists="append")
    assert (await run(operation="read", path="e.jsonl"))["rows"] == ROWS

    await run(operation="write", path="t.txt", text="a", if_exists="append")
    await run(operation="write", path="t.txt", text="b\n", if_exists="append")
    assert (root / "t.txt").read_text() == "ab\n"

    await run(operation="write", path="bom.csv", rows=ROWS[:1], encoding="utf-8-sig")
    await run(
        operation="write", path="bom.csv", rows=ROWS[1:], encoding="utf-8-sig", if_exists="append"
    )
    assert (root / "bom.csv").read_bytes().count("\ufeff".encode()) == 1
    assert leftovers(root) == []


# --------------------------------------------------------------------------- retries


async def test_retry_after_a_lost_completion_succeeds(root: Path, activity) -> None:
    with activity(attempt=1, key="wf/run/7"):
        first = await run(operation="write", path="settle.xlsx", rows=ROWS)
    # The completion was lost; attempt 2 of the same activity writes the same content.
    with activity(attempt=2, key="wf/run/7"):
        again = await run(operation="write", path="settle.xlsx", rows=ROWS)
    assert again == first
    # Excel files carry a creation time: the activity's scheduled time, the same for every
    # attempt, so that an attempt one second later still writes the same bytes.
    with zipfile.ZipFile(root / "settle.xlsx") as xlsx:
        core = xlsx.read("docProps/core.xml").decode()
    assert '<dcterms:created xsi:type="dcterms:W3CDTF">2025-06-01T17:30:00Z' in core
    # Different content is a real collision, even for the same activity.
    with activity(attempt=3, key="wf/run/7"):
        err = await failure(operation="write", path="settle.xlsx", rows=ROWS[:1])
    assert err.type == "FileExists"
    # Another activity (another step or run) never takes over an existing file.
    with activity(attempt=2, key="wf/run/9"):
        err = await failure(operation="write", path="settle.xlsx", rows=ROWS)
    assert err.type == "FileExists"
    # Outside an activity there is no earlier attempt.
    err = await failure(operation="write", path="settle.xlsx", rows=ROWS)
    assert err.type == "FileExists"
    assert leftovers(root) == []


async def test_retried_append_does_not_append_twice(root: Path, activity) -> None:
    await run(operation="write", path="audit.csv", rows=ROWS[:1])
    with activity(attempt=1, key="wf/run/11"):
        done = await run(operation="write", path="audit.csv", rows=ROWS[1:], if_exists="append")
    with activity(attempt=2, key="wf/run/11"):
        again = await run(operation="write", path="audit.csv", rows=ROWS[1:], if_exists="append")
    assert again == done
    assert (root / "audit.csv").read_text().count("002,Huế") == 1
    with activity(attempt=1, key="wf/run/12"):  # the next run appends again
        await run(operation="write", path="audit.csv", rows=ROWS[1:], if_exists="append")
    assert (root / "audit.csv").read_text().count("002,Huế") == 2


# --------------------------------------------------------------------------- list


async def test_list_with_pattern_recursive_and_guard(root: Path) -> None:
    inbox = root / "inbox"
    (inbox / "2025/06").mkdir(parents=True)
    (inbox / "b_20250602.csv").write_text("x" * 5)
    (inbox / "a_20250601.csv").write_text("x")
    (inbox / "readme.txt").write_text("x")
    (inbox / "2025/06/c_20250603.csv").write_text("xyz")
    (inbox / f".a_20250601.csv.1x_3{TEMP_SUFFIX}").write_text("partial")
    (inbox / ".b_20250602.csv.0123456789ab.part").write_text("sftp download in progress")
    os.utime(inbox / "a_20250601.csv", (1_750_000_000, 1_750_000_000))

    flat = await run(operation="list", path="inbox", pattern="*.csv")
    assert flat["path"] == str(inbox)
    assert flat["files"] == [
        {
            "name": "a_20250601.csv",
            "path": str(inbox / "a_20250601.csv"),
            "size": 1,
            "modified": "2025-06-15T15:06:40Z",
        },
        {
            "name": "b_20250602.csv",
            "path": str(inbox / "b_20250602.csv"),
            "size": 5,
            "modified": flat["files"][1]["modified"],
        },
    ]
    deep = await run(operation="list", path="inbox", pattern="*.csv", recursive=True)
    assert [f["name"] for f in deep["files"]] == [
        "2025/06/c_20250603.csv",
        "a_20250601.csv",
        "b_20250602.csv",
    ]
    everything = await run(operation="list", path="inbox")
    assert [f["name"] for f in everything["files"]] == [
        "a_20250601.csv",
        "b_20250602.csv",
        "readme.txt",
    ]
    err = await failure(operation="list", path="inbox", max_files=2)
    assert err.type == "TooManyFiles" and err.non_retryable
    assert err.details[0]["field"] == "max_files"
    assert (await run(operation="list", path="inbox", pattern="*.xml"))["files"] == []


# --------------------------------------------------------------------------- move, copy, delete


async def test_move_and_its_retry(root: Path, activity) -> None:
    await run(operation="write", path="inbox/s.csv", rows=ROWS)
    with activity(attempt=1, key="wf/run/20"):
        moved = await run(operation="move", path="inbox/s.csv", to="archive/2025/s.csv")
    assert moved == {
        "path": str(root / "inbox/s.csv"),
        "to": str(root / "archive/2025/s.csv"),
        "size": (root / "archive/2025/s.csv").stat().st_size,
        "already_moved": False,
    }
    assert not (root / "inbox/s.csv").exists()
    with activity(attempt=2, key="wf/run/20"):
        again = await run(operation="move", path="inbox/s.csv", to="archive/2025/s.csv")
    assert again == {**moved, "already_moved": True}
    err = await failure(operation="move", path="inbox/gone.csv", to="archive/gone.csv")
    assert err.type == "FileNotFound" and err.details[0]["path"] == str(root / "inbox/gone.csv")


async def test_move_if_exists(root: Path) -> None:
    (root / "a.csv").write_text("new")
    (root / "b.csv").write_text("old")
    err = await failure(operation="move", path="a.csv", to="b.csv")
    assert err.type == "FileExists" and err.details[0]["path"] == str(root / "b.csv")
    assert (root / "a.csv").read_text() == "new" and (root / "b.csv").read_text() == "old"
    await run(operation="move", path="a.csv", to="b.csv", if_exists="replace")
    assert not (root / "a.csv").exists() and (root / "b.csv").read_text() == "new"
    err = await failure(operation="move", path="b.csv", to="b.csv")
    assert err.type == "InvalidFileConfig" and err.details[0]["field"] == "to"
    err = await failure(operation="move", path="b.csv", to="c/d.csv", create_dirs=False)
    assert err.details[0]["field"] == "to"


async def test_move_finishes_an_attempt_that_left_both_names(root: Path, activity) -> None:
    (root / "a.csv").write_text("data")
    os.link(root / "a.csv", root / "b.csv")  # crashed between link and unlink
    with activity(attempt=2, key="wf/run/21"):
        result = await run(operation="move", path="a.csv", to="b.csv")
    assert result["already_moved"] is False
    assert not (root / "a.csv").exists() and (root / "b.csv").read_text() == "data"


async def test_copy(root: Path, activity) -> None:
    await run(operation="write", path="src.parquet", rows=ROWS)
    with activity(attempt=1, key="wf/run/30"):
        copied = await run(operation="copy", path="src.parquet", to="backup/src.parquet")
    source = await run(operation="read", path="src.parquet")
    assert copied["sha256"] == source["sha256"] and copied["size"] == source["size"]
    assert (await run(operation="read", path="backup/src.parquet"))["rows"] == ROWS
    with activity(attempt=2, key="wf/run/30"):
        assert await run(operation="copy", path="src.parquet", to="backup/src.parquet") == copied
    err = await failure(operation="copy", path="src.parquet", to="backup/src.parquet")
    assert err.type == "FileExists"
    await run(operation="copy", path="src.parquet", to="backup/src.parquet", if_exists="replace")
    err = await failure(operation="copy", path="nope.parquet", to="x.parquet")
    assert err.type == "FileNotFound"
    assert leftovers(root) == []


async def test_delete(root: Path) -> None:
    (root / "d.csv").write_text("x")
    assert await run(operation="delete", path="d.csv") == {
        "path": str(root / "d.csv"),
        "deleted": True,
    }
    assert not (root / "d.csv").exists()
    assert (await run(operation="delete", path="d.csv"))["deleted"] is False
    err = await failure(operation="delete", path="d.csv", missing_ok=False)
    assert err.type == "FileNotFound" and err.non_retryable
