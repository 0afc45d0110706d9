"""Named ``:name`` placeholders for the SQL activity, rewritten for each driver.

Job files and SDK callers write one placeholder syntax for every database: ``:name``. This
module finds the placeholders with a small lexer that knows where SQL text is *not* code —
string literals, quoted identifiers, comments, PostgreSQL dollar quotes and ``E''`` strings,
MySQL backticks and backslash escapes, Oracle ``q'[...]'`` quotes — so that a colon inside
``'{"a":1}'``, a ``::int`` cast, an Oracle ``:=`` assignment or a time literal ``'10:30'`` is
left alone. It then renders the statement for the driver:

* psycopg and aiomysql use the ``pyformat`` style: each placeholder becomes ``%(pN)s`` and every
  literal ``%`` is doubled, so ``LIKE 'a%'`` keeps working;
* python-oracledb uses the ``named`` style: each placeholder becomes ``:pN``.

Placeholder names are replaced by generated ones (``p0``, ``p1`` ...) so that a user's name can
never collide with a reserved word of the database (Oracle rejects ``:date``). Values are only
ever *bound*: nothing here splices a value into SQL text.

A literal colon that the lexer would otherwise read as a placeholder (for example an array
slice ``a[1:n]`` written as ``a[:n]``, or ``:new`` in an Oracle trigger body) is written
``\\:`` and rendered as ``:``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from cadenza.history import InvalidArgumentError

SqlKind = Literal["postgresql", "mysql", "oracle"]

_IDENT_START = re.compile(r"[A-Za-z_]")
_IDENT_CHAR = re.compile(r"[A-Za-z0-9_]")
_PLACEHOLDER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
_FIRST_WORD = re.compile(r"[A-Za-z]+")
_Q_CLOSERS = {"[": "]", "{": "}", "(": ")", "<": ">"}

#: Names allowed for parameters (the keys of ``params``).
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: A routine name, optionally qualified (``schema.package.name``). Validated strictly because
#: the call builders put it into SQL text (it cannot be bound).
ROUTINE_NAME = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_$#]{0,127}(\.[A-Za-z_][A-Za-z0-9_$#]{0,127}){0,2}$"
)


@dataclass(frozen=True)
class ParsedSql:
    """A statement split into literal text and placeholders.

    Attributes:
        parts: Alternating pieces: ``str`` for SQL text (escapes already resolved) and
            :class:`_Slot` for a placeholder.
        names: Placeholder names in order of first appearance, without duplicates.
        first_word: The first keyword of the statement, lower-cased (``select``, ``insert``
            ...), ignoring leading comments and parentheses; empty if none.
    """

    parts: tuple[str | _Slot, ...]
    names: tuple[str, ...]
    first_word: str


@dataclass(frozen=True)
class _Slot:
    name: str


def parse_sql(sql: str, kind: SqlKind, *, field: str = "sql") -> ParsedSql:
    """Split ``sql`` into text and ``:name`` placeholders, following ``kind``'s lexical rules.

    Args:
        sql: The statement as the user wrote it.
        kind: The database kind; it decides which quotes and comments exist.
        field: Field name used in errors.

    Raises:
        InvalidArgumentError: on an unterminated string, quoted identifier or comment.
    """
    parts: list[str | _Slot] = []
    names: list[str] = []
    first_word = ""
    buf: list[str] = []
    i = 0
    n = len(sql)

    def flush() -> None:
        if buf:
            parts.append("".join(buf))
            buf.clear()

    while i < n:
        c = sql[i]
        prev = sql[i - 1] if i else ""
        nxt = sql[i + 1] if i + 1 < n else ""
        end: int
        if c == "'":
            backslash = kind == "mysql" or (
                kind == "postgresql" and prev in ("e", "E") and not _is_ident_char(sql, i - 2)
            )
            end = _skip_quoted(sql, i, "'", backslash=backslash, field=field, what="string")
        elif c == '"':
            end = _skip_quoted(
                sql, i, '"', backslash=kind == "mysql", field=field, what="quoted identifier"
            )
        elif c == "`" and kind == "mysql":
            end = _skip_quoted(sql, i, "`", backslash=False, field=field, what="identifier")
        elif _line_comment(sql, i, kind):
            end = _line_end(sql, i)
        elif c == "/" and nxt == "*":
            end = _skip_block_comment(sql, i, nested=kind == "postgresql", field=field)
        elif (
            c == "$"
            and kind == "postgresql"
            and not _is_ident_char(sql, i - 1)
            and (m := _DOLLAR_TAG.match(sql, i))
        ):
            tag = m.group(0)
            close = sql.find(tag, m.end())
            if close < 0:
                raise InvalidArgumentError(
                    field, f"unterminated dollar-quoted string {tag} starting at offset {i}"
                )
            end = close + len(tag)
        elif (
            c in "qQ"
            and kind == "oracle"
            and nxt == "'"
            and i + 2 < n
            and not (_is_ident_char(sql, i - 1) and sql[i - 1] not in "nN")
        ):
            opener = sql[i + 2]
            closer = _Q_CLOSERS.get(opener, opener) + "'"
            close = sql.find(closer, i + 3)
            if close < 0:
                raise InvalidArgumentError(
                    field, f"unterminated q-quoted string starting at offset {i}"
                )
            end = close + 2
        elif c == "\\" and nxt == ":":
            buf.append(":")
            i += 2
            continue
        elif (
            c == ":"
            and prev != ":"
            and not _is_ident_char(sql, i - 1)
            and (m := _PLACEHOLDER.match(sql, i + 1))
        ):
            flush()
            name = m.group(0)
            parts.append(_Slot(name))
            if name not in names:
                names.append(name)
            i = m.end()
            continue
        else:
            if not first_word and _IDENT_START.match(c):
                m = _FIRST_WORD.match(sql, i)
                first_word = m.group(0).lower() if m else ""
            buf.append(c)
            i += 1
            continue
        buf.append(sql[i:end])
        i = end
    flush()
    return ParsedSql(parts=tuple(parts), names=tuple(names), first_word=first_word)


def render_sql(
    parsed: ParsedSql, kind: SqlKind, params: Mapping[str, Any], *, field: str = "params"
) -> tuple[str, dict[str, Any]]:
    """Render ``parsed`` in the driver's parameter style and bind ``params`` to it.

    Returns:
        The SQL text for the driver and the dict of driver parameters (``p0``, ``p1`` ...).

    Raises:
        InvalidArgumentError: when a placeholder has no value in ``params``.
    """
    slot_names: dict[str, str] = {}
    bound: dict[str, Any] = {}
    out: list[str] = []
    for part in parsed.parts:
        if isinstance(part, str):
            out.append(part.replace("%", "%%") if kind != "oracle" else part)
            continue
        driver_name = slot_names.get(part.name)
        if driver_name is None:
            if part.name not in params:
                raise InvalidArgumentError(field, f"no value for placeholder :{part.name}")
            driver_name = f"p{len(slot_names)}"
            slot_names[part.name] = driver_name
            bound[driver_name] = bind_value(params[part.name], kind)
        out.append(placeholder(kind, driver_name))
    return "".join(out), bound


def bind_value(value: Any, kind: SqlKind) -> Any:
    """Adapt a parameter value for binding: a mapping (a JSON object from a job file) is
    bound as its JSON text, and so is a list on MySQL and Oracle, which have no array type.
    Other values go to the driver as they are (a list becomes a PostgreSQL array)."""
    if isinstance(value, Mapping) or (kind != "postgresql" and isinstance(value, (list, tuple))):
        return msgspec.json.encode(value).decode()
    return value


def placeholder(kind: SqlKind, driver_name: str) -> str:
    """The driver's spelling of the bound parameter ``driver_name``."""
    return f":{driver_name}" if kind == "oracle" else f"%({driver_name})s"


def _is_ident_char(sql: str, j: int) -> bool:
    return 0 <= j < len(sql) and (_IDENT_CHAR.match(sql[j]) is not None or sql[j] == "$")


def _skip_quoted(sql: str, i: int, quote: str, *, backslash: bool, field: str, what: str) -> int:
    j = i + 1
    n = len(sql)
    while j < n:
        ch = sql[j]
        if backslash and ch == "\\":
            j += 2
            continue
        if ch == quote:
            if j + 1 < n and sql[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    raise InvalidArgumentError(field, f"unterminated {what} starting at offset {i}")


def _line_end(sql: str, i: int) -> int:
    j = sql.find("\n", i)
    return len(sql) if j < 0 else j


def _line_comment(sql: str, i: int, kind: SqlKind) -> bool:
    if sql.startswith("--", i):
        # MySQL needs whitespace (or the end) after "--" for it to start a comment.
        return kind != "mysql" or i + 2 >= len(sql) or sql[i + 2].isspace()
    return kind == "mysql" and sql[i] == "#"


def _skip_block_comment(sql: str, i: int, *, nested: bool, field: str) -> int:
    depth = 1
    j = i + 2
    n = len(sql)
    while j < n:
        if sql.startswith("*/", j):
            depth -= 1
            j += 2
            if depth == 0:
                return j
            continue
        if nested and sql.startswith("/*", j):
            depth += 1
            j += 2
            continue
        j += 1
    raise InvalidArgumentError(field, f"unterminated comment starting at offset {i}")
