"""Templates: variables, step outputs, trigger/execution/schedule data, date helpers, secrets."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cadenza.engine._job_template import (
    SecretRef,
    SecretString,
    TemplateContext,
    TemplateError,
    compile_template,
    contains_secrets,
    render,
    resolve_secrets,
    template_references,
)

# 2025-03-31 17:30 UTC is 2025-04-01 00:30 in Ho Chi Minh City: the logical "today" there is
# April 1st, whatever the machine's zone.
NOMINAL = datetime(2025, 3, 31, 17, 30, tzinfo=UTC)

CTX = TemplateContext(
    variables={
        "ENV": "prod",
        "LIMIT": 100,
        "HOSTS": ["a", "b"],
        "DB": {"host": "db1", "port": 5432},
    },
    secrets=frozenset({"TOKEN", "PASSWORD"}),
    steps={
        "fetch": {
            "output": {
                "rows": [{"id": 11, "sku": "X-1"}, {"id": 12, "sku": "X-2"}],
                "items": [{"sku": "a"}, {"sku": "b"}, {"sku": "c"}],
                "meta": {"page": {"next": None, "size": 2}},
                "weird key": {"a.b": 1},
            },
            "status": "completed",
        }
    },
    trigger={
        "source": "webhook",
        "payload": {"date": "2025-01-15", "ids": [1, 2], "order": {"id": "o-9"}},
    },
    execution={"id": "nightly/2025-03-31T17:30:00Z"},
    schedule={"nominal_time": NOMINAL, "timezone": "Asia/Ho_Chi_Minh", "id": "nightly/0"},
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # whole-string templates keep their type
        ("${LIMIT}", 100),
        ("${HOSTS}", ["a", "b"]),
        ("{{ vars.DB.port }}", 5432),
        ("{{ steps.fetch.output.rows[0].id }}", 11),
        ("{{ steps.fetch.output.rows[-1].sku }}", "X-2"),
        ("{{ steps.fetch.output.items[*].sku }}", ["a", "b", "c"]),
        ("{{ steps.fetch.output.meta.page }}", {"next": None, "size": 2}),
        ('{{ steps.fetch.output["weird key"]["a.b"] }}', 1),
        ("{{ steps.fetch.output['weird key'] }}", {"a.b": 1}),
        ("{{ trigger.payload.ids }}", [1, 2]),
        ("{{ trigger.payload.order.id }}", "o-9"),
        ("{{ trigger.source }}", "webhook"),
        ("{{ execution.id }}", "nightly/2025-03-31T17:30:00Z"),
        ("{{ steps.fetch.status }}", "completed"),
        # embedded templates are stringified
        ("env=${ENV}", "env=prod"),
        ("limit ${LIMIT} rows", "limit 100 rows"),
        ("ids=${HOSTS}", 'ids=["a","b"]'),
        ("next={{ steps.fetch.output.meta.page.next }}.", "next=."),
        ("{{ steps.fetch.output.rows[0].id }}-{{ steps.fetch.output.rows[1].id }}", "11-12"),
        ("ok={{ steps.fetch.output.rows | length > 1 }}", "ok=true"),
        # escapes
        ("$${HOME}/bin", "${HOME}/bin"),
        ('{{ "{{" }} literal', "{{ literal"),
        ("a }} b", "a }} b"),
        ("price: $5", "price: $5"),
    ],
)
def test_render_values(text: str, expected: object) -> None:
    assert compile_template(text).render(CTX) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ schedule.nominal_time | format('%Y-%m-%d %H:%M') }}", "2025-04-01 00:30"),
        ('{{ schedule.nominal_time | date_add(days=-1) | format("%Y-%m-%d") }}', "2025-03-31"),
        ("{{ schedule.nominal_time | yesterday }}", date(2025, 3, 31)),
        ("{{ schedule.nominal_time | today }}", date(2025, 4, 1)),
        ("{{ schedule.nominal_time | tomorrow }}", date(2025, 4, 2)),
        ("{{ schedule.nominal_time | start_of_month }}", date(2025, 4, 1)),
        ("{{ schedule.nominal_time | end_of_month }}", date(2025, 4, 30)),
        ("{{ schedule.nominal_time | yesterday | start_of_month }}", date(2025, 3, 1)),
        ("{{ schedule.nominal_time | date_add(months=-1) | end_of_month }}", date(2025, 3, 31)),
        ("{{ schedule.nominal_time | start_of_week }}", date(2025, 3, 31)),
        ("{{ schedule.nominal_time | start_of_year | iso }}", "2025-01-01"),
        ("{{ schedule.nominal_time | end_of_year }}", date(2025, 12, 31)),
        ("{{ schedule.nominal_time | iso }}", "2025-04-01T00:30:00+07:00"),
        ("{{ schedule.nominal_time | utc | iso }}", "2025-03-31T17:30:00+00:00"),
        ("{{ schedule.nominal_time | in_zone('Europe/Paris') | format('%H:%M') }}", "19:30"),
        ("{{ schedule.nominal_time | timestamp }}", int(NOMINAL.timestamp())),
        ("{{ schedule.nominal_time | start_of_day | iso }}", "2025-04-01T00:00:00+07:00"),
        (
            "file_{{ schedule.nominal_time | yesterday | format('%Y%m%d') }}.csv",
            "file_20250331.csv",
        ),
        ("{{ trigger.payload.date | date_add(days=1) | iso }}", "2025-01-16T00:00:00+07:00"),
        ("{{ trigger.payload.date | date | date_add(days=1) }}", date(2025, 1, 16)),
        ("{{ '2024-01-31' | date | date_add(months=1) }}", date(2024, 2, 29)),
        ("{{ '2025-01-31' | date | date_add(years=1, months=1) }}", date(2026, 2, 28)),
    ],
)
def test_date_helpers_compute_in_the_schedule_zone(text: str, expected: object) -> None:
    assert compile_template(text).render(CTX) == expected


def test_date_helpers_follow_the_context_zone() -> None:
    utc_ctx = TemplateContext(schedule={"nominal_time": NOMINAL, "timezone": "UTC"})
    assert compile_template("{{ schedule.nominal_time | yesterday }}").render(utc_ctx) == date(
        2025, 3, 30
    )
    explicit = TemplateContext(schedule={"nominal_time": NOMINAL}, timezone="America/New_York")
    assert explicit.zone == ZoneInfo("America/New_York")
    default = TemplateContext(schedule={"nominal_time": NOMINAL})
    assert compile_template("{{ schedule.nominal_time | today }}").render(default) == date(
        2025, 4, 1
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ vars.ENV | upper }}", "PROD"),
        ("{{ 'A,B' | lower | split(',') }}", ["a", "b"]),
        ("{{ vars.HOSTS | join('+') }}", "a+b"),
        ("{{ vars.HOSTS | first }}", "a"),
        ("{{ vars.HOSTS | last }}", "b"),
        ("{{ vars.DB | keys }}", ["host", "port"]),
        ("{{ vars.DB | json }}", '{"host":"db1","port":5432}'),
        ("{{ ' x ' | trim }}", "x"),
        ("{{ 'a-b' | replace('-', '_') }}", "a_b"),
        ("{{ '42' | int }}", 42),
        ("{{ 2 | float }}", 2.0),
        ("{{ 2.567 | round(2) }}", 2.57),
        ("{{ vars.LIMIT | string }}", "100"),
        ("{{ trigger.payload.none | default('x') }}", "x"),
        ("{{ steps.fetch.output.meta.page.next | default(5) }}", 5),
        (
            "{{ steps.fetch.output.items | chunk(2) }}",
            [[{"sku": "a"}, {"sku": "b"}], [{"sku": "c"}]],
        ),
        ("{{ [] | first | default('empty') }}", "empty"),
    ],
)
def test_other_filters(text: str, expected: object) -> None:
    assert compile_template(text).render(CTX) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{{ steps.missing.output.x }}", "steps.missing.output.x: step 'missing' has no result"),
        (
            "{{ steps.fetch.output.rows[9].id }}",
            "steps.fetch.output.rows[9]: index 9 is out of range (the list has 2 items)",
        ),
        (
            "{{ steps.fetch.output.rowz }}",
            "steps.fetch.output.rowz: no key 'rowz' in steps.fetch.output",
        ),
        ("{{ steps.fetch.output.items[*].price }}", "no key 'price'"),
        ("${NOPE}", "unknown variable 'NOPE'"),
        ("x ${NOPE} y", "unknown variable 'NOPE'"),
        ("{{ trigger.payload.order.id.x }}", "cannot read 'x' of a string"),
        ("{{ vars.ENV | date_add(days=1) }}", "needs a date or date-time"),
        ("{{ vars.LIMIT | upper }}", "needs a string"),
        ("{{ ${TOKEN} | upper }}", "cannot be applied to a secret"),
        ("{{ schedule.nominal_time | in_zone('Nowhere/X') }}", "unknown time zone"),
    ],
)
def test_missing_references_raise_naming_them(text: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as info:
        render({"request": {"url": text}}, CTX, field="steps.fetch.config")
    assert info.value.field == "steps.fetch.config.request.url"
    assert fragment in info.value.reason


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("abc {{ steps. }}", 15, "expected a name after '.'"),
        ("{{ a ==  }}", 10, "expected a value"),
        ("x {{ unclosed", 3, "unterminated '{{'"),
        ("x ${UNCLOSED", 3, "unterminated '${'"),
        ("${not valid}", 1, "'${' must be followed by a variable name"),
        ("{{ }}", 4, "empty expression"),
        ("{{ a | bogus }}", 8, "unknown filter 'bogus'"),
    ],
)
def test_template_syntax_errors_have_columns(text: str, column: int, fragment: str) -> None:
    with pytest.raises(TemplateError) as info:
        compile_template(text, field="steps[0].config.url")
    assert info.value.field == "steps[0].config.url"
    assert info.value.column == column
    assert fragment in info.value.reason


def test_render_walks_a_config_and_keeps_other_values() -> None:
    config = {
        "url": "https://api/${ENV}/orders/{{ trigger.payload.order.id }}",
        "ids": "{{ trigger.payload.ids }}",
        "batch": 50,
        "flags": [True, None, "{{ steps.fetch.output.rows[0].id }}"],
        "nested": {"${ENV}": "keys are not templates"},
    }
    assert render(config, CTX) == {
        "url": "https://api/prod/orders/o-9",
        "ids": [1, 2],
        "batch": 50,
        "flags": [True, None, 11],
        "nested": {"${ENV}": "keys are not templates"},
    }
    # the input is not modified
    assert config["ids"] == "{{ trigger.payload.ids }}"


def test_parse_once_render_many() -> None:
    template = compile_template("{{ item.sku }}#{{ item_index }}")
    assert compile_template("{{ item.sku }}#{{ item_index }}") is template
    out = [
        template.render(CTX.with_locals(item=item, item_index=i))
        for i, item in enumerate([{"sku": "a"}, {"sku": "b"}])
    ]
    assert out == ["a#0", "b#1"]


# --------------------------------------------------------------------------- secrets


def test_secret_variables_render_as_references() -> None:
    assert compile_template("${TOKEN}").render(CTX) == SecretRef(name="TOKEN")
    rendered = render(
        {"headers": {"Authorization": "Bearer ${TOKEN}"}, "pw": "{{ vars.PASSWORD }}"}, CTX
    )
    assert rendered["headers"]["Authorization"] == SecretString(
        parts=["Bearer ", SecretRef(name="TOKEN")]
    )
    assert rendered["pw"] == SecretRef(name="PASSWORD")
    assert contains_secrets(rendered)
    # Encoded for a history: only the names, never a value.
    encoded = msgspec.json.encode(rendered)
    assert b'"kind":"secret_ref","name":"TOKEN"' in encoded
    plain = {"TOKEN": "s3cr3t", "PASSWORD": "hunter2"}
    assert b"s3cr3t" not in encoded and b"hunter2" not in encoded
    # The activity resolves them at run time, from the structs or their JSON form.
    expected = {"headers": {"Authorization": "Bearer s3cr3t"}, "pw": "hunter2"}
    assert resolve_secrets(rendered, plain.__getitem__) == expected
    assert resolve_secrets(msgspec.json.decode(encoded), plain.__getitem__) == expected
    assert not contains_secrets(expected)


def test_reveal_callback_renders_plain_values() -> None:
    revealing = TemplateContext(
        variables={}, secrets=frozenset({"TOKEN"}), reveal_secret=lambda name: f"<{name}>"
    )
    assert compile_template("Bearer ${TOKEN}").render(revealing) == "Bearer <TOKEN>"


def test_secret_values_in_the_context_are_never_rendered() -> None:
    ctx = TemplateContext(variables={"TOKEN": "plain-value"}, secrets=frozenset({"TOKEN"}))
    rendered = render({"a": "${TOKEN}", "b": "x${TOKEN}x"}, ctx)
    assert "plain-value" not in repr(rendered)
    with pytest.raises(TemplateError, match="cannot read into secret"):
        compile_template("{{ vars.TOKEN.x }}").render(ctx)


# --------------------------------------------------------------------------- references


def test_template_references_list_variables_and_steps_with_paths() -> None:
    refs = template_references(
        {
            "url": "${BASE}/x/{{ steps.fetch.output.rows[0].id }}",
            "list": ["{{ vars.A | default(vars.B) }}"],
        },
        ("steps", 1, "config"),
    )
    assert [(path, str(ref)) for path, ref in refs] == [
        (("steps", 1, "config", "url"), "vars.BASE"),
        (("steps", 1, "config", "url"), "steps.fetch.output.rows[0].id"),
        (("steps", 1, "config", "list", 0), "vars.A"),
        (("steps", 1, "config", "list", 0), "vars.B"),
    ]


# --------------------------------------------------------------------------- properties

_LITERAL_TEXT = st.text().filter(lambda s: "${" not in s and "{{" not in s)


@settings(max_examples=300, deadline=None)
@given(_LITERAL_TEXT)
def test_literal_only_strings_render_unchanged(text: str) -> None:
    template = compile_template(text)
    assert template.is_literal
    assert template.render(CTX) == text
    assert render(text, CTX) == text


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "{{",
                "}}",
                "${",
                "}",
                "$",
                "{",
                "a",
                " ",
                "'",
                '"',
                "|",
                ".",
                "steps",
                "vars.ENV",
                "[0]",
                "\\",
            ]
        ),
        max_size=25,
    ).map("".join)
)
def test_random_templates_never_crash(text: str) -> None:
    try:
        template = compile_template(text)
    except TemplateError as exc:
        assert exc.column is not None and 1 <= exc.column <= len(text) + 1
        return
    try:
        template.render(CTX)
    except TemplateError:
        pass
