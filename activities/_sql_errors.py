"""Errors of the SQL activity, and the one place where driver exceptions are classified.

Every failure of the activity is an :class:`~cadenza.history.ApplicationError` whose ``type``
tells a retry policy what happened:

=======================  ============  ======================================================
type                     retried       when
=======================  ============  ======================================================
``SqlConnectionError``   yes           the server cannot be reached, refused the connection,
                                       dropped it, is shutting down, has too many connections
``SqlTransientError``    yes           deadlock, serialization failure, lock wait timeout,
                                       pool exhausted, resource shortage on the server
``SqlTimeout``           yes           the statement timeout fired (server side or the
                                       client-side guard)
``SqlError``             no            everything else: syntax, unknown table or column,
                                       constraint violation, permission, bad data, a read-only
                                       transaction that tried to write
``SqlResultTooLarge``    no            output truncated while ``fail_on_truncate`` is set
=======================  ============  ======================================================

The details (the first element of ``details``) are a JSON object with the connection name,
the kind, and whatever the driver told: ``sqlstate`` (PostgreSQL), ``errno`` (MySQL/MariaDB),
``code`` (Oracle, e.g. ``ORA-00060``), and the index of the failing statement. Messages are
the driver's own message (never SQLAlchemy's, which would include parameter values), with
the connection's password masked out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from cadenza.history import ApplicationError


class SqlError(ApplicationError):
    """A SQL failure that a retry cannot fix (syntax, constraint, permission ...).

    Attributes:
        sqlstate: PostgreSQL SQLSTATE, when known.
        errno: MySQL/MariaDB error number, when known.
        code: Oracle error code (``ORA-xxxxx`` / ``DPY-xxxx``), when known.
    """

    default_non_retryable = True

    def __init__(
        self,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        non_retryable: bool | None = None,
    ) -> None:
        details = dict(details or {})
        super().__init__(
            message,
            details,
            type=type(self).__name__,
            non_retryable=(self.default_non_retryable if non_retryable is None else non_retryable),
        )
        self.sqlstate: str | None = details.get("sqlstate")
        self.errno: int | None = details.get("errno")
        self.code: str | None = details.get("code")


class SqlConnectionError(SqlError):
    """The database could not be reached or the connection broke. Retryable."""

    default_non_retryable = False


class SqlTransientError(SqlError):
    """Deadlock, serialization failure, lock timeout, exhausted pool. Retryable."""

    default_non_retryable = False


class SqlTimeout(SqlError):
    """The statement timeout fired. Retryable."""

    default_non_retryable = False


class SqlResultTooLarge(SqlError):
    """The output was truncated and ``fail_on_truncate`` was set. Not retryable."""


# --------------------------------------------------------------------------- PostgreSQL

_PG_CONNECTION_STATES = {"57P01", "57P02", "57P03", "53300", "25P03", "08000"}
_PG_TRANSIENT_STATES = {"40001", "40P01", "55P03", "55006", "58030"}
_PG_TIMEOUT_STATES = {"57014"}


def _classify_pg(exc: BaseException) -> tuple[type[SqlError], dict[str, Any]]:
    import psycopg

    sqlstate = getattr(exc, "sqlstate", None)
    details: dict[str, Any] = {"sqlstate": sqlstate} if sqlstate else {}
    if sqlstate is None:
        # psycopg gives no SQLSTATE when libpq itself failed: refused, reset, closed.
        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
            return SqlConnectionError, details
        return SqlError, details
    if sqlstate.startswith("08") or sqlstate in _PG_CONNECTION_STATES:
        return SqlConnectionError, details
    if sqlstate in _PG_TIMEOUT_STATES:
        return SqlTimeout, details
    if sqlstate in _PG_TRANSIENT_STATES or sqlstate.startswith("53"):
        return SqlTransientError, details
    return SqlError, details


# --------------------------------------------------------------------------- MySQL / MariaDB

_MY_CONNECTION = {
    1040,  # too many connections
    1053,  # server shutdown in progress
    1152,  # aborted connection
    1158,  # network read error
    1159,  # network read timeout
    1160,  # network write error
    1161,  # network write timeout
    1927,  # MariaDB: connection was killed
    2002,  # can't connect through socket
    2003,  # can't connect to server
    2005,  # unknown host
    2006,  # server has gone away
    2013,  # lost connection during query
    2055,  # lost connection (system error)
    4031,  # MySQL 8: disconnected for inactivity
}
_MY_TRANSIENT = {
    1205,  # lock wait timeout
    1213,  # deadlock
    1317,  # query interrupted (KILL QUERY)
    1020,  # record changed since last read
    1637,  # too many active concurrent transactions
    3572,  # NOWAIT: row is locked
}
_MY_TIMEOUT = {
    1969,  # MariaDB: max_statement_time exceeded
    3024,  # MySQL: max_execution_time exceeded
}


def _classify_mysql(exc: BaseException) -> tuple[type[SqlError], dict[str, Any]]:
    import pymysql

    args = getattr(exc, "args", ())
    errno = args[0] if args and isinstance(args[0], int) else None
    details: dict[str, Any] = {"errno": errno} if errno is not None else {}
    if errno is None:
        if isinstance(exc, (pymysql.err.OperationalError, pymysql.err.InterfaceError)):
            return SqlConnectionError, details
        return SqlError, details
    if errno in _MY_CONNECTION:
        return SqlConnectionError, details
    if errno in _MY_TIMEOUT:
        return SqlTimeout, details
    if errno in _MY_TRANSIENT:
        return SqlTransientError, details
    return SqlError, details


# --------------------------------------------------------------------------- Oracle

_ORA_CONNECTION = {
    "ORA-01033",  # initialization or shutdown in progress
    "ORA-01034",  # not available
    "ORA-01089",  # immediate shutdown
    "ORA-03113",  # end-of-file on communication channel
    "ORA-03114",  # not connected
    "ORA-03135",  # connection lost contact
    "ORA-12170",  # connect timeout
    "ORA-12514",  # listener does not know the service
    "ORA-12516",  # no available handler
    "ORA-12520",
    "ORA-12528",  # instance blocking new connections
    "ORA-12537",  # connection closed
    "ORA-12541",  # no listener
    "ORA-12543",
    "ORA-12545",  # host unknown / unreachable
    "ORA-12547",
    "ORA-12560",
}
_ORA_TRANSIENT = {
    "ORA-00054",  # resource busy (NOWAIT)
    "ORA-00051",  # timeout waiting for a resource
    "ORA-00060",  # deadlock
    "ORA-04061",  # package state invalidated
    "ORA-04068",  # package state discarded
    "ORA-08177",  # cannot serialize access
    "ORA-30006",  # resource busy (WAIT timeout)
}
_ORA_TIMEOUT = {
    "DPY-4024",  # call timeout exceeded
    "ORA-03156",  # OCI call timed out
    "ORA-01013",  # user requested cancel of current operation
}


def _classify_oracle(exc: BaseException) -> tuple[type[SqlError], dict[str, Any]]:
    err = exc.args[0] if getattr(exc, "args", None) else None
    code = getattr(err, "full_code", None)
    details: dict[str, Any] = {"code": code} if code else {}
    if code in _ORA_TIMEOUT:
        return SqlTimeout, details
    if code in _ORA_CONNECTION or (code or "").startswith(("DPY-6", "DPY-4011", "DPY-1001")):
        return SqlConnectionError, details
    if code in _ORA_TRANSIENT or getattr(err, "isrecoverable", False):
        return SqlTransientError, details
    return SqlError, details


# --------------------------------------------------------------------------- the one entry


def driver_message(exc: BaseException) -> str:
    """The driver's own message: SQLAlchemy wrappers are unwrapped so no parameters show."""
    orig = getattr(exc, "orig", None)
    if orig is not None:
        exc = orig
    text = str(exc).strip()
    return text or type(exc).__name__


def mask(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of each non-empty secret in ``text`` by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def classify_sql_error(
    exc: BaseException,
    *,
    kind: str,
    connection: str,
    statement: int | None = None,
    secrets: Iterable[str | None] = (),
) -> SqlError:
    """Turn a driver (or SQLAlchemy pool) exception into the right :class:`SqlError` subtype.

    Args:
        exc: What was raised.
        kind: ``postgresql``, ``mysql`` or ``oracle``.
        connection: Name of the connection (for the message and details).
        statement: Index of the failing statement, if one was running.
        secrets: Values to mask out of the message (the password).
    """
    import sqlalchemy.exc

    if isinstance(exc, SqlError):
        return exc
    cls: type[SqlError]
    details: dict[str, Any]
    orig = getattr(exc, "orig", None) if isinstance(exc, sqlalchemy.exc.DBAPIError) else None
    target = orig if orig is not None else exc
    if isinstance(exc, sqlalchemy.exc.TimeoutError):
        cls, details = SqlTransientError, {"reason": "pool_exhausted"}
    elif isinstance(target, (TimeoutError, asyncio.TimeoutError)):
        cls, details = SqlTimeout, {"reason": "client_timeout"}
    elif isinstance(target, (ConnectionError, OSError)):
        cls, details = SqlConnectionError, {}
    elif kind == "postgresql" and _is_module_error(target, "psycopg"):
        cls, details = _classify_pg(target)
    elif kind == "mysql" and _is_module_error(target, "pymysql"):
        cls, details = _classify_mysql(target)
    elif kind == "oracle" and _is_module_error(target, "oracledb"):
        cls, details = _classify_oracle(target)
    elif isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        cls, details = SqlConnectionError, {}
    else:
        cls, details = SqlError, {}
    message = mask(driver_message(target), secrets)
    info: dict[str, Any] = {"connection": connection, "kind": kind, **details}
    if statement is not None:
        info["statement"] = statement
    info["error"] = type(target).__name__
    return cls(f"{connection}: {message}", info)


def _is_module_error(exc: BaseException, module: str) -> bool:
    return any(t.__module__.split(".")[0] == module for t in type(exc).__mro__)
