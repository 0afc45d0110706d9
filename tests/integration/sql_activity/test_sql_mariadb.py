"""The SQL activity against the real MariaDB server (a fresh database per test)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from cadenza.activities._sql import sql_query
from cadenza.activities._sql_pools import engine_for, sql_pool_status
from cadenza.history import ApplicationError

pytestmark = pytest.mark.mariadb

INJECTION = "Robert'); DROP TABLE account; -- \\' \" `"


async def _setup(conn) -> None:
    await sql_query(
        {
            "connection": conn.name,
            "sql": "CREATE TABLE account (id int PRIMARY KEY, owner varchar(200) NOT NULL,"
            " balance decimal(18,2), opened date, seen datetime(3), active bool, meta json,"
            " photo blob, note text, at_time time)",
            "mode": "execute",
        }
    )


async def test_insert_with_params_stores_injection_literally(my_conn):
    await _setup(my_conn)
    inserted = await sql_query(
        {
            "connection": my_conn.name,
            "sql": "INSERT INTO account (id, owner, note) VALUES (:id, :owner, :note)",
            "params": {"id": 1, "owner": INJECTION, "note": "50% off: 'quoted' :colon"},
            "mode": "execute",
        }
    )
    assert inserted == {"mode": "execute", "affected_rows": 1}
    got = await sql_query(
        {
            "connection": my_conn.name,
            "sql": "SELECT owner, note FROM account WHERE owner = :owner",
            "params": {"owner": INJECTION},
        }
    )
    assert got["rows"] == [{"owner": INJECTION, "note": "50% off: 'quoted' :colon"}]
    tables = await sql_query(
        {
            "connection": my_conn.name,
            "sql": "SELECT count(*) AS n FROM information_schema.tables"
            " WHERE table_schema = DATABASE() AND table_name = :t",
            "params": {"t": "account"},
        }
    )
    assert tables["rows"] == [{"n": 1}]


async def test_types_come_back_json_safe(my_conn):
    await _setup(my_conn)
    await sql_query(
        {
            "connection": my_conn.name,
            "sql": "INSERT INTO account VALUES (:id, :owner, :balance, :opened, :seen, :active,"
            " :meta, UNHEX(:photo), NULL, :at)",
            "params": {
                "id": 7,
                "owner": "Nguyễn Văn A",
                "balance": "1234567890123456.78",
                "opened": "2024-01-31",
                "seen": "2024-01-31 08:15:30.250",
                "active": True,
                "meta": {"tier": "gold", "limits": [1, 2.5]},
                "photo": "00ff10",
                "at": "10:30:05",
            },
            "mode": "execute",
        }
    )
    got = await sql_query(
        {
            "connection": my_conn.name,
            "sql": "SELECT id, owner, balance, opened, seen, active, meta, photo, note, at_time,"
            " JSON_VALUE(meta, '$.tier') AS tier FROM account",
        }
    )
    row = got["rows"][0]
    assert row["id"] == 7
    assert row["owner"] == "Nguyễn Văn A"
    assert row["balance"] == "1234567890123456.78"
    assert row["opened"] == "2024-01-31"
    assert row["seen"] == "2024-01-31T08:15:30.250000"
    assert row["active"] == 1  # MariaDB BOOL is TINYINT(1)
    # MariaDB's JSON is LONGTEXT: the JSON text comes back as a string
    assert json.loads(row["meta"]) == {"tier": "gold", "limits": [1, 2.5]}
    assert row["photo"] == "AP8Q"
    assert row["note"] is None
    assert row["at_time"] == "10:30:05"
    assert row["tier"] == "gold"
    numbers = await sql_query(
        {
            "connection": my_conn.name,
            "sql": "SELECT CAST(12.50 AS DECIMAL(10,2)) AS a, CAST(7 AS DECIMAL(10,0)) AS b",
            "decimals": "number",
            "row_format": "lists",
        }
    )
    assert numbers["rows"] == [[12.5, 7]]


async def test_row_limit_truncates_or_fails(my_conn):
    query = {"connection": my_conn.name, "sql": "SELECT seq AS g FROM seq_1_to_25"}
    got = await sql_query({**query, "max_rows": 10})
    assert [r["g"] for r in got["rows"]] == list(range(1, 11))
    assert got["truncated"] is True
    assert got["truncated_reason"] == "max_rows"
    with pytest.raises(ApplicationError) as err:
        await sql_query({**query, "max_rows": 10, "fail_on_truncate": True})
    assert err.value.type == "SqlResultTooLarge"
    # the unbuffered cursor was drained and the connection is fine for the next run
    exact = await sql_query({**query, "max_rows": 25})
    assert exact["row_count"] == 25
    assert exact["truncated"] is False


async def test_affected_rows_counts_matched_rows(my_conn):
    await _setup(my_conn)
    await sql_query(
        {
            "connection": my_conn.name,
            "sql": "INSERT INTO account (id, owner) SELECT seq, CONCAT('o', seq) FROM seq_1_to_5",
            "mode": "execute",
        }
    )
    updated = await sql_query(
        {
            "connection": my_conn.name,
            "sql": "UPDATE account SET active = 1 WHERE id > :min",
            "params": {"min": 2},
            "mode": "execute",
        }
    )
    assert updated["affected_rows"] == 3
    # rows that match but do not change are counted too, as PostgreSQL does
    same = await sql_query(
        {
            "connection": my_conn.name,
            "sql": "UPDATE account SET active = 1 WHERE id > :min",
            "params": {"min": 2},
            "mode": "execute",
        }
    )
    assert same["affected_rows"] == 3


async def test_statements_share_one_transaction(my_conn):
    await _setup(my_conn)
    ok = await sql_query(
        {
            "connection": my_conn.name,
            "params": {"owner": "shared"},
            "statements": [
                {"sql": "INSERT INTO account (id, owner) VALUES (1, :owner)", "mode": "execute"},
                {"sql": "INSERT INTO account (id, owner) VALUES (2, :owner)", "mode": "execute"},
                {"sql": "SELECT count(*) AS n FROM account WHERE owner = :owner"},
            ],
        }
    )
    assert ok["results"][2]["rows"] == [{"n": 2}]
    with pytest.raises(ApplicationError) as err:
        await sql_query(
            {
                "connection": my_conn.name,
                "statements": [
                    {"sql": "INSERT INTO account (id, owner) VALUES (3, 'c')", "mode": "execute"},
                    {"sql": "UPDATE account SET owner = 'changed'", "mode": "execute"},
                    {"sql": "INSERT INTO account (id, owner) VALUES (1, 'dup')", "mode": "execute"},
                ],
            }
        )
    assert err.value.type == "SqlError"
    assert err.value.non_retryable
    assert err.value.details[0]["errno"] == 1062
    assert err.value.details[0]["statement"] == 2
    after = await sql_query(
        {"connection": my_conn.name, "sql": "SELECT id, owner FROM account ORDER BY id"}
    )
    assert after["rows"] == [{"id": 1, "owner": "shared"}, {"id": 2, "owner": "shared"}]


async def test_procedure_and_function_calls(my_conn):
    await sql_query(
        {
            "connection": my_conn.name,
            "mode": "execute",
            "statements": [
                {"sql": "CREATE TABLE ledger (amount decimal(10,2))"},
                {
                    "sql": "CREATE PROCEDURE add_entry(OUT total decimal(10,2), IN amount"
                    " decimal(10,2), INOUT note varchar(100))"
                    " BEGIN INSERT INTO ledger VALUES (amount);"
                    " SELECT sum(amount) INTO total FROM ledger;"
                    " SET note = CONCAT(note, ': ok'); END"
                },
                {
                    "sql": "CREATE PROCEDURE list_entries(IN min_amount decimal(10,2))"
                    " BEGIN SELECT amount FROM ledger WHERE amount >= min_amount"
                    " ORDER BY amount; END"
                },
                {"sql": "CREATE FUNCTION double_it(x int) RETURNS int DETERMINISTIC RETURN x * 2"},
            ],
        }
    )
    called = await sql_query(
        {
            "connection": my_conn.name,
            "procedure": "add_entry",
            "params": {"amount": "10.5", "note": "first"},
            "out": ["total", "note"],
        }
    )
    assert called["mode"] == "call"
    assert called["out"] == {"total": "10.50", "note": "first: ok"}
    await sql_query(
        {
            "connection": my_conn.name,
            "procedure": "add_entry",
            "params": {"amount": 2, "note": "x"},
        }
    )
    listed = await sql_query(
        {
            "connection": my_conn.name,
            "procedure": "list_entries",
            "params": {"min_amount": 1},
            "row_format": "lists",
        }
    )
    assert listed["rows"] == [["2.00"], ["10.50"]]
    fn = await sql_query(
        {
            "connection": my_conn.name,
            "procedure": "double_it",
            "function": True,
            "params": {"x": 21},
        }
    )
    assert fn["return_value"] == 42
    # an INOUT parameter without a value starts as NULL; an IN parameter must be given
    with pytest.raises(ApplicationError) as err:
        await sql_query(
            {"connection": my_conn.name, "procedure": "add_entry", "params": {"note": "n"}}
        )
    assert err.value.details[0]["reason"] == "missing_parameter"
    assert err.value.details[0]["parameter"] == "amount"
    with pytest.raises(ApplicationError) as err:
        await sql_query(
            {
                "connection": my_conn.name,
                "procedure": "add_entry",
                "params": {"amount": 1, "colour": "red"},
            }
        )
    assert err.value.details[0]["reason"] == "unknown_parameter"
    assert err.value.non_retryable
    with pytest.raises(ApplicationError) as err:
        await sql_query(
            {"connection": my_conn.name, "procedure": "no_such_proc", "params": {"a": 1}}
        )
    assert err.value.type == "SqlError"
    assert err.value.details[0]["reason"] == "unknown_routine"


async def test_statement_timeout_is_retryable_and_session_restored(my_conn):
    with pytest.raises(ApplicationError) as err:
        await sql_query(
            {"connection": my_conn.name, "sql": "SELECT SLEEP(2)", "statement_timeout": 0.2}
        )
    assert err.value.type == "SqlTimeout"
    assert not err.value.non_retryable
    assert err.value.details[0]["errno"] == 1969
    await sql_query({"connection": my_conn.name, "sql": "SELECT 1 AS one"})
    # the pooled session has the server default again once a run ends
    engine = await engine_for(my_conn, inline=False)
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        async with raw.driver_connection.cursor() as cur:
            await cur.execute("SELECT @@session.max_statement_time, @@global.max_statement_time")
            session_value, global_value = await cur.fetchone()
    assert session_value == global_value


async def test_pool_is_reused_across_runs(my_conn):
    query = {"connection": my_conn.name, "sql": "SELECT CONNECTION_ID() AS id"}
    ids = {(await sql_query(query))["rows"][0]["id"]}
    pool_id = sql_pool_status(my_conn.name)["pool_id"]
    for _ in range(4):
        ids.add((await sql_query(query))["rows"][0]["id"])
    assert len(ids) == 1
    status = sql_pool_status(my_conn.name)
    assert status["pool_id"] == pool_id
    assert status["checked_out"] == 0


async def test_pool_caps_concurrent_connections(mysql_database_factory, sql_registry):
    p = mysql_database_factory("pool")
    conn = sql_registry(
        kind="mysql",
        host=p["host"],
        port=p["port"],
        user=p["user"],
        database=p["database"],
        pool_max_size=2,
    )
    runs = [
        sql_query({"connection": conn.name, "sql": "SELECT CONNECTION_ID() AS id, SLEEP(0.1) AS s"})
        for _ in range(6)
    ]
    ids = {r["rows"][0]["id"] for r in await asyncio.gather(*runs)}
    assert 1 <= len(ids) <= 2


async def test_read_only_rejects_writes(my_conn):
    await _setup(my_conn)
    with pytest.raises(ApplicationError) as err:
        await sql_query(
            {
                "connection": my_conn.name,
                "sql": "INSERT INTO account (id, owner) VALUES (1, 'x')",
                "mode": "execute",
                "read_only": True,
            }
        )
    assert err.value.type == "SqlError"
    assert err.value.details[0]["errno"] == 1792


@pytest.mark.parametrize(
    ("sql", "errno"),
    [
        ("SELEC 1", 1064),
        ("SELECT nope FROM account", 1054),
        ("SELECT * FROM missing_table", 1146),
    ],
)
async def test_statement_errors_are_not_retryable(my_conn, sql, errno):
    await _setup(my_conn)
    with pytest.raises(ApplicationError) as err:
        await sql_query({"connection": my_conn.name, "sql": sql})
    assert err.value.type == "SqlError"
    assert err.value.non_retryable
    assert err.value.details[0]["errno"] == errno


async def test_unreachable_server_is_retryable_and_password_never_leaks(
    sql_registry, closed_port, caplog
):
    caplog.set_level(logging.DEBUG)
    secret = "my-Secret-4242"
    conn = sql_registry(
        kind="mysql",
        url=f"mariadb://root:{secret}@127.0.0.1:{closed_port}/x",
        connect_timeout=2,
    )
    with pytest.raises(ApplicationError) as err:
        await sql_query({"connection": conn.name, "sql": "SELECT 1"})
    assert err.value.type == "SqlConnectionError"
    assert not err.value.non_retryable
    assert err.value.details[0]["errno"] == 2003
    assert secret not in str(err.value)
    assert secret not in caplog.text


async def test_list_params_bind_as_json_text(my_conn):
    got = await sql_query(
        {
            "connection": my_conn.name,
            "sql": "SELECT seq FROM seq_1_to_5 WHERE seq IN"
            " (SELECT id FROM JSON_TABLE(:ids, '$[*]' COLUMNS (id INT PATH '$')) j) ORDER BY seq",
            "params": {"ids": [2, 4]},
            "row_format": "lists",
        }
    )
    assert got["rows"] == [[2], [4]]


async def test_calls_get_only_their_own_arguments(my_conn):
    from datetime import UTC, datetime

    from cadenza.activities import ActivityContext, ActivityInfo, reset_context, set_context

    await sql_query(
        {
            "connection": my_conn.name,
            "mode": "execute",
            "statements": [
                {"sql": "CREATE TABLE audit (day date, note varchar(50))"},
                {
                    "sql": "CREATE PROCEDURE log_day(IN d date, OUT n int)"
                    " BEGIN INSERT INTO audit VALUES (d, 'proc');"
                    " SELECT count(*) INTO n FROM audit; END"
                },
            ],
        }
    )
    now = datetime.now(UTC)
    ctx = ActivityContext(
        info=ActivityInfo(
            activity_id="1",
            activity_type="sql",
            attempt=1,
            idempotency_key="wf/run/3",
            workflow_id="wf",
            run_id="run",
            workflow_type="T",
            namespace="default",
            task_queue="q",
            scheduled_event_id=3,
            scheduled_time=now,
            started_time=now,
        ),
        heartbeater=lambda details: None,
    )
    token = set_context(ctx)
    try:
        # shared params feed the SQL statements; the call item gets only its own params, and
        # the implicit :idempotency_key is not passed as an argument either
        got = await sql_query(
            {
                "connection": my_conn.name,
                "params": {"day": "2024-01-31"},
                "statements": [
                    {
                        "sql": "INSERT INTO audit VALUES (:day, :idempotency_key)",
                        "mode": "execute",
                    },
                    {"procedure": "log_day", "params": {"d": "2024-02-01"}, "out": ["n"]},
                ],
            }
        )
    finally:
        reset_context(token)
    assert got["results"][1]["out"] == {"n": 2}
    rows = await sql_query(
        {"connection": my_conn.name, "sql": "SELECT day, note FROM audit ORDER BY day"}
    )
    assert rows["rows"] == [
        {"day": "2024-01-31", "note": "wf/run/3"},
        {"day": "2024-02-01", "note": "proc"},
    ]
