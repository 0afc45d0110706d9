"""How each database runs the SQL activity's statements, on the native async driver connection.

One session class per kind, all with the same shape: :meth:`begin` opens the transaction and
sets the statement timeout (and read-only mode), :meth:`open_rows` starts a statement whose
rows are read in batches, :meth:`execute` returns an affected-row count, :meth:`call` calls a
routine, then :meth:`commit` or :meth:`rollback`, and :meth:`cleanup` restores the session
settings before the connection goes back to the pool.

=============  ========================================  =====================================
kind           statement timeout                         rows read in batches through
=============  ========================================  =====================================
postgresql     ``set_config('statement_timeout', ms,     a server-side cursor for ``SELECT``,
               true)`` (i.e. ``SET LOCAL``)              ``VALUES`` and ``TABLE``; a client
                                                         cursor otherwise (e.g. ``RETURNING``)
mysql          MariaDB: session ``max_statement_time``;  an unbuffered cursor (``SSCursor``)
               MySQL: ``max_execution_time`` (SELECT
               only); both reset afterwards
oracle         ``call_timeout`` on the connection        ``fetchmany`` with ``arraysize``
               (per round trip), reset afterwards
=============  ========================================  =====================================

The routine name of a call is put into the SQL text; it was validated as a plain identifier
(``ROUTINE_NAME``). Argument names are validated identifiers too. Every value is bound.
"""

from __future__ import annotations

import decimal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cadenza.activities._sql_config import PlannedStatement
from cadenza.activities._sql_errors import SqlError
from cadenza.activities._sql_params import bind_value, placeholder, render_sql

_SERVER_CURSOR_WORDS = frozenset({"select", "values", "table"})


@dataclass
class RowSource:
    """An open result: its column names and how to read and close it."""

    columns: list[str]
    fetch: Callable[[int], Awaitable[Sequence[Sequence[Any]]]]
    close: Callable[[], Awaitable[None]]


@dataclass
class CallOutcome:
    """What a routine call gave back."""

    out: dict[str, Any] = field(default_factory=dict)
    return_value: Any = None
    rows: RowSource | None = None


async def _empty_fetch(_: int) -> list[Any]:
    return []


async def _noop() -> None:
    return None


class PostgresSession:
    """Runs statements on a psycopg ``AsyncConnection`` (not in autocommit mode)."""

    kind = "postgresql"

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._cursors = 0

    async def begin(self, *, read_only: bool, statement_timeout: float) -> None:
        async with self.conn.cursor() as cur:
            # The first statement opens the transaction; SET TRANSACTION must come first.
            if read_only:
                await cur.execute("SET TRANSACTION READ ONLY")
            await cur.execute(
                "SELECT set_config('statement_timeout', %s, true)", (str(_ms(statement_timeout)),)
            )

    async def open_rows(self, st: PlannedStatement, batch: int) -> RowSource:
        assert_sql(st)
        sql, params = render_sql(st.sql, self.kind, st.params)  # type: ignore[arg-type]
        if st.sql.first_word in _SERVER_CURSOR_WORDS:  # type: ignore[union-attr]
            self._cursors += 1
            cur = self.conn.cursor(name=f"cadenza_sql_{self._cursors}")
            cur.itersize = batch
        else:
            cur = self.conn.cursor()
        try:
            await cur.execute(sql, params)
        except BaseException:
            await _quiet_close(cur.close)
            raise
        return _source(cur, [d.name for d in cur.description or ()])

    async def execute(self, st: PlannedStatement) -> int | None:
        assert_sql(st)
        sql, params = render_sql(st.sql, self.kind, st.params)  # type: ignore[arg-type]
        async with self.conn.cursor() as cur:
            await cur.execute(sql, params)
            return cur.rowcount if cur.rowcount >= 0 else None

    async def call(self, st: PlannedStatement, batch: int) -> CallOutcome:
        params: dict[str, Any] = {}
        args = []
        for name, value in st.params.items():
            driver_name = f"p{len(params)}"
            params[driver_name] = bind_value(value, self.kind)
            args.append(f"{name} => {placeholder(self.kind, driver_name)}")
        args.extend(f"{name} => NULL" for name in st.out if name not in st.params)
        arg_text = ", ".join(args)
        if st.function:
            cur = self.conn.cursor()
            try:
                await cur.execute(f"SELECT * FROM {st.procedure}({arg_text})", params)
            except BaseException:
                await _quiet_close(cur.close)
                raise
            return CallOutcome(rows=_source(cur, [d.name for d in cur.description or ()]))
        async with self.conn.cursor() as cur:
            await cur.execute(f"CALL {st.procedure}({arg_text})", params)
            out: dict[str, Any] = {}
            if cur.description:
                row = await cur.fetchone()
                if row is not None:
                    out = dict(zip([d.name for d in cur.description], row, strict=True))
            return CallOutcome(out=out)

    async def commit(self) -> None:
        await self.conn.commit()

    async def rollback(self) -> None:
        await self.conn.rollback()

    async def cleanup(self) -> None:
        # SET LOCAL ends with the transaction: nothing to restore.
        return None


class MySqlSession:
    """Runs statements on an aiomysql ``Connection`` (MySQL or MariaDB)."""

    kind = "mysql"

    def __init__(self, conn: Any, *, is_mariadb: bool) -> None:
        self.conn = conn
        self.is_mariadb = is_mariadb
        self._timeout_set = False

    async def begin(self, *, read_only: bool, statement_timeout: float) -> None:
        async with self.conn.cursor() as cur:
            self._timeout_set = True
            if self.is_mariadb:
                await cur.execute(
                    "SET @@session.max_statement_time = %s", (round(statement_timeout, 3),)
                )
            else:
                await cur.execute(
                    "SET @@session.max_execution_time = %s", (_ms(statement_timeout),)
                )
            await cur.execute("START TRANSACTION READ ONLY" if read_only else "START TRANSACTION")

    async def open_rows(self, st: PlannedStatement, batch: int) -> RowSource:
        import aiomysql

        assert_sql(st)
        sql, params = render_sql(st.sql, self.kind, st.params)  # type: ignore[arg-type]
        cur = await self.conn.cursor(aiomysql.SSCursor)
        try:
            await cur.execute(sql, params)
        except BaseException:
            await _quiet_close(cur.close)
            raise
        return _source(cur, [d[0] for d in cur.description or ()])

    async def execute(self, st: PlannedStatement) -> int | None:
        assert_sql(st)
        sql, params = render_sql(st.sql, self.kind, st.params)  # type: ignore[arg-type]
        async with self.conn.cursor() as cur:
            await cur.execute(sql, params)
            return cur.rowcount if cur.rowcount >= 0 else None

    async def call(self, st: PlannedStatement, batch: int) -> CallOutcome:
        schema, _, name = (st.procedure or "").rpartition(".")
        routine_type = "FUNCTION" if st.function else "PROCEDURE"
        async with self.conn.cursor() as cur:
            await cur.execute(
                "SELECT r.ROUTINE_NAME, p.PARAMETER_NAME, p.PARAMETER_MODE"
                " FROM information_schema.ROUTINES r"
                " LEFT JOIN information_schema.PARAMETERS p"
                "  ON p.SPECIFIC_SCHEMA = r.ROUTINE_SCHEMA AND p.SPECIFIC_NAME = r.SPECIFIC_NAME"
                "  AND p.ROUTINE_TYPE = r.ROUTINE_TYPE AND p.ORDINAL_POSITION > 0"
                " WHERE r.ROUTINE_SCHEMA = COALESCE(%s, DATABASE()) AND r.ROUTINE_NAME = %s"
                "  AND r.ROUTINE_TYPE = %s"
                " ORDER BY p.ORDINAL_POSITION",
                (schema or None, name, routine_type),
            )
            found = await cur.fetchall()
        if not found:
            raise SqlError(
                f"{routine_type.lower()} {st.procedure} does not exist (or is not visible)",
                {"reason": "unknown_routine", "statement": st.index},
            )
        declared = [(pname, (pmode or "IN").upper()) for _, pname, pmode in found if pname]
        given = {k.lower(): k for k in st.params}
        wanted_out = {k.lower(): k for k in st.out}
        known = {pname.lower() for pname, _ in declared}
        for lowered, original in {**given, **wanted_out}.items():
            if lowered not in known:
                raise SqlError(
                    f"{st.procedure} has no parameter named {original!r}",
                    {"reason": "unknown_parameter", "parameter": original, "statement": st.index},
                )
        params: dict[str, Any] = {}
        args: list[str] = []
        outs: list[tuple[str, str]] = []
        presets: list[str] = []
        for position, (pname, pmode) in enumerate(declared):
            key = given.get(pname.lower())
            if pmode == "IN":
                if key is None:
                    raise SqlError(
                        f"{st.procedure}: no value for IN parameter {pname!r}",
                        {"reason": "missing_parameter", "parameter": pname, "statement": st.index},
                    )
                driver_name = f"p{len(params)}"
                params[driver_name] = bind_value(st.params[key], self.kind)
                args.append(placeholder(self.kind, driver_name))
                continue
            var = f"@cadenza_out_{position}"
            outs.append((wanted_out.get(pname.lower(), pname), var))
            if pmode == "INOUT" and key is not None:
                driver_name = f"p{len(params)}"
                params[driver_name] = bind_value(st.params[key], self.kind)
                presets.append(f"{var} = {placeholder(self.kind, driver_name)}")
            else:
                presets.append(f"{var} = NULL")
            args.append(var)
        arg_text = ", ".join(args)
        if st.function:
            async with self.conn.cursor() as cur:
                await cur.execute(f"SELECT {st.procedure}({arg_text})", params)
                row = await cur.fetchone()
            return CallOutcome(return_value=row[0] if row else None)
        outcome = CallOutcome()
        async with self.conn.cursor() as cur:
            if presets:
                await cur.execute("SET " + ", ".join(presets), params)
            await cur.execute(f"CALL {st.procedure}({arg_text})", params)
            if cur.description:
                columns = [d[0] for d in cur.description]
                buffered = list(await cur.fetchall())
                outcome.rows = _buffered_source(columns, buffered)
            while await cur.nextset():
                pass
            if outs:
                await cur.execute("SELECT " + ", ".join(var for _, var in outs))
                row = await cur.fetchone()
                outcome.out = {
                    out_name: value for (out_name, _), value in zip(outs, row or (), strict=False)
                }
                await cur.execute("SET " + ", ".join(f"{var} = NULL" for _, var in outs))
        return outcome

    async def commit(self) -> None:
        await self.conn.commit()

    async def rollback(self) -> None:
        await self.conn.rollback()

    async def cleanup(self) -> None:
        if not self._timeout_set:
            return
        variable = "max_statement_time" if self.is_mariadb else "max_execution_time"
        async with self.conn.cursor() as cur:
            await cur.execute(f"SET @@session.{variable} = DEFAULT")
        self._timeout_set = False


class OracleSession:
    """Runs statements on a python-oracledb ``AsyncConnection`` (thin mode)."""

    kind = "oracle"

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._saved_call_timeout: int | None = None

    async def begin(self, *, read_only: bool, statement_timeout: float) -> None:
        self._saved_call_timeout = self.conn.call_timeout
        self.conn.call_timeout = _ms(statement_timeout)
        if read_only:
            cur = self.conn.cursor()
            try:
                await cur.execute("SET TRANSACTION READ ONLY")
            finally:
                cur.close()

    def _cursor(self, batch: int) -> Any:
        cur = self.conn.cursor()
        cur.arraysize = batch
        cur.prefetchrows = batch + 1
        cur.outputtypehandler = oracle_output_type_handler
        return cur

    async def open_rows(self, st: PlannedStatement, batch: int) -> RowSource:
        assert_sql(st)
        sql, params = render_sql(st.sql, self.kind, st.params)  # type: ignore[arg-type]
        cur = self._cursor(batch)
        try:
            await cur.execute(sql, params)
        except BaseException:
            cur.close()
            raise
        return RowSource(
            columns=[d[0] for d in cur.description or ()],
            fetch=cur.fetchmany if cur.description else _empty_fetch,
            close=_sync_close(cur),
        )

    async def execute(self, st: PlannedStatement) -> int | None:
        assert_sql(st)
        sql, params = render_sql(st.sql, self.kind, st.params)  # type: ignore[arg-type]
        cur = self.conn.cursor()
        try:
            await cur.execute(sql, params)
            return cur.rowcount if cur.rowcount >= 0 else None
        finally:
            cur.close()

    async def call(self, st: PlannedStatement, batch: int) -> CallOutcome:
        cur = self._cursor(batch)
        try:
            keyword = {k: bind_value(v, self.kind) for k, v in st.params.items()}
            out_vars: dict[str, Any] = {}
            for name, type_name in st.out.items():
                var = cur.var(*oracle_var_type(type_name))
                if name in st.params:
                    var.setvalue(0, keyword[name])
                keyword[name] = var
                out_vars[name] = var
            if st.function:
                typ = oracle_var_type(st.returns)[0]
                value = await cur.callfunc(st.procedure, typ, keyword_parameters=keyword)
                return CallOutcome(return_value=await _read_lob(value))
            await cur.callproc(st.procedure, keyword_parameters=keyword)
            out = {name: await _read_lob(var.getvalue()) for name, var in out_vars.items()}
            return CallOutcome(out=out)
        finally:
            cur.close()

    async def commit(self) -> None:
        await self.conn.commit()

    async def rollback(self) -> None:
        await self.conn.rollback()

    async def cleanup(self) -> None:
        if self._saved_call_timeout is not None:
            self.conn.call_timeout = self._saved_call_timeout
            self._saved_call_timeout = None


def oracle_var_type(type_name: str) -> tuple[Any, ...]:
    """Arguments of ``cursor.var()`` for an OUT parameter declared with ``type_name``."""
    import datetime as dt

    import oracledb

    table: dict[str, tuple[Any, ...]] = {
        "string": (oracledb.DB_TYPE_VARCHAR, 32767),
        "number": (decimal.Decimal,),
        "integer": (int,),
        "float": (float,),
        "date": (dt.date,),
        "timestamp": (oracledb.DB_TYPE_TIMESTAMP,),
        "bytes": (oracledb.DB_TYPE_RAW, 32767),
        "clob": (oracledb.DB_TYPE_CLOB,),
        "blob": (oracledb.DB_TYPE_BLOB,),
        "boolean": (bool,),
    }
    return table[type_name]


def oracle_output_type_handler(cursor: Any, metadata: Any) -> Any:
    """Fetch LOBs as ``str``/``bytes`` and non-integer NUMBERs as exact ``Decimal``.

    Without it an async cursor returns LOB locators (which need more round trips) and
    NUMBER columns with a scale as binary floats.
    """
    import oracledb

    type_code = metadata.type_code
    if type_code in (oracledb.DB_TYPE_CLOB, oracledb.DB_TYPE_NCLOB):
        return cursor.var(oracledb.DB_TYPE_LONG, arraysize=cursor.arraysize)
    if type_code is oracledb.DB_TYPE_BLOB:
        return cursor.var(oracledb.DB_TYPE_LONG_RAW, arraysize=cursor.arraysize)
    if type_code is oracledb.DB_TYPE_NUMBER and (metadata.scale or not metadata.precision):
        return cursor.var(decimal.Decimal, arraysize=cursor.arraysize)
    return None


async def _read_lob(value: Any) -> Any:
    read = getattr(value, "read", None)
    if read is not None and callable(read):
        return await read()
    return value


def assert_sql(st: PlannedStatement) -> None:
    """Guard: a statement without parsed SQL reached a runner that needs it."""
    if st.sql is None:
        raise SqlError(f"{st.field}: no SQL to run", {"statement": st.index})


def _source(cur: Any, columns: list[str]) -> RowSource:
    if not columns:
        return RowSource(columns=[], fetch=_empty_fetch, close=_closer(cur))
    return RowSource(columns=columns, fetch=cur.fetchmany, close=_closer(cur))


def _buffered_source(columns: list[str], rows: list[Any]) -> RowSource:
    position = 0

    async def fetch(n: int) -> list[Any]:
        nonlocal position
        chunk = rows[position : position + n]
        position += len(chunk)
        return chunk

    return RowSource(columns=columns, fetch=fetch, close=_noop)


def _closer(cur: Any) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        result = cur.close()
        if hasattr(result, "__await__"):
            await result

    return close


def _sync_close(cur: Any) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        cur.close()

    return close


async def _quiet_close(close: Callable[[], Any]) -> None:
    try:
        result = close()
        if hasattr(result, "__await__"):
            await result
    except Exception:
        pass


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def make_session(kind: str, driver_connection: Any, dialect: Any) -> Any:
    """The session class for ``kind`` around the pooled connection's driver connection."""
    if kind == "postgresql":
        return PostgresSession(driver_connection)
    if kind == "mysql":
        return MySqlSession(driver_connection, is_mariadb=bool(getattr(dialect, "is_mariadb", 0)))
    return OracleSession(driver_connection)
