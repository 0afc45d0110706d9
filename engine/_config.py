"""Configuration: built-in defaults → TOML file → environment (``CADENZA_…``) → command line.

Every setting has a default here. A TOML file (``--config FILE`` or ``CADENZA_CONFIG``) may set
any of them at top level; the environment overrides with ``CADENZA_<NAME>`` (upper case); the
command line overrides last. Unknown keys and wrong types are rejected with the key named.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from cadenza.history import InvalidArgumentError

DEFAULT_DEV_DATABASE = "sqlite:///.cadenza/dev.db"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Engine settings.

    Attributes:
        database_url: ``sqlite:///path`` or ``postgresql://…`` (default: the dev SQLite file).
        namespace: Default namespace (``default``).
        shard_count: Shards created with a new cluster (default 64; fixed afterwards).
        payload_limit_bytes: Largest accepted input, result, signal or heartbeat (2 MiB).
        workflow_task_timeout: Seconds a worker may hold a workflow task (10).
        sticky_timeout: Seconds a workflow task waits for the worker that has the execution
            cached before any worker may take it (5).
        workflow_task_retry_max: Cap of the back-off between failed workflow task attempts (10 s).
        poll_timeout: Longest long-poll of a worker, seconds (30).
        shard_lease_seconds: Lease of a shard; a dead owner's shards move after this (10).
        strict_types: Reject starts of workflow types no worker registered on the queue, when
            the queue has registrations (True).
        timezone: Default time zone of schedules (``Asia/Ho_Chi_Minh``).
        schedule_fire_ahead: Seconds before its due time that a schedule's fire may be
            written, its run held until the due time, so that runs start on time when many
            fire at once (1.0; 0 disables it; at most 60). See ``docs/schedules.md``.
        http_host: Address the frontend listens on (``127.0.0.1``).
        http_port: Port of the frontend (7233).
        log_format: ``text`` or ``json``.
        log_level: ``DEBUG``, ``INFO`` (default), ``WARNING``, ``ERROR``.
        worker_token: Shared secret remote workers present (empty: no remote workers).
        advertise_url: URL other servers use to forward writes of shards this process owns
            (default ``http://{http_host}:{http_port}`` when the HTTP API is served).
        secret_keys: The keyring that encrypts secret variables: ``id:base64key`` pairs
            separated by commas (``2025-06:q3J0...=,2024-12:Yk9x...=``); empty: secrets cannot
            be stored. See ``docs/secrets.md``.
        active_secret_key: Id of the key that encrypts new values (default: the only key).
        gc_threshold: Net allocations between two young-generation garbage collections in
            the ``cadenza server``, ``worker`` and ``dev`` processes (20,000; 0 keeps Python's
            700). See ``docs/scaling.md``.
    """

    database_url: str = DEFAULT_DEV_DATABASE
    namespace: str = "default"
    shard_count: int = 64
    payload_limit_bytes: int = 2 * 1024 * 1024
    workflow_task_timeout: float = 10.0
    sticky_timeout: float = 5.0
    workflow_task_retry_max: float = 10.0
    poll_timeout: float = 30.0
    shard_lease_seconds: float = 10.0
    strict_types: bool = True
    timezone: str = "Asia/Ho_Chi_Minh"
    schedule_fire_ahead: float = 1.0
    http_host: str = "127.0.0.1"
    http_port: int = 7233
    log_format: str = "text"
    log_level: str = "INFO"
    worker_token: str = ""
    advertise_url: str = ""
    secret_keys: str = field(default="", repr=False)  # keys never appear in a repr or log
    active_secret_key: str = ""
    gc_threshold: int = 20_000

    def validate(self) -> Settings:
        """Check ranges; raise InvalidArgumentError naming the setting."""
        if self.shard_count < 1 or self.shard_count > 4096:
            raise InvalidArgumentError("shard_count", "must be between 1 and 4096")
        if self.payload_limit_bytes < 1024:
            raise InvalidArgumentError("payload_limit_bytes", "must be at least 1024")
        if not 0 <= self.schedule_fire_ahead <= 60:
            raise InvalidArgumentError("schedule_fire_ahead", "must be between 0 and 60 seconds")
        for name in ("workflow_task_timeout", "poll_timeout", "shard_lease_seconds"):
            if getattr(self, name) <= 0:
                raise InvalidArgumentError(name, "must be positive")
        if self.gc_threshold < 0:
            raise InvalidArgumentError(
                "gc_threshold", "must be 0 (Python's default) or a positive number of allocations"
            )
        if self.log_format not in ("text", "json"):
            raise InvalidArgumentError("log_format", "must be 'text' or 'json'")
        return self


def _coerce(name: str, raw: Any, target: Any) -> Any:
    kind = type(target)
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in (
            "1",
            "true",
            "yes",
            "on",
            "0",
            "false",
            "no",
            "off",
        ):
            return raw.lower() in ("1", "true", "yes", "on")
        raise InvalidArgumentError(name, f"expected true or false, got {raw!r}")
    if kind is int:
        if isinstance(raw, bool):
            raise InvalidArgumentError(name, f"expected an integer, got {raw!r}")
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise InvalidArgumentError(name, f"expected an integer, got {raw!r}") from None
    if kind is float:
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise InvalidArgumentError(name, f"expected a number, got {raw!r}") from None
    if not isinstance(raw, str):
        raise InvalidArgumentError(name, f"expected a string, got {raw!r}")
    return raw


def load_settings(
    config_file: str | Path | None = None,
    *,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
    base: Settings | None = None,
) -> Settings:
    """Build settings from the layers; ``overrides`` (command line) wins; None values skip."""
    env = os.environ if environ is None else environ
    settings = base or Settings()
    known = {f.name: getattr(settings, f.name) for f in fields(Settings)}
    values: dict[str, Any] = {}
    path = config_file or env.get("CADENZA_CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text("utf-8"))
        except FileNotFoundError:
            raise InvalidArgumentError("config", f"file {str(path)!r} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise InvalidArgumentError("config", f"{path}: {exc}") from None
        for key, raw in data.items():
            if key not in known:
                raise InvalidArgumentError(f"config.{key}", "unknown setting")
            values[key] = _coerce(key, raw, known[key])
    for key, default in known.items():
        env_key = f"CADENZA_{key.upper()}"
        if env_key in env:
            values[key] = _coerce(env_key, env[env_key], default)
    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        if key not in known:
            raise InvalidArgumentError(key, "unknown setting")
        values[key] = _coerce(key, raw, known[key])
    return replace(settings, **values).validate()
