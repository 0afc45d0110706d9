"""The ``:name`` placeholder lexer: what is a placeholder, what is left alone, how it renders."""

from __future__ import annotations

import pytest

from cadenza.activities._sql_params import parse_sql, render_sql
from cadenza.history import InvalidArgumentError


@pytest.mark.parametrize(
    ("kind", "sql", "names"),
    [
        ("postgresql", "SELECT * FROM t WHERE a = :a AND b = :b OR c = :a", ("a", "b")),
        ("postgresql", "SELECT x::int, :v::text, '{\"k\":1}'::jsonb", ("v",)),
        ("postgresql", "SELECT '10:30'::time, ':nope' AS s -- :comment\n, :yes", ("yes",)),
        ("postgresql", "SELECT /* :c1 /* nested :c2 */ :c3 */ :real", ("real",)),
        ("postgresql", "SELECT $$ :inside $$, $tag$ it's :x $tag$, :out", ("out",)),
        ("postgresql", "SELECT E'it\\'s :no', \"col:umn\", :yes", ("yes",)),
        ("postgresql", "SELECT arr[1:2], a\\:b, :p", ("p",)),
        ("mysql", "SELECT 'it\\'s :no', `c:ol`, :yes # :comment", ("yes",)),
        ("mysql", "SELECT 5--1, :a -- :comment", ("a",)),
        ("mysql", 'SELECT "a \\" :no", :x', ("x",)),
        ("oracle", "BEGIN x := :v; END;", ("v",)),
        ("oracle", "SELECT q'[it's :no]', q'{:no}', :yes FROM dual", ("yes",)),
        ("oracle", "SELECT ':no' || :a || '''' || :b FROM dual", ("a", "b")),
    ],
)
def test_placeholders_are_found_only_in_code(kind, sql, names):
    assert parse_sql(sql, kind).names == names


def test_render_pyformat_binds_and_doubles_percent():
    parsed = parse_sql("SELECT '50%' AS p, :x AS x WHERE y LIKE 'a%' AND z = :x", "postgresql")
    sql, params = render_sql(parsed, "postgresql", {"x": "v", "unused": 1})
    assert sql == "SELECT '50%%' AS p, %(p0)s AS x WHERE y LIKE 'a%%' AND z = %(p0)s"
    assert params == {"p0": "v"}


def test_render_named_style_for_oracle_keeps_percent():
    parsed = parse_sql("SELECT '50%' FROM dual WHERE a = :date AND b = :level", "oracle")
    sql, params = render_sql(parsed, "oracle", {"date": 1, "level": 2})
    # user names are replaced, so reserved words such as DATE or LEVEL cannot break binding
    assert sql == "SELECT '50%' FROM dual WHERE a = :p0 AND b = :p1"
    assert params == {"p0": 1, "p1": 2}


def test_escaped_colon_renders_as_literal_colon():
    parsed = parse_sql("SELECT a[\\:n], :p", "postgresql")
    sql, _ = render_sql(parsed, "postgresql", {"p": 1})
    assert sql == "SELECT a[:n], %(p0)s"


def test_values_never_reach_the_sql_text():
    evil = "x'); DROP TABLE t; --"
    parsed = parse_sql("INSERT INTO t VALUES (:v)", "mysql")
    sql, params = render_sql(parsed, "mysql", {"v": evil})
    assert evil not in sql
    assert params == {"p0": evil}


def test_missing_value_names_the_placeholder():
    parsed = parse_sql("SELECT :a, :b", "postgresql")
    with pytest.raises(InvalidArgumentError) as err:
        render_sql(parsed, "postgresql", {"a": 1}, field="statements[1].params")
    assert err.value.field == "statements[1].params"
    assert ":b" in err.value.reason


@pytest.mark.parametrize(
    ("kind", "sql", "what"),
    [
        ("postgresql", "SELECT 'abc", "unterminated string"),
        ("postgresql", "SELECT $q$ abc", "dollar-quoted"),
        ("postgresql", "SELECT /* /* */", "comment"),
        ("mysql", "SELECT `abc", "identifier"),
        ("oracle", "SELECT q'[abc' FROM dual", "q-quoted"),
    ],
)
def test_unterminated_literals_are_rejected(kind, sql, what):
    with pytest.raises(InvalidArgumentError) as err:
        parse_sql(sql, kind, field="sql")
    assert err.value.field == "sql"
    assert what in err.value.reason


@pytest.mark.parametrize(
    ("sql", "word"),
    [
        ("  -- hi\n /* x */ (SELECT 1)", "select"),
        ("insert into t values (1) returning id", "insert"),
        ("WITH a AS (SELECT 1) SELECT * FROM a", "with"),
    ],
)
def test_first_word(sql, word):
    assert parse_sql(sql, "postgresql").first_word == word
