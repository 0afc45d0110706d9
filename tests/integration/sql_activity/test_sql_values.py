"""Conversion of driver values into JSON-safe values, and the output byte budget."""

from __future__ import annotations

import array
import base64
import datetime as dt
import decimal
import ipaddress
import uuid

import msgspec
import pytest

from cadenza.activities._sql_values import OutputBudget, iso_duration, json_safe

D = decimal.Decimal


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (True, True),
        (7, 7),
        (2**70, str(2**70)),
        (1.5, 1.5),
        (float("nan"), "NaN"),
        (float("-inf"), "-Infinity"),
        (D("12.50"), "12.50"),
        (D("NaN"), "NaN"),
        (dt.date(2024, 1, 31), "2024-01-31"),
        (dt.datetime(2024, 1, 31, 8, 0, 5, 120), "2024-01-31T08:00:05.000120"),
        (
            dt.datetime(2024, 1, 31, 8, tzinfo=dt.timezone(dt.timedelta(hours=7))),
            "2024-01-31T08:00:00+07:00",
        ),
        (dt.time(10, 30), "10:30:00"),
        (b"\x00\xffbin", base64.b64encode(b"\x00\xffbin").decode()),
        (memoryview(b"ab"), "YWI="),
        (uuid.UUID("12345678-1234-5678-1234-567812345678"), "12345678-1234-5678-1234-567812345678"),
        (ipaddress.ip_address("10.0.0.1"), "10.0.0.1"),
        ({"a": [1, D("2.5")], 3: None}, {"a": [1, "2.5"], "3": None}),
        ((1, "x"), [1, "x"]),
    ],
)
def test_json_safe(value, expected):
    assert json_safe(value, kind="postgresql") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (D("12.50"), 12.5),
        (D("42"), 42),
        (D("-0.1"), -0.1),
        (D(2**60), str(2**60)),  # beyond 2**53 is not exact as a JSON number everywhere
        (D("0.1000000000000000000000001"), "0.1000000000000000000000001"),
        (D("1E+400"), "1E+400"),
    ],
)
def test_decimals_as_numbers_only_when_exact(value, expected):
    got = json_safe(value, kind="postgresql", decimals="number")
    assert got == expected
    assert type(got) is type(expected)


def test_durations_read_by_kind():
    delta = dt.timedelta(days=1, hours=2, minutes=3, seconds=4, microseconds=500000)
    assert json_safe(delta, kind="postgresql") == "P1DT2H3M4.5S"
    assert json_safe(delta, kind="oracle") == "P1DT2H3M4.5S"
    # MySQL/MariaDB return their TIME type as a timedelta
    assert json_safe(dt.timedelta(hours=10, minutes=30), kind="mysql") == "10:30:00"
    assert json_safe(-dt.timedelta(hours=838), kind="mysql") == "-838:00:00"
    assert iso_duration(dt.timedelta(0)) == "PT0S"
    assert iso_duration(-dt.timedelta(minutes=90)) == "-PT1H30M"


def test_oracle_values_convert():
    # what python-oracledb returns for NUMBER (as Decimal through the output handler), DATE,
    # TIMESTAMP WITH TIME ZONE, RAW/BLOB, INTERVAL DAY TO SECOND and VECTOR columns
    row = (
        D("123.4500"),
        dt.datetime(2024, 2, 29, 0, 0),
        dt.datetime(2024, 2, 29, 23, 59, 59, tzinfo=dt.UTC),
        b"\x01\x02",
        dt.timedelta(days=3),
        array.array("f", [1.0, 2.5]),
        "CLOB text",
    )
    out = [json_safe(v, kind="oracle") for v in row]
    assert out == [
        "123.4500",
        "2024-02-29T00:00:00",
        "2024-02-29T23:59:59+00:00",
        "AQI=",
        "P3D",
        [1.0, 2.5],
        "CLOB text",
    ]
    msgspec.json.encode(out)  # encodable as is


def test_unknown_objects_become_strings():
    class Money:
        def __str__(self) -> str:
            return "VND 1000"

    assert json_safe(Money(), kind="mysql") == "VND 1000"


def test_budget_counts_json_bytes():
    budget = OutputBudget(1024)
    row = {"x": "a" * 100}
    taken = 0
    while budget.take(row):
        taken += 1
    assert taken == 1024 // (len(msgspec.json.encode(row)) + 1)
    assert budget.exhausted
    assert not budget.take({"tiny": 1})  # once over, nothing more
