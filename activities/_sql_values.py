"""JSON-safe values and bounded output for the SQL activity.

Whatever a driver returns is turned into something JSON can carry without loss of meaning, so
that it can be written into a history and read by a person:

=========================  ===================================================================
driver value               JSON value
=========================  ===================================================================
``Decimal``                string (``"12.50"``), or with ``decimals="number"`` a number when
                           that is exact (an integer below 2**53, or a decimal whose shortest
                           float spelling reads back as the same value), else still a string
``float``                  number; NaN and infinities become ``"NaN"``, ``"Infinity"``,
                           ``"-Infinity"``
``datetime``/``date``/     ISO-8601 (``2024-01-31T08:00:00+07:00``, ``2024-01-31``,
``time``                   ``10:30:00``)
``timedelta``              MySQL/MariaDB (their ``TIME`` type): ``"[-]HH:MM:SS[.ffffff]"``;
                           PostgreSQL/Oracle (intervals): ISO-8601 duration ``"P1DT2H"``
``bytes``                  base64 string
``UUID``, IP addresses     string
lists, tuples, arrays      lists (PostgreSQL arrays, Oracle vectors)
dicts                      objects (PostgreSQL ``json``/``jsonb``)
anything else              ``str(value)``
=========================  ===================================================================
"""

from __future__ import annotations

import array
import base64
import datetime as dt
import decimal
import ipaddress
import math
import uuid
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

DecimalMode = Literal["string", "number"]

_MAX_EXACT_INT = 2**53
_INT64 = 2**63


def json_safe(value: Any, *, kind: str, decimals: DecimalMode = "string") -> Any:
    """Convert one value returned by a driver into a JSON-safe value (see the module doc).

    Args:
        value: The driver value.
        kind: ``postgresql``, ``mysql`` or ``oracle`` (decides how ``timedelta`` reads).
        decimals: ``string`` (default, never loses digits) or ``number`` (a JSON number when
            exact, else a string).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        if math.isnan(value):
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, decimal.Decimal):
        return _decimal(value, decimals)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return _mysql_time(value) if kind == "mysql" else iso_duration(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (uuid.UUID, ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return str(value)
    if isinstance(value, (ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, kind=kind, decimals=decimals) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, array.array)):
        return [json_safe(v, kind=kind, decimals=decimals) for v in value]
    return str(value)


def _decimal(value: decimal.Decimal, mode: DecimalMode) -> Any:
    if not value.is_finite():
        if value.is_nan():
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"
    if mode == "string":
        return str(value)
    if value == value.to_integral_value():
        as_int = int(value)
        if -_MAX_EXACT_INT <= as_int <= _MAX_EXACT_INT:
            return as_int
        return str(value)
    as_float = float(value)
    if math.isfinite(as_float) and decimal.Decimal(repr(as_float)) == value:
        return as_float
    return str(value)


def iso_duration(value: dt.timedelta) -> str:
    """An ISO-8601 duration such as ``P1DT2H30M`` (negative ones start with ``-``)."""
    sign = "-" if value < dt.timedelta(0) else ""
    value = abs(value)
    days = value.days
    seconds = value.seconds
    micros = value.microseconds
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = f"{sign}P"
    if days:
        out += f"{days}D"
    time_part = ""
    if hours:
        time_part += f"{hours}H"
    if minutes:
        time_part += f"{minutes}M"
    if secs or micros:
        time_part += f"{secs}.{micros:06d}".rstrip("0").rstrip(".") + "S"
    if time_part:
        out += "T" + time_part
    if out.endswith("P"):
        out += "T0S"
    return out


def _mysql_time(value: dt.timedelta) -> str:
    sign = "-" if value < dt.timedelta(0) else ""
    value = abs(value)
    total = value.days * 86400 + value.seconds
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    out = f"{sign}{hours:02d}:{minutes:02d}:{secs:02d}"
    if value.microseconds:
        out += f".{value.microseconds:06d}"
    return out


def json_size(value: Any) -> int:
    """Size in bytes of ``value`` encoded as JSON (``value`` must already be JSON-safe)."""
    return len(msgspec.json.encode(value))


class OutputBudget:
    """Tracks the byte budget of one activity output across all of its statements.

    Args:
        max_bytes: Largest allowed JSON size of the rows and values put into the output.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self.exhausted = False

    def take(self, value: Any) -> bool:
        """Reserve room for ``value``; False (and nothing reserved) when it does not fit."""
        if self.exhausted:
            return False
        size = json_size(value) + 1
        if self.used + size > self.max_bytes:
            self.exhausted = True
            return False
        self.used += size
        return True
