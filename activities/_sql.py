"""The built-in ``sql`` activity: parameterised SQL on PostgreSQL, MySQL/MariaDB and Oracle.

Usage from a workflow::

    result = await workflow.execute_activity(
        "sql",
        {"connection": "billing", "sql": "SELECT id, total FROM invoice WHERE day = :day",
         "params": {"day": "2024-01-31"}},
        start_to_close_timeout=timedelta(minutes=5),
    )

A run validates its configuration first (no I/O; a bad field fails the activity for good with
type ``InvalidArgumentError``), takes a connection from the connection's pool, runs every
statement in ONE transaction with the statement timeout set, commits (or rolls back on any
error, and always for ``read_only``), and returns a bounded, JSON-safe result. Driver errors
are classified in ``_sql_errors`` (retryable or not).

See ``docs/activities/sql.md`` for every option.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cadenza.activities._context import defn, heartbeat, in_activity, info
from cadenza.activities._sql_config import (
    IDEMPOTENCY_KEY_PARAM,
    PlannedStatement,
    SqlConnectionConfig,
    SqlStepConfig,
    coerce_step_config,
    plan_statements,
    resolve_target,
)
from cadenza.activities._sql_dialects import RowSource, make_session
from cadenza.activities._sql_errors import (
    SqlConnectionError,
    SqlError,
    SqlResultTooLarge,
    SqlTimeout,
    classify_sql_error,
)
from cadenza.activities._sql_pools import engine_for, get_sql_connection
from cadenza.activities._sql_values import OutputBudget, json_safe
from cadenza.history import ApplicationError, InvalidArgumentError, NotFoundError

logger = logging.getLogger("cadenza.activities.sql")

_FETCH_BATCH = 500


@defn(name="sql")
async def sql_query(config: SqlStepConfig) -> dict[str, Any]:
    """Run one statement, one routine call, or several statements in one transaction.

    Args:
        config: A :class:`SqlStepConfig` (or a mapping of its keys, as in a job file).

    Returns:
        For one statement, its result; for ``statements``, ``{"results": [...],
        "truncated": bool}``. A ``rows`` result is ``{"mode", "columns", "rows",
        "row_count", "truncated"}`` (plus ``truncated_reason`` when truncated); an
        ``execute`` result is ``{"mode", "affected_rows"}``; a ``call`` result adds ``out``
        and ``return_value`` to the ``rows`` keys.

    Raises:
        ApplicationError: type ``InvalidArgumentError`` (bad configuration, not retried),
            ``SqlConnectionError``, ``SqlTransientError``, ``SqlTimeout`` (retried),
            ``SqlError`` or ``SqlResultTooLarge`` (not retried).
    """
    step, connection, inline, plan = _prepare(config)
    return await _run(step, connection, inline, plan)


def _prepare(
    config: Any,
) -> tuple[SqlStepConfig, SqlConnectionConfig, bool, list[PlannedStatement]]:
    try:
        step = coerce_step_config(config)
        if isinstance(step.connection, SqlConnectionConfig):
            connection, inline = step.connection, True
        else:
            try:
                connection, inline = get_sql_connection(step.connection), False
            except NotFoundError as exc:
                raise InvalidArgumentError("connection", str(exc)) from None
        implicit = {IDEMPOTENCY_KEY_PARAM: info().idempotency_key} if in_activity() else {}
        plan = plan_statements(step, connection.kind, implicit=implicit)
    except InvalidArgumentError as exc:
        raise ApplicationError(
            str(exc),
            {"field": exc.field, "reason": exc.reason},
            type="InvalidArgumentError",
            non_retryable=True,
        ) from None
    return step, connection, inline, plan


def _guard(timeout: float) -> float:
    """Client-side limit for one statement: the server's limit plus a grace period, so that
    the server's own (clearer) error normally wins, and a hung network still ends."""
    return timeout + min(max(1.0, timeout * 0.25), 30.0)


async def _run(
    step: SqlStepConfig,
    cfg: SqlConnectionConfig,
    inline: bool,
    plan: list[PlannedStatement],
) -> dict[str, Any]:
    timeout = step.statement_timeout or cfg.statement_timeout
    password = resolve_target(cfg).password
    engine = await engine_for(cfg, inline=inline)
    logger.debug(
        "sql: connection=%s kind=%s statements=%d read_only=%s",
        cfg.name,
        cfg.kind,
        len(plan),
        step.read_only,
    )
    conn: Any = None
    current: int | None = None
    try:
        try:
            async with asyncio.timeout(cfg.pool_timeout + cfg.connect_timeout + 1):
                conn = await engine.connect()
                raw = await conn.get_raw_connection()
        except TimeoutError:
            raise SqlConnectionError(
                f"{cfg.name}: no connection within {cfg.pool_timeout + cfg.connect_timeout + 1:g}s",
                {"connection": cfg.name, "kind": cfg.kind, "reason": "connect_timeout"},
            ) from None
        session = make_session(cfg.kind, raw.driver_connection, conn.dialect)
        budget = OutputBudget(step.max_bytes)
        results: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(_guard(timeout)):
                await session.begin(read_only=step.read_only, statement_timeout=timeout)
            for st in plan:
                current = st.index
                if in_activity():
                    heartbeat({"statement": st.index})
                async with asyncio.timeout(_guard(timeout)):
                    results.append(await _run_statement(session, st, step, budget, cfg.kind))
            current = None
            async with asyncio.timeout(_guard(timeout)):
                if step.read_only:
                    await session.rollback()
                else:
                    await session.commit()
        except BaseException as exc:
            await _abandon(conn, session, exc, timeout)
            raise
        try:
            async with asyncio.timeout(_guard(timeout)):
                await session.cleanup()
        except BaseException as exc:
            # The transaction is already committed: failing now would make a retry repeat
            # it. Drop the connection instead, so its session settings die with it.
            await _invalidate(conn)
            if not isinstance(exc, Exception):
                raise
            logger.warning("sql: %s: could not restore the session; dropped it", cfg.name)
    except SqlError as exc:
        if exc.details and isinstance(exc.details[0], dict):
            exc.details[0].setdefault("connection", cfg.name)
            exc.details[0].setdefault("kind", cfg.kind)
        raise
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        error = classify_sql_error(
            exc, kind=cfg.kind, connection=cfg.name, statement=current, secrets=(password,)
        )
        logger.info("sql: %s failed: %s (%s)", cfg.name, error.type, error.message)
        raise error from None
    finally:
        if conn is not None:
            await _quiet(conn.close())
    if step.statements:
        return {"results": results, "truncated": any(r.get("truncated") for r in results)}
    return results[0]


async def _abandon(conn: Any, session: Any, exc: BaseException, limit: float) -> None:
    """After a failure: roll back and restore the session, or drop the connection when its
    state is unknown (a client-side timeout, a cancellation, a broken connection)."""
    if isinstance(exc, (TimeoutError, asyncio.CancelledError, SqlConnectionError, SqlTimeout)):
        await _invalidate(conn)
        return
    kind = getattr(session, "kind", "")
    if isinstance(exc, Exception) and not isinstance(exc, SqlError):
        classified = classify_sql_error(exc, kind=kind, connection="")
        if isinstance(classified, SqlConnectionError):
            await _invalidate(conn)
            return
    try:
        async with asyncio.timeout(_guard(limit)):
            await session.rollback()
            await session.cleanup()
    except BaseException:
        await _invalidate(conn)


async def _invalidate(conn: Any) -> None:
    await _quiet(conn.invalidate())


async def _quiet(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception:
        logger.debug("sql: ignoring an error while releasing a connection", exc_info=True)


async def _run_statement(
    session: Any,
    st: PlannedStatement,
    step: SqlStepConfig,
    budget: OutputBudget,
    kind: str,
) -> dict[str, Any]:
    batch = max(1, min(step.max_rows + 1, _FETCH_BATCH))
    if st.mode == "execute":
        return {"mode": "execute", "affected_rows": await session.execute(st)}
    if st.mode == "rows":
        source = await session.open_rows(st, batch)
        return {"mode": "rows", **await _collect(source, st, step, budget, kind)}
    outcome = await session.call(st, batch)
    out: dict[str, Any] = {}
    for name, value in outcome.out.items():
        safe = json_safe(value, kind=kind, decimals=step.decimals)
        out[name] = safe if budget.take(safe) else None
    return_value = json_safe(outcome.return_value, kind=kind, decimals=step.decimals)
    if not budget.take(return_value):
        return_value = None
    over = budget.exhausted
    if outcome.rows is not None:
        collected = await _collect(outcome.rows, st, step, budget, kind)
    else:
        collected = {"columns": [], "rows": [], "row_count": 0, "truncated": False}
    if (
        st.function
        and outcome.rows is not None
        and len(collected["columns"]) == 1
        and collected["row_count"] == 1
    ):
        first = collected["rows"][0]
        return_value = next(iter(first.values())) if isinstance(first, dict) else first[0]
    result = {"mode": "call", "out": out, "return_value": return_value, **collected}
    if over and not result["truncated"]:
        result["truncated"] = True
        result["truncated_reason"] = "max_bytes"
        _check_truncate(step, st, "max_bytes")
    return result


async def _collect(
    source: RowSource,
    st: PlannedStatement,
    step: SqlStepConfig,
    budget: OutputBudget,
    kind: str,
) -> dict[str, Any]:
    try:
        columns = [str(c) for c in source.columns]
        if step.row_format == "dicts" and len(set(columns)) != len(columns):
            duplicate = next(c for c in columns if columns.count(c) > 1)
            raise SqlError(
                f"{st.field}: the result has two columns named {duplicate!r}; give them "
                "distinct aliases or use row_format: lists",
                {"reason": "duplicate_column", "column": duplicate, "statement": st.index},
            )
        rows: list[Any] = []
        reason: str | None = None
        batch = max(1, min(step.max_rows + 1, _FETCH_BATCH))
        while reason is None:
            chunk = await source.fetch(batch)
            if not chunk:
                break
            for raw_row in chunk:
                if len(rows) >= step.max_rows:
                    reason = "max_rows"
                    break
                values = [json_safe(v, kind=kind, decimals=step.decimals) for v in raw_row]
                item: Any = (
                    dict(zip(columns, values, strict=True))
                    if step.row_format == "dicts"
                    else values
                )
                if not budget.take(item):
                    reason = "max_bytes"
                    break
                rows.append(item)
            if in_activity():
                heartbeat({"statement": st.index, "rows": len(rows)})
    finally:
        await source.close()
    if reason is not None:
        _check_truncate(step, st, reason)
    result: dict[str, Any] = {
        "columns": columns,
        "rows": rows,
        "row_count": len(rows),
        "truncated": reason is not None,
    }
    if reason is not None:
        result["truncated_reason"] = reason
    return result


def _check_truncate(step: SqlStepConfig, st: PlannedStatement, reason: str) -> None:
    if not step.fail_on_truncate:
        return
    limit = f"max_rows={step.max_rows}" if reason == "max_rows" else f"max_bytes={step.max_bytes}"
    raise SqlResultTooLarge(
        f"{st.field}: the result exceeds {limit} and fail_on_truncate is set; "
        "the transaction was rolled back",
        {"reason": reason, "statement": st.index},
    )
