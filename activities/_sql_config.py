"""Configuration of the SQL activity: connections, steps, statements, and their validation.

Everything here is checked before any I/O. A bad value raises
:class:`~cadenza.history.InvalidArgumentError` naming the field (``statements[1].params``,
``connection.port`` ...) and the reason; the activity turns that into a non-retryable failure.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from cadenza.activities._sql_params import (
    PARAM_NAME,
    ROUTINE_NAME,
    ParsedSql,
    SqlKind,
    parse_sql,
    render_sql,
)
from cadenza.history import InvalidArgumentError

SqlMode = Literal["rows", "execute", "call"]
RowFormat = Literal["dicts", "lists"]

#: Types an Oracle OUT parameter (or function result) may be declared with.
OUT_TYPES = frozenset(
    {
        "string",
        "number",
        "integer",
        "float",
        "date",
        "timestamp",
        "bytes",
        "clob",
        "blob",
        "boolean",
    }
)

DEFAULT_PORTS: dict[str, int] = {"postgresql": 5432, "mysql": 3306, "oracle": 1521}
_SCHEMES: dict[str, str] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "postgresql+psycopg": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "mysql+aiomysql": "mysql",
    "mariadb+aiomysql": "mysql",
    "oracle": "oracle",
    "oracle+oracledb": "oracle",
}
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.%A-Za-z]+\]|[A-Za-z0-9_.\-]{1,253}|[0-9A-Fa-f:]+)$")
_SERVICE = re.compile(r"^[A-Za-z0-9_.\-$#]{1,128}$")
_RESERVED_OPTIONS = frozenset(
    {"host", "port", "user", "username", "password", "passwd", "dbname", "db", "database", "dsn"}
)
MAX_TIMEOUT = 86_400.0
MAX_OUTPUT_BYTES = 64 * 1024 * 1024
MAX_ROWS_LIMIT = 1_000_000


class SqlConnectionConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A named database connection and its pool.

    Give either ``url`` or ``host`` (with ``port``, ``database``, ``service_name``). ``user``
    and ``password`` override what the URL holds. The password is a secret: it is masked in
    ``repr()``, never logged, and masked out of error messages.

    Attributes:
        name: Name that steps use to refer to the connection (letters, digits, ``_.-``).
        kind: ``postgresql``, ``mysql`` (also MariaDB) or ``oracle``.
        url: ``postgresql://user@host:5432/db``, ``mysql://`` or ``mariadb://``,
            ``oracle://user@host:1521/?service_name=ORCLPDB1`` (path = SID). Query-string
            items become driver options. Default: none.
        host: Server host name or IP address. Default: none.
        port: Server port. Default: 5432, 3306 or 1521 by kind.
        database: Database name (PostgreSQL, MySQL), or the SID (Oracle). Default: none.
        service_name: Oracle service name. Default: none.
        user: User name. Default: from the URL.
        password: Password (secret). Default: from the URL, or none.
        pool_min_size: Connections kept open when idle (opened on demand, not up front).
            Default 1.
        pool_max_size: Most connections open at once; more callers wait up to
            ``pool_timeout``. Default 10.
        pool_recycle: Seconds after which a pooled connection is replaced. Default 1800.
        pool_timeout: Seconds to wait for a free pooled connection. Default 30.
        connect_timeout: Seconds to open one connection. Default 10.
        statement_timeout: Default limit in seconds for each statement. Default 300.
        driver_options: Extra keyword arguments for the driver's connect call (e.g.
            ``sslmode`` for PostgreSQL). Default none.
    """

    name: str
    kind: SqlKind
    url: str | None = None
    host: str | None = None
    port: int | None = None
    database: str | None = None
    service_name: str | None = None
    user: str | None = None
    password: str | None = None
    pool_min_size: int = 1
    pool_max_size: int = 10
    pool_recycle: float = 1800.0
    pool_timeout: float = 30.0
    connect_timeout: float = 10.0
    statement_timeout: float = 300.0
    driver_options: dict[str, str | int | float | bool] = {}

    def __repr__(self) -> str:
        return (
            f"SqlConnectionConfig(name={self.name!r}, kind={self.kind!r}, "
            f"target={self.describe()!r}, password={'***' if self.password else None!r})"
        )

    __str__ = __repr__

    def describe(self) -> str:
        """A printable description of the target: never the password."""
        try:
            target = resolve_target(self)
        except InvalidArgumentError:
            return "<invalid>"
        user = f"{target.user}@" if target.user else ""
        where = target.host or ""
        if target.port:
            where += f":{target.port}"
        if self.kind == "oracle":
            path = f"/{target.service_name}" if target.service_name else f"/SID={target.database}"
        else:
            path = f"/{target.database}" if target.database else ""
        return f"{self.kind}://{user}{where}{path}"


class SqlStatement(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One statement of a multi-statement step (all run in one transaction).

    Attributes:
        sql: SQL text with ``:name`` placeholders. Required unless ``procedure`` is given.
        params: Values for the placeholders (merged over the step's ``params``).
        mode: ``rows``, ``execute`` or ``call``. Default: the step's mode, or ``call`` when
            ``procedure`` is given.
        procedure: Stored procedure (or function, with ``function``) to call; ``params`` are
            its IN arguments by name.
        function: Call ``procedure`` as a function and return its value. Default false.
        out: Names of OUT parameters: a list, or a mapping of name to type (types matter
            for Oracle only: ``string``, ``number``, ``integer``, ``float``, ``date``,
            ``timestamp``, ``bytes``, ``clob``, ``blob``, ``boolean``).
        returns: Oracle only: the type of a function's result. Default ``string``.
    """

    sql: str | None = None
    params: dict[str, Any] = {}
    mode: SqlMode | None = None
    procedure: str | None = None
    function: bool = False
    out: list[str] | dict[str, str] = []
    returns: str | None = None


class SqlStepConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Configuration of the ``sql`` activity (the same keys as a job step's ``config:``).

    Give exactly one of ``sql``, ``procedure`` or ``statements``.

    Attributes:
        connection: Name of a registered connection, or a whole connection inline.
        sql: One statement with ``:name`` placeholders.
        procedure: One stored procedure or function to call (``mode: call``).
        function: Call ``procedure`` as a function. Default false.
        out: OUT parameters of ``procedure`` (see :class:`SqlStatement`).
        returns: Oracle: type of the function's result. Default ``string``.
        params: Values bound to the placeholders (or the procedure's IN arguments). Values
            are always bound, never spliced into the SQL text.
        statements: Several statements run in ONE transaction: all commit or none does.
        mode: ``rows`` (default; columns and rows), ``execute`` (affected row count) or
            ``call`` (procedure/function call; default when ``procedure`` is given).
        row_format: ``dicts`` (default; one object per row) or ``lists``.
        max_rows: Most rows returned per statement; more sets ``truncated``. Default 10000.
        fail_on_truncate: Fail (non-retryable, rolled back) instead of truncating.
            Default false.
        max_bytes: Most bytes of JSON for all rows and values together. Default 1 MiB.
        statement_timeout: Seconds each statement may run. Default: the connection's.
        read_only: Run in a read-only transaction (rolled back at the end). Default false.
        decimals: ``string`` (default) or ``number`` (a JSON number when exact).
    """

    connection: str | SqlConnectionConfig
    sql: str | None = None
    procedure: str | None = None
    function: bool = False
    out: list[str] | dict[str, str] = []
    returns: str | None = None
    params: dict[str, Any] = {}
    statements: list[SqlStatement] = []
    mode: SqlMode | None = None
    row_format: RowFormat = "dicts"
    max_rows: int = 10_000
    fail_on_truncate: bool = False
    max_bytes: int = 1024 * 1024
    statement_timeout: float | None = None
    read_only: bool = False
    decimals: Literal["string", "number"] = "string"


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class ResolvedTarget:
    """Where a connection points, with the URL and the separate fields merged."""

    host: str | None
    port: int
    database: str | None
    service_name: str | None
    user: str | None
    password: str | None
    options: dict[str, Any]


def resolve_target(cfg: SqlConnectionConfig, *, field: str = "connection") -> ResolvedTarget:
    """Merge ``url`` and the separate fields of ``cfg`` (the fields win).

    Raises:
        InvalidArgumentError: for a URL of the wrong kind, or one that cannot be parsed.
    """
    host, port, database, service_name = cfg.host, cfg.port, cfg.database, cfg.service_name
    user, password = cfg.user, cfg.password
    options: dict[str, Any] = {}
    if cfg.url is not None:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(cfg.url)
        except (ArgumentError, ValueError):
            raise InvalidArgumentError(f"{field}.url", "not a valid database URL") from None
        url_kind = _SCHEMES.get(url.drivername)
        if url_kind is None:
            raise InvalidArgumentError(
                f"{field}.url",
                f"unsupported scheme {url.drivername!r}; use one of {sorted(_SCHEMES)}",
            )
        if url_kind != cfg.kind:
            raise InvalidArgumentError(
                f"{field}.url", f"scheme {url.drivername!r} does not match kind {cfg.kind!r}"
            )
        query = {k: (v if isinstance(v, str) else v[-1]) for k, v in url.query.items()}
        service_name = service_name or query.pop("service_name", None)
        host = host or url.host
        port = port or url.port
        database = database or url.database or None
        user = user or url.username
        password = password if password is not None else url.password
        options.update(query)
    options.update(cfg.driver_options)
    return ResolvedTarget(
        host=host,
        port=port or DEFAULT_PORTS[cfg.kind],
        database=database,
        service_name=service_name,
        user=user,
        password=password,
        options=options,
    )


def oracle_dsn(target: ResolvedTarget) -> str:
    """The python-oracledb DSN for ``target``: Easy Connect for a service name, a connect
    descriptor for a SID. Host and names were validated, so nothing here can inject."""
    if target.service_name:
        host = target.host or "localhost"
        return f"{host}:{target.port}/{target.service_name}"
    return (
        f"(DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST={target.host})(PORT={target.port}))"
        f"(CONNECT_DATA=(SID={target.database})))"
    )


@dataclass(frozen=True)
class EngineSpec:
    """What :func:`sqlalchemy.ext.asyncio.create_async_engine` gets for a connection.

    The credentials travel in ``connect_args`` only, never in the URL, so that no SQLAlchemy
    message or log line can print them.
    """

    url: str
    connect_args: dict[str, Any]


def engine_spec(cfg: SqlConnectionConfig) -> EngineSpec:
    """Build the driver URL and connect arguments of a validated connection."""
    target = resolve_target(cfg)
    args: dict[str, Any]
    if cfg.kind == "postgresql":
        args = {
            "host": target.host,
            "port": target.port,
            "dbname": target.database,
            "user": target.user,
            "password": target.password,
            # libpq takes whole seconds and treats anything below 2 as 2.
            "connect_timeout": max(2, math.ceil(cfg.connect_timeout)),
            "application_name": "cadenza",
        }
        url = "postgresql+psycopg://"
    elif cfg.kind == "mysql":
        args = {
            "host": target.host,
            "port": target.port,
            "db": target.database,
            "user": target.user,
            "password": target.password or "",
            "connect_timeout": cfg.connect_timeout,
            "charset": "utf8mb4",
        }
        url = "mysql+aiomysql://"
    else:
        args = {
            "dsn": oracle_dsn(target),
            "user": target.user,
            "password": target.password,
            "tcp_connect_timeout": cfg.connect_timeout,
        }
        url = "oracle+oracledb://"
    args = {k: v for k, v in args.items() if v is not None}
    args.update(target.options)
    return EngineSpec(url=url, connect_args=args)


# --------------------------------------------------------------------------- validation


def _positive(value: float, field: str, *, upper: float = MAX_TIMEOUT) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 < value <= upper):
        raise InvalidArgumentError(
            field, f"must be a number of seconds above 0 and at most {upper}"
        )


def validate_connection_config(cfg: SqlConnectionConfig, *, field: str = "connection") -> None:
    """Check a connection's fields (no I/O). Raises InvalidArgumentError naming the field."""
    if not _NAME.match(cfg.name):
        raise InvalidArgumentError(
            f"{field}.name", "must be 1-100 letters, digits, '_', '.' or '-'"
        )
    if cfg.url is not None and cfg.host is not None:
        raise InvalidArgumentError(f"{field}.host", "give either url or host, not both")
    if cfg.url is None and cfg.host is None:
        raise InvalidArgumentError(f"{field}.host", "give url or host")
    if cfg.port is not None and not 1 <= cfg.port <= 65535:
        raise InvalidArgumentError(f"{field}.port", "must be between 1 and 65535")
    if cfg.service_name is not None and cfg.kind != "oracle":
        raise InvalidArgumentError(f"{field}.service_name", "only Oracle connections have one")
    if cfg.pool_min_size < 1:
        raise InvalidArgumentError(f"{field}.pool_min_size", "must be at least 1")
    if cfg.pool_max_size < cfg.pool_min_size or cfg.pool_max_size > 1000:
        raise InvalidArgumentError(
            f"{field}.pool_max_size", "must be at least pool_min_size and at most 1000"
        )
    _positive(cfg.pool_recycle, f"{field}.pool_recycle")
    _positive(cfg.pool_timeout, f"{field}.pool_timeout", upper=3600)
    _positive(cfg.connect_timeout, f"{field}.connect_timeout", upper=600)
    _positive(cfg.statement_timeout, f"{field}.statement_timeout")
    for key in cfg.driver_options:
        if key.lower() in _RESERVED_OPTIONS:
            raise InvalidArgumentError(
                f"{field}.driver_options.{key}", "set this with the connection's own field"
            )
    target = resolve_target(cfg, field=field)
    if target.host is not None and not (
        _HOST.match(target.host) or (cfg.kind == "postgresql" and target.host.startswith("/"))
    ):
        raise InvalidArgumentError(f"{field}.host", "not a valid host name or address")
    if target.host is None and cfg.kind != "postgresql":
        raise InvalidArgumentError(f"{field}.host", "the URL names no host")
    if cfg.kind == "oracle":
        if not target.user:
            # python-oracledb thin mode has no OS (bequeath) authentication.
            raise InvalidArgumentError(f"{field}.user", "an Oracle connection needs a user")
        if target.password is None and "access_token" not in target.options:
            raise InvalidArgumentError(
                f"{field}.password",
                "python-oracledb thin mode needs a password (or driver_options.access_token)",
            )
        if not target.service_name and not target.database:
            raise InvalidArgumentError(
                f"{field}.service_name", "an Oracle connection needs service_name or database (SID)"
            )
        for name, value in (("service_name", target.service_name), ("database", target.database)):
            if value is not None and not _SERVICE.match(value):
                raise InvalidArgumentError(f"{field}.{name}", "not a valid Oracle name")
    for key in target.options:
        if key.lower() in _RESERVED_OPTIONS:
            raise InvalidArgumentError(f"{field}.url", f"query item {key!r} is not allowed")


def coerce_step_config(config: Any) -> SqlStepConfig:
    """Accept a :class:`SqlStepConfig` or a mapping of its keys (as in a job file).

    Raises:
        InvalidArgumentError: naming the offending field, when the keys do not fit.
    """
    if isinstance(config, SqlStepConfig):
        return config
    try:
        return msgspec.convert(config, SqlStepConfig)
    except msgspec.ValidationError as exc:
        raise InvalidArgumentError(*_field_of(str(exc))) from None


def _field_of(message: str) -> tuple[str, str]:
    path = ""
    m = re.search(r" - at `\$\.?([^`]*)`$", message)
    if m:
        path = m.group(1)
        message = message[: m.start()]
    unknown = re.search(r"unknown field `([^`]+)`", message)
    if unknown:
        path = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
    return (path or "config"), message


@dataclass(frozen=True)
class PlannedStatement:
    """A validated statement, ready for a driver.

    Attributes:
        index: Position in the step (0 for a single statement).
        field: Field path used in messages (``sql`` or ``statements[2]``).
        mode: ``rows``, ``execute`` or ``call``.
        sql: The statement parsed for the connection's kind (None for calls).
        params: The merged parameters.
        procedure: Routine name (calls only).
        function: True to call ``procedure`` as a function.
        out: OUT parameter names with their types.
        returns: Oracle type of a function's result.
    """

    index: int
    field: str
    mode: SqlMode
    sql: ParsedSql | None
    params: dict[str, Any]
    procedure: str | None
    function: bool
    out: dict[str, str]
    returns: str


#: Placeholder that is bound to the activity's idempotency key unless ``params`` sets it.
IDEMPOTENCY_KEY_PARAM = "idempotency_key"


def plan_statements(
    step: SqlStepConfig, kind: SqlKind | None, *, implicit: dict[str, Any] | None = None
) -> list[PlannedStatement]:
    """Validate ``step`` and return its statements, parsed for ``kind``.

    With ``kind=None`` (a named connection that is not known here, e.g. when linting a job
    file) everything but the placeholder check is validated.

    Args:
        step: The step configuration.
        kind: The connection's kind, when known.
        implicit: Values available to every statement unless ``params`` overrides them (the
            activity passes ``idempotency_key``).

    Raises:
        InvalidArgumentError: naming the field, on any bad value.
    """
    single = [x for x in ("sql", "procedure") if getattr(step, x) is not None]
    if step.statements and single:
        raise InvalidArgumentError(single[0], "give either statements or sql/procedure, not both")
    if len(single) > 1:
        raise InvalidArgumentError("procedure", "give either sql or procedure, not both")
    if not step.statements and not single:
        raise InvalidArgumentError("sql", "give sql, procedure or statements")
    if not 0 <= step.max_rows <= MAX_ROWS_LIMIT:
        raise InvalidArgumentError("max_rows", f"must be between 0 and {MAX_ROWS_LIMIT}")
    if not 1024 <= step.max_bytes <= MAX_OUTPUT_BYTES:
        raise InvalidArgumentError("max_bytes", f"must be between 1024 and {MAX_OUTPUT_BYTES}")
    if step.statement_timeout is not None:
        _positive(step.statement_timeout, "statement_timeout")
    if isinstance(step.connection, SqlConnectionConfig):
        validate_connection_config(step.connection)
    elif not _NAME.match(step.connection):
        raise InvalidArgumentError("connection", "not a valid connection name")
    _check_params(step.params, "params")
    if step.statements:
        if step.mode is not None and step.mode == "call":
            raise InvalidArgumentError(
                "mode", "with statements, set mode: call on each statement that calls"
            )
        if step.function or step.out or step.returns is not None:
            raise InvalidArgumentError(
                "function", "function, out and returns belong on each statement"
            )
        # A statement sees the implicit values, then the step's shared params, then its own;
        # a call gets only the arguments given with it.
        sources = [
            (f"statements[{i}]", s, {**(implicit or {}), **step.params, **s.params}, s.params)
            for i, s in enumerate(step.statements)
        ]
    else:
        sources = [("", step, {**(implicit or {}), **step.params}, step.params)]
    planned = []
    for index, (prefix, source, sql_params, call_args) in enumerate(sources):
        planned.append(_plan_one(index, prefix, source, sql_params, call_args, step.mode, kind))
    return planned


def _check_params(params: dict[str, Any], field: str) -> None:
    for key in params:
        if not PARAM_NAME.match(key):
            raise InvalidArgumentError(
                f"{field}.{key}", "parameter names are letters, digits and '_'"
            )


def _plan_one(
    index: int,
    prefix: str,
    source: SqlStatement | SqlStepConfig,
    sql_params: dict[str, Any],
    call_args: dict[str, Any],
    step_mode: SqlMode | None,
    kind: SqlKind | None,
) -> PlannedStatement:
    def f(name: str) -> str:
        return f"{prefix}.{name}" if prefix else name

    if isinstance(source, SqlStatement):
        _check_params(source.params, f("params"))
        if source.sql is None and source.procedure is None:
            raise InvalidArgumentError(f("sql"), "give sql or procedure")
        if source.sql is not None and source.procedure is not None:
            raise InvalidArgumentError(f("procedure"), "give either sql or procedure, not both")
        own_mode = source.mode
    else:
        own_mode = None
    mode: SqlMode
    if own_mode is not None:
        mode = own_mode
    elif source.procedure is not None:
        mode = "call"
    else:
        mode = step_mode if step_mode is not None and step_mode != "call" else "rows"
    if step_mode == "call" and source.procedure is None:
        raise InvalidArgumentError(f("procedure"), "mode call needs procedure")
    if mode == "call" and source.procedure is None:
        raise InvalidArgumentError(f("procedure"), "mode call needs procedure")
    if mode != "call" and source.procedure is not None:
        raise InvalidArgumentError(f("mode"), f"procedure needs mode call, not {mode}")
    out = _out_types(source.out, f("out"))
    returns = source.returns or "string"
    if mode == "call":
        assert_routine(source.procedure or "", f("procedure"))
        if returns not in OUT_TYPES:
            raise InvalidArgumentError(f("returns"), f"must be one of {sorted(OUT_TYPES)}")
        if source.function and out:
            raise InvalidArgumentError(f("out"), "a function call has no OUT parameters")
    elif out or source.function or source.returns is not None:
        raise InvalidArgumentError(f("out"), "out, function and returns need mode call")
    parsed = None
    if source.sql is not None:
        if not source.sql.strip():
            raise InvalidArgumentError(f("sql"), "must not be empty")
        if kind is not None:
            parsed = parse_sql(source.sql, kind, field=f("sql"))
            render_sql(parsed, kind, sql_params, field=f("params"))
    return PlannedStatement(
        index=index,
        field=prefix or ("procedure" if source.procedure is not None else "sql"),
        mode=mode,
        sql=parsed,
        params=dict(call_args if mode == "call" else sql_params),
        procedure=source.procedure,
        function=source.function,
        out=out,
        returns=returns,
    )


def assert_routine(name: str, field: str) -> None:
    """Check a routine name: it is put into SQL text, so only plain identifiers pass."""
    if not ROUTINE_NAME.match(name):
        raise InvalidArgumentError(
            field, "must be a plain (optionally schema-qualified) identifier like billing.close_day"
        )


def _out_types(out: list[str] | dict[str, str], field: str) -> dict[str, str]:
    mapping = dict(out) if isinstance(out, dict) else dict.fromkeys(out, "string")
    for name, type_ in mapping.items():
        if not PARAM_NAME.match(name):
            raise InvalidArgumentError(f"{field}.{name}", "not a valid parameter name")
        if type_ not in OUT_TYPES:
            raise InvalidArgumentError(
                f"{field}.{name}", f"type must be one of {sorted(OUT_TYPES)}"
            )
    if isinstance(out, list) and len(out) != len(mapping):
        raise InvalidArgumentError(field, "names must be unique")
    return mapping


def validate_sql_step_config(
    config: Any, *, connection: SqlConnectionConfig | None = None
) -> SqlStepConfig:
    """Validate a ``sql`` step's configuration without any I/O (for ``lint`` and the activity).

    Args:
        config: A :class:`SqlStepConfig` or a mapping of its keys.
        connection: The registered connection the step names, when known; it enables the
            placeholder check (placeholders are read by the rules of its kind).

    Returns:
        The decoded configuration.

    Raises:
        InvalidArgumentError: naming the field and the reason.
    """
    step = coerce_step_config(config)
    kind = step.connection.kind if isinstance(step.connection, SqlConnectionConfig) else None
    if connection is not None:
        kind = connection.kind
    plan_statements(step, kind, implicit={IDEMPOTENCY_KEY_PARAM: ""})
    return step


def sql_text_fields(config: Any) -> list[tuple[str, str]]:
    """The fields of a ``sql`` step whose text becomes SQL: ``(field path, text)`` pairs.

    For job-file lint: a template (``{{ ... }}`` or ``${...}``) in one of these would splice a
    value into SQL text; it belongs in ``params`` instead. Accepts the raw mapping of a step's
    ``config`` (nothing is validated here).
    """
    found: list[tuple[str, str]] = []
    if not isinstance(config, dict):
        return found
    for key in ("sql", "procedure"):
        if isinstance(config.get(key), str):
            found.append((key, config[key]))
    statements = config.get("statements")
    if isinstance(statements, list):
        for i, st in enumerate(statements):
            if isinstance(st, dict):
                for key in ("sql", "procedure"):
                    if isinstance(st.get(key), str):
                        found.append((f"statements[{i}].{key}", st[key]))
    return found
