"""The usage writer's common batch: rows inserted by the database driver itself, one transaction.

`UsageWriter` hands a batch here when nothing in it needs the SQLAlchemy session (no
Idempotency-Key to claim, no purge due). Values are encoded by the columns' own SQLAlchemy bind
processors (a faster equal formatter for SQLite timestamps), so the rows are those the ORM writes.

PostgreSQL: asyncpg's `COPY` of the batch in a transaction on a connection of the engine's pool,
held between batches. asyncpg is plain asyncio, so this costs the event loop a few awaits per batch.

Both add the batch's counts per account and UTC day to `usage_daily`, and per endpoint and latency
bucket as well to `usage_endpoint_daily`, in the same transaction.

SQLite: a `sqlite3` connection of the writer's own, used on the event loop's thread. Going through
aiosqlite's thread cost more than the insert: every row's step releases and retakes the GIL, and
retaking it while the loop is busy waits for the interpreter's switch interval, so batches crawled
exactly when the gateway was busiest (bench/README.md). A batch of a few hundred rows is a few
hundred microseconds of work. The two blocking waits a SQLite write can have are kept off the loop:
the write lock is taken with `BEGIN IMMEDIATE` and no busy timeout, retried with `asyncio.sleep`
while another connection holds it (up to `LOCK_WAIT_SECONDS`, as the engine's busy timeout); and
automatic checkpoints (which fsync) are off on this connection, run instead in a worker thread
once the write-ahead log passes `CHECKPOINT_WAL_BYTES`: a PASSIVE pass (writers go on), then a
TRUNCATE pass that copies what was added meanwhile and empties the log. Without the second pass
the log never restarts under constant writes and grows without bound (it did: 600 MB in minutes).
Commits are durable as every other write of the gateway (WAL, synchronous=NORMAL: a committed
event survives a crash of the process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from novo_gateway.kit.models_base import UTCDateTime
from novo_gateway.metering import counters, daily, endpoint_daily

log = logging.getLogger("novo_gateway.metering.writer")

LOCK_WAIT_SECONDS = 10.0
# The longest pause between two tries for the write lock: short, so a writer waiting behind
# another connection's transaction (a reporter's claim) commits within milliseconds of its end.
MAX_LOCK_PAUSE_SECONDS = 0.005
CHECKPOINT_WAL_BYTES = 8 * 1024 * 1024
_CHECK_WAL_EVERY_COMMITS = 32


class LedgerInsert(Protocol):
    async def write(self, rows: list[tuple[Any, ...]], days: counters.BatchCounts) -> None:
        """Insert the rows and add `days` to the counters in one transaction.

        Raises, having rolled back, when it fails.
        """

    async def close(self) -> None: ...


def direct_insert(engine: AsyncEngine, table: Table, columns: Sequence[str]) -> LedgerInsert | None:
    """The driver-level insert for this engine's database, or None when it has none."""
    if engine.dialect.name == "postgresql":
        return PostgresInsert(engine, table, columns)
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        return SqliteInsert(engine, table, columns)
    return None


class _Encoder:
    """Turns a row of Python values into the driver's values, as SQLAlchemy would bind them."""

    def __init__(self, engine: AsyncEngine, table: Table, columns: Sequence[str]) -> None:
        dialect = engine.dialect
        encoders: list[tuple[int, Any]] = []
        for index, name in enumerate(columns):
            column_type = table.c[name].type
            if dialect.name == "sqlite" and isinstance(column_type, UTCDateTime):
                encoders.append((index, sqlite_timestamp))
                continue
            processor = column_type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                encoders.append((index, processor))
        self._encoders = encoders

    def rows(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        if not self._encoders:
            return rows
        encoded = []
        for row in rows:
            values = list(row)
            for index, encode in self._encoders:
                values[index] = encode(values[index])
            encoded.append(tuple(values))
        return encoded


def sqlite_timestamp(value: datetime | None) -> str | None:
    """A UTC timestamp as SQLAlchemy stores it in SQLite (`2026-11-26 12:00:00.000000`)."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _insert_sql(table: Table, columns: Sequence[str], marks: Sequence[str]) -> str:
    # Only constant names and placeholders go into the text; the values are bound.
    return (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "  # noqa: S608
        f"VALUES ({', '.join(marks)})"
    )


class PostgresInsert:
    """asyncpg `COPY` of the batch in a transaction; a failed batch discards its connection."""

    def __init__(self, engine: AsyncEngine, table: Table, columns: Sequence[str]) -> None:
        self._engine = engine
        self._encoder = _Encoder(engine, table, columns)
        self._table, self._columns = table.name, tuple(columns)
        self._conn: AsyncConnection | None = None

    async def write(self, rows: list[tuple[Any, ...]], days: counters.BatchCounts) -> None:
        rows = self._encoder.rows(rows)
        if self._conn is None:
            self._conn = await self._engine.connect()
        try:
            driver: Any = (await self._conn.get_raw_connection()).driver_connection
            async with driver.transaction():
                # COPY: one message for the batch, where executemany binds and runs each row.
                await driver.copy_records_to_table(
                    self._table, records=rows, columns=list(self._columns)
                )
                # Last, so the counter rows stay locked only until the commit.
                if days.days:
                    await driver.execute(daily.POSTGRES_UPSERT, *daily.postgres_arrays(days.days))
                if days.endpoints:
                    await driver.execute(
                        endpoint_daily.POSTGRES_UPSERT,
                        *endpoint_daily.postgres_arrays(days.endpoints),
                    )
        except BaseException:
            await self._discard()
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.invalidate()
            await conn.close()
        except Exception as exc:
            log.warning("could not close the usage writer's connection: %s", type(exc).__name__)


class SqliteInsert:
    """`sqlite3` on the loop's thread: lock taken without blocking, checkpoints in a thread."""

    def __init__(self, engine: AsyncEngine, table: Table, columns: Sequence[str]) -> None:
        self._path = str(engine.url.database)
        self._encoder = _Encoder(engine, table, columns)
        self._sql = _insert_sql(table, columns, ["?"] * len(columns))
        self._conn: sqlite3.Connection | None = None
        self._commits = 0
        self._checkpoint: asyncio.Task[None] | None = None

    async def write(self, rows: list[tuple[Any, ...]], days: counters.BatchCounts) -> None:
        rows = self._encoder.rows(rows)
        conn = self._connection()
        try:
            await self._begin(conn)
            conn.executemany(self._sql, rows)
            conn.executemany(daily.SQLITE_UPSERT, daily.sqlite_rows(days.days))
            conn.executemany(
                endpoint_daily.SQLITE_UPSERT, endpoint_daily.sqlite_rows(days.endpoints)
            )
            conn.execute("COMMIT")
        except BaseException:
            self._discard()
            raise
        self._commits += 1
        if (
            self._commits % _CHECK_WAL_EVERY_COMMITS == 0
            and self._checkpoint is None
            and _wal_bytes(self._path) >= CHECKPOINT_WAL_BYTES
        ):
            self._checkpoint = asyncio.create_task(self._run_checkpoint())

    async def close(self) -> None:
        if self._checkpoint is not None:
            with contextlib.suppress(Exception):
                await self._checkpoint
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=0")  # waits happen in _begin, off the loop
            conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run in a thread
            self._conn = conn
        return self._conn

    async def _begin(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE, sleeping (not blocking) while another connection writes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOCK_WAIT_SECONDS
        pause = 0.0005
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if loop.time() >= deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_LOCK_PAUSE_SECONDS)

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()
        except sqlite3.Error as exc:
            log.warning("could not close the usage writer's connection: %s", type(exc).__name__)

    async def _run_checkpoint(self) -> None:
        try:
            await asyncio.to_thread(_checkpoint, self._path)
        except Exception as exc:
            log.warning("usage ledger checkpoint failed: %s", type(exc).__name__)
        finally:
            self._checkpoint = None


def _wal_bytes(path: str) -> int:
    try:
        return os.path.getsize(path + "-wal")
    except OSError:
        return 0


def _checkpoint(path: str) -> None:
    """Copy the write-ahead log into the database file, then empty it (runs in a thread)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=2000")
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # the bulk, while writers go on
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the rest; writers wait briefly
    finally:
        conn.close()
