"""Named SQL connections and their pools, shared by every run of the SQL activity in a process.

A worker registers its connections once at start-up (:func:`register_sql_connection`); each
connection gets one pool, created on first use and reused by every later activity run, and
closed by :func:`close_sql_pools` at worker shutdown. Connections given inline in a step get a
pool too, keyed by a digest of their whole configuration; at most :data:`MAX_INLINE_POOLS` of
those are kept (the least recently used one is closed first).

The pools are SQLAlchemy's ``QueuePool`` behind async engines. Only the pool is used:
statements run on the native async driver connection (see ``_sql_dialects``). Async
connections belong to the event loop that opened them, so a pool is tied to its loop; a pool
found under another (e.g. closed) loop is dropped and a new one made.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import msgspec

from cadenza.activities._sql_config import (
    SqlConnectionConfig,
    engine_spec,
    validate_connection_config,
)
from cadenza.history import InvalidArgumentError, NotFoundError

logger = logging.getLogger("cadenza.activities.sql")

#: Most pools kept for connections given inline in steps.
MAX_INLINE_POOLS = 16


@dataclass
class _Pool:
    engine: Any  # sqlalchemy.ext.asyncio.AsyncEngine
    loop: asyncio.AbstractEventLoop


class _Registry:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.configs: dict[str, SqlConnectionConfig] = {}
        self.pools: dict[str, _Pool] = {}
        self.inline: OrderedDict[bytes, _Pool] = OrderedDict()
        self.retired: list[_Pool] = []


_registry = _Registry()


def register_sql_connection(cfg: SqlConnectionConfig, *, replace: bool = False) -> None:
    """Register a named connection for the ``sql`` activity in this process.

    Registering the same configuration twice is a no-op. A different configuration under a
    name already taken is refused unless ``replace`` is true; the old pool is then closed by
    the next :func:`close_sql_pools` (or the next run that needs a pool).

    Raises:
        InvalidArgumentError: on a bad field, or a name already registered differently.
    """
    validate_connection_config(cfg)
    with _registry.lock:
        old = _registry.configs.get(cfg.name)
        if old is not None and old == cfg:
            return
        if old is not None and not replace:
            raise InvalidArgumentError(
                "name", f"SQL connection {cfg.name!r} is already registered (pass replace=True)"
            )
        _registry.configs[cfg.name] = cfg
        pool = _registry.pools.pop(cfg.name, None)
        if pool is not None:
            _registry.retired.append(pool)
    logger.info("registered SQL connection %s -> %s", cfg.name, cfg.describe())


def get_sql_connection(name: str) -> SqlConnectionConfig:
    """The registered connection called ``name``.

    Raises:
        NotFoundError: if no connection has that name in this process.
    """
    with _registry.lock:
        cfg = _registry.configs.get(name)
    if cfg is None:
        raise NotFoundError(f"no SQL connection named {name!r} is registered in this process")
    return cfg


async def unregister_sql_connection(name: str) -> None:
    """Forget the connection called ``name`` and close its pool (no error if unknown)."""
    with _registry.lock:
        _registry.configs.pop(name, None)
        pool = _registry.pools.pop(name, None)
    if pool is not None:
        await _dispose(pool)


async def close_sql_pools() -> None:
    """Close every pool (call at worker shutdown). Registrations stay; pools reopen lazily."""
    with _registry.lock:
        pools = [*_registry.pools.values(), *_registry.inline.values(), *_registry.retired]
        _registry.pools.clear()
        _registry.inline.clear()
        _registry.retired.clear()
    for pool in pools:
        await _dispose(pool)


def sql_pool_status(name: str) -> dict[str, Any] | None:
    """Counters of the pool of a registered connection, or None if it has no pool yet.

    Returns:
        ``{"pool_id", "size", "checked_in", "checked_out", "overflow"}``: ``pool_id`` is
        stable for as long as the same pool serves the connection.
    """
    with _registry.lock:
        pool = _registry.pools.get(name)
    if pool is None:
        return None
    qp = pool.engine.pool
    return {
        "pool_id": id(qp),
        "size": qp.size(),
        "checked_in": qp.checkedin(),
        "checked_out": qp.checkedout(),
        "overflow": qp.overflow(),
    }


async def engine_for(cfg: SqlConnectionConfig, *, inline: bool) -> Any:
    """The async engine (pool) serving ``cfg`` on the running loop; made on first use."""
    loop = asyncio.get_running_loop()
    stale: list[_Pool] = []
    with _registry.lock:
        stale.extend(_registry.retired)
        _registry.retired.clear()
        if inline:
            key = hashlib.sha256(msgspec.json.encode(cfg)).digest()
            pool = _registry.inline.get(key)
            if pool is not None and pool.loop is loop:
                _registry.inline.move_to_end(key)
                engine = pool.engine
            else:
                if pool is not None:
                    stale.append(pool)
                engine = _create_engine(cfg)
                _registry.inline[key] = _Pool(engine, loop)
                while len(_registry.inline) > MAX_INLINE_POOLS:
                    stale.append(_registry.inline.popitem(last=False)[1])
        else:
            pool = _registry.pools.get(cfg.name)
            if pool is not None and pool.loop is loop:
                engine = pool.engine
            else:
                if pool is not None:
                    stale.append(pool)
                engine = _create_engine(cfg)
                _registry.pools[cfg.name] = _Pool(engine, loop)
    for old in stale:
        await _dispose(old)
    return engine


def _create_engine(cfg: SqlConnectionConfig) -> Any:
    from sqlalchemy.ext.asyncio import create_async_engine

    spec = engine_spec(cfg)
    logger.debug("opening SQL pool %s -> %s", cfg.name, cfg.describe())
    return create_async_engine(
        spec.url,
        connect_args=spec.connect_args,
        pool_size=cfg.pool_min_size,
        max_overflow=cfg.pool_max_size - cfg.pool_min_size,
        pool_recycle=cfg.pool_recycle,
        pool_timeout=cfg.pool_timeout,
        pool_pre_ping=True,
        pool_reset_on_return="rollback",
        hide_parameters=True,
    )


async def _dispose(pool: _Pool) -> None:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:  # pragma: no cover - always called from a coroutine
        running = None
    if pool.loop is running:
        try:
            await pool.engine.dispose()
        except Exception:
            logger.warning("closing a SQL pool failed", exc_info=True)
    else:
        # The connections belong to another loop: drop them without touching their sockets.
        pool.engine.sync_engine.dispose(close=False)
