"""Fixtures for the SQL activity tests: connections to fresh databases, pools closed per test."""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from cadenza.activities._sql_config import SqlConnectionConfig
from cadenza.activities._sql_pools import (
    close_sql_pools,
    register_sql_connection,
    unregister_sql_connection,
)


@pytest.fixture
async def sql_registry() -> AsyncIterator[Callable[..., SqlConnectionConfig]]:
    """Registers connections under unique names; unregisters them and closes every pool at
    the end of the test (pools belong to the test's event loop)."""
    names: list[str] = []

    def register(**fields: Any) -> SqlConnectionConfig:
        name = fields.pop("name", None) or f"t_{secrets.token_hex(4)}"
        cfg = SqlConnectionConfig(name=name, **fields)
        register_sql_connection(cfg)
        names.append(name)
        return cfg

    yield register
    for name in names:
        await unregister_sql_connection(name)
    await close_sql_pools()


@pytest.fixture(scope="module")
def pg_url(pg_database_factory) -> str:
    """A fresh PostgreSQL database for the module. (Each test works in its own fresh schema of
    it: dropping a used database costs the server a checkpoint, seconds per database.)"""
    return pg_database_factory("sql")


@pytest.fixture
def pg_conn(pg_url, sql_registry) -> SqlConnectionConfig:
    """A registered PostgreSQL connection whose ``search_path`` is a fresh, empty schema."""
    import psycopg

    schema = f"t_{secrets.token_hex(4)}"
    with psycopg.connect(pg_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    return sql_registry(
        kind="postgresql", url=pg_url, driver_options={"options": f"-c search_path={schema}"}
    )


@pytest.fixture
def my_conn(mysql_database_factory, sql_registry) -> SqlConnectionConfig:
    """A registered MariaDB connection to a fresh database."""
    p = mysql_database_factory("sql")
    return sql_registry(
        kind="mysql",
        host=p["host"],
        port=p["port"],
        user=p["user"],
        password=p["password"] or None,
        database=p["database"],
    )


@pytest.fixture
def closed_port() -> int:
    """A local TCP port on which nothing listens (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
