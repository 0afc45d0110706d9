"""The SQL activity against the real PostgreSQL server (a fresh database per test)."""

from __future__ import annotations

import asyncio
import logging

import msgspec
import pytest

from cadenza.activities._sql import sql_query
from cadenza.activities._sql_pools import sql_pool_status
from cadenza.history import ApplicationError

pytestmark = pytest.mark.postgres

INJECTION = "Robert'); DROP TABLE account; --"


async def _setup(conn) -> None:
    await sql_query(
        {
            "connection": conn.name,
            "statements": [
                {
                    "sql": "CREATE TABLE account (id int PRIMARY KEY, owner text NOT NULL,"
                    " balance numeric(18,2), opened date, seen timestamp, seen_tz timestamptz,"
                    " active bool, meta jsonb, meta_json json, photo bytea, note text)",
                    "mode": "execute",
                }
            ],
        }
    )


async def test_insert_with_params_stores_injection_literally(pg_conn):
    await _setup(pg_conn)
    inserted = await sql_query(
        {
            "connection": pg_conn.name,
            "sql": "INSERT INTO account (id, owner, note) VALUES (:id, :owner, :note)",
            "params": {"id": 1, "owner": INJECTION, "note": "50% off: 'quoted' :colon"},
            "mode": "execute",
        }
    )
    assert inserted == {"mode": "execute", "affected_rows": 1}
    got = await sql_query(
        {
            "connection": pg_conn.name,
            "sql": "SELECT owner, note FROM account WHERE owner = :owner",
            "params": {"owner": INJECTION},
        }
    )
    assert got["rows"] == [{"owner": INJECTION, "note": "50% off: 'quoted' :colon"}]
    tables = await sql_query(
        {
            "connection": pg_conn.name,
            "sql": "SELECT count(*) AS n FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_name = :t",
            "params": {"t": "account"},
        }
    )
    assert tables["rows"] == [{"n": 1}]


async def test_types_come_back_json_safe(pg_conn):
    await _setup(pg_conn)
    await sql_query(
        {
            "connection": pg_conn.name,
            "sql": "INSERT INTO account VALUES (:id, :owner, :balance, :opened, :seen, :seen_tz,"
            " :active, :meta::jsonb, :meta::json, decode(:photo, 'hex'), NULL)",
            "params": {
                "id": 7,
                "owner": "Nguyễn Văn A",
                "balance": "1234567890123456.78",
                "opened": "2024-01-31",
                "seen": "2024-01-31 08:15:30.25",
                "seen_tz": "2024-01-31T08:15:30+07:00",
                "active": True,
                "meta": {"tier": "gold", "limits": [1, 2.5]},
                "photo": "00ff10",
            },
            "mode": "execute",
        }
    )
    got = await sql_query(
        {
            "connection": pg_conn.name,
            "sql": "SELECT id, owner, balance, opened, seen, seen_tz AT TIME ZONE 'UTC' AS utc,"
            " active, meta, meta_json, photo, note, '{\"k\":1}'::jsonb -> 'k' AS k,"
            " '10:30'::time AS t, interval '1 day 2 hours' AS i,"
            " gen_random_uuid() IS NOT NULL AS has_uuid FROM account",
        }
    )
    assert got["columns"][:3] == ["id", "owner", "balance"]
    row = got["rows"][0]
    assert row["id"] == 7
    assert row["owner"] == "Nguyễn Văn A"
    assert row["balance"] == "1234567890123456.78"  # exact, as a string
    assert row["opened"] == "2024-01-31"
    assert row["seen"] == "2024-01-31T08:15:30.250000"
    assert row["utc"] == "2024-01-31T01:15:30"
    assert row["active"] is True
    assert row["meta"] == {"tier": "gold", "limits": [1, 2.5]}
    assert row["meta_json"] == {"tier": "gold", "limits": [1, 2.5]}
    assert row["photo"] == "AP8Q"  # base64 of 00 ff 10
    assert row["note"] is None
    assert row["k"] == 1
    assert row["t"] == "10:30:00"
    assert row["i"] == "P1DT2H"
    numbers = await sql_query(
        {
            "connection": pg_conn.name,
            "sql": "SELECT 12.50::numeric AS a, 0.1::numeric(30,25) AS b,"
            " 123456789012345678901234567890::numeric AS c",
            "decimals": "number",
            "row_format": "lists",
        }
    )
    assert numbers["rows"] == [[12.5, 0.1, "123456789012345678901234567890"]]


async def test_row_limit_truncates_or_fails(pg_conn):
    query = {"connection": pg_conn.name, "sql": "SELECT g FROM generate_series(1, 25) g"}
    got = await sql_query({**query, "max_rows": 10})
    assert [r["g"] for r in got["rows"]] == list(range(1, 11))
    assert got["truncated"] is True
    assert got["truncated_reason"] == "max_rows"
    exact = await sql_query({**query, "max_rows": 25})
    assert exact["truncated"] is False
    assert exact["row_count"] == 25
    with pytest.raises(ApplicationError) as err:
        await sql_query({**query, "max_rows": 10, "fail_on_truncate": True})
    assert err.value.type == "SqlResultTooLarge"
    assert err.value.non_retryable


async def test_byte_limit_truncates(pg_conn):
    got = await sql_query(
        {
            "connection": pg_conn.name,
            "sql": "SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, 100) g",
            "max_bytes": 10_000,
        }
    )
    assert got["truncated"] is True
    assert got["truncated_reason"] == "max_bytes"
    assert 5 <= got["row_count"] < 10
    assert len(msgspec.json.encode(got["rows"])) <= 10_000


async def test_affected_rows_and_returning(pg_conn):
    await _setup(pg_conn)
    returned = await sql_query(
        {
            "connection": pg_conn.name,
            "sql": "INSERT INTO account (id, owner) SELECT g, 'o' || g FROM generate_series(1, 5) g"
            " RETURNING id",
            "row_format": "lists",
        }
    )
    assert returned["rows"] == [[1], [2], [3], [4], [5]]
    updated = await sql_query(
        {
            "connection": pg_conn.name,
            "sql": "UPDATE account SET active = true WHERE id > :min",
            "params": {"min": 2},
            "mode": "execute",
        }
    )
    assert updated["affected_rows"] == 3


async def test_statements_share_one_transaction(pg_conn):
    await _setup(pg_conn)
    ok = await sql_query(
        {
            "connection": pg_conn.name,
            "params": {"owner": "shared"},
            "statements": [
                {
                    "sql": "INSERT INTO account (id, owner) VALUES (1, :owner)",
                    "mode": "execute",
                },
                {
                    "sql": "INSERT INTO account (id, owner) VALUES (2, :owner)",
                    "mode": "execute",
                },
                {"sql": "SELECT count(*) AS n FROM account WHERE owner = :owner"},
            ],
        }
    )
    assert [r["mode"] for r in ok["results"]] == ["execute", "execute", "rows"]
    assert ok["results"][2]["rows"] == [{"n": 2}]
    assert ok["truncated"] is False
    with pytest.raises(ApplicationError) as err:
        await sql_query(
            {
                "connection": pg_conn.name,
                "statements": [
                    {"sql": "INSERT INTO account (id, owner) VALUES (3, 'c')", "mode": "execute"},
                    {"sql": "UPDATE account SET owner = 'changed'", "mode": "execute"},
                    {"sql": "INSERT INTO account (id, owner) VALUES (1, 'dup')", "mode": "execute"},
                ],
            }
        )
    assert err.value.type == "SqlError"
    assert err.value.non_retryable
    assert err.value.details[0]["sqlstate"] == "23505"
    assert err.value.details[0]["statement"] == 2
    after = await sql_query(
        {"connection": pg_conn.name, "sql": "SELECT id, owner FROM account ORDER BY id"}
    )
    assert after["rows"] == [{"id": 1, "owner": "shared"}, {"id": 2, "owner": "shared"}]


async def test_procedure_and_function_calls(pg_conn):
    await sql_query(
        {
            "connection": pg_conn.name,
            "mode": "execute",
            "statements": [
                {"sql": "CREATE TABLE ledger (amount numeric)"},
                {
                    "sql": "CREATE PROCEDURE add_entry(IN amount numeric, INOUT note text,"
                    " OUT total numeric) LANGUAGE plpgsql AS $$"
                    " BEGIN INSERT INTO ledger VALUES (amount);"
                    " SELECT sum(l.amount) INTO total FROM ledger l;"
                    " note := note || ': ok'; END $$"
                },
                {
                    "sql": "CREATE FUNCTION double_it(x int) RETURNS int LANGUAGE sql"
                    " AS 'SELECT x * 2'"
                },
                {
                    "sql": "CREATE FUNCTION series(n int) RETURNS TABLE(i int, sq int)"
                    " LANGUAGE sql AS 'SELECT g, g * g FROM generate_series(1, n) g'"
                },
            ],
        }
    )
    called = await sql_query(
        {
            "connection": pg_conn.name,
            "procedure": "add_entry",
            "params": {"amount": "10.5", "note": "first"},
            "out": ["total"],
        }
    )
    assert called["mode"] == "call"
    assert called["out"] == {"note": "first: ok", "total": "10.5"}
    again = await sql_query(
        {
            "connection": pg_conn.name,
            "procedure": "add_entry",
            "params": {"amount": 2, "note": "second"},
            "out": ["total"],
        }
    )
    assert again["out"]["total"] == "12.5"
    fn = await sql_query(
        {
            "connection": pg_conn.name,
            "procedure": "double_it",
            "function": True,
            "params": {"x": 21},
        }
    )
    assert fn["return_value"] == 42
    table_fn = await sql_query(
        {
            "connection": pg_conn.name,
            "procedure": "series",
            "function": True,
            "params": {"n": 3},
            "row_format": "lists",
        }
    )
    assert table_fn["columns"] == ["i", "sq"]
    assert table_fn["rows"] == [[1, 1], [2, 4], [3, 9]]


async def test_statement_timeout_is_retryable_and_pool_survives(pg_conn):
    with pytest.raises(ApplicationError) as err:
        await sql_query(
            {"connection": pg_conn.name, "sql": "SELECT pg_sleep(2)", "statement_timeout": 0.2}
        )
    assert err.value.type == "SqlTimeout"
    assert not err.value.non_retryable
    assert err.value.details[0]["sqlstate"] == "57014"
    # the timeout was transaction-local: the next run on the same pool has the default again
    got = await sql_query({"connection": pg_conn.name, "sql": "SHOW statement_timeout"})
    assert got["rows"] == [{"statement_timeout": "5min"}]
    status = sql_pool_status(pg_conn.name)
    assert status is not None
    assert status["checked_out"] == 0


async def test_pool_is_reused_across_runs(pg_conn):
    query = {"connection": pg_conn.name, "sql": "SELECT pg_backend_pid() AS pid"}
    first = await sql_query(query)
    pool_id = sql_pool_status(pg_conn.name)["pool_id"]
    pids = {first["rows"][0]["pid"]}
    for _ in range(4):
        pids.add((await sql_query(query))["rows"][0]["pid"])
    assert len(pids) == 1  # one server session served every run
    status = sql_pool_status(pg_conn.name)
    assert status["pool_id"] == pool_id
    assert status["checked_in"] == 1
    assert status["checked_out"] == 0


async def test_pool_caps_concurrent_connections(pg_url, sql_registry):
    conn = sql_registry(kind="postgresql", url=pg_url, pool_max_size=2)
    runs = [
        sql_query({"connection": conn.name, "sql": "SELECT pg_backend_pid() AS pid, pg_sleep(0.1)"})
        for _ in range(6)
    ]
    results = await asyncio.gather(*runs)
    pids = {r["rows"][0]["pid"] for r in results}
    assert 1 <= len(pids) <= 2
    assert sql_pool_status(conn.name)["checked_out"] == 0


async def test_inline_connection_gets_a_pool_too(pg_url, sql_registry):
    step = {
        "connection": {"name": "inline", "kind": "postgresql", "url": pg_url},
        "sql": "SELECT pg_backend_pid() AS pid",
    }
    first = await sql_query(step)
    second = await sql_query(step)
    assert first["rows"] == second["rows"]  # same server session: the pool was reused


async def test_read_only_rejects_writes(pg_conn):
    await _setup(pg_conn)
    with pytest.raises(ApplicationError) as err:
        await sql_query(
            {
                "connection": pg_conn.name,
                "sql": "INSERT INTO account (id, owner) VALUES (1, 'x')",
                "mode": "execute",
                "read_only": True,
            }
        )
    assert err.value.type == "SqlError"
    assert err.value.details[0]["sqlstate"] == "25006"
    rows = await sql_query(
        {"connection": pg_conn.name, "sql": "SELECT count(*) AS n FROM account", "read_only": True}
    )
    assert rows["rows"] == [{"n": 0}]


@pytest.mark.parametrize(
    ("sql", "sqlstate"),
    [
        ("SELEC 1", "42601"),
        ("SELECT nope FROM account", "42703"),
        ("SELECT * FROM missing_table", "42P01"),
        ("SELECT 1/0", "22012"),
    ],
)
async def test_statement_errors_are_not_retryable(pg_conn, sql, sqlstate):
    await _setup(pg_conn)
    with pytest.raises(ApplicationError) as err:
        await sql_query({"connection": pg_conn.name, "sql": sql})
    assert err.value.type == "SqlError"
    assert err.value.non_retryable
    assert err.value.details[0]["sqlstate"] == sqlstate
    assert err.value.details[0]["connection"] == pg_conn.name


async def test_unreachable_server_is_retryable_and_password_never_leaks(
    sql_registry, closed_port, caplog
):
    caplog.set_level(logging.DEBUG)
    secret = "pg-Secret-4242"
    conn = sql_registry(
        kind="postgresql",
        host="127.0.0.1",
        port=closed_port,
        user="postgres",
        password=secret,
        database="postgres",
        connect_timeout=2,
    )
    with pytest.raises(ApplicationError) as err:
        await sql_query({"connection": conn.name, "sql": "SELECT 1"})
    assert err.value.type == "SqlConnectionError"
    assert not err.value.non_retryable
    assert secret not in str(err.value)
    assert secret not in repr(err.value.details)
    assert secret not in caplog.text


async def test_duplicate_column_names_need_aliases_for_dicts(pg_conn):
    with pytest.raises(ApplicationError) as err:
        await sql_query({"connection": pg_conn.name, "sql": "SELECT 1 AS a, 2 AS a"})
    assert err.value.type == "SqlError"
    assert "row_format" in str(err.value)
    got = await sql_query(
        {"connection": pg_conn.name, "sql": "SELECT 1 AS a, 2 AS a", "row_format": "lists"}
    )
    assert got["rows"] == [[1, 2]]


async def test_list_params_bind_as_arrays(pg_conn):
    got = await sql_query(
        {
            "connection": pg_conn.name,
            "sql": "SELECT g FROM generate_series(1, 5) g WHERE g = ANY(:ids) ORDER BY g",
            "params": {"ids": [2, 4]},
            "row_format": "lists",
        }
    )
    assert got["rows"] == [[2], [4]]
    # an object binds as JSON text; jsonb's ? operator is not mistaken for a placeholder
    has = await sql_query(
        {
            "connection": pg_conn.name,
            "sql": "SELECT :doc::jsonb ? 'a' AS has_a, :doc::jsonb -> 'a' AS a",
            "params": {"doc": {"a": [1, "x"]}},
        }
    )
    assert has["rows"] == [{"has_a": True, "a": [1, "x"]}]


async def test_idempotency_key_is_bound_inside_an_activity(pg_conn):
    from datetime import UTC, datetime

    from cadenza.activities import ActivityContext, ActivityInfo, reset_context, set_context

    await sql_query(
        {
            "connection": pg_conn.name,
            "sql": "CREATE TABLE payment (key text PRIMARY KEY, amount numeric)",
            "mode": "execute",
        }
    )
    now = datetime.now(UTC)
    beats: list = []
    ctx = ActivityContext(
        info=ActivityInfo(
            activity_id="1",
            activity_type="sql",
            attempt=2,
            idempotency_key="wf-1/run-1/7",
            workflow_id="wf-1",
            run_id="run-1",
            workflow_type="Pay",
            namespace="default",
            task_queue="q",
            scheduled_event_id=7,
            scheduled_time=now,
            started_time=now,
        ),
        heartbeater=beats.append,
    )
    step = {
        "connection": pg_conn.name,
        "sql": "INSERT INTO payment VALUES (:idempotency_key, :amount) ON CONFLICT DO NOTHING",
        "params": {"amount": 100},
        "mode": "execute",
    }
    token = set_context(ctx)
    try:
        first = await sql_query(step)
        retried = await sql_query(step)  # a second attempt of the same activity
    finally:
        reset_context(token)
    assert first["affected_rows"] == 1
    assert retried["affected_rows"] == 0
    assert beats  # each statement heartbeats inside an activity
    rows = await sql_query({"connection": pg_conn.name, "sql": "SELECT key FROM payment"})
    assert rows["rows"] == [{"key": "wf-1/run-1/7"}]
    # outside an activity there is no key: the placeholder needs a value
    with pytest.raises(ApplicationError) as err:
        await sql_query(step)
    assert err.value.type == "InvalidArgumentError"
