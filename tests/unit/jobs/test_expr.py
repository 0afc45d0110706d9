"""The condition / expression language: parsing, evaluation, errors with columns."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cadenza.engine._job_expr import (
    WILDCARD,
    ExpressionError,
    TemplateContext,
    TemplateError,
    compile_expression,
    evaluate,
    expression_references,
    filter_names,
)

CTX = TemplateContext(
    variables={"ENV": "prod", "LIMIT": 10, "REGIONS": ["north", "south"]},
    secrets=frozenset({"TOKEN"}),
    steps={
        "fetch": {
            "output": {"count": 3, "rows": [{"id": 7}, {"id": 9}], "ok": True},
            "status": "completed",
        },
        "load-rows": {"output": None, "status": "failed"},
    },
    trigger={"source": "webhook", "payload": {"x": 5, "tags": ["a", "b"], "name": "Nam"}},
    execution={"id": "run-1"},
)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("true", True),
        ("false", False),
        ("null", False),
        ("steps.fetch.output.count == 3", True),
        ("steps.fetch.output.count != 3", False),
        ("steps.fetch.output.count > 2 and steps.fetch.output.count <= 3", True),
        ("steps.fetch.output.count < 3 or trigger.source == 'webhook'", True),
        ("not steps.fetch.output.ok", False),
        ("not not steps.fetch.output.ok", True),
        ('steps.load-rows.status == "failed"', True),
        ("${ENV} == 'prod'", True),
        ("vars.ENV in ['prod', 'staging']", True),
        ("vars.ENV not in ['prod', 'staging']", False),
        ("'nor' in vars.REGIONS[0]", True),
        ("'east' in vars.REGIONS", False),
        ("'x' in trigger.payload", True),
        ("trigger.payload.tags[-1] == 'b'", True),
        ("steps.fetch.output.rows[*].id == [7, 9]", True),
        ("9 in steps.fetch.output.rows[*].id", True),
        ("trigger.payload['name'] >= 'N'", True),
        ("1 == 1.0", True),
        ("1 == true", False),
        ("'1' == 1", False),
        ("(1 < 2) == true", True),
        ("not (vars.LIMIT > 5 and false)", True),
        ("trigger.payload.missing | default(0) == 0", True),
        ("trigger.payload.tags | length == 2", True),
        ("[] ", False),
        ("-1.5e2 < 0", True),
        ("'a\\'b' == \"a'b\"", True),
        ("execution.id == 'run-1'", True),
    ],
)
def test_conditions_evaluate(condition: str, expected: bool) -> None:
    assert evaluate(condition, CTX) is expected


def test_and_or_short_circuit_missing_references() -> None:
    # The right side would fail (no such key); it is never evaluated.
    assert evaluate("false and trigger.payload.nothing == 1", CTX) is False
    assert evaluate("true or trigger.payload.nothing == 1", CTX) is True


@pytest.mark.parametrize(
    ("condition", "column", "fragment"),
    [
        ("steps.a ==", 11, "expected a value"),
        ("a && b", 3, "use 'and', 'or', 'not'"),
        ("a == 'x", 6, "unterminated string"),
        ("(a == 1", 8, "expected ')'"),
        ("a == 1 == 2", 8, "chained comparisons"),
        ("a.", 3, "expected a name after '.'"),
        ("a[1.5]", 3, "expected an integer index"),
        ("a | nope", 5, "unknown filter 'nope'"),
        ("a b", 3, "unexpected 'b'"),
        ("", 1, "empty expression"),
        ("${1x}", 1, "'${' must be followed by a variable name"),
        ("a @ b", 3, "unexpected character '@'"),
        ("'\\q'", 2, "unknown escape"),
        ("f(x=1, 2)", 2, "unexpected '('"),
        ("a | date_add(days=1, 2)", 22, "positional argument cannot follow"),
    ],
)
def test_syntax_errors_give_the_column(condition: str, column: int, fragment: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression(condition, field="steps[1].when")
    assert info.value.field == "steps[1].when"
    assert info.value.column == column
    assert fragment in info.value.reason
    assert f"at column {column}" in info.value.reason


@pytest.mark.parametrize(
    ("condition", "fragment"),
    [
        ("steps.nope.output.x == 1", "step 'nope' has no result"),
        (
            "steps.fetch.output.rows[5].id == 1",
            "steps.fetch.output.rows[5]: index 5 is out of range",
        ),
        ("steps.fetch.output.nothing", "no key 'nothing' in steps.fetch.output"),
        ("${MISSING} == 1", "unknown variable 'MISSING'"),
        ("unknown.x", "unknown name 'unknown'"),
        ("${TOKEN} == 'x'", "secret variables cannot be used"),
        ("1 < 'a'", "cannot compare a number with a string"),
        ("null < 1", "cannot compare null with a number"),
        ("1 in 5", "needs a list, a string or a mapping"),
        ("1 in 'abc'", "needs a string on the left"),
        ("steps.fetch.output.count.x", "cannot read 'x' of a number"),
        ("trigger.payload.x[*]", "[*] needs a list"),
    ],
)
def test_evaluation_errors_name_the_reference(condition: str, fragment: str) -> None:
    with pytest.raises(ExpressionError) as info:
        evaluate(condition, CTX, field="steps[3].when")
    assert info.value.field == "steps[3].when"
    assert fragment in info.value.reason


def test_template_error_is_an_invalid_argument_error() -> None:
    from cadenza.history import InvalidArgumentError

    assert issubclass(ExpressionError, TemplateError)
    assert issubclass(TemplateError, InvalidArgumentError)


def test_references_are_listed_in_order() -> None:
    refs = expression_references(
        "steps.fetch.output.rows[*].id and ${ENV} == vars.X or item.sku in trigger.payload['k']"
    )
    assert [str(r) for r in refs] == [
        "steps.fetch.output.rows[*].id",
        "vars.ENV",
        "vars.X",
        "item.sku",
        "trigger.payload.k",
    ]
    assert refs[0].step == "fetch"
    assert refs[0].path == ("fetch", "output", "rows", WILDCARD, "id")
    assert refs[1].variable == "ENV"
    assert refs[3].root == "item"


def test_compile_once_evaluate_many() -> None:
    expression = compile_expression("steps.fetch.output.count >= vars.LIMIT")
    assert compile_expression("steps.fetch.output.count >= vars.LIMIT") is expression
    low = TemplateContext(variables={"LIMIT": 1}, steps=CTX.steps)
    high = TemplateContext(variables={"LIMIT": 100}, steps=CTX.steps)
    assert expression.evaluate(low) is True
    assert expression.evaluate(high) is False


def test_locals_and_filters_in_expressions() -> None:
    ctx = CTX.with_locals(item={"sku": "A-1", "qty": 2}, item_index=0)
    assert evaluate("item.sku | lower == 'a-1'", ctx) is True
    assert evaluate("item_index == 0", ctx) is True
    with pytest.raises(ExpressionError, match="unexpected"):
        compile_expression("item.qty * 2")


def test_date_values_compare() -> None:
    ctx = TemplateContext(schedule={"nominal_time": "2025-03-01T00:30:00+07:00"})
    assert evaluate(
        "schedule.nominal_time | date < schedule.nominal_time | date | date_add(days=1)", ctx
    )
    expr = compile_expression("schedule.nominal_time | yesterday")
    assert expr.evaluate(ctx) == date(2025, 2, 28)


def test_filter_names_are_documented() -> None:
    names = filter_names()
    for required in (
        "date_add",
        "format",
        "yesterday",
        "start_of_month",
        "end_of_month",
        "default",
    ):
        assert required in names


# --------------------------------------------------------------------------- property tests

_ALPHABET = st.sampled_from(
    list("abcxyz_019 .,[]()'\"|=!<>*-${}\\\n\t")
    + ["and", "or", "not", "in", "true", "null", "steps", "${A}"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_ALPHABET, max_size=30).map("".join))
def test_random_text_never_crashes_the_parser(text: str) -> None:
    try:
        expression = compile_expression(text)
    except ExpressionError as exc:
        assert exc.column is not None and 1 <= exc.column <= len(text) + 1
        return
    # What parses evaluates to a value or a documented error, nothing else.
    try:
        expression.evaluate(CTX)
    except TemplateError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_unicode_never_crashes_the_parser(text: str) -> None:
    try:
        compile_expression(text).evaluate(CTX)
    except TemplateError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=4),
        max_leaves=10,
    )
)
def test_literals_evaluate_to_themselves(value: object) -> None:
    import json

    text = json.dumps(value).replace("null", "null")
    assert compile_expression(text).evaluate(CTX) == value
