"""Reading and writing each format with real files: CSV, Excel, Parquet, JSON, text; paging."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xlsxwriter

from cadenza.activities import ActivityDefinition
from cadenza.activities._file import file_step
from cadenza.activities._file_formats import json_safe, text_of
from cadenza.history import ApplicationError

ACCOUNTS = [
    {"account": "0012345678", "name": "Nguyễn Văn Ánh", "amount": "1500000", "branch": "007"},
    {"account": "0098765432", "name": "Trần Thị Bích Ngọc", "amount": "-250000.50", "branch": ""},
    {"account": "1000000001", "name": 'Lê Đức Thọ, "Bố"', "amount": "0", "branch": "010"},
]


async def read(path: str, **options: Any) -> dict[str, Any]:
    return await file_step({"operation": "read", "path": path, **options})


async def write(path: str, **options: Any) -> dict[str, Any]:
    return await file_step({"operation": "write", "path": path, **options})


async def failure(config: dict[str, Any]) -> ApplicationError:
    with pytest.raises(ApplicationError) as err:
        await file_step(config)
    return err.value


def test_registered_as_file_activity() -> None:
    definition = ActivityDefinition.of(file_step)
    assert definition.name == "file"
    assert definition.is_async


# --------------------------------------------------------------------------- CSV


async def test_csv_round_trip_keeps_vietnamese_text_and_leading_zeros(root: Path) -> None:
    written = await write("in/settlement.csv", rows=ACCOUNTS)
    raw = (root / "in/settlement.csv").read_bytes()
    assert raw.startswith(b"account,name,amount,branch\n0012345678,")
    assert "Nguyễn Văn Ánh".encode() in raw
    assert b'"L\xc3\xaa \xc4\x90\xe1\xbb\xa9c Th\xe1\xbb\x8d, ""B\xe1\xbb\x91"""' in raw
    assert written["row_count"] == 3 and written["size"] == len(raw)

    result = await read("in/settlement.csv")
    assert result["format"] == "csv"
    assert result["columns"] == ["account", "name", "amount", "branch"]
    assert result["rows"] == ACCOUNTS  # every cell is text, exactly as in the file
    assert result["row_count"] == 3 and result["has_more"] is False
    assert result["size"] == written["size"] and result["sha256"] == written["sha256"]
    assert result["path"] == str(root / "in/settlement.csv")


async def test_csv_with_bom_reads_clean_header_and_utf8_sig_writes_one(root: Path) -> None:
    (root / "bom.csv").write_bytes("\ufeffmã_kh,tên\n007,Phạm Hương\n".encode())
    result = await read("bom.csv")
    assert result["columns"] == ["mã_kh", "tên"]
    assert result["rows"] == [{"mã_kh": "007", "tên": "Phạm Hương"}]
    explicit = await read("bom.csv", encoding="utf-8-sig")
    assert explicit["rows"] == result["rows"]

    await write("excel-friendly.csv", rows=[{"tên": "Đỗ"}], encoding="utf-8-sig")
    assert (root / "excel-friendly.csv").read_bytes() == "\ufefftên\nĐỗ\n".encode()


async def test_csv_legacy_encodings(root: Path) -> None:
    (root / "latin.csv").write_bytes("name;city\nJosé;São Paulo\n".encode("latin-1"))
    result = await read("latin.csv", encoding="latin-1", delimiter=";")
    assert result["rows"] == [{"name": "José", "city": "São Paulo"}]
    # cp1258 (Windows Vietnamese) stores the tone of "ễ" as a combining mark.
    (root / "cp1258.csv").write_bytes(b"ten\nNguy\xea\xde n\n")
    result = await read("cp1258.csv", encoding="cp1258")
    assert result["rows"] == [{"ten": "Nguyê\u0303 n"}]


async def test_csv_delimiter_header_and_skip_rows(root: Path) -> None:
    (root / "report.csv").write_text(
        'NGÂN HÀNG ABC - "Báo cáo"\nNgày: 01/06/2025\nid;amount\n001;10\n002;20\n'
    )
    result = await read("report.csv", skip_rows=2, delimiter=";")
    assert result["rows"] == [{"id": "001", "amount": "10"}, {"id": "002", "amount": "20"}]

    (root / "plain.tsv").write_text("001\tA\n002\tB\n")
    result = await read("plain.tsv", header=False)  # .tsv: tab by default
    assert result["columns"] == ["col1", "col2"]
    assert result["rows"][1] == {"col1": "002", "col2": "B"}
    result = await read("plain.tsv", header=False, delimiter="\\t", columns=["col2"])
    assert result["rows"] == [{"col2": "A"}, {"col2": "B"}]

    await write("out.tsv", columns=["a", "b"], rows=[["1", "x y"]], header=False)
    assert (root / "out.tsv").read_text() == "1\tx y\n"


async def test_csv_quoting_blank_lines_and_duplicate_headers(root: Path) -> None:
    (root / "q.csv").write_text('id,note,note\n1,"multi\nline, with comma",x\n\n2,"",y\n')
    result = await read("q.csv")
    assert result["columns"] == ["id", "note", "note.1"]
    assert result["rows"] == [
        {"id": "1", "note": "multi\nline, with comma", "note.1": "x"},
        {"id": "2", "note": "", "note.1": "y"},
    ]


async def test_csv_columns_select_and_order(root: Path) -> None:
    await write("s.csv", rows=ACCOUNTS)
    result = await read("s.csv", columns=["name", "account"])
    assert result["columns"] == ["name", "account"]
    assert result["rows"][0] == {"name": "Nguyễn Văn Ánh", "account": "0012345678"}


async def test_csv_infer_types_opt_in_never_strips_leading_zeros(root: Path) -> None:
    (root / "t.csv").write_text(
        "id,qty,price,ok,note,code\n007,3,1.5,true,a,10\n008,,2e3,FALSE,,0\n009,-4,.25,true,c,-1\n"
    )
    result = await read("t.csv", infer_types=True)
    assert result["rows"] == [
        {"id": "007", "qty": 3, "price": 1.5, "ok": True, "note": "a", "code": 10},
        {"id": "008", "qty": None, "price": 2000.0, "ok": False, "note": None, "code": 0},
        {"id": "009", "qty": -4, "price": 0.25, "ok": True, "note": "c", "code": -1},
    ]
    as_text = await read("t.csv")
    assert as_text["rows"][1]["qty"] == "" and as_text["rows"][0]["price"] == "1.5"


async def test_csv_header_only_and_empty_file(root: Path) -> None:
    (root / "h.csv").write_text("a,b\n")
    assert (await read("h.csv"))["columns"] == ["a", "b"]
    assert (await read("h.csv"))["rows"] == []
    (root / "empty.csv").write_bytes(b"")
    result = await read("empty.csv")
    assert result["columns"] == [] and result["rows"] == [] and result["size"] == 0


# --------------------------------------------------------------------------- Excel


async def test_excel_write_then_read_by_sheet_name_and_index(root: Path) -> None:
    rows = [
        {
            "account": "0012345678",
            "name": "Nguyễn Văn Ánh",
            "amount": 1500000,
            "rate": 0.075,
            "value_date": date(2025, 6, 1),
            "posted_at": datetime(2025, 6, 1, 17, 30, 5),
            "active": True,
            "note": None,
        },
        {
            "account": "0098765432",
            "name": '=HYPERLINK("http://evil")',
            "amount": -250000.5,
            "rate": 1,
            "value_date": "2025-06-02",
            "posted_at": "2025-06-02T08:00:00+07:00",
            "active": False,
            "note": "https://bank.example.vn",
        },
    ]
    written = await write(
        "report.xlsx",
        rows=rows,
        sheet="Đối soát",
        types={"value_date": "date", "posted_at": "datetime"},
    )
    assert written == {
        "path": str(root / "report.xlsx"),
        "format": "excel",
        "row_count": 2,
        "size": written["size"],
        "sha256": written["sha256"],
    }
    by_name = await read("report.xlsx", sheet="Đối soát")
    by_index = await read("report.xlsx", sheet=0)
    default = await read("report.xlsx")
    assert by_name == by_index == default
    assert by_name["sheet"] == "Đối soát"
    assert by_name["columns"] == list(rows[0])
    assert by_name["rows"] == [
        {
            "account": "0012345678",
            "name": "Nguyễn Văn Ánh",
            "amount": 1500000,
            "rate": 0.075,
            "value_date": "2025-06-01",
            "posted_at": "2025-06-01T17:30:05",
            "active": True,
            "note": None,
        },
        {
            "account": "0098765432",
            "name": '=HYPERLINK("http://evil")',  # text, never a formula
            "amount": -250000.5,
            "rate": 1,
            "value_date": "2025-06-02",
            "posted_at": "2025-06-02T08:00:00",  # Excel has no time zones: wall time kept
            "active": False,
            "note": "https://bank.example.vn",
        },
    ]
    text = await read("report.xlsx", as_text=True, columns=["amount", "value_date", "active"])
    assert text["rows"] == [
        {"amount": "1500000", "value_date": "2025-06-01", "active": "true"},
        {"amount": "-250000.5", "value_date": "2025-06-02", "active": "false"},
    ]


async def test_excel_pages_count_rows_not_empty_lines(root: Path) -> None:
    workbook = xlsxwriter.Workbook(str(root / "gaps.xlsx"))
    sheet = workbook.add_worksheet()
    sheet.write_row(0, 0, ["n"])
    for i in range(30):
        sheet.write_number(1 + 3 * i, 0, i)  # two empty rows after every row
    workbook.close()
    first = await read("gaps.xlsx", limit=10)
    assert [r["n"] for r in first["rows"]] == list(range(10)) and first["has_more"] is True
    last = await read("gaps.xlsx", offset=25, limit=10)
    assert [r["n"] for r in last["rows"]] == list(range(25, 30)) and last["has_more"] is False
    assert (await read("gaps.xlsx", max_rows=30))["row_count"] == 30
    err = await failure({"operation": "read", "path": "gaps.xlsx", "max_rows": 29})
    assert err.type == "FileTooLarge"


async def test_excel_sheets_skip_rows_header_and_unknown_sheet(root: Path) -> None:
    workbook = xlsxwriter.Workbook(str(root / "multi.xlsx"))
    first = workbook.add_worksheet("Summary")
    first.write_row(0, 0, ["total", 3])
    data = workbook.add_worksheet("Data")
    data.write_row(0, 0, ["Bank report"])
    data.write_row(2, 0, ["id", "amount", ""])
    data.write_row(3, 0, ["001", 10.0, "x"])
    data.write_row(5, 0, ["002", 20.25])
    workbook.close()

    result = await read("multi.xlsx", sheet=1, skip_rows=2)
    assert result["sheet"] == "Data"
    assert result["columns"] == ["id", "amount", "col3"]
    assert result["rows"] == [  # the empty row between them is skipped
        {"id": "001", "amount": 10, "col3": "x"},
        {"id": "002", "amount": 20.25, "col3": None},
    ]
    headless = await read("multi.xlsx", header=False)
    assert headless["rows"] == [{"col1": "total", "col2": 3}]

    err = await failure({"operation": "read", "path": "multi.xlsx", "sheet": "Nope"})
    assert err.type == "InvalidFileConfig" and err.non_retryable
    assert err.details[0]["field"] == "sheet"
    assert "Summary, Data" in err.message
    err = await failure({"operation": "read", "path": "multi.xlsx", "sheet": 2})
    assert err.details[0]["field"] == "sheet" and "2 sheet(s)" in err.message


# --------------------------------------------------------------------------- Parquet


async def test_parquet_round_trip_ints_floats_none_timestamps(root: Path) -> None:
    rows = [
        {
            "id": 1,
            "account": "007",
            "amount": 1.5,
            "settled_at": "2025-06-01T01:02:03.456789",
            "utc": datetime(2025, 6, 1, 1, 2, 3, tzinfo=UTC),
            "day": "2025-06-01",
            "price": "12.50",
        },
        {
            "id": None,
            "account": None,
            "amount": None,
            "settled_at": None,
            "utc": None,
            "day": None,
            "price": None,
        },
        {
            "id": 3,
            "account": "010",
            "amount": -2.25,
            "settled_at": "2025-06-03T00:00:00",
            "utc": datetime(2025, 6, 3, tzinfo=UTC),
            "day": "2025-06-03",
            "price": "0.01",
        },
    ]
    await write(
        "data/t.parquet",
        rows=rows,
        types={"settled_at": "datetime", "day": "date", "price": "decimal"},
    )
    schema = pq.read_schema(root / "data/t.parquet")
    assert schema.field("id").type == pa.int64()
    assert schema.field("settled_at").type == pa.timestamp("us")
    assert schema.field("day").type == pa.date32()
    assert pa.types.is_decimal(schema.field("price").type)

    result = await read("data/t.parquet")
    assert result["rows"] == [
        {
            "id": 1,
            "account": "007",
            "amount": 1.5,
            "settled_at": "2025-06-01T01:02:03.456789",
            "utc": "2025-06-01T01:02:03+00:00",
            "day": "2025-06-01",
            "price": "12.50",
        },
        dict.fromkeys(rows[1]),
        {
            "id": 3,
            "account": "010",
            "amount": -2.25,
            "settled_at": "2025-06-03T00:00:00",
            "utc": "2025-06-03T00:00:00+00:00",
            "day": "2025-06-03",
            "price": "0.01",
        },
    ]
    json.dumps(result)  # JSON-safe throughout
    text = await read("data/t.parquet", as_text=True, columns=["amount", "id"])
    assert text["rows"][0] == {"amount": "1.5", "id": "1"}


async def test_parquet_date_times_with_offsets_are_stored_in_utc(root: Path) -> None:
    rows = [{"at": "2025-06-01T08:00:00+07:00"}, {"at": "2025-06-01T08:00:00Z"}, {"at": None}]
    await write("tz.parquet", rows=rows, types={"at": "datetime"})
    assert pq.read_schema(root / "tz.parquet").field("at").type == pa.timestamp("us", tz="UTC")
    result = await read("tz.parquet")
    assert [r["at"] for r in result["rows"]] == [
        "2025-06-01T01:00:00+00:00",
        "2025-06-01T08:00:00+00:00",
        None,
    ]
    err = await failure(
        {
            "operation": "write",
            "path": "mixed.parquet",
            "rows": [{"at": "2025-06-01T08:00:00+07:00"}, {"at": "2025-06-01T08:00:00"}],
            "types": {"at": "datetime"},
        }
    )
    assert err.type == "InvalidFileConfig" and "with and without a UTC offset" in err.message


async def test_parquet_values_from_other_writers_are_json_safe(root: Path) -> None:
    table = pa.table(
        {
            "ns": pa.array([1_700_000_000_123_456_789], pa.timestamp("ns")),
            "blob": pa.array([b"\x00\xff"]),
            "nan": pa.array([float("nan")]),
            "tags": pa.array([["a", "b"]]),
            "dur": pa.array([90_000_000], pa.duration("us")),
        }
    )
    pq.write_table(table, root / "other.parquet")
    row = (await read("other.parquet"))["rows"][0]
    assert row["ns"] == "2023-11-14T22:13:20.123456789"
    assert row["blob"] == "AP8="
    assert row["nan"] is None
    assert row["tags"] == ["a", "b"]
    assert row["dur"] == "PT1M30S"


async def test_parquet_pages_span_row_groups(root: Path) -> None:
    table = pa.table({"n": list(range(100))})
    pq.write_table(table, root / "groups.parquet", row_group_size=30)
    page = await read("groups.parquet", offset=25, limit=40)
    assert [r["n"] for r in page["rows"]] == list(range(25, 65))
    assert page["has_more"] is True
    last = await read("groups.parquet", offset=90, limit=40)
    assert [r["n"] for r in last["rows"]] == list(range(90, 100))
    assert last["has_more"] is False
    err = await failure({"operation": "read", "path": "groups.parquet", "max_rows": 99})
    assert err.type == "FileTooLarge" and err.details[0]["field"] == "max_rows"


async def test_parquet_mixed_column_needs_a_type(root: Path) -> None:
    err = await failure({"operation": "write", "path": "m.parquet", "rows": [{"a": 1}, {"a": "x"}]})
    assert err.type == "InvalidFileConfig" and "types.a" in err.message
    assert not (root / "m.parquet").exists()
    await write("m.parquet", rows=[{"a": 1}, {"a": "x"}], types={"a": "string"})
    assert (await read("m.parquet"))["rows"] == [{"a": "1"}, {"a": "x"}]


# --------------------------------------------------------------------------- JSON


async def test_json_array_and_json_lines(root: Path) -> None:
    rows = [{"id": "007", "amount": 1.1, "meta": {"k": [1, 2]}}, {"id": "008", "extra": True}]
    await write("a.json", rows=rows)
    content = json.loads((root / "a.json").read_text())
    assert content == rows  # absent keys stay absent
    await write("a.jsonl", rows=rows)
    lines = (root / "a.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == rows

    for name in ("a.json", "a.jsonl"):
        result = await read(name)
        assert result["columns"] == ["id", "amount", "meta", "extra"]
        assert result["rows"] == [
            {"id": "007", "amount": 1.1, "meta": {"k": [1, 2]}, "extra": None},
            {"id": "008", "amount": None, "meta": None, "extra": True},
        ]


async def test_json_as_text_keeps_numbers_as_written(root: Path) -> None:
    (root / "n.ndjson").write_text('{"amt": 1.10, "n": 12345678901234567890, "ok": false}\n\n')
    result = await read("n.ndjson", as_text=True)
    assert result["rows"] == [{"amt": "1.10", "n": "12345678901234567890", "ok": "false"}]
    # a .json file holding JSON lines is read as such
    (root / "lines.json").write_text('{"a": 1}\n{"a": 2}\n')
    assert (await read("lines.json"))["rows"] == [{"a": 1}, {"a": 2}]


# --------------------------------------------------------------------------- text


async def test_text_read_and_write(root: Path) -> None:
    written = await write("notes/readme.txt", text="Xin chào\nthế giới\n")
    assert "row_count" not in written
    result = await read("notes/readme.txt")
    assert result == {
        "path": str(root / "notes/readme.txt"),
        "format": "text",
        "text": "Xin chào\nthế giới\n",
        "size": written["size"],
        "sha256": written["sha256"],
    }
    (root / "big.txt").write_bytes(b"x" * 2048)
    err = await failure({"operation": "read", "path": "big.txt", "max_bytes": 1024})
    assert err.type == "FileTooLarge" and err.details[0]["field"] == "max_bytes"
    assert (await read("big.txt", max_bytes=2048))["text"] == "x" * 2048


# --------------------------------------------------------------------------- paging


async def test_paging_with_offset_limit_and_has_more(root: Path) -> None:
    await write("p.csv", columns=["n"], rows=[[str(i)] for i in range(25)])

    async def page(offset: int, limit: int) -> tuple[list[str], bool]:
        result = await read("p.csv", offset=offset, limit=limit)
        assert result["row_count"] == len(result["rows"])
        return [r["n"] for r in result["rows"]], result["has_more"]

    assert await page(0, 10) == ([str(i) for i in range(10)], True)
    assert await page(10, 10) == ([str(i) for i in range(10, 20)], True)
    assert await page(20, 10) == ([str(i) for i in range(20, 25)], False)
    assert await page(15, 10) == ([str(i) for i in range(15, 25)], False)
    assert await page(30, 10) == ([], False)
    assert await page(0, 0) == ([], True)


async def test_max_rows_guard_without_paging(root: Path) -> None:
    await write("m.csv", columns=["n"], rows=[[str(i)] for i in range(11)])
    err = await failure({"operation": "read", "path": "m.csv", "max_rows": 10})
    assert err.type == "FileTooLarge" and err.non_retryable
    assert err.details[0]["field"] == "max_rows" and "max_rows" in err.message
    assert (await read("m.csv", max_rows=11))["row_count"] == 11
    assert (await read("m.csv", max_rows=10, offset=1))["row_count"] == 10
    await write("m.json", rows=[{"n": i} for i in range(11)])
    err = await failure({"operation": "read", "path": "m.json", "max_rows": 10})
    assert err.type == "FileTooLarge"


async def test_unknown_column_names_it_and_lists_the_available_ones(root: Path) -> None:
    await write("u.csv", rows=ACCOUNTS)
    err = await failure({"operation": "read", "path": "u.csv", "columns": ["account", "amout"]})
    assert err.type == "InvalidFileConfig" and err.non_retryable
    assert err.details[0]["field"] == "columns[1]"
    assert "'amout'" in err.message and "account, name, amount, branch" in err.message
    await write("u.xlsx", rows=ACCOUNTS)
    await write("u.parquet", rows=ACCOUNTS)
    await write("u.jsonl", rows=ACCOUNTS)
    for name in ("u.xlsx", "u.parquet", "u.jsonl"):
        err = await failure({"operation": "read", "path": name, "columns": ["nope"]})
        assert err.details[0]["field"] == "columns[0]", name


async def test_large_read_and_write_heartbeat_progress(root: Path, activity) -> None:
    beats: list[Any] = []
    rows = [[str(i), f"name {i}"] for i in range(25_000)]
    with activity(heartbeats=beats):
        await write("big.csv", columns=["id", "name"], rows=rows)
        result = await read("big.csv", offset=24_990, limit=5)
    assert [r["id"] for r in result["rows"]] == ["24990", "24991", "24992", "24993", "24994"]
    assert ({"rows_written": 20_000},) in beats
    assert ({"rows_read": 20_000},) in beats


async def test_decimal_and_bytes_are_written_as_text(root: Path) -> None:
    await write(
        "d.csv",
        rows=[{"amount": Decimal("10.50"), "raw": b"\x01\x02", "at": date(2025, 1, 2)}],
    )
    assert (root / "d.csv").read_text() == "amount,raw,at\n10.50,AQI=,2025-01-02\n"


def test_json_safe_values_from_numpy_and_pandas() -> None:
    assert json_safe(np.int64(7)) == 7 and type(json_safe(np.int64(7))) is int
    assert json_safe(np.float32(0.5)) == 0.5 and type(json_safe(np.float32(0.5))) is float
    assert json_safe(np.float64("nan")) is None
    assert json_safe(np.bool_(True)) is True
    assert json_safe(pd.NaT) is None and json_safe(pd.NA) is None
    assert json_safe(pd.Timestamp("2025-06-01 01:02:03")) == "2025-06-01T01:02:03"
    assert json_safe(np.datetime64("2025-06-01T01:02:03")) == "2025-06-01T01:02:03"
    assert json_safe(Decimal("1.10")) == "1.10" and json_safe(Decimal("NaN")) is None
    assert json_safe(float("inf")) == "Infinity"
    assert json_safe({"a": (1, b"\xff")}) == {"a": [1, "/w=="]}
    assert json_safe(np.array([1, 2])) == [1, 2]
    assert text_of(12.0) == "12" and text_of(0.1) == "0.1" and text_of(True) == "true"
