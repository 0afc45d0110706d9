"""Configuration of the SQL activity: validation naming the field, secrets masked, registry."""

from __future__ import annotations

import logging

import msgspec
import pytest

from cadenza.activities._sql import sql_query
from cadenza.activities._sql_config import (
    SqlConnectionConfig,
    engine_spec,
    validate_connection_config,
    validate_sql_step_config,
)
from cadenza.activities._sql_pools import (
    get_sql_connection,
    register_sql_connection,
    unregister_sql_connection,
)
from cadenza.history import ApplicationError, InvalidArgumentError, NotFoundError

PG = {"name": "pg", "kind": "postgresql", "host": "db.example", "database": "app"}


def _conn(**over):
    return SqlConnectionConfig(**{**PG, **over})


def test_password_is_masked_in_repr_and_describe():
    cfg = _conn(user="app", password="s3cret-pw")
    assert "s3cret-pw" not in repr(cfg)
    assert "s3cret-pw" not in str(cfg)
    assert "password='***'" in repr(cfg)
    assert cfg.describe() == "postgresql://app@db.example:5432/app"
    url_cfg = SqlConnectionConfig(
        name="u", kind="mysql", url="mysql://app:urlpass99@db.example:3307/shop"
    )
    assert "urlpass99" not in repr(url_cfg)
    assert url_cfg.describe() == "mysql://app@db.example:3307/shop"


def test_credentials_travel_outside_the_url():
    spec = engine_spec(_conn(user="app", password="s3cret-pw", port=6543))
    assert spec.url == "postgresql+psycopg://"
    assert spec.connect_args["password"] == "s3cret-pw"
    assert spec.connect_args["host"] == "db.example"
    assert spec.connect_args["port"] == 6543
    assert spec.connect_args["dbname"] == "app"


def test_url_fields_are_merged_and_fields_win():
    cfg = SqlConnectionConfig(
        name="m",
        kind="mysql",
        url="mariadb://root:frompw@10.0.0.5/shop?ssl_verify_cert=true",
        password="override",
    )
    validate_connection_config(cfg)
    spec = engine_spec(cfg)
    assert spec.url == "mysql+aiomysql://"
    assert spec.connect_args["host"] == "10.0.0.5"
    assert spec.connect_args["port"] == 3306
    assert spec.connect_args["db"] == "shop"
    assert spec.connect_args["user"] == "root"
    assert spec.connect_args["password"] == "override"
    assert spec.connect_args["ssl_verify_cert"] == "true"


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"name": "bad name!"}, "connection.name"),
        ({"port": 0}, "connection.port"),
        ({"url": "postgresql://h/db"}, "connection.host"),  # both url and host
        ({"host": None}, "connection.host"),  # neither
        ({"host": "h;rm -rf"}, "connection.host"),
        ({"service_name": "X"}, "connection.service_name"),
        ({"pool_min_size": 0}, "connection.pool_min_size"),
        ({"pool_min_size": 5, "pool_max_size": 2}, "connection.pool_max_size"),
        ({"pool_recycle": -1.0}, "connection.pool_recycle"),
        ({"connect_timeout": 0.0}, "connection.connect_timeout"),
        ({"statement_timeout": float("inf")}, "connection.statement_timeout"),
        ({"driver_options": {"password": "x"}}, "connection.driver_options.password"),
        ({"host": None, "url": "mysql://h/db"}, "connection.url"),  # kind mismatch
        ({"host": None, "url": "sqlite:///x.db"}, "connection.url"),
    ],
)
def test_connection_validation_names_the_field(over, field):
    with pytest.raises(InvalidArgumentError) as err:
        validate_connection_config(_conn(**over))
    assert err.value.field == field


STEP = {"connection": {**PG}, "sql": "SELECT :a", "params": {"a": 1}}


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"max_rows": -1}, "max_rows"),
        ({"max_bytes": 10}, "max_bytes"),
        ({"statement_timeout": 0}, "statement_timeout"),
        ({"mode": "delete"}, "mode"),
        ({"row_format": "csv"}, "row_format"),
        ({"surprise": 1}, "surprise"),
        ({"params": {}}, "params"),  # :a has no value
        ({"params": {"a": 1, "bad-name": 2}}, "params.bad-name"),
        ({"sql": None}, "sql"),
        ({"sql": "   "}, "sql"),
        ({"procedure": "p"}, "procedure"),  # both sql and procedure
        ({"statements": [{"sql": "SELECT 1"}]}, "sql"),  # both sql and statements
        ({"sql": "SELECT 'x"}, "sql"),
        ({"mode": "call"}, "procedure"),
        ({"out": ["x"]}, "out"),
        ({"connection": {**PG, "port": 70000}}, "connection.port"),
        ({"connection": {**PG, "colour": "red"}}, "connection.colour"),
    ],
)
def test_step_validation_names_the_field(over, field):
    with pytest.raises(InvalidArgumentError) as err:
        validate_sql_step_config({**STEP, **over})
    assert err.value.field == field


@pytest.mark.parametrize(
    ("statements", "field"),
    [
        ([{"sql": "SELECT 1"}, {"sql": "SELECT :x"}], "statements[1].params"),
        ([{"sql": "SELECT 1"}, {}], "statements[1].sql"),
        ([{"procedure": "p;drop"}], "statements[0].procedure"),
        ([{"procedure": "p", "out": {"x": "money"}}], "statements[0].out.x"),
        ([{"procedure": "p", "mode": "rows"}], "statements[0].mode"),
        ([{"procedure": "f", "function": True, "out": ["x"]}], "statements[0].out"),
        ([{"sql": "SELECT 1", "returns": "number"}], "statements[0].out"),
    ],
)
def test_statement_validation_names_the_field(statements, field):
    with pytest.raises(InvalidArgumentError) as err:
        validate_sql_step_config(
            {"connection": {**PG}, "statements": statements, "params": {"unused": 1}}
        )
    assert err.value.field == field


def test_step_params_are_shared_by_statements():
    step = validate_sql_step_config(
        {
            "connection": {**PG},
            "params": {"day": "2024-01-31"},
            "statements": [
                {"sql": "DELETE FROM t WHERE day = :day", "mode": "execute"},
                {"sql": "SELECT :day, :n", "params": {"n": 2}},
            ],
        }
    )
    assert len(step.statements) == 2


def test_named_connection_without_registry_is_validated_except_placeholders():
    # lint of a job file: the connection is only a name here
    validate_sql_step_config({"connection": "warehouse", "sql": "SELECT :unknown"})
    cfg = SqlConnectionConfig(**PG)
    with pytest.raises(InvalidArgumentError):
        validate_sql_step_config(
            {"connection": "warehouse", "sql": "SELECT :unknown"}, connection=cfg
        )


async def test_activity_rejects_bad_config_before_any_io(closed_port, caplog):
    caplog.set_level(logging.DEBUG)
    config = {
        "connection": {**PG, "host": "127.0.0.1", "port": closed_port, "password": "pw-123"},
        "sql": "SELECT 1",
        "max_rows": -5,
    }
    with pytest.raises(ApplicationError) as err:
        await sql_query(config)
    assert err.value.type == "InvalidArgumentError"
    assert err.value.non_retryable
    assert err.value.details[0]["field"] == "max_rows"
    assert "opening SQL pool" not in caplog.text  # no pool, no connection attempt


async def test_unknown_named_connection_is_a_config_error():
    with pytest.raises(ApplicationError) as err:
        await sql_query({"connection": "never-registered", "sql": "SELECT 1"})
    assert err.value.type == "InvalidArgumentError"
    assert err.value.details[0]["field"] == "connection"
    assert err.value.non_retryable


async def test_registry_refuses_a_silent_redefinition():
    cfg = SqlConnectionConfig(**{**PG, "name": "reg-test"})
    try:
        register_sql_connection(cfg)
        register_sql_connection(SqlConnectionConfig(**{**PG, "name": "reg-test"}))  # same: ok
        other = SqlConnectionConfig(**{**PG, "name": "reg-test", "database": "other"})
        with pytest.raises(InvalidArgumentError):
            register_sql_connection(other)
        register_sql_connection(other, replace=True)
        assert get_sql_connection("reg-test").database == "other"
    finally:
        await unregister_sql_connection("reg-test")
    with pytest.raises(NotFoundError):
        get_sql_connection("reg-test")


def test_step_config_round_trips_as_json():
    step = validate_sql_step_config(STEP)
    again = msgspec.json.decode(msgspec.json.encode(step), type=type(step))
    assert again == step


def test_sql_text_fields_for_lint():
    from cadenza.activities._sql_config import sql_text_fields

    config = {
        "connection": "dw",
        "statements": [
            {"sql": "DELETE FROM t WHERE day = '{{ trigger.day }}'"},
            {"procedure": "refresh"},
        ],
    }
    assert sql_text_fields(config) == [
        ("statements[0].sql", "DELETE FROM t WHERE day = '{{ trigger.day }}'"),
        ("statements[1].procedure", "refresh"),
    ]
    assert sql_text_fields({"sql": "SELECT 1"}) == [("sql", "SELECT 1")]
