"""Configuration of the built-in ``file`` activity: the struct, its validation and its errors.

Everything here is pure: no file is opened. ``validate_file_config`` checks what can be checked
from the configuration alone, so a job file with a typo fails before any disk is touched.
"""

from __future__ import annotations

import codecs
import errno
from pathlib import PurePath
from typing import Any, Literal, get_args

import msgspec

from cadenza.activities._config_convert import validation_error_field
from cadenza.history import ApplicationError, InvalidArgumentError

__all__ = [
    "DEFAULT_MAX_FILES",
    "DEFAULT_MAX_ROWS",
    "DEFAULT_MAX_TEXT_BYTES",
    "FileConfig",
    "validate_file_config",
]

DEFAULT_MAX_ROWS = 100_000
"""Default ``max_rows``: the most rows one ``read`` returns without paging."""

DEFAULT_MAX_TEXT_BYTES = 1024 * 1024
"""Default ``max_bytes``: the largest file the ``text`` format reads (1 MiB)."""

DEFAULT_MAX_FILES = 10_000
"""Default ``max_files``: the most entries one ``list`` returns."""

EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_COLUMNS = 16_384

Operation = Literal["read", "write", "list", "move", "copy", "delete"]
Format = Literal["csv", "excel", "parquet", "json", "text"]
IfExists = Literal["error", "replace", "append"]
ColumnType = Literal["string", "int", "float", "bool", "date", "datetime", "decimal"]

_EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "text",
    ".xlsx": "excel",
    ".xlsm": "excel",
    ".xls": "excel",
    ".ods": "excel",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
}
_EXCEL_WRITABLE = (".xlsx", ".xlsm")
_JSON_LINES_EXTENSIONS = (".jsonl", ".ndjson")
_SHEET_NAME_FORBIDDEN = set("[]:*?/\\")


class FileConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Configuration of the ``file`` activity: one operation on the worker's local disk.

    Every path is confined to the worker's file roots (``CADENZA_FILE_ROOTS``; see
    ``cadenza.activities._local_paths``). An option that the chosen operation or format does
    not use is an error, so a misplaced option never goes unnoticed.

    Attributes:
        operation: ``read``, ``write``, ``list``, ``move``, ``copy`` or ``delete``.
        path: The file (the directory for ``list``); relative paths are under the first root.
        format: ``csv``, ``excel``, ``parquet``, ``json`` or ``text``; default: from the
            extension of ``path`` (``.csv .tsv`` csv, ``.txt`` text, ``.xlsx .xlsm .xls .ods``
            excel, ``.parquet .pq`` parquet, ``.json .jsonl .ndjson`` json).
        delimiter: CSV field separator, one character (``\\t`` or ``tab`` for a tab); default
            ``,``, or a tab for ``.tsv``.
        encoding: Text encoding of CSV, JSON and text files (any Python codec: ``utf-8``,
            ``utf-8-sig``, ``cp1258``, ``latin-1``, ...); default ``utf-8`` (a leading BOM is
            skipped on read; none is written).
        header: Whether the first row (after ``skip_rows``) holds the column names; default
            True. Without a header the columns are named ``col1`` .. ``colN``.
        skip_rows: Lines (CSV) or sheet rows (Excel) before the header to skip; default 0.
        sheet: Excel sheet, by name or 0-based index; default the first sheet on read and
            ``Sheet1`` on write.
        columns: On read, the columns to return, in this order (an unknown one is an error). On
            write, the column order; required when ``rows`` are lists.
        max_rows: Most rows a read may return when no ``limit`` is given; a file with more is
            an error (``FileTooLarge``). Default 100000.
        offset: Rows to skip before the page (after the header); default 0.
        limit: Page size. With it, a read returns at most ``limit`` rows and ``has_more``
            tells whether more follow; it may not exceed ``max_rows``.
        as_text: Return every cell as text (Excel numbers without a spurious ``.0``, dates as
            ISO-8601, JSON numbers as written); default False. CSV cells are text anyway.
        infer_types: CSV only: turn columns whose values are all integers, decimals or
            ``true``/``false`` into numbers or booleans (never a column with leading zeros);
            empty cells become null. Default False: every CSV cell stays text.
        max_bytes: The ``text`` format: largest file read, in bytes; default 1 MiB.
        rows: On write, the rows: objects (``{column: value}``), or lists with ``columns``.
        text: On write with the ``text`` format: the content.
        types: On write, column types: ``string``, ``int``, ``float``, ``bool``, ``date``,
            ``datetime`` (ISO-8601 text is parsed) or ``decimal``. Excel and Parquet store
            them as typed cells and columns; CSV and JSON write their text form.
        json_lines: JSON write: one object per line instead of one array; default: True for
            ``.jsonl`` and ``.ndjson``, else False.
        if_exists: When the target exists: ``error`` (default), ``replace``, or ``append``
            (write only; CSV, JSON lines and text).
        create_dirs: Create missing parent directories of the target; default True.
        pattern: ``list``: glob matched against file names; default ``*``.
        recursive: ``list``: descend into subdirectories; default False.
        max_files: ``list``: most files listed; more is an error. Default 10000.
        to: ``move`` and ``copy``: the destination file.
        missing_ok: ``delete``: succeed when the file does not exist; default True.
    """

    operation: Operation
    path: str
    format: Format | None = None
    delimiter: str | None = None
    encoding: str = "utf-8"
    header: bool = True
    skip_rows: int = 0
    sheet: str | int | None = None
    columns: list[str] | None = None
    max_rows: int = DEFAULT_MAX_ROWS
    offset: int = 0
    limit: int | None = None
    as_text: bool = False
    infer_types: bool = False
    max_bytes: int = DEFAULT_MAX_TEXT_BYTES
    rows: list[Any] | None = None
    text: str | None = None
    types: dict[str, ColumnType] = {}
    json_lines: bool | None = None
    if_exists: IfExists = "error"
    create_dirs: bool = True
    pattern: str = "*"
    recursive: bool = False
    max_files: int = DEFAULT_MAX_FILES
    to: str | None = None
    missing_ok: bool = True

    def __repr__(self) -> str:
        shown = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value == _DEFAULTS.get(name, _NO_DEFAULT):
                continue
            if name == "rows" and value is not None:
                shown.append(f"rows=<{len(value)} rows>")
            elif name == "text" and value is not None:
                shown.append(f"text=<{len(value)} chars>")
            else:
                shown.append(f"{name}={value!r}")
        return f"FileConfig({', '.join(shown)})"


_NO_DEFAULT = object()
_DEFAULTS: dict[str, Any] = {
    f.name: f.default_factory() if f.default_factory is not msgspec.NODEFAULT else f.default
    for f in msgspec.structs.fields(FileConfig)
    if f.default is not msgspec.NODEFAULT or f.default_factory is not msgspec.NODEFAULT
}

_COMMON = {"operation", "path"}
_OPERATION_FIELDS: dict[str, set[str]] = {
    "read": _COMMON
    | {
        "format", "delimiter", "encoding", "header", "skip_rows", "sheet", "columns",
        "max_rows", "offset", "limit", "as_text", "infer_types", "max_bytes",
    },
    "write": _COMMON
    | {
        "format", "delimiter", "encoding", "header", "sheet", "columns", "rows", "text",
        "types", "json_lines", "if_exists", "create_dirs",
    },
    "list": _COMMON | {"pattern", "recursive", "max_files"},
    "move": _COMMON | {"to", "if_exists", "create_dirs"},
    "copy": _COMMON | {"to", "if_exists", "create_dirs"},
    "delete": _COMMON | {"missing_ok"},
}  # fmt: skip
_TABULAR: tuple[Format, ...] = ("csv", "excel", "parquet", "json")
_FORMAT_FIELDS: dict[str, tuple[Format, ...]] = {
    "delimiter": ("csv",),
    "encoding": ("csv", "json", "text"),
    "header": ("csv", "excel"),
    "skip_rows": ("csv", "excel"),
    "sheet": ("excel",),
    "infer_types": ("csv",),
    "max_bytes": ("text",),
    "json_lines": ("json",),
    "text": ("text",),
    "columns": _TABULAR,
    "rows": _TABULAR,
    "types": _TABULAR,
    "max_rows": _TABULAR,
    "offset": _TABULAR,
    "limit": _TABULAR,
    "as_text": _TABULAR,
}


# --------------------------------------------------------------------------- errors


def config_error(exc: InvalidArgumentError) -> ApplicationError:
    """The non-retryable ``InvalidFileConfig`` failure for a bad field."""
    return ApplicationError(
        f"invalid file configuration: {exc}",
        {"field": exc.field, "reason": exc.reason},
        type="InvalidFileConfig",
        non_retryable=True,
    )


def invalid_file(path: object, reason: str, **details: Any) -> ApplicationError:
    """The non-retryable ``InvalidFile`` failure: the file's content cannot be read as asked."""
    return ApplicationError(
        f"{path}: {reason}",
        {"path": str(path), "reason": reason, **details},
        type="InvalidFile",
        non_retryable=True,
    )


def too_large(path: object, field: str, limit: int, reason: str) -> ApplicationError:
    """The non-retryable ``FileTooLarge`` failure, naming the limit that was exceeded."""
    return ApplicationError(
        f"{path}: {reason}; raise {field} (now {limit}) or read it in pages",
        {"path": str(path), "field": field, "limit": limit, "reason": reason},
        type="FileTooLarge",
        non_retryable=True,
    )


def os_error(exc: OSError, path: object = None) -> ApplicationError:
    """Classify a file-system error: missing file, permission and "is a directory" problems
    are not retryable; disk full and other I/O errors are (another attempt may succeed)."""
    where = exc.filename if exc.filename is not None else path
    reason = exc.strerror or str(exc)
    details = {"path": str(where), "errno": exc.errno, "reason": reason}
    if isinstance(exc, FileNotFoundError):
        return ApplicationError(
            f"{where}: file not found", details, type="FileNotFound", non_retryable=True
        )
    if isinstance(exc, PermissionError):
        return ApplicationError(
            f"{where}: permission denied", details, type="FilePermissionDenied",
            non_retryable=True,
        )  # fmt: skip
    if isinstance(exc, FileExistsError):
        return ApplicationError(
            f"{where}: already exists (if_exists is error)",
            details,
            type="FileExists",
            non_retryable=True,
        )
    if isinstance(exc, IsADirectoryError | NotADirectoryError):
        return ApplicationError(
            f"{where}: {reason}", details, type="InvalidFileConfig", non_retryable=True
        )
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ApplicationError(f"{where}: {reason}", details, type="DiskFull")
    return ApplicationError(f"{where}: {reason}", details, type="FileSystemError")


# --------------------------------------------------------------------------- validation


def coerce_file_config(config: Any) -> FileConfig:
    """Convert a mapping (a job step's ``config``) into a :class:`FileConfig`.

    Raises:
        InvalidArgumentError: naming the unknown or mistyped field.
    """
    if isinstance(config, FileConfig):
        return config
    if not isinstance(config, dict):
        raise InvalidArgumentError(
            "config", f"expected a FileConfig or a mapping, got {type(config).__name__}"
        )
    try:
        return msgspec.convert(config, FileConfig)
    except msgspec.ValidationError as exc:
        path, message = validation_error_field(exc)
        if path == "types[...]" and isinstance(config.get("types"), dict):
            kinds = get_args(ColumnType)
            bad = next((k for k, v in config["types"].items() if v not in kinds), None)
            path, message = f"types.{bad}", f"{message}; use one of: {', '.join(kinds)}"
        raise InvalidArgumentError(path or "config", message) from None


def infer_format(path: str, field: str = "path") -> Format:
    """The format that the extension of ``path`` implies."""
    suffix = PurePath(path).suffix.lower()
    found = _EXTENSIONS.get(suffix)
    if found is None:
        known = " ".join(sorted(_EXTENSIONS))
        raise InvalidArgumentError(
            "format",
            f"cannot tell the format of {path!r} from its extension ({suffix or 'none'}; "
            f"known: {known}); give format",
        )
    return found


def text_codec(encoding: str, field: str = "encoding") -> str:
    """The canonical name of a text codec, or an error naming ``field``."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise InvalidArgumentError(field, f"unknown encoding {encoding!r}") from None
    if not getattr(info, "_is_text_encoding", True):
        raise InvalidArgumentError(field, f"{encoding!r} is not a text encoding")
    return info.name


def csv_delimiter(config: FileConfig) -> str:
    """The CSV delimiter: as given (``\\t`` and ``tab`` mean a tab), else by extension."""
    value = config.delimiter
    if value is None:
        return "\t" if PurePath(config.path).suffix.lower() == ".tsv" else ","
    if value in ("\\t", "tab"):
        return "\t"
    if len(value) != 1:
        raise InvalidArgumentError("delimiter", f"{value!r} must be exactly one character")
    if value in '"\r\n\x00':
        raise InvalidArgumentError("delimiter", f"{value!r} cannot separate fields")
    return value


def json_lines(config: FileConfig) -> bool:
    """Whether a JSON write produces JSON lines."""
    if config.json_lines is not None:
        return config.json_lines
    return PurePath(config.path).suffix.lower() in _JSON_LINES_EXTENSIONS


def _set_fields(config: FileConfig) -> list[str]:
    return [
        name
        for name in config.__struct_fields__
        if getattr(config, name) != _DEFAULTS.get(name, _NO_DEFAULT)
    ]


def _non_negative(config: FileConfig, *names: str) -> None:
    for name in names:
        if getattr(config, name) < 0:
            raise InvalidArgumentError(name, "must not be negative")


def _positive(config: FileConfig, *names: str) -> None:
    for name in names:
        if getattr(config, name) < 1:
            raise InvalidArgumentError(name, "must be at least 1")


def validate_file_config(config: FileConfig) -> Format | None:
    """Check everything that can be checked without the file system.

    Returns:
        The format the operation works in (given or inferred), or None for ``list``,
        ``move``, ``copy`` and ``delete``.

    Raises:
        InvalidArgumentError: naming the first offending field and the reason.
    """
    allowed = _OPERATION_FIELDS[config.operation]
    for name in _set_fields(config):
        if name not in allowed:
            raise InvalidArgumentError(name, f"is not used by operation {config.operation}")
    if not config.path.strip():
        raise InvalidArgumentError("path", "must not be empty")
    if config.operation in ("move", "copy"):
        if not config.to or not config.to.strip():
            raise InvalidArgumentError("to", f"is required for operation {config.operation}")
        if config.if_exists == "append":
            raise InvalidArgumentError("if_exists", "must be error or replace for move and copy")
        return None
    if config.operation == "list":
        _positive(config, "max_files")
        if not config.pattern:
            raise InvalidArgumentError("pattern", "must not be empty")
        return None
    if config.operation == "delete":
        return None

    fmt = config.format or infer_format(config.path)
    for name in _set_fields(config):
        formats = _FORMAT_FIELDS.get(name)
        if formats is not None and fmt not in formats:
            raise InvalidArgumentError(
                name, f"is not used by the {fmt} format (only by {', '.join(formats)})"
            )
    if fmt in ("csv", "json", "text"):
        text_codec(config.encoding)
    if fmt == "csv":
        csv_delimiter(config)
    if isinstance(config.sheet, int) and config.sheet < 0:
        raise InvalidArgumentError("sheet", "a sheet index is 0-based and must not be negative")
    if config.columns is not None:
        seen: set[str] = set()
        for i, name in enumerate(config.columns):
            if not name:
                raise InvalidArgumentError(f"columns[{i}]", "must not be empty")
            if name in seen:
                raise InvalidArgumentError(f"columns[{i}]", f"{name!r} is listed twice")
            seen.add(name)
    if config.operation == "read":
        _validate_read(config)
    else:
        _validate_write(config, fmt)
    return fmt


def _validate_read(config: FileConfig) -> None:
    _non_negative(config, "skip_rows", "offset")
    _positive(config, "max_rows", "max_bytes")
    if config.limit is not None:
        if config.limit < 0:
            raise InvalidArgumentError("limit", "must not be negative")
        if config.limit > config.max_rows:
            raise InvalidArgumentError(
                "limit", f"{config.limit} is more than max_rows ({config.max_rows})"
            )
    if config.as_text and config.infer_types:
        raise InvalidArgumentError("infer_types", "cannot be combined with as_text")


def _validate_write(config: FileConfig, fmt: Format) -> None:
    suffix = PurePath(config.path).suffix.lower()
    if fmt == "text":
        if config.text is None:
            raise InvalidArgumentError("text", "is required to write the text format")
    elif config.rows is None:
        raise InvalidArgumentError("rows", f"is required to write the {fmt} format")
    if config.if_exists == "append":
        if fmt in ("excel", "parquet"):
            raise InvalidArgumentError(
                "if_exists", f"append is not possible for the {fmt} format (csv, json lines "
                "and text only); use replace, or write a new file",
            )  # fmt: skip
        if fmt == "json" and not json_lines(config):
            raise InvalidArgumentError(
                "if_exists", "append needs JSON lines (json_lines: true, or .jsonl/.ndjson)"
            )
    if fmt == "excel":
        if suffix not in _EXCEL_WRITABLE:
            raise InvalidArgumentError(
                "path", f"Excel files are written as .xlsx or .xlsm, not {suffix or 'none'}"
            )
        sheet = config.sheet
        if isinstance(sheet, int):
            raise InvalidArgumentError("sheet", "give the sheet to write by name")
        if sheet is not None:
            if not sheet or len(sheet) > 31:
                raise InvalidArgumentError("sheet", "a sheet name has 1 to 31 characters")
            if _SHEET_NAME_FORBIDDEN & set(sheet) or sheet.startswith("'"):
                raise InvalidArgumentError(
                    "sheet", "a sheet name cannot contain [ ] : * ? / \\ or start with '"
                )
    if config.rows is not None:
        if config.rows and isinstance(config.rows[0], list) and config.columns is None:
            raise InvalidArgumentError("columns", "is required when rows are lists")
        for i, row in enumerate(config.rows):
            if isinstance(row, dict):
                if config.columns is None and any(not isinstance(k, str) for k in row):
                    raise InvalidArgumentError(f"rows[{i}]", "column names must be text")
            elif isinstance(row, list | tuple):
                if config.columns is None:
                    raise InvalidArgumentError(f"rows[{i}]", "a list row needs columns")
                if len(row) != len(config.columns):
                    raise InvalidArgumentError(
                        f"rows[{i}]",
                        f"has {len(row)} values but columns names {len(config.columns)}",
                    )
            else:
                raise InvalidArgumentError(
                    f"rows[{i}]", f"expected an object or a list, got {type(row).__name__}"
                )
