"""Shared fixtures: fresh PostgreSQL and MariaDB databases on the local servers.

Each test run creates its own databases (named with a random suffix) and drops them at the end.
When a server cannot be reached the fixtures fail with a plain message; they never skip.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

PG_ADMIN_DSN = os.environ.get("CADENZA_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MYSQL_HOST = os.environ.get("CADENZA_TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("CADENZA_TEST_MYSQL_PORT", "3306"))
MYSQL_USER = os.environ.get("CADENZA_TEST_MYSQL_USER", "root")
MYSQL_PASSWORD = os.environ.get("CADENZA_TEST_MYSQL_PASSWORD", "")


def _pg_admin():
    import psycopg

    try:
        return psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_DSN} ({exc}). These tests need it: start "
            "the local server or set CADENZA_TEST_PG to an admin DSN.",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def pg_database_factory() -> Iterator:
    """Creates fresh PostgreSQL databases; all are dropped when the session ends.

    Call it with a label; it returns a DSN (``postgresql://...``) of a new empty database.
    """
    created: list[str] = []

    def create(label: str = "t") -> str:
        name = f"cadenza_{label}_{secrets.token_hex(4)}".lower()
        with _pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        base = PG_ADMIN_DSN.rsplit("/", 1)[0]
        return f"{base}/{name}"

    yield create
    if created:
        with _pg_admin() as conn:
            for name in created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_dsn(pg_database_factory) -> str:
    """One fresh PostgreSQL database for this test run."""
    return pg_database_factory("run")


@pytest.fixture(scope="session")
def mysql_database_factory() -> Iterator:
    """Creates fresh MariaDB/MySQL databases; returns a dict of connection parameters."""
    import pymysql

    created: list[str] = []

    def connect():
        try:
            return pymysql.connect(
                host=MYSQL_HOST,
                port=MYSQL_PORT,
                user=MYSQL_USER,
                password=MYSQL_PASSWORD,
                connect_timeout=5,
                autocommit=True,
            )
        except pymysql.err.OperationalError as exc:
            pytest.fail(
                f"MariaDB/MySQL is not reachable at {MYSQL_HOST}:{MYSQL_PORT} ({exc}); these "
                "tests need it.",
                pytrace=False,
            )

    def create(label: str = "t") -> dict:
        name = f"cadenza_{label}_{secrets.token_hex(4)}".lower()
        conn = connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{name}`")
        finally:
            conn.close()
        created.append(name)
        return {
            "host": MYSQL_HOST,
            "port": MYSQL_PORT,
            "user": MYSQL_USER,
            "password": MYSQL_PASSWORD,
            "database": name,
        }

    yield create
    if created:
        conn = connect()
        try:
            with conn.cursor() as cur:
                for name in created:
                    cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()
