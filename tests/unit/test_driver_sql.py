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


def test_multi_row_insert_text_has_one_tuple_per_row_for_postgresql() -> None:
    from cadenza.history._driver import _insert_text

    pg = _insert_text("events", ("a", "b"), 3, "ON CONFLICT DO NOTHING", True)
    assert (
        pg == "INSERT INTO events (a, b) VALUES (%s, %s), (%s, %s), (%s, %s) ON CONFLICT DO NOTHING"
    )
    lite = _insert_text("tasks", ("a", "b"), 1, "", False)
    assert lite == "INSERT INTO tasks (a, b) VALUES (:a, :b)"
