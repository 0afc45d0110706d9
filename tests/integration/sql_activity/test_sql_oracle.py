"""Oracle, without an Oracle server: configuration, DSN building, SQL lexing, output types, and
a real python-oracledb (thin, async) connection attempt to a closed local port.

No Oracle database runs in this environment, so statements, calls and timeouts on Oracle are
not exercised here; docs/activities/sql.md says so.
"""

from __future__ import annotations

import pytest

from cadenza.activities._sql import sql_query
from cadenza.activities._sql_config import (
    OUT_TYPES,
    SqlConnectionConfig,
    engine_spec,
    validate_connection_config,
    validate_sql_step_config,
)
from cadenza.activities._sql_dialects import oracle_var_type
from cadenza.activities._sql_params import parse_sql, render_sql
from cadenza.history import ApplicationError, InvalidArgumentError

ORA = {
    "name": "ora",
    "kind": "oracle",
    "host": "ora.bank.local",
    "service_name": "CORE.PDB1",
    "user": "batch",
    "password": "pw",
}


def test_service_name_builds_easy_connect():
    cfg = SqlConnectionConfig(**{**ORA, "password": "Tiger#123", "port": 1522})
    validate_connection_config(cfg)
    spec = engine_spec(cfg)
    assert spec.url == "oracle+oracledb://"
    assert spec.connect_args == {
        "dsn": "ora.bank.local:1522/CORE.PDB1",
        "user": "batch",
        "password": "Tiger#123",
        "tcp_connect_timeout": 10.0,
    }
    assert "Tiger#123" not in repr(cfg)
    assert cfg.describe() == "oracle://batch@ora.bank.local:1522/CORE.PDB1"


def test_sid_builds_a_connect_descriptor():
    cfg = SqlConnectionConfig(
        name="o", kind="oracle", host="10.1.2.3", database="ORCL", user="u", password="p"
    )
    validate_connection_config(cfg)
    assert engine_spec(cfg).connect_args["dsn"] == (
        "(DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST=10.1.2.3)(PORT=1521))(CONNECT_DATA=(SID=ORCL)))"
    )


def test_url_forms():
    by_service = SqlConnectionConfig(
        name="o", kind="oracle", url="oracle://scott:pw@db1:1530/?service_name=SALES"
    )
    validate_connection_config(by_service)
    args = engine_spec(by_service).connect_args
    assert args["dsn"] == "db1:1530/SALES"
    assert args["user"] == "scott"
    assert args["password"] == "pw"
    by_sid = SqlConnectionConfig(
        name="o", kind="oracle", url="oracle+oracledb://scott@db1/XE", password="pw"
    )
    validate_connection_config(by_sid)
    assert "(SID=XE)" in engine_spec(by_sid).connect_args["dsn"]


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"service_name": None}, "connection.service_name"),
        ({"user": None}, "connection.user"),
        ({"password": None}, "connection.password"),
        ({"service_name": "X)(HOST=evil"}, "connection.service_name"),
        ({"host": "h)(ADDRESS=(HOST=evil"}, "connection.host"),
        ({"service_name": None, "database": "a b"}, "connection.database"),
        ({"driver_options": {"dsn": "elsewhere"}}, "connection.driver_options.dsn"),
    ],
)
def test_oracle_validation_names_the_field(over, field):
    with pytest.raises(InvalidArgumentError) as err:
        validate_connection_config(SqlConnectionConfig(**{**ORA, **over}))
    assert err.value.field == field


def test_plsql_lexing_and_named_binds():
    parsed = parse_sql(
        "BEGIN v_total := :amount * 2; -- :not_this\n"
        "  INSERT INTO log VALUES (q'[it's :literal]', :who, SYSDATE); END;",
        "oracle",
    )
    assert parsed.names == ("amount", "who")
    sql, params = render_sql(parsed, "oracle", {"amount": 5, "who": "job", "extra": 1})
    assert ":p0 * 2" in sql
    assert ":p1, SYSDATE" in sql
    assert "q'[it's :literal]'" in sql
    assert params == {"p0": 5, "p1": "job"}


def test_every_out_type_maps_to_a_driver_variable_type():
    for name in OUT_TYPES:
        assert oracle_var_type(name)  # a cursor.var() type for each declared name


def test_call_config_is_validated():
    validate_sql_step_config(
        {
            "connection": {**ORA},
            "procedure": "billing.pkg_close.close_day",
            "params": {"p_day": "2024-01-31"},
            "out": {"p_count": "integer", "p_report": "clob"},
        }
    )
    with pytest.raises(InvalidArgumentError) as err:
        validate_sql_step_config(
            {"connection": {**ORA}, "procedure": "pkg.f", "function": True, "returns": "money"}
        )
    assert err.value.field == "returns"


async def test_closed_port_is_a_retryable_connection_error(closed_port, sql_registry):
    conn = sql_registry(
        kind="oracle",
        host="127.0.0.1",
        port=closed_port,
        service_name="FREEPDB1",
        user="app",
        password="ora-Secret-77",
        connect_timeout=2,
    )
    with pytest.raises(ApplicationError) as err:
        await sql_query({"connection": conn.name, "sql": "SELECT 1 FROM dual"})
    assert err.value.type == "SqlConnectionError"
    assert not err.value.non_retryable
    assert err.value.details[0]["code"].startswith("DPY-6")
    assert err.value.details[0]["kind"] == "oracle"
    assert "ora-Secret-77" not in str(err.value)


async def test_inline_oracle_call_also_fails_retryably(closed_port, sql_registry):
    with pytest.raises(ApplicationError) as err:
        await sql_query(
            {
                "connection": {**ORA, "host": "127.0.0.1", "port": closed_port},
                "procedure": "pkg.run",
                "out": {"n": "number"},
            }
        )
    assert err.value.type == "SqlConnectionError"
