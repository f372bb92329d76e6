"""Liveness and readiness: what `/health/live`, `/health/ready` and `/health` report.

Ready means every part a metered call needs works now: the database accepts a write (a real
commit, so a full disk or a deleted SQLite file shows), its schema is not behind the code's (a
schema a newer release migrated is fine: migrations only add, so replicas of the previous release
keep serving during a rolling upgrade), Redis answers when the limits live there, and the usage
writer's last batch was committed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Final, Literal

from sqlalchemy import text

from novo_gateway.migrate import schema_state
from novo_gateway.runtime import Runtime

log = logging.getLogger("novo_gateway.health")

# A probe must answer quickly even when a part hangs.
CHECK_TIMEOUT_SECONDS: Final = 3.0

Part = Literal["database", "schema", "redis", "usage_writer"]
State = Literal["ok", "error", "behind", "ahead", "failing"]
_READY: Final = frozenset({"ok", "ahead"})

# A write that changes nothing but is committed like any other: it fails when the disk is full,
# the file is read-only or the schema was never migrated; it returns the schema's revision.
_WRITE_PROBE: Final = text(
    "UPDATE alembic_version SET version_num = version_num RETURNING version_num"
)


@dataclass(frozen=True, slots=True)
class Readiness:
    parts: dict[Part, State]

    @property
    def ready(self) -> bool:
        return all(state in _READY for state in self.parts.values())

    @property
    def failing(self) -> list[Part]:
        return [part for part, state in self.parts.items() if state not in _READY]


async def readiness(runtime: Runtime) -> Readiness:
    """Check every part a metered call needs; the checks run side by side."""
    database, redis = await asyncio.gather(_database(runtime), _redis(runtime))
    parts: dict[Part, State] = {"database": database[0], "schema": database[1]}
    if redis is not None:
        parts["redis"] = redis
    parts["usage_writer"] = "failing" if runtime.usage.failing else "ok"
    return Readiness(parts)


async def _database(runtime: Runtime) -> tuple[State, State]:
    """(database, schema): whether a write commits, and whether the schema is at head."""
    settings = runtime.settings
    if settings.is_sqlite and not await asyncio.to_thread(os.path.exists, settings.database_path):
        # SQLite keeps writing to a deleted file's open inode; the data would be lost.
        return "error", "error"
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS), runtime.engine.begin() as conn:
            revision = await conn.scalar(_WRITE_PROBE)
    except Exception as exc:  # any failure means not ready; the probe itself must not fail
        log.warning("database readiness check failed: %s", type(exc).__name__)
        return "error", "error"
    return "ok", schema_state(revision)


async def _redis(runtime: Runtime) -> State | None:
    """Whether Redis answers, or None when the limits are kept in process."""
    if not runtime.limiter.shared:
        return None
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            return "ok" if await runtime.limiter.ping() else "error"
    except Exception as exc:  # a timeout or a connection error alike
        log.warning("redis readiness check failed: %s", type(exc).__name__)
        return "error"
