"""Secret encryption at rest (AES-256-GCM under a keyring) and masking of secret values.

Two halves, used together wherever a secret value exists:

* :class:`SecretBox` encrypts a secret variable's value before it is stored and decrypts it
  inside the activity that needs it. The ciphertext names the key that made it, so keys can be
  rotated: a new key becomes *active* (used for every new encryption) while older keys stay in
  the keyring for decryption until :meth:`SecretBox.rotate` has re-encrypted everything.
  The variable's name is bound to its ciphertext as associated data: a ciphertext copied into
  another variable does not decrypt.
* :func:`mask`, :class:`SecretMaskingFilter` and :func:`redact` keep plaintexts out of what
  people see: API responses, exports and log lines.

Token format (``v1``), one ASCII line, safe in JSON, TOML and URLs::

    v1:<key_id>:<nonce>:<ciphertext>

``nonce`` is 12 random bytes, ``ciphertext`` is the AES-GCM output (the encrypted UTF-8
plaintext followed by the 16-byte tag); both in URL-safe base64 without padding. The
associated data is ``b"cadenza-secret\\0v1\\0" + key_id + b"\\0" + name`` (UTF-8), so the
version, the key id and the variable name are all authenticated. See ``docs/secrets.md``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets as _random
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cadenza.history import InvalidArgumentError

__all__ = [
    "MASK",
    "SecretBox",
    "SecretDecryptionError",
    "SecretMaskingFilter",
    "generate_key",
    "mask",
    "redact",
]

MASK = "••••••"
"""What a secret value is shown as. Constant, so that it reveals nothing, not even the length."""

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
VERSION = "v1"

_KEY_ID_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_AD_PREFIX = b"cadenza-secret\x00" + VERSION.encode() + b"\x00"


class SecretDecryptionError(InvalidArgumentError):
    """A secret token could not be decrypted.

    Raised for a malformed token, a token made under a key that is not in the keyring, and a
    token that fails authentication (wrong key, a changed byte, or a token that belongs to
    another variable). The message never contains the token or any plaintext.
    """


def generate_key() -> str:
    """A new random 256-bit key, base64-encoded, ready to paste into the configuration."""
    return base64.b64encode(_random.token_bytes(KEY_BYTES)).decode("ascii")


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_\-]*", text):
        raise ValueError("not URL-safe base64")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _decode_key(key_id: str, value: str | bytes) -> bytes:
    field = f"keys.{key_id}"
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str):
        # Standard or URL-safe alphabet, padding optional; anything else is rejected.
        text = value.strip().replace("-", "+").replace("_", "/")
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgumentError(field, "key is not valid base64") from None
    else:
        raise InvalidArgumentError(
            field, f"key must be a base64 string, got {type(value).__name__}"
        )
    if len(raw) != KEY_BYTES:
        raise InvalidArgumentError(
            field, f"key must be {KEY_BYTES} bytes (AES-256), got {len(raw)} bytes"
        )
    return raw


def _associated_data(key_id: str, name: str) -> bytes:
    return _AD_PREFIX + key_id.encode("ascii") + b"\x00" + name.encode("utf-8")


class SecretBox:
    """Encrypts and decrypts secret values under a keyring of AES-256-GCM keys.

    Args:
        keys: Key id -> key. A key is 32 bytes given as standard (or URL-safe) base64, or as
            raw ``bytes``. Key ids are 1-64 characters of ``A-Z a-z 0-9 _ . -``.
        active_key_id: The key used for every new encryption; it must be in ``keys``. The
            other keys are only used to decrypt tokens made before a rotation.

    Raises:
        InvalidArgumentError: naming ``keys.<id>`` for a key that is not base64 or not 32
            bytes, ``keys`` when the keyring is empty or an id is malformed, and
            ``active_key_id`` when the active key is not in the keyring.

    Instances are immutable and thread-safe. Their ``repr`` shows key ids, never key bytes.
    """

    __slots__ = ("_active_key_id", "_aead")

    def __init__(self, keys: Mapping[str, str | bytes], active_key_id: str) -> None:
        if not keys:
            raise InvalidArgumentError("keys", "the keyring is empty: configure at least one key")
        aead: dict[str, AESGCM] = {}
        for key_id, value in keys.items():
            if not isinstance(key_id, str) or not _KEY_ID_RE.fullmatch(key_id):
                raise InvalidArgumentError(
                    "keys", f"key id {key_id!r} must be 1-64 characters of A-Z a-z 0-9 _ . -"
                )
            aead[key_id] = AESGCM(_decode_key(key_id, value))
        if active_key_id not in aead:
            raise InvalidArgumentError(
                "active_key_id",
                f"{active_key_id!r} is not in the keyring (known: {', '.join(sorted(aead))})",
            )
        self._aead = aead
        self._active_key_id = active_key_id

    @property
    def active_key_id(self) -> str:
        """The id of the key that new encryptions use."""
        return self._active_key_id

    @property
    def key_ids(self) -> frozenset[str]:
        """The ids of every key in the keyring."""
        return frozenset(self._aead)

    def __repr__(self) -> str:
        return f"SecretBox(active_key_id={self._active_key_id!r}, key_ids={sorted(self._aead)!r})"

    def encrypt(self, name: str, plaintext: str) -> str:
        """Encrypt ``plaintext`` for the variable ``name`` under the active key.

        Args:
            name: The variable's full name including its scope (for example
                ``global/DB_PASSWORD`` or ``job/nightly-recon/DB_PASSWORD``). It is bound to
                the token: decrypting under another name fails.
            plaintext: The secret value.

        Returns:
            A ``v1:...`` token. Encrypting the same value twice gives different tokens (a
            fresh random nonce each time).
        """
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError("name", "a secret needs a non-empty variable name")
        if not isinstance(plaintext, str):
            raise InvalidArgumentError(
                "plaintext", f"must be a string, got {type(plaintext).__name__}"
            )
        key_id = self._active_key_id
        nonce = _random.token_bytes(NONCE_BYTES)
        ciphertext = self._aead[key_id].encrypt(
            nonce, plaintext.encode("utf-8"), _associated_data(key_id, name)
        )
        return f"{VERSION}:{key_id}:{_b64e(nonce)}:{_b64e(ciphertext)}"

    def decrypt(self, name: str, token: str) -> str:
        """Decrypt a token made by :meth:`encrypt` for the same variable ``name``.

        Raises:
            SecretDecryptionError: (field ``token``) when the token is malformed, names a key
                that is not in the keyring, or fails authentication: wrong key, a changed
                byte, or a token of another variable.
        """
        key_id, nonce, ciphertext = self._parse(token)
        aead = self._aead.get(key_id)
        if aead is None:
            raise SecretDecryptionError(
                "token",
                f"made with key {key_id!r}, which is not in the keyring "
                f"(known: {', '.join(sorted(self._aead))})",
            )
        try:
            data = aead.decrypt(nonce, ciphertext, _associated_data(key_id, name))
        except InvalidTag:
            raise SecretDecryptionError(
                "token",
                f"authentication failed for variable {name!r}: the token was altered, belongs "
                f"to another variable, or key {key_id!r} is not the key that made it",
            ) from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:  # authenticated, so only a foreign writer could cause it
            raise SecretDecryptionError("token", "plaintext is not UTF-8") from None

    def key_id_of(self, token: str) -> str:
        """The id of the key a token was made with (the token is only parsed, not decrypted)."""
        return self._parse(token)[0]

    def needs_rotation(self, token: str) -> bool:
        """Whether ``token`` was made with a key other than the active one."""
        return self.key_id_of(token) != self._active_key_id

    def rotate(self, name: str, token: str) -> str:
        """Re-encrypt ``token`` under the active key.

        The token is decrypted first, so a token that does not authenticate is never
        rewritten. A token that already uses the active key is returned unchanged, which makes
        a repeated rotation (for example after an interrupted ``cadenza secrets rotate-key``)
        cheap and idempotent.

        Raises:
            SecretDecryptionError: as :meth:`decrypt`.
        """
        plaintext = self.decrypt(name, token)
        if not self.needs_rotation(token):
            return token
        return self.encrypt(name, plaintext)

    @staticmethod
    def _parse(token: str) -> tuple[str, bytes, bytes]:
        if not isinstance(token, str):
            raise SecretDecryptionError("token", f"must be a string, got {type(token).__name__}")
        parts = token.split(":")
        if len(parts) != 4 or parts[0] != VERSION:
            version = parts[0] if len(parts) > 1 else ""
            if version.startswith("v") and version != VERSION:
                raise SecretDecryptionError("token", f"unsupported format version {version!r}")
            raise SecretDecryptionError("token", "not a secret token (expected v1:<key>:<n>:<c>)")
        _, key_id, nonce_text, ct_text = parts
        if not _KEY_ID_RE.fullmatch(key_id):
            raise SecretDecryptionError("token", "malformed key id")
        try:
            nonce = _b64d(nonce_text)
            ciphertext = _b64d(ct_text)
        except (binascii.Error, ValueError):
            raise SecretDecryptionError("token", "nonce or ciphertext is not base64") from None
        if len(nonce) != NONCE_BYTES:
            raise SecretDecryptionError("token", f"nonce must be {NONCE_BYTES} bytes")
        if len(ciphertext) < TAG_BYTES:
            raise SecretDecryptionError("token", "ciphertext is shorter than the GCM tag")
        return key_id, nonce, ciphertext


# --------------------------------------------------------------------------- masking


def mask(value: object) -> str | None:
    """How a secret is shown: :data:`MASK` for any value, ``None`` for no value.

    The mask is the same for every value, so it reveals neither the value nor its length.
    ``None`` stays ``None`` so that an API can still say that a secret is not set.
    """
    return None if value is None else MASK


def _variants(secret: str) -> set[str]:
    """The forms in which a secret commonly shows up in text: as is, JSON- and repr-escaped."""
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    forms.add(repr(secret)[1:-1])
    return {form for form in forms if form}


def _compile(secrets: Iterable[str]) -> Callable[[str], str] | None:
    forms: set[str] = set()
    for secret in secrets:
        if isinstance(secret, str) and secret:
            forms |= _variants(secret)
    if not forms:
        return None
    # Longest first, so that a secret containing another one is masked as a whole.
    pattern = re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))

    def scrub(text: str) -> str:
        return pattern.sub(MASK, text)

    return scrub


class SecretMaskingFilter(logging.Filter):
    """A logging filter that replaces every known secret plaintext with :data:`MASK`.

    The filter renders the record's message (``msg % args``) and masks the result, so a secret
    is caught whether it was in the format string, in an argument, or in the ``str()`` of an
    object passed as an argument. The formatted exception and stack text are masked too. The
    record is changed in place (``msg`` becomes the masked text, ``args`` becomes empty), so
    every handler after this filter sees the masked record.

    Attach it to **handlers** (``handler.addFilter(f)``): a filter on a logger does not see
    records that propagate from child loggers. Also JSON- and ``repr``-escaped forms of each
    secret are masked. Registration is reference-counted and thread-safe: a value registered
    twice (two variables with the same value) stays masked until unregistered twice.

    Args:
        secrets: Initial secret values.
        name: Passed to :class:`logging.Filter`; the default (empty) accepts every record.
    """

    def __init__(self, secrets: Iterable[str] = (), name: str = "") -> None:
        super().__init__(name)
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._scrub: Callable[[str], str] | None = None
        for secret in secrets:
            self.register(secret)

    def register(self, secret: str) -> None:
        """Start masking ``secret`` (empty strings are ignored)."""
        if not isinstance(secret, str) or not secret:
            return
        with self._lock:
            self._counts[secret] += 1
            if self._counts[secret] == 1:
                self._scrub = _compile(self._counts)

    def unregister(self, secret: str) -> None:
        """Undo one :meth:`register` of ``secret``; unknown values are ignored."""
        with self._lock:
            if self._counts.get(secret, 0) <= 0:
                return
            self._counts[secret] -= 1
            if self._counts[secret] == 0:
                del self._counts[secret]
                self._scrub = _compile(self._counts)

    def __contains__(self, secret: object) -> bool:
        if not isinstance(secret, str):
            return False
        with self._lock:
            return self._counts.get(secret, 0) > 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._counts)

    def scrub(self, text: str) -> str:
        """``text`` with every registered secret replaced by :data:`MASK`."""
        scrub = self._scrub  # one atomic read: a concurrent register swaps in a new function
        return scrub(text) if scrub is not None else text

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record in place; never drops a record (always returns True)."""
        if not super().filter(record):
            return False
        scrub = self._scrub
        if scrub is None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: mask the pieces instead
            message = str(record.msg) + " " + " ".join(str(a) for a in _args_of(record))
        record.msg = scrub(message)
        record.args = ()
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
            # Drop the exception object: its message may hold the secret, and a handler that
            # renders exc_info itself would bypass the masked text.
            record.exc_info = None
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def _args_of(record: logging.LogRecord) -> Iterable[Any]:
    args = record.args
    if isinstance(args, Mapping):
        return args.values()
    if isinstance(args, tuple):
        return args
    return () if args is None else (args,)


def redact(
    obj: Any,
    secrets: Iterable[str],
    *,
    keys: Collection[str] = (),
) -> Any:
    """A copy of a JSON-like structure with secret values replaced by :data:`MASK`.

    Walks dicts, lists and tuples (tuples come back as lists, as in JSON). In every string —
    values and dict keys — each occurrence of a secret (or of its JSON/``repr``-escaped form)
    is replaced by the mask. Other values (numbers, booleans, ``None``, other objects) are
    returned as they are. The input is not modified.

    Args:
        obj: The structure, e.g. an export or an API response body.
        secrets: The plaintexts to hide (empty strings are ignored).
        keys: Dict keys whose values are masked whatever they hold (compared
            case-insensitively), e.g. ``{"password", "token"}``. A ``None`` value stays
            ``None``.
    """
    scrub = _compile(list(secrets))
    masked_keys = {k.casefold() for k in keys}

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return scrub(value) if scrub is not None else value
        if isinstance(value, Mapping):
            out: dict[Any, Any] = {}
            for k, v in value.items():
                new_key = walk(k) if isinstance(k, str) else k
                if isinstance(k, str) and k.casefold() in masked_keys:
                    out[new_key] = mask(v)
                else:
                    out[new_key] = walk(v)
            return out
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        return value

    return walk(obj)
