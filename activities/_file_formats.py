"""Readers and writers of the ``file`` activity's formats, and the JSON-safe value rules.

Each reader takes an open binary file (already hashed by the caller) and returns the page of
rows the configuration asks for; each writer writes a whole file into a binary stream that the
caller turns into the target atomically. Readers never return a value that is not JSON-safe:
NaN/NaT/None become ``None``, numpy numbers Python numbers, dates and times ISO-8601 text,
decimals text, bytes base64 text.

Libraries: the standard ``csv`` module for CSV (exact text, precise line numbers, strict
quoting), python-calamine for Excel/ODS reading (the engine behind pandas' ``calamine``,
used directly to keep dates apart from date-times and empty cells apart from empty text),
xlsxwriter for Excel writing, pyarrow for Parquet, msgspec for JSON.
"""

from __future__ import annotations

import base64
import codecs
import csv
import io
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import python_calamine
import xlsxwriter

from cadenza.activities._context import heartbeat, in_activity, info
from cadenza.activities._file_config import (
    EXCEL_MAX_COLUMNS,
    EXCEL_MAX_ROWS,
    FileConfig,
    csv_delimiter,
    invalid_file,
    json_lines,
    text_codec,
    too_large,
)
from cadenza.history import InvalidArgumentError

__all__ = ["READERS", "WRITERS", "Table", "json_safe", "table_of", "text_of"]

HEARTBEAT_EVERY = 10_000
"""Rows between two progress heartbeats of a read or write."""

MISSING: Any = object()
"""A key absent from an object row (JSON writes leave it out; other formats write a blank)."""

_INT_RE = re.compile(r"[+-]?\d+")
_FLOAT_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_LEADING_ZERO_RE = re.compile(r"[+-]?0\d")
_MAX_NAMES_SHOWN = 40
_EXACT_FLOAT_INT = 2**53


# --------------------------------------------------------------------------- values


def json_safe(value: Any) -> Any:
    """``value`` as something JSON can hold, following the rules in the module docstring."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return float(value)
    if isinstance(value, Decimal):
        return None if value.is_nan() else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return _other_json_safe(value)


def _other_json_safe(value: Any) -> Any:
    # numpy and pandas scalars (from pyarrow's conversions) without importing either
    if _is_missing(value):
        return None
    if isinstance(value, timedelta):
        return _duration(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return json_safe(tolist())
    return str(value)


def _is_missing(value: Any) -> bool:
    try:
        return bool(value != value)  # NaN, NaT and pd.NA compare unequal to themselves
    except (TypeError, ValueError):
        return type(value).__name__ in ("NAType", "NaTType")


def _duration(value: timedelta) -> str:
    """ISO-8601 duration, e.g. ``PT1H30M`` or ``P2DT0.5S``."""
    total = value.total_seconds()
    sign = "-" if total < 0 else ""
    days, rest = divmod(abs(value), timedelta(days=1))
    hours, rest = divmod(rest, timedelta(hours=1))
    minutes, rest = divmod(rest, timedelta(minutes=1))
    seconds = rest.total_seconds()
    out = f"{sign}P{days}D" if days else f"{sign}P"
    clock = ""
    if hours:
        clock += f"{hours}H"
    if minutes:
        clock += f"{minutes}M"
    if seconds or not (days or hours or minutes):
        clock += f"{seconds:g}S"
    return out + (f"T{clock}" if clock else "")


def text_of(value: Any) -> str | None:
    """``value`` as the text a person sees in the file (``as_text``); ``None`` stays ``None``.

    Whole numbers lose a spurious ``.0`` (Excel stores every number as a float), booleans are
    ``true``/``false``, dates ISO-8601, nested values JSON.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer() and abs(value) < _EXACT_FLOAT_INT:
            return str(int(value))
        return repr(value)
    if isinstance(value, dict | list | tuple):
        return msgspec.json.encode(json_safe(value)).decode()
    safe = json_safe(value)
    return None if safe is None else str(safe)


def _excel_value(value: Any) -> Any:
    if value == "":
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < _EXACT_FLOAT_INT:
        return int(value)
    return json_safe(value)


# --------------------------------------------------------------------------- paging


@dataclass
class _Page:
    """Collects the rows of one page: ``offset``, then ``limit`` (or at most ``max_rows``)."""

    path: Path
    offset: int
    limit: int
    paged: bool
    max_rows: int
    rows: list[Any] = field(default_factory=list)
    seen: int = 0
    has_more: bool = False

    @classmethod
    def of(cls, path: Path, config: FileConfig) -> _Page:
        paged = config.limit is not None
        return cls(
            path=path,
            offset=config.offset,
            limit=config.limit if config.limit is not None else config.max_rows,
            paged=paged,
            max_rows=config.max_rows,
        )

    @property
    def wanted(self) -> int:
        """Rows that must be looked at: the offset, the page, and one more for ``has_more``."""
        return self.offset + self.limit + 1

    def skipping(self) -> bool:
        """True (and counts the row) while the row at hand lies before ``offset``."""
        if self.seen < self.offset:
            self.seen += 1
            self._progress()
            return True
        return False

    def add(self, row: Any) -> bool:
        """Take one row at or after ``offset``; False once the page is full."""
        self.seen += 1
        self._progress()
        if len(self.rows) < self.limit:
            self.rows.append(row)
            return True
        if not self.paged:
            raise too_large(
                self.path,
                "max_rows",
                self.max_rows,
                f"has more than {self.max_rows} rows after offset {self.offset}",
            )
        self.has_more = True
        return False

    def _progress(self) -> None:
        if self.seen % HEARTBEAT_EVERY == 0 and in_activity():
            heartbeat({"rows_read": self.seen})


def _unique_names(names: list[str]) -> list[str]:
    """Column names made unique the way pandas does it (``a``, ``a.1``, ``a.2``)."""
    seen: dict[str, int] = {}
    out: list[str] = []
    taken = set(names)
    for name in names:
        if name in seen:
            n = seen[name]
            candidate = f"{name}.{n}"
            while candidate in taken:
                n += 1
                candidate = f"{name}.{n}"
            seen[name] = n + 1
            taken.add(candidate)
            out.append(candidate)
        else:
            seen[name] = 1
            out.append(name)
    return out


def _select(available: list[str], wanted: list[str] | None, path: Path) -> list[int]:
    """Indices of the wanted columns in ``available`` (all of them by default)."""
    if wanted is None:
        return list(range(len(available)))
    index = {name: i for i, name in enumerate(available)}
    out: list[int] = []
    for i, name in enumerate(wanted):
        if name not in index:
            shown = ", ".join(available[:_MAX_NAMES_SHOWN])
            more = (
                f" and {len(available) - _MAX_NAMES_SHOWN} more"
                if (len(available) > _MAX_NAMES_SHOWN)
                else ""
            )
            raise InvalidArgumentError(
                f"columns[{i}]",
                f"no column {name!r} in {path}; its columns are: {shown or '(none)'}{more}",
            )
        out.append(index[name])
    return out


def _result(columns: list[str], page: _Page) -> dict[str, Any]:
    rows = [dict(zip(columns, row, strict=True)) for row in page.rows]
    return {"columns": columns, "rows": rows, "row_count": len(rows), "has_more": page.has_more}


# --------------------------------------------------------------------------- decoding errors


def read_codec(config: FileConfig) -> str:
    """The codec to decode with: ``utf-8`` skips a leading byte-order mark."""
    name = text_codec(config.encoding)
    return "utf-8-sig" if name == "utf-8" else name


def decode_error(fh: BinaryIO, path: Path, encoding: str, label: str) -> Exception:
    """An ``InvalidFile`` error naming the line and byte offset of the first undecodable bytes.

    Decoders report positions relative to the chunk they were given, so the file is scanned
    again from the start to find the absolute position.
    """
    fh.seek(0)
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    for line_no, line in enumerate(fh, start=1):
        pending = len(decoder.getstate()[0])
        try:
            decoder.decode(line)
        except UnicodeDecodeError as exc:
            position = offset - pending + exc.start
            bad = exc.object[exc.start : exc.end].hex(" ")
            reason = (
                f"line {line_no}, byte {position}: bytes {bad} are not valid {label} "
                f"({exc.reason}); give the file's encoding (e.g. cp1258, latin-1, utf-16)"
            )
            return invalid_file(path, reason, line=line_no, byte=position, encoding=label)
        offset += len(line)
    return invalid_file(path, f"cannot be decoded as {label}", encoding=label)


# --------------------------------------------------------------------------- readers


def read_csv(fh: BinaryIO, path: Path, config: FileConfig) -> dict[str, Any]:
    """Read a CSV page: every cell text, unless ``infer_types``."""
    encoding = read_codec(config)
    text = io.TextIOWrapper(fh, encoding=encoding, newline="")
    try:
        return _read_csv(text, path, config)
    except UnicodeDecodeError:
        raise decode_error(fh, path, encoding, config.encoding) from None
    finally:
        text.detach()


def _read_csv(text: io.TextIOWrapper, path: Path, config: FileConfig) -> dict[str, Any]:
    skipped = 0
    while skipped < config.skip_rows and text.readline():
        skipped += 1
    reader = csv.reader(text, delimiter=csv_delimiter(config), strict=True)
    page = _Page.of(path, config)
    names: list[str] | None = None
    picks: list[int] = []
    try:
        for record in reader:
            if not record:  # a blank line
                continue
            if names is None:
                if config.header:
                    names = _unique_names([n or f"col{i + 1}" for i, n in enumerate(record)])
                    picks = _select(names, config.columns, path)
                    continue
                names = [f"col{i + 1}" for i in range(len(record))]
                picks = _select(names, config.columns, path)
            if len(record) != len(names):
                line = skipped + reader.line_num
                raise invalid_file(
                    path,
                    f"line {line}: {len(record)} fields, expected {len(names)} "
                    f"(as {'the header' if config.header else 'the first row'} has)",
                    line=line,
                )
            if page.skipping():
                continue
            if not page.add([record[i] for i in picks]):
                break
    except csv.Error as exc:
        line = skipped + reader.line_num
        raise invalid_file(path, f"line {line}: {exc}", line=line) from None
    columns = [names[i] for i in picks] if names is not None else list(config.columns or [])
    if names is None and config.columns:
        _select([], config.columns, path)
    if config.infer_types:
        _infer_types(page.rows, len(columns))
    return _result(columns, page)


def _infer_types(rows: list[list[Any]], width: int) -> None:
    """Turn text columns into int, float or bool where every non-empty value is one."""
    for j in range(width):
        values = [row[j] for row in rows if row[j] != ""]
        convert: Callable[[str], Any] | None = None
        if values and not any(_LEADING_ZERO_RE.match(v) for v in values):
            if all(_INT_RE.fullmatch(v) for v in values):
                convert = int
            elif all(_FLOAT_RE.fullmatch(v) for v in values):
                convert = float
        if convert is None and values and all(v.lower() in ("true", "false") for v in values):
            convert = _true
        for row in rows:
            cell = row[j]
            row[j] = None if cell == "" else convert(cell) if convert else cell


def _true(value: str) -> bool:
    return value.lower() == "true"


def read_excel(fh: BinaryIO, path: Path, config: FileConfig) -> dict[str, Any]:
    """Read an Excel/ODS sheet page with calamine: typed cells, or text with ``as_text``.

    Rows are converted to Python up to the end of the page only; empty rows do not count, so
    when they made the first slice too short, a longer one is taken.
    """
    try:
        workbook = python_calamine.CalamineWorkbook.from_filelike(fh)
    except (python_calamine.CalamineError, ValueError) as exc:
        raise invalid_file(path, f"not a readable Excel or ODS workbook: {exc}") from None
    try:
        sheet_name = _sheet_name(list(workbook.sheet_names), config.sheet, path)
        try:
            sheet = workbook.get_sheet_by_name(sheet_name)
            height = config.skip_rows + 1 + _Page.of(path, config).wanted
            while True:
                data = sheet.to_python(skip_empty_area=False, nrows=height)
                columns, page = _excel_page(data, path, config)
                if page.has_more or len(page.rows) >= page.limit or len(data) < height:
                    break
                height *= 2
        except python_calamine.CalamineError as exc:
            raise invalid_file(path, f"sheet {sheet_name!r} cannot be read: {exc}") from None
    finally:
        workbook.close()
    return {"sheet": sheet_name, **_result(columns, page)}


def _excel_page(data: list[list[Any]], path: Path, config: FileConfig) -> tuple[list[str], _Page]:
    records = iter(data[config.skip_rows :])
    width = max((len(r) for r in data), default=0)
    if config.header:
        head = next(records, [])
        columns = _unique_names(
            [text_of(_excel_value(v)) or f"col{i + 1}" for i, v in enumerate(head)]
        )
        columns += [f"col{i + 1}" for i in range(len(columns), width)]
    else:
        columns = [f"col{i + 1}" for i in range(width)]
    picks = _select(columns, config.columns, path)
    convert = _excel_text if config.as_text else _excel_value
    page = _Page.of(path, config)
    for record in records:
        if all(v == "" for v in record):  # an empty row
            continue
        if page.skipping():
            continue
        cells = list(record) + [""] * (width - len(record))
        if not page.add([convert(cells[i]) for i in picks]):
            break
    return [columns[i] for i in picks], page


def _excel_text(value: Any) -> str | None:
    return text_of(_excel_value(value))


def _sheet_name(names: list[str], sheet: str | int | None, path: Path) -> str:
    if not names:
        raise invalid_file(path, "the workbook has no sheets")
    if sheet is None:
        return names[0]
    if isinstance(sheet, int):
        if sheet >= len(names):
            raise InvalidArgumentError(
                "sheet", f"index {sheet} is out of range: {path} has {len(names)} sheet(s): "
                f"{', '.join(names)}",
            )  # fmt: skip
        return names[sheet]
    if sheet not in names:
        raise InvalidArgumentError(
            "sheet", f"no sheet {sheet!r} in {path}; its sheets are: {', '.join(names)}"
        )
    return sheet


def read_parquet(fh: BinaryIO, path: Path, config: FileConfig) -> dict[str, Any]:
    """Read a Parquet page, row group by row group (groups before ``offset`` are not read)."""
    try:
        parquet = pq.ParquetFile(fh)
    except (pa.ArrowException, ValueError) as exc:
        raise invalid_file(path, f"not a readable Parquet file: {exc}") from None
    with parquet:
        available = list(parquet.schema_arrow.names)
        picks = _select(available, config.columns, path)
        columns = [available[i] for i in picks]
        total = parquet.metadata.num_rows
        page = _Page.of(path, config)
        if config.limit is None and total - config.offset > config.max_rows:
            raise too_large(
                path, "max_rows", config.max_rows,
                f"has {total} rows ({max(total - config.offset, 0)} after offset "
                f"{config.offset})",
            )  # fmt: skip
        convert = text_of if config.as_text else json_safe
        start = 0
        try:
            for group in range(parquet.num_row_groups):
                size = parquet.metadata.row_group(group).num_rows
                first, start = start, start + size
                if start <= config.offset:
                    continue
                if len(page.rows) >= page.limit:
                    break
                table = parquet.read_row_group(group, columns=columns)
                skip = max(config.offset - first, 0)
                take = min(size - skip, page.limit - len(page.rows))
                part = table.slice(skip, take)
                values = [part.column(c).to_pylist() for c in columns]
                page.rows.extend([convert(col[r]) for col in values] for r in range(part.num_rows))
                if in_activity():
                    heartbeat({"rows_read": first + skip + take})
        except (pa.ArrowException, OSError, ValueError) as exc:
            # pyarrow reports corrupt data as OSError without an errno; a real I/O error of
            # the file object has one (and stays retryable).
            if isinstance(exc, OSError) and exc.errno is not None:
                raise
            raise invalid_file(path, f"corrupt Parquet data: {exc}") from None
    page.has_more = config.offset + len(page.rows) < total
    return _result(columns, page)


def read_json(fh: BinaryIO, path: Path, config: FileConfig) -> dict[str, Any]:
    """Read a JSON array of objects, or JSON lines (one object per line)."""
    encoding = read_codec(config)
    text = io.TextIOWrapper(fh, encoding=encoding)
    decoder = msgspec.json.Decoder(float_hook=Decimal if config.as_text else None)
    page = _Page.of(path, config)
    try:
        first = ""
        while not first:
            chunk = text.read(1)
            if not chunk:
                break
            if not chunk.isspace():
                first = chunk
        text.seek(0)
        if first == "[":
            objects: Iterable[tuple[str, Any]] = _json_array(text.read(), decoder, path)
        else:
            objects = _json_lines(text, decoder, path)
        for where, obj in objects:
            if not isinstance(obj, dict):
                raise invalid_file(
                    path, f"{where}: expected a JSON object, got {type(obj).__name__}"
                )
            if page.skipping():
                continue
            if not page.add(obj):
                break
    except UnicodeDecodeError:
        raise decode_error(fh, path, encoding, config.encoding) from None
    finally:
        text.detach()
    columns: list[str] = list(dict.fromkeys(k for obj in page.rows for k in obj))
    if page.rows:
        columns = [columns[i] for i in _select(columns, config.columns, path)]
    elif config.columns is not None:
        columns = list(config.columns)
    convert = text_of if config.as_text else json_safe
    page.rows = [[convert(obj.get(c)) for c in columns] for obj in page.rows]
    return _result(columns, page)


def _json_array(
    content: str, decoder: msgspec.json.Decoder[Any], path: Path
) -> Iterable[tuple[str, Any]]:
    try:
        items = decoder.decode(content)
    except msgspec.DecodeError as exc:
        raise invalid_file(path, f"invalid JSON: {exc}") from None
    return ((f"item {i}", item) for i, item in enumerate(items))


def _json_lines(
    text: io.TextIOWrapper, decoder: msgspec.json.Decoder[Any], path: Path
) -> Iterable[tuple[str, Any]]:
    for line_no, line in enumerate(text, start=1):
        if not line.strip():
            continue
        try:
            yield f"line {line_no}", decoder.decode(line)
        except msgspec.DecodeError as exc:
            raise invalid_file(path, f"line {line_no}: invalid JSON: {exc}", line=line_no) from None


def read_text(fh: BinaryIO, path: Path, config: FileConfig) -> dict[str, Any]:
    """Read a whole text file (the caller has checked ``max_bytes``)."""
    encoding = read_codec(config)
    data = fh.read(config.max_bytes + 1)
    if len(data) > config.max_bytes:  # grew since it was measured
        raise too_large(path, "max_bytes", config.max_bytes, "is larger than max_bytes")
    try:
        return {"text": data.decode(encoding)}
    except UnicodeDecodeError:
        raise decode_error(fh, path, encoding, config.encoding) from None


READERS: dict[str, Callable[[BinaryIO, Path, FileConfig], dict[str, Any]]] = {
    "csv": read_csv,
    "excel": read_excel,
    "parquet": read_parquet,
    "json": read_json,
    "text": read_text,
}


# --------------------------------------------------------------------------- rows to write


@dataclass
class Table:
    """Rows to write, as lists in column order (``MISSING`` where an object lacked a key)."""

    columns: list[str]
    rows: list[list[Any]]
    types: dict[str, str]


def table_of(config: FileConfig) -> Table:
    """The rows of a write as a :class:`Table`, with ``types`` applied.

    Raises:
        InvalidArgumentError: naming the row, column or type that is wrong.
    """
    given = config.rows or []
    if config.columns is not None:
        columns = list(config.columns)
    else:
        columns = list(dict.fromkeys(k for row in given if isinstance(row, dict) for k in row))
    rows = [
        [row.get(c, MISSING) for c in columns] if isinstance(row, dict) else list(row)
        for row in given
    ]
    for name, kind in config.types.items():
        if name not in columns:
            raise InvalidArgumentError(f"types.{name}", "no such column among the rows")
        j = columns.index(name)
        for i, row in enumerate(rows):
            if row[j] is not MISSING:
                row[j] = _typed(row[j], kind, f"rows[{i}].{name}")
    return Table(columns=columns, rows=rows, types=dict(config.types))


def _typed(value: Any, kind: str, where: str) -> Any:
    if value is None or (value == "" and kind != "string"):
        return None
    try:
        return _CONVERTERS[kind](value)
    except (ValueError, TypeError, InvalidOperation, OverflowError):
        raise InvalidArgumentError(where, f"{value!r} is not a valid {kind}") from None


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
        return int(value.strip())
    raise ValueError


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, int | float | Decimal):
        return float(value)
    if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
        return float(value)
    raise ValueError


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise ValueError


def _to_date(value: Any) -> date:
    if isinstance(value, datetime):
        raise TypeError
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value.strip())
    raise TypeError


def _to_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        return datetime.fromisoformat(value.strip())
    raise TypeError


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise TypeError
    result = Decimal(value.strip() if isinstance(value, str) else str(value))
    if not result.is_finite():
        raise ValueError
    return result


def _to_string(value: Any) -> str | None:
    return text_of(value)


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "string": _to_string,
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "date": _to_date,
    "datetime": _to_datetime,
    "decimal": _to_decimal,
}


def _write_progress(i: int) -> None:
    if i and i % HEARTBEAT_EVERY == 0 and in_activity():
        heartbeat({"rows_written": i})


def _encoding_error(exc: UnicodeEncodeError, encoding: str, where: str) -> InvalidArgumentError:
    bad = exc.object[exc.start : exc.end]
    return InvalidArgumentError(
        "encoding", f"{where}: {bad!r} cannot be written in {encoding}; use utf-8 or utf-8-sig"
    )


# --------------------------------------------------------------------------- writers


def write_csv(out: BinaryIO, table: Table, config: FileConfig, *, header: bool) -> None:
    """Write rows as CSV (``\\n`` line ends, minimal quoting); ``header`` adds the names."""
    encoding = text_codec(config.encoding)
    text = io.TextIOWrapper(out, encoding=encoding, newline="", write_through=True)
    writer = csv.writer(text, delimiter=csv_delimiter(config), lineterminator="\n")
    try:
        if header:
            try:
                writer.writerow(table.columns)
            except UnicodeEncodeError as exc:
                raise _encoding_error(exc, encoding, "the header") from None
        for i, row in enumerate(table.rows):
            try:
                writer.writerow([_csv_cell(v) for v in row])
            except UnicodeEncodeError as exc:
                raise _encoding_error(exc, encoding, f"rows[{i}]") from None
            _write_progress(i + 1)
        text.flush()
    finally:
        text.detach()


def _csv_cell(value: Any) -> str:
    if value is None or value is MISSING:
        return ""
    return text_of(value) or ""


def write_json(out: BinaryIO, table: Table, config: FileConfig) -> None:
    """Write rows as a JSON array (one object per line inside it) or as JSON lines."""
    encoder = msgspec.json.Encoder(enc_hook=_json_hook, decimal_format="string")
    encoding = text_codec(config.encoding)
    lines = json_lines(config)

    def emit(data: bytes, where: str) -> None:
        if encoding != "utf-8":
            try:
                data = data.decode("utf-8").encode(encoding)
            except UnicodeEncodeError as exc:
                raise _encoding_error(exc, encoding, where) from None
        out.write(data)

    if not lines:
        emit(b"[\n" if table.rows else b"[", "")
    for i, row in enumerate(table.rows):
        obj = {c: v for c, v in zip(table.columns, row, strict=True) if v is not MISSING}
        sep = b"\n" if lines or i == len(table.rows) - 1 else b",\n"
        emit(encoder.encode(obj) + sep, f"rows[{i}]")
        _write_progress(i + 1)
    if not lines:
        emit(b"]\n", "")


def _json_hook(value: Any) -> Any:
    safe = json_safe(value)
    if safe is value:
        raise NotImplementedError(f"cannot encode {type(value).__name__}")
    return safe


def write_text(out: BinaryIO, text: str, config: FileConfig) -> None:
    """Write text in the configured encoding."""
    encoding = text_codec(config.encoding)
    try:
        out.write(text.encode(encoding))
    except UnicodeEncodeError as exc:
        raise _encoding_error(exc, encoding, "text") from None


def write_excel(out: BinaryIO, table: Table, config: FileConfig) -> None:
    """Write one sheet with xlsxwriter: typed cells, text never turned into numbers,
    formulas or links, a bold frozen header row and fitted column widths."""
    if len(table.rows) + (1 if config.header else 0) > EXCEL_MAX_ROWS:
        raise InvalidArgumentError(
            "rows", f"{len(table.rows)} rows; an Excel sheet holds at most {EXCEL_MAX_ROWS}"
        )
    if len(table.columns) > EXCEL_MAX_COLUMNS:
        raise InvalidArgumentError(
            "columns", f"{len(table.columns)} columns; Excel allows {EXCEL_MAX_COLUMNS}"
        )
    workbook = xlsxwriter.Workbook(
        out,
        {
            "strings_to_numbers": False,
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "remove_timezone": True,
        },
    )
    # The creation time is part of the file: take one that every attempt of the activity
    # shares, so a retry writes the same bytes and recognises its earlier write.
    created = info().scheduled_time if in_activity() else datetime.now(UTC)
    workbook.set_properties({"created": created.astimezone(UTC).replace(tzinfo=None)})
    try:
        sheet = workbook.add_worksheet(config.sheet if isinstance(config.sheet, str) else None)
        formats = {
            "date": workbook.add_format({"num_format": "yyyy-mm-dd"}),
            "datetime": workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"}),
            "time": workbook.add_format({"num_format": "hh:mm:ss"}),
        }
        first = 0
        if config.header:
            bold = workbook.add_format({"bold": True})
            for j, name in enumerate(table.columns):
                sheet.write_string(0, j, name, bold)
            sheet.freeze_panes(1, 0)
            first = 1
        for i, row in enumerate(table.rows):
            for j, value in enumerate(row):
                _excel_cell(sheet, first + i, j, value, formats, f"rows[{i}].{table.columns[j]}")
            _write_progress(i + 1)
        sheet.autofit()
    finally:
        workbook.close()


def _excel_cell(
    sheet: Any, r: int, c: int, value: Any, formats: dict[str, Any], where: str
) -> None:
    if value is None or value is MISSING:
        return
    if isinstance(value, bool):
        sheet.write_boolean(r, c, value)
    elif isinstance(value, int) and abs(value) >= _EXACT_FLOAT_INT:
        sheet.write_string(r, c, str(value))  # a double would change the digits
    elif isinstance(value, int | float | Decimal):
        number = float(value)
        if math.isfinite(number):
            sheet.write_number(r, c, number)
    elif isinstance(value, datetime):
        sheet.write_datetime(r, c, value, formats["datetime"])
    elif isinstance(value, date):
        sheet.write_datetime(r, c, value, formats["date"])
    elif isinstance(value, time):
        sheet.write_datetime(r, c, value, formats["time"])
    else:
        text = value if isinstance(value, str) else text_of(value) or ""
        if len(text) > 32767:
            raise InvalidArgumentError(where, "an Excel cell holds at most 32767 characters")
        sheet.write_string(r, c, text)


def write_parquet(out: BinaryIO, table: Table, config: FileConfig) -> None:
    """Write a Parquet file (snappy); a column's type is inferred from its values or ``types``."""
    arrays = []
    for j, name in enumerate(table.columns):
        values = [None if row[j] is MISSING else row[j] for row in table.rows]
        kind = table.types.get(name)
        values = _utc_timestamps(name, values)
        try:
            arrays.append(pa.array(values, type=_ARROW_TYPES.get(kind or "")))
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            raise InvalidArgumentError(
                "rows", f"column {name!r} cannot be stored in Parquet: {exc}; give its type "
                f"in types.{name} (or make its values one type)",
            ) from None  # fmt: skip
    pq.write_table(pa.Table.from_arrays(arrays, names=table.columns), out)


def _utc_timestamps(name: str, values: list[Any]) -> list[Any]:
    """Date-times with an offset as UTC (pyarrow would take the first value's offset)."""
    aware = [isinstance(v, datetime) and v.tzinfo is not None for v in values]
    if not any(aware):
        return values
    if any(isinstance(v, datetime) and not a for v, a in zip(values, aware, strict=True)):
        raise InvalidArgumentError(
            "rows", f"column {name!r} mixes date-times with and without a UTC offset"
        )
    return [v.astimezone(UTC) if a else v for v, a in zip(values, aware, strict=True)]


_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
}


WRITERS: dict[str, Callable[[BinaryIO, Table, FileConfig], None]] = {
    "excel": write_excel,
    "parquet": write_parquet,
    "json": write_json,
}
