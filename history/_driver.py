"""The hot path's SQL, run on the database driver's own connection.

SQLAlchemy Core builds, caches and compiles a statement and wraps its result on every
execution: for the one-row reads and writes of a workflow task that costs several times what
the database itself spends (0.25–0.38 ms against 0.03 ms for a one-row read with psycopg, on
this project's benchmark machine). The statements a workflow runs on every step are therefore
written here once as SQL text and executed with the driver (psycopg 3 or aiosqlite) on the
connection SQLAlchemy checked out: the pool, the transaction (``BEGIN IMMEDIATE`` on SQLite),
the fencing and the error translation stay where they are, in ``_store.py``.

A statement is written once with ``:name`` parameters; :class:`DriverSql` holds it in each
driver's parameter style. Every column of the event-log tables is TEXT or an integer, so rows
come back as plain tuples that need no type conversion.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class DriverSql:
    """One statement in both drivers' parameter styles.

    Args:
        text: SQL with ``:name`` parameters (SQLite's named style).
        postgresql: A different text for PostgreSQL, when the two dialects differ (also
            ``:name`` parameters).
    """

    __slots__ = ("postgresql", "sqlite")

    def __init__(self, text: str, postgresql: str | None = None) -> None:
        self.sqlite = " ".join(text.split())
        self.postgresql = _NAMED.sub(r"%(\1)s", " ".join((postgresql or text).split()))


class Submitted:
    """A statement sent with :meth:`DriverConnection.submit`: its row count and rows can be
    read once its results arrived (at the end of the pipeline on PostgreSQL)."""

    __slots__ = ("_cursor", "_rows")

    def __init__(self, cursor: Any, rows: list[tuple[Any, ...]] | None = None) -> None:
        self._cursor = cursor
        self._rows = rows

    @property
    def rowcount(self) -> int:
        """Rows the statement changed."""
        return int(self._cursor.rowcount)

    async def rows(self) -> list[tuple[Any, ...]]:
        """The rows of a query."""
        if self._rows is not None:
            return self._rows
        return list(await self._cursor.fetchall())


class DriverConnection:
    """Executes :class:`DriverSql` on the driver connection beneath a SQLAlchemy connection,
    inside whatever transaction that connection is in."""

    __slots__ = ("_driver", "_postgresql")

    def __init__(self, dialect: str, driver: Any) -> None:
        self._postgresql = dialect == "postgresql"
        self._driver = driver

    @property
    def postgresql(self) -> bool:
        """True on PostgreSQL (statements can take their rows as one JSON parameter)."""
        return self._postgresql

    @classmethod
    async def of(cls, conn: AsyncConnection, dialect: str) -> DriverConnection:
        """The driver connection of ``conn`` (checked out and in a transaction or not)."""
        fairy = await conn.get_raw_connection()
        return cls(dialect, fairy.driver_connection)

    @contextlib.asynccontextmanager
    async def pipeline(self) -> AsyncIterator[None]:
        """On PostgreSQL, send the statements of the block without waiting for each result:
        one round trip instead of one per statement. Results (and errors) arrive when the
        block ends; read them with :meth:`Submitted.rowcount` / :meth:`Submitted.rows` after
        it. On SQLite (in process) statements run at once."""
        if not self._postgresql:
            yield
            return
        async with self._driver.pipeline():
            yield

    async def submit(
        self, sql: DriverSql, params: Mapping[str, Any], *, query: bool = False
    ) -> Submitted:
        """Send a statement whose outcome is read later (see :meth:`pipeline`); ``query``:
        it returns rows."""
        if self._postgresql:
            cursor = self._driver.cursor()
            await cursor.execute(sql.postgresql, params)
            return Submitted(cursor)
        if query:
            return Submitted(None, list(await self._driver.execute_fetchall(sql.sqlite, params)))
        return Submitted(await self._driver.execute(sql.sqlite, params))

    async def delete_rows(self, table: str, key: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Delete the rows of ``table`` whose ``shard_id`` and ``key`` match one of ``rows``:
        on PostgreSQL one statement with the keys as one JSON parameter (see
        :meth:`submit_rows`), on SQLite (in process) one ``executemany``."""
        if not rows:
            return
        if self._postgresql:
            await self.submit_rows(_delete_json_text(table, key), rows)
        else:
            await self._driver.executemany(_delete_text(table, key), rows)

    async def insert_rows(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Mapping[str, Any]],
        suffix: str = "",
    ) -> None:
        """Insert ``rows`` (mappings with every one of ``columns``); ``suffix`` ends the
        statement (``ON CONFLICT …``).

        On PostgreSQL as one ``INSERT … SELECT … FROM json_populate_recordset(…)`` whose only
        parameter is the rows as one JSON document (see :meth:`submit_rows`). On SQLite (in
        process) one ``executemany``.
        """
        if not rows:
            return
        names = tuple(columns)
        if not self._postgresql:
            await self._driver.executemany(_insert_text(table, names, suffix), rows)
            return
        await self.submit_rows(_insert_json_text(table, names, suffix), rows)

    async def submit_rows(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> Submitted:
        """PostgreSQL: send ``sql``, whose one ``%s`` is ``rows`` as a JSON array (read in SQL
        with ``json_populate_recordset`` / ``json_to_recordset``).

        One parameter for any number of rows: psycopg dumps (and, past 50 parameters,
        re-parses) every parameter of a statement in Python, so a batch's rows cost far less
        as one JSON text encoded by orjson, and the statement text stays the same for every
        batch size (prepared once).
        """
        cursor = self._driver.cursor()
        await cursor.execute(sql, (orjson.dumps(rows).decode(),))
        return Submitted(cursor)

    async def fetch(self, sql: DriverSql, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run a query (or a statement with RETURNING); returns its rows as tuples."""
        if self._postgresql:
            cursor = self._driver.cursor()
            try:
                await cursor.execute(sql.postgresql, params)
                return list(await cursor.fetchall())
            finally:
                await cursor.close()
        return list(await self._driver.execute_fetchall(sql.sqlite, params))


@functools.lru_cache(maxsize=64)
def _insert_text(table: str, names: tuple[str, ...], suffix: str) -> str:
    """``INSERT INTO table (names) VALUES (:a, :b …)`` for sqlite3's executemany."""
    values = "(" + ", ".join(f":{n}" for n in names) + ")"
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES {values} {suffix}".rstrip()


@functools.lru_cache(maxsize=64)
def _insert_json_text(table: str, names: tuple[str, ...], suffix: str) -> str:
    """``INSERT … SELECT`` of the rows of one JSON parameter, typed as the table's columns."""
    cols = ", ".join(names)
    return (
        f"INSERT INTO {table} ({cols}) SELECT {cols}"
        f" FROM json_populate_recordset(NULL::{table}, %s::json) {suffix}"
    ).rstrip()


@functools.lru_cache(maxsize=16)
def _delete_text(table: str, key: str) -> str:
    return f"DELETE FROM {table} WHERE shard_id = :shard_id AND {key} = :{key}"


@functools.lru_cache(maxsize=16)
def _delete_json_text(table: str, key: str) -> str:
    return (
        f"DELETE FROM {table} AS x USING json_to_recordset(%s::json)"
        f" AS v(shard_id integer, {key} text)"
        f" WHERE x.shard_id = v.shard_id AND x.{key} = v.{key}"
    )
