"""One SQL text, two drivers' parameter styles (``history/_driver.py``)."""

from __future__ import annotations

from cadenza.history._driver import DriverSql


def test_named_parameters_become_pyformat_for_postgresql_only() -> None:
    sql = DriverSql("SELECT a FROM t\n  WHERE b = :b AND c = :c_2")
    assert sql.sqlite == "SELECT a FROM t WHERE b = :b AND c = :c_2"
    assert sql.postgresql == "SELECT a FROM t WHERE b = %(b)s AND c = %(c_2)s"


def test_casts_and_quoted_colons_are_not_parameters() -> None:
    sql = DriverSql("SELECT :x::bigint, 'a:b'")
    assert sql.postgresql == "SELECT %(x)s::bigint, 'a:b'"


def test_a_dialect_specific_text_for_postgresql() -> None:
    sql = DriverSql(
        "SELECT 1 FROM s WHERE id IN (SELECT value FROM json_each(:ids))",
        postgresql="SELECT 1 FROM s WHERE id = ANY(:ids) FOR KEY SHARE",
    )
    assert "json_each(:ids)" in sql.sqlite
    assert sql.postgresql == "SELECT 1 FROM s WHERE id = ANY(%(ids)s) FOR KEY SHARE"


def test_an_insert_takes_its_rows_as_one_json_parameter_on_postgresql() -> None:
    from cadenza.history._driver import _insert_json_text, _insert_text

    pg = _insert_json_text("events", ("a", "b"), "ON CONFLICT DO NOTHING")
    assert pg == (
        "INSERT INTO events (a, b) SELECT a, b"
        " FROM json_populate_recordset(NULL::events, %s::json) ON CONFLICT DO NOTHING"
    )
    assert pg.count("%s") == 1
    lite = _insert_text("tasks", ("a", "b"), "")
    assert lite == "INSERT INTO tasks (a, b) VALUES (:a, :b)"
