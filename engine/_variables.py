"""Global variables and secrets: set, read (masked), delete, resolve at run time, rotate keys.

Variables live in the ``variables`` table (``cadenza.history._variable_store``). A secret is
stored as a ``v1:...`` token made by :class:`~cadenza.engine._secrets.SecretBox` under the
keyring of the configuration (``secret_keys``, ``active_secret_key``); the token is bound to the
variable's full name (``global/NAME`` or ``job/<job>/NAME``), so a token copied elsewhere does
not decrypt. Views handed to the API and the CLI show secrets as ``MASK``; the plain value is
only produced by :meth:`VariableService.secret_values`, for an activity about to run.

:func:`masking_filter` is the process's :class:`SecretMaskingFilter`: whoever decrypts a value
registers it there while it is in use, and logging handlers carry the filter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from cadenza.engine._config import Settings
from cadenza.engine._job_model import VARIABLE_NAME_PATTERN, JobDefinition
from cadenza.engine._secrets import MASK, SecretBox, SecretDecryptionError, SecretMaskingFilter
from cadenza.history import InvalidArgumentError, NotFoundError
from cadenza.history._variable_store import (
    GLOBAL_SCOPE,
    VariableRecord,
    VariableStore,
    job_scope,
)

__all__ = [
    "RotationReport",
    "VariableService",
    "VariableView",
    "install_masking_filter",
    "masking_filter",
    "secret_box_from",
    "secret_name",
]

log = logging.getLogger("cadenza.engine.variables")

_MASKING = SecretMaskingFilter()


def masking_filter() -> SecretMaskingFilter:
    """The process-wide filter that masks secret values in use (add it to log handlers)."""
    return _MASKING


def install_masking_filter(logger: logging.Logger | None = None) -> None:
    """Add :func:`masking_filter` to every handler of ``logger`` (default: the root logger)."""
    for handler in (logger or logging.getLogger()).handlers:
        if _MASKING not in handler.filters:
            handler.addFilter(_MASKING)


def secret_name(scope: str, name: str) -> str:
    """The full name a secret's token is bound to: ``global/NAME`` or ``job/<job>/NAME``."""
    return f"{scope}/{name}"


def secret_box_from(settings: Settings) -> SecretBox | None:
    """The keyring of the configuration, or None when no key is configured.

    ``secret_keys`` is ``id:base64key`` pairs separated by commas (or whitespace);
    ``active_secret_key`` names the active one (default: the only key).

    Raises:
        InvalidArgumentError: A malformed pair (field ``secret_keys``, never echoing a key), a
            bad key, or an unknown or missing active key (field ``active_secret_key``).
    """
    raw = settings.secret_keys.replace(",", " ").split()
    if not raw:
        return None
    keys: dict[str, str] = {}
    for index, pair in enumerate(raw):
        key_id, sep, key = pair.partition(":")
        if not sep or not key_id or not key:
            raise InvalidArgumentError(
                "secret_keys", f"item {index + 1} is not 'id:base64key' (key not shown)"
            )
        if key_id in keys:
            raise InvalidArgumentError("secret_keys", f"key id {key_id!r} given twice")
        keys[key_id] = key
    active = settings.active_secret_key or (next(iter(keys)) if len(keys) == 1 else "")
    if not active:
        raise InvalidArgumentError(
            "active_secret_key", f"several keys are configured ({', '.join(keys)}): name one"
        )
    try:
        return SecretBox(keys, active)
    except InvalidArgumentError as exc:
        field = "active_secret_key" if exc.field == "active_key_id" else f"secret_{exc.field}"
        raise InvalidArgumentError(field, exc.reason) from None


class VariableView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A variable as the API and the CLI show it: a secret's value is ``MASK``.

    Attributes:
        name: The variable name.
        value: The value; ``"••••••"`` for a secret.
        secret: Whether it is a secret.
        description: What it is for.
        scope: ``global`` or ``job/<job>``.
        updated_by: Who wrote it last.
        updated_at: When, ISO-8601 UTC.
    """

    name: str
    value: Any = None
    secret: bool = False
    description: str = ""
    scope: str = GLOBAL_SCOPE
    updated_by: str = ""
    updated_at: str = ""


class RotationReport(msgspec.Struct, frozen=True, kw_only=True):
    """What ``cadenza secrets rotate-key`` did.

    Attributes:
        active_key: The key every secret is now encrypted with.
        rotated: Full names of the secrets re-encrypted.
        unchanged: How many already used the active key.
        failed: ``name: reason`` of tokens that did not decrypt (left alone).
        skipped: Full names of secrets that changed while rotating (left as written).
    """

    active_key: str
    rotated: list[str] = []
    unchanged: int = 0
    failed: list[str] = []
    skipped: list[str] = []


def _view(record: VariableRecord) -> VariableView:
    when = datetime.fromtimestamp(record.updated_ms / 1000, tz=UTC).isoformat(timespec="seconds")
    return VariableView(
        name=record.name,
        value=MASK if record.secret else record.value,
        secret=record.secret,
        description=record.description,
        scope=record.scope,
        updated_by=record.updated_by,
        updated_at=when,
    )


def check_variable_name(name: Any, field: str = "name") -> str:
    """A valid variable name, or InvalidArgumentError naming ``field``."""
    import re

    if not isinstance(name, str) or not re.fullmatch(VARIABLE_NAME_PATTERN, name):
        raise InvalidArgumentError(
            field,
            f"{name!r} is not a variable name (letters, digits and _, not starting with a digit)",
        )
    return name


class VariableService:
    """Global variables and the secrets of jobs, over the engine's database.

    Args:
        store: The event log's SQL store (``engine.store``).
        settings: Its ``secret_keys`` and ``active_secret_key`` make the keyring.
        box: A keyring to use instead of the settings' (tests).
    """

    def __init__(self, store: Any, settings: Settings, *, box: SecretBox | None = None) -> None:
        self.variables = VariableStore(store)
        self._box = box if box is not None else secret_box_from(settings)

    @property
    def box(self) -> SecretBox:
        """The keyring.

        Raises:
            InvalidArgumentError: No key is configured (field ``secret_keys``).
        """
        if self._box is None:
            raise InvalidArgumentError(
                "secret_keys",
                "no secret key is configured: set secret_keys (CADENZA_SECRET_KEYS, "
                "'id:base64key'; make a key with `cadenza secrets new-key`)",
            )
        return self._box

    @property
    def has_keys(self) -> bool:
        """Whether a keyring is configured."""
        return self._box is not None

    # ------------------------------------------------------------------ global variables

    async def set_variable(
        self,
        namespace: str,
        name: str,
        value: Any,
        *,
        secret: bool = False,
        description: str = "",
        identity: str = "",
    ) -> tuple[VariableView, bool]:
        """Create or replace a global variable; a secret's value is encrypted first.

        Returns:
            The masked view, and whether the variable was created.

        Raises:
            InvalidArgumentError: A bad name, a secret that is not text, no keyring.
        """
        check_variable_name(name)
        if secret:
            if not isinstance(value, str) or not value:
                raise InvalidArgumentError("value", "a secret must be a non-empty string")
            value = self.box.encrypt(secret_name(GLOBAL_SCOPE, name), value)
        else:
            try:
                msgspec.json.encode(value)
            except (TypeError, msgspec.EncodeError) as exc:
                raise InvalidArgumentError("value", f"must be JSON data: {exc}") from None
        if not isinstance(description, str):
            raise InvalidArgumentError("description", "must be a string")
        record = VariableRecord(
            namespace=namespace,
            scope=GLOBAL_SCOPE,
            name=name,
            value=value,
            secret=secret,
            description=description,
            updated_by=identity,
            updated_ms=int(time.time() * 1000),
        )
        created = await self.variables.put_variable(record)
        log.info(
            "variable %s %s by %s%s",
            name,
            "created" if created else "updated",
            identity or "?",
            " (secret)" if secret else "",
        )
        return _view(record), created

    async def get_variable(self, namespace: str, name: str) -> VariableView:
        """A global variable, masked.

        Raises:
            NotFoundError: No such variable.
        """
        check_variable_name(name)
        record = await self.variables.get_variable(namespace, GLOBAL_SCOPE, name)
        if record is None:
            raise NotFoundError(f"no global variable {name!r}")
        return _view(record)

    async def list_variables(
        self, namespace: str, *, scope: str | None = None
    ) -> list[VariableView]:
        """Variables of a namespace (global ones by default; ``scope="all"`` for job-scoped
        secrets too), masked, by name."""
        chosen = None if scope == "all" else (scope or GLOBAL_SCOPE)
        records = await self.variables.list_variables(namespace, chosen)
        return [_view(r) for r in records]

    async def delete_variable(self, namespace: str, name: str, *, identity: str = "") -> None:
        """Delete a global variable.

        Raises:
            NotFoundError: No such variable.
        """
        check_variable_name(name)
        if not await self.variables.delete_variable(namespace, GLOBAL_SCOPE, name):
            raise NotFoundError(f"no global variable {name!r}")
        log.info("variable %s deleted by %s", name, identity or "?")

    async def global_values(
        self, namespace: str, names: Collection[str]
    ) -> tuple[dict[str, Any], list[str]]:
        """Values of the non-secret global variables among ``names``, and the names of the
        secret ones (a run records the former in its history, never the secrets)."""
        records = await self.variables.get_variables(namespace, GLOBAL_SCOPE, sorted(set(names)))
        values = {r.name: r.value for r in records if not r.secret}
        secrets = sorted(r.name for r in records if r.secret)
        return values, secrets

    # ------------------------------------------------------------------ secrets of runs

    async def secret_values(
        self, namespace: str, job: JobDefinition, names: Collection[str]
    ) -> dict[str, str]:
        """The plain values of secret variables as job ``job`` sees them, for an activity.

        A secret variable of the job with a value is the job-scoped token stored when the job
        was applied; one without a value, or a name the job does not define, is the global
        secret of that name. Nothing here is logged.

        Raises:
            NotFoundError: A secret is not stored (names the variable and its scope).
            InvalidArgumentError: A name is not secret where it is defined, or a token does not
                decrypt (``SecretDecryptionError``, naming the variable).
        """
        out: dict[str, str] = {}
        for name in sorted(set(names)):
            check_variable_name(name)
            variable = job.variables.get(name)
            if variable is not None and not variable.secret:
                raise InvalidArgumentError(
                    name, f"variable {name!r} of job {job.name!r} is not a secret"
                )
            # A job's own secret (its token stored at apply) first, then the global one.
            record = None
            scope = GLOBAL_SCOPE
            if variable is not None:
                scope = job_scope(job.name)
                record = await self.variables.get_variable(namespace, scope, name)
            if record is None:
                scope = GLOBAL_SCOPE
                record = await self.variables.get_variable(namespace, scope, name)
            if record is None:
                raise NotFoundError(
                    f"secret {name!r} is not set (neither a secret of job {job.name!r} nor a "
                    "global secret); set it with `cadenza vars set --secret`"
                )
            if not record.secret:
                raise InvalidArgumentError(
                    name,
                    f"global variable {name!r} is not a secret, but job {job.name!r} "
                    "declares it secret",
                )
            try:
                out[name] = self.box.decrypt(secret_name(scope, name), record.value)
            except SecretDecryptionError as exc:
                raise SecretDecryptionError(f"{scope}/{name}", exc.reason) from None
        return out

    def check_job_secret(self, job_name: str, name: str, token: Any) -> str:
        """The plain value of a job-scoped secret token from a job file (to validate it on
        apply and compare it with the stored one).

        Raises:
            InvalidArgumentError: No keyring, or the token does not decrypt for this job and
                variable (field ``variables.NAME.value``).
        """
        field = f"variables.{name}.value"
        if not isinstance(token, str):
            raise InvalidArgumentError(
                field, "a secret's value must be an encrypted token (v1:...), not plain data"
            )
        try:
            return self.box.decrypt(secret_name(job_scope(job_name), name), token)
        except SecretDecryptionError as exc:
            raise InvalidArgumentError(
                field,
                f"{exc.reason} (encrypt it for job/{job_name}/{name} with "
                "`cadenza secrets encrypt`)",
            ) from None

    def encrypt_for(self, scope: str, name: str, plaintext: str) -> str:
        """A token of ``plaintext`` for variable ``name`` of ``scope`` (``global`` or
        ``job/<job>``), e.g. to paste into a job file."""
        check_variable_name(name)
        return self.box.encrypt(secret_name(scope, name), plaintext)

    async def stored_job_secrets(self, namespace: str, job_name: str) -> dict[str, str]:
        """Plain values of a job's stored job-scoped secrets (to compare in a plan)."""
        scope = job_scope(job_name)
        out: dict[str, str] = {}
        for record in await self.variables.list_variables(namespace, scope):
            if not record.secret:
                continue
            if self._box is None:  # cannot compare: any secret in the files is a change
                out[record.name] = ""
                continue
            try:
                out[record.name] = self.box.decrypt(secret_name(scope, record.name), record.value)
            except SecretDecryptionError:
                out[record.name] = ""  # shows up as a change, and apply rewrites it
        return out

    # ------------------------------------------------------------------ rotation

    async def rotate_key(self) -> RotationReport:
        """Re-encrypt every stored secret (every namespace and scope) under the active key.

        Idempotent: tokens already under the active key are left as they are. A token that
        does not decrypt is reported and never rewritten. All rewrites are one transaction.
        """
        box = self.box
        changes: list[tuple[VariableRecord, str]] = []
        failed: list[str] = []
        unchanged = 0
        for record in await self.variables.list_variables(None):
            if not record.secret:
                continue
            full = secret_name(record.scope, record.name)
            try:
                token = box.rotate(full, record.value)
            except SecretDecryptionError as exc:
                failed.append(f"{record.namespace}:{full}: {exc.reason}")
                continue
            if token == record.value:
                unchanged += 1
            else:
                changes.append((record, token))
        skipped = await self.variables.replace_secret_tokens(changes, int(time.time() * 1000))
        skipped_keys = {(r.namespace, r.scope, r.name) for r in skipped}
        rotated = [
            f"{r.namespace}:{secret_name(r.scope, r.name)}"
            for r, _ in changes
            if (r.namespace, r.scope, r.name) not in skipped_keys
        ]
        log.info(
            "secret key rotation to %s: %d rotated, %d unchanged, %d failed, %d skipped",
            box.active_key_id,
            len(rotated),
            unchanged,
            len(failed),
            len(skipped),
        )
        return RotationReport(
            active_key=box.active_key_id,
            rotated=rotated,
            unchanged=unchanged,
            failed=failed,
            skipped=[f"{r.namespace}:{secret_name(r.scope, r.name)}" for r in skipped],
        )


def job_secret_tokens(job: JobDefinition) -> Mapping[str, str]:
    """The job-scoped secret tokens a job file gives (secret variables with a value)."""
    return {
        name: variable.value
        for name, variable in job.variables.items()
        if variable.secret and variable.value is not None
    }
