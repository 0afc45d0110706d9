"""Payload conversion: Python values to JSON payloads and back, typed by annotations."""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from typing import Any

import msgspec

from cadenza.history import PayloadEncodingError


def _enc_hook(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"objects of type {type(value).__name__} are not JSON-serializable")


_ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook)


def encode_value(value: Any, field: str = "value") -> msgspec.Raw:
    """Encode one value as a JSON payload.

    Raises:
        PayloadEncodingError: naming ``field`` when the value cannot be encoded.
    """
    try:
        return msgspec.Raw(_ENCODER.encode(value))
    except (TypeError, msgspec.EncodeError, ValueError, OverflowError) as exc:
        raise PayloadEncodingError(field, f"cannot be encoded as JSON: {exc}") from None


def encode_args(args: Sequence[Any], field: str = "args") -> msgspec.Raw:
    """Encode positional arguments as a JSON array payload."""
    for index, value in enumerate(args):
        encode_value(value, f"{field}[{index}]")
    return encode_value(list(args), field)


def _dec_hook(type_: type, value: Any) -> Any:
    if type_ is decimal.Decimal:
        return decimal.Decimal(str(value))
    raise TypeError(f"cannot decode {type_!r}")


def decode_value(payload: bytes | msgspec.Raw, type_: Any = Any) -> Any:
    """Decode a JSON payload into ``type_`` (``Any`` gives plain JSON values)."""
    data = bytes(payload) if isinstance(payload, msgspec.Raw) else payload
    if type_ is Any or type_ is None or type_ is type(None):
        return msgspec.json.decode(data) if type_ is Any else None
    return msgspec.json.decode(data, type=type_, dec_hook=_dec_hook)


def decode_args(payload: bytes | msgspec.Raw, types: Sequence[Any]) -> list[Any]:
    """Decode a JSON array payload into arguments typed by ``types`` (extra ones untyped)."""
    raws = msgspec.json.decode(bytes(payload), type=list[msgspec.Raw])
    out: list[Any] = []
    for index, raw in enumerate(raws):
        type_ = types[index] if index < len(types) else Any
        out.append(decode_value(raw, type_))
    return out


def is_json_native(value: Any) -> bool:
    """Whether a value is plain JSON data (used in tests and docs)."""
    return isinstance(value, str | int | float | bool | type(None) | list | dict)
