"""SecretBox: AES-256-GCM encryption of secret variables under a rotating keyring."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cadenza.engine._secrets import SecretBox, SecretDecryptionError, generate_key
from cadenza.history import InvalidArgumentError

KEY_A = generate_key()
KEY_B = generate_key()


def box_a() -> SecretBox:
    return SecretBox({"a": KEY_A}, active_key_id="a")


def _flip(token: str, part: int, index: int) -> str:
    """The token with one bit of one byte of its nonce (part 2) or ciphertext (part 3) flipped."""
    parts = token.split(":")
    raw = bytearray(base64.urlsafe_b64decode(parts[part] + "=" * (-len(parts[part]) % 4)))
    raw[index] ^= 0x01
    parts[part] = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    return ":".join(parts)


def test_generate_key_is_32_random_bytes() -> None:
    k1, k2 = generate_key(), generate_key()
    assert len(base64.b64decode(k1, validate=True)) == 32
    assert k1 != k2


def test_round_trip_and_format() -> None:
    box = box_a()
    token = box.encrypt("global/DB_PASSWORD", "s3cr3t-Đà Nẵng")
    version, key_id, nonce, _ct = token.split(":")
    assert (version, key_id) == ("v1", "a")
    assert len(base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))) == 12
    assert "s3cr3t" not in token
    assert box.decrypt("global/DB_PASSWORD", token) == "s3cr3t-Đà Nẵng"


def test_same_plaintext_gives_different_tokens() -> None:
    box = box_a()
    t1, t2 = box.encrypt("x", "same"), box.encrypt("x", "same")
    assert t1 != t2
    assert box.decrypt("x", t1) == box.decrypt("x", t2) == "same"


def test_empty_plaintext_round_trips() -> None:
    box = box_a()
    assert box.decrypt("x", box.encrypt("x", "")) == ""


def test_wrong_key_with_same_id_fails() -> None:
    token = box_a().encrypt("v", "value")
    other = SecretBox({"a": KEY_B}, active_key_id="a")
    with pytest.raises(SecretDecryptionError) as err:
        other.decrypt("v", token)
    assert err.value.field == "token"
    assert "authentication failed" in err.value.reason
    assert "value" not in str(err.value).replace("'v'", "")


def test_unknown_key_id_is_named() -> None:
    token = SecretBox({"old": KEY_A}, active_key_id="old").encrypt("v", "value")
    with pytest.raises(SecretDecryptionError) as err:
        SecretBox({"new": KEY_B}, active_key_id="new").decrypt("v", token)
    assert err.value.field == "token"
    assert "'old'" in err.value.reason and "not in the keyring" in err.value.reason


@pytest.mark.parametrize("part", [2, 3])
def test_every_tampered_byte_is_rejected(part: int) -> None:
    box = box_a()
    token = box.encrypt("v", "a value of some length")
    length = len(token.split(":")[part])
    for index in range(length * 3 // 4):
        with pytest.raises(SecretDecryptionError, match="authentication failed"):
            box.decrypt("v", _flip(token, part, index))


def test_truncated_or_malformed_tokens_are_rejected() -> None:
    box = box_a()
    token = box.encrypt("v", "value")
    _v, k, n, c = token.split(":")
    bad = [
        "",
        "plain text",
        f"v2:{k}:{n}:{c}",
        f"v1:{k}:{n}",
        f"v1:{k}:{n}:{c}:extra",
        f"v1:{k}:{n}:{c[:10]}",  # shorter than the tag
        f"v1:{k}:{n[:-2]}:{c}",  # nonce of the wrong length
        f"v1:{k}:{n}:{c[:-1]}!",  # not base64
        f"v1:a b:{n}:{c}",
    ]
    for candidate in bad:
        with pytest.raises(SecretDecryptionError) as err:
            box.decrypt("v", candidate)
        assert err.value.field == "token"


def test_unsupported_version_is_named() -> None:
    token = box_a().encrypt("v", "value")
    with pytest.raises(SecretDecryptionError, match="unsupported format version 'v9'"):
        box_a().decrypt("v", "v9" + token[2:])


def test_ciphertext_copied_to_another_variable_fails() -> None:
    box = box_a()
    token = box.encrypt("job/nightly/API_TOKEN", "tok")
    with pytest.raises(SecretDecryptionError, match="authentication failed"):
        box.decrypt("job/hourly/API_TOKEN", token)
    with pytest.raises(SecretDecryptionError, match="authentication failed"):
        box.decrypt("global/API_TOKEN", token)
    assert box.decrypt("job/nightly/API_TOKEN", token) == "tok"


def test_key_id_in_token_is_authenticated() -> None:
    """Relabelling a token with another key id of the ring (same key bytes) still fails."""
    box = SecretBox({"a": KEY_A, "b": KEY_A}, active_key_id="a")
    token = box.encrypt("v", "value")
    relabelled = token.replace("v1:a:", "v1:b:", 1)
    with pytest.raises(SecretDecryptionError, match="authentication failed"):
        box.decrypt("v", relabelled)


def test_rotation_with_two_keys() -> None:
    old = SecretBox({"k1": KEY_A}, active_key_id="k1")
    token_old = old.encrypt("global/PW", "hunter2")

    rotated_ring = SecretBox({"k1": KEY_A, "k2": KEY_B}, active_key_id="k2")
    assert rotated_ring.needs_rotation(token_old)
    assert rotated_ring.decrypt("global/PW", token_old) == "hunter2"  # old key still decrypts

    token_new = rotated_ring.rotate("global/PW", token_old)
    assert token_new.startswith("v1:k2:")
    assert not rotated_ring.needs_rotation(token_new)
    assert rotated_ring.decrypt("global/PW", token_new) == "hunter2"
    # Idempotent: a token under the active key is returned as it is.
    assert rotated_ring.rotate("global/PW", token_new) == token_new

    # Once k1 is retired, the rotated token still decrypts and the old one does not.
    retired = SecretBox({"k2": KEY_B}, active_key_id="k2")
    assert retired.decrypt("global/PW", token_new) == "hunter2"
    with pytest.raises(SecretDecryptionError, match="'k1'"):
        retired.decrypt("global/PW", token_old)


def test_rotate_refuses_a_token_that_does_not_authenticate() -> None:
    ring = SecretBox({"k1": KEY_A, "k2": KEY_B}, active_key_id="k2")
    token = SecretBox({"k1": KEY_A}, active_key_id="k1").encrypt("a", "x")
    with pytest.raises(SecretDecryptionError):
        ring.rotate("b", token)


def test_bad_key_length_names_the_key() -> None:
    short = base64.b64encode(os.urandom(16)).decode()
    with pytest.raises(InvalidArgumentError) as err:
        SecretBox({"main": KEY_A, "legacy": short}, active_key_id="main")
    assert err.value.field == "keys.legacy"
    assert "32 bytes" in err.value.reason and "got 16" in err.value.reason


def test_bad_configuration_errors() -> None:
    with pytest.raises(InvalidArgumentError) as err:
        SecretBox({"main": "not base64!!"}, active_key_id="main")
    assert err.value.field == "keys.main"
    with pytest.raises(InvalidArgumentError) as err:
        SecretBox({"main": KEY_A}, active_key_id="other")
    assert err.value.field == "active_key_id"
    with pytest.raises(InvalidArgumentError) as err:
        SecretBox({}, active_key_id="main")
    assert err.value.field == "keys"
    with pytest.raises(InvalidArgumentError) as err:
        SecretBox({"a:b": KEY_A}, active_key_id="a:b")
    assert err.value.field == "keys"
    with pytest.raises(InvalidArgumentError) as err:
        box_a().encrypt("", "x")
    assert err.value.field == "name"


def test_url_safe_and_raw_keys_are_accepted() -> None:
    raw = os.urandom(32)
    std = SecretBox({"k": base64.b64encode(raw).decode()}, active_key_id="k")
    url = SecretBox({"k": base64.urlsafe_b64encode(raw).decode().rstrip("=")}, active_key_id="k")
    byt = SecretBox({"k": raw}, active_key_id="k")
    token = std.encrypt("n", "value")
    assert url.decrypt("n", token) == byt.decrypt("n", token) == "value"


def test_repr_shows_no_key_material() -> None:
    box = SecretBox({"k1": KEY_A, "k2": KEY_B}, active_key_id="k2")
    text = repr(box)
    assert "k1" in text and "k2" in text
    assert KEY_A not in text and KEY_B not in text
    assert box.key_ids == {"k1", "k2"} and box.active_key_id == "k2"


@settings(max_examples=200, deadline=None)
@given(name=st.text(min_size=1, max_size=80), plaintext=st.text(max_size=2000))
def test_round_trip_property(name: str, plaintext: str) -> None:
    box = SecretBox({"k1": KEY_A, "k2": KEY_B}, active_key_id="k2")
    token = box.encrypt(name, plaintext)
    assert token.isascii() and "\n" not in token
    assert box.decrypt(name, token) == plaintext
    with pytest.raises(SecretDecryptionError):
        box.decrypt(name + "x", token)
