"""Forward-only schema migrations, read from ``cadenza.schemas/migrations/<dialect>/``.

Files are named ``NNNN_name.sql``; each is applied once, in order, inside the caller's
transaction, and recorded in ``schema_migrations``. On PostgreSQL a transaction-scoped advisory
lock makes concurrent servers apply them one at a time.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from importlib import resources

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from cadenza.history import _tables as t

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_ADVISORY_LOCK_ID = 0x43414445  # "CADE"


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The file's statements (split on ``;`` at the end of a line; comments removed)."""
        lines = [line for line in self.sql.splitlines() if not line.strip().startswith("--")]
        return [s.strip() for s in re.split(r";\s*$", "\n".join(lines), flags=re.M) if s.strip()]


def load_migrations(dialect: str) -> list[Migration]:
    """Every migration of a dialect (``sqlite`` or ``postgresql``), in version order."""
    folder = resources.files("cadenza.schemas").joinpath("migrations", dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"migrations of {dialect} repeat a version number: {versions}")
    return found


async def apply_migrations_txn(conn: AsyncConnection, dialect: str) -> list[int]:
    """Apply pending migrations inside the caller's transaction; returns versions applied."""
    if dialect == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
    await conn.run_sync(lambda sync: t.schema_migrations.create(sync, checkfirst=True))
    done = {row[0] for row in await conn.execute(select(t.schema_migrations.c.version))}
    applied: list[int] = []
    for migration in load_migrations(dialect):
        if migration.version in done:
            continue
        for statement in migration.statements():
            await conn.exec_driver_sql(statement)
        await conn.execute(
            insert(t.schema_migrations).values(
                version=migration.version,
                name=migration.name,
                applied_ms=int(time.time() * 1000),
            )
        )
        applied.append(migration.version)
    return applied
