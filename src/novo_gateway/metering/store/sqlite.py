"""The ledger on SQLite.

The usage writer's common batch: a `sqlite3` connection of the writer's own, used on the event
loop's thread. Going through aiosqlite's thread cost more than the insert: every row's step
releases and retakes the GIL, and retaking it while the loop is busy waits for the interpreter's
switch interval, so batches crawled exactly when the gateway was busiest (bench/README.md). A
batch of a few hundred rows is a few hundred microseconds of work. The two blocking waits a SQLite
write can have are kept off the loop: the write lock is taken with `BEGIN IMMEDIATE` and no busy
timeout, retried with `asyncio.sleep` while another connection holds it (up to
`LOCK_WAIT_SECONDS`, as the engine's busy timeout); and automatic checkpoints (which fsync) are
off on this connection, run instead in a worker thread once the write-ahead log passes
`CHECKPOINT_WAL_BYTES`: a PASSIVE pass (writers go on), then a TRUNCATE pass that copies what was
added meanwhile and empties the log. Without the second pass the log never restarts under
constant writes and grows without bound (it did: 600 MB in minutes). Commits are durable as every
other write of the gateway (WAL, synchronous=NORMAL: a committed event survives a crash of the
process).

The running counters are one upsert statement each, run for every row of the batch (timestamps
and days as SQLAlchemy stores them here: text), by that insert and by a session's insert alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Result, String, Table, func, text
from sqlalchemy.dialects.sqlite import Insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from novo_gateway.metering.counters import BatchCounts
from novo_gateway.metering.store.base import LedgerStore, RowEncoder

log = logging.getLogger("novo_gateway.metering.writer")

LOCK_WAIT_SECONDS = 10.0
# The longest pause between two tries for the write lock: short, so a writer waiting behind
# another connection's transaction (a reporter's claim) commits within milliseconds of its end.
MAX_LOCK_PAUSE_SECONDS = 0.005
CHECKPOINT_WAL_BYTES = 8 * 1024 * 1024
_CHECK_WAL_EVERY_COMMITS = 32
# The time limit's progress handler runs every this many virtual machine instructions (~0.1 ms).
_CHECK_TIME_EVERY = 1000

_DAILY_UPSERT = (
    "INSERT INTO usage_daily (user_id, day, calls, billable_units, unbilled_calls) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, day) DO UPDATE SET "
    "calls = calls + excluded.calls, "
    "billable_units = billable_units + excluded.billable_units, "
    "unbilled_calls = unbilled_calls + excluded.unbilled_calls"
)
_ENDPOINT_DAILY_UPSERT = (
    "INSERT INTO usage_endpoint_daily "
    "(user_id, day, endpoint, method, bucket, calls, billable_units, latency_ms_sum) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (user_id, day, endpoint, method, bucket) DO UPDATE SET "
    "calls = calls + excluded.calls, "
    "billable_units = billable_units + excluded.billable_units, "
    "latency_ms_sum = latency_ms_sum + excluded.latency_ms_sum"
)


def sqlite_timestamp(value: datetime | None) -> str | None:
    """A UTC timestamp as SQLAlchemy stores it in SQLite (`2026-11-26 12:00:00.000000`)."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _counter_statements(counts: BatchCounts) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """Each counter's upsert with its rows, the day as text (none for a counter left alone)."""
    return [
        (sql, [(row[0], row[1].isoformat(), *row[2:]) for row in rows])
        for sql, rows in ((_DAILY_UPSERT, counts.days), (_ENDPOINT_DAILY_UPSERT, counts.endpoints))
        if rows
    ]


class SqliteStore(LedgerStore):
    def _refused_by_driver(self, error: BaseException) -> bool:
        return isinstance(error, sqlite3.IntegrityError | sqlite3.DataError)

    def direct_insert(
        self, engine: AsyncEngine, table: Table, columns: Sequence[str]
    ) -> SqliteInsert | None:
        if engine.url.database in (None, "", ":memory:"):
            return None  # the writer's own connection would see another database
        return SqliteInsert(engine, table, columns)

    async def add_counts(self, connection: AsyncConnection, counts: BatchCounts) -> None:
        for sql, rows in _counter_statements(counts):
            await connection.exec_driver_sql(sql, rows)

    def upsert(self, table: Table) -> Insert:
        return sqlite_insert(table)

    def utc_hour(self, at: Any) -> ColumnElement[str]:
        # Timestamps are kept as "YYYY-MM-DD HH:MM:SS.ffffff" in UTC.
        return func.substr(at, 1, 13, type_=String)

    async def insert_many(
        self, session: AsyncSession, table: Table, rows: list[dict[str, Any]]
    ) -> None:
        """One statement, the rows in one JSON parameter: aiosqlite's thread would pay a GIL
        hand-off per row of an executemany."""
        columns = list(rows[0])
        values = json.dumps([[_json_value(row[c]) for c in columns] for row in rows])
        picks = ", ".join(f"value ->> {i}" for i in range(len(columns)))
        await session.execute(
            text(
                f"INSERT INTO {table.name} ({', '.join(columns)}) "  # noqa: S608 - our names
                f"SELECT {picks} FROM json_each(:rows)"
            ),
            {"rows": values},
        )

    async def one_snapshot(self, session: AsyncSession) -> None:
        """Nothing to do: a SQLite write transaction holds the database's only write lock."""

    async def changed_rows(self, session: AsyncSession, result: Result[Any]) -> int:
        # The driver gives no row count for a statement led by WITH.
        return int(await session.scalar(text("SELECT changes()")) or 0)

    @asynccontextmanager
    async def time_limit(self, session: AsyncSession, seconds: float) -> AsyncIterator[None]:
        """A progress handler that interrupts a statement past the deadline."""
        connection = await session.connection()
        driver: Any = (await connection.get_raw_connection()).driver_connection
        deadline = time.monotonic() + seconds
        await driver.set_progress_handler(lambda: time.monotonic() > deadline, _CHECK_TIME_EVERY)
        try:
            yield
        finally:
            await driver.set_progress_handler(None, _CHECK_TIME_EVERY)

    def timed_out(self, error: DBAPIError) -> bool:
        return "interrupted" in str(error.orig)


def _json_value(value: object) -> object:
    return sqlite_timestamp(value) if isinstance(value, datetime) else value


class SqliteInsert:
    """`sqlite3` on the loop's thread: lock taken without blocking, checkpoints in a thread."""

    def __init__(self, engine: AsyncEngine, table: Table, columns: Sequence[str]) -> None:
        self._path = str(engine.url.database)
        self._encoder = RowEncoder(engine.dialect, table, columns, sqlite_timestamp)
        # Only constant names and placeholders go into the text; the values are bound.
        self._sql = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) "  # noqa: S608
            f"VALUES ({', '.join('?' * len(columns))})"
        )
        self._conn: sqlite3.Connection | None = None
        self._commits = 0
        self._checkpoint: asyncio.Task[None] | None = None

    async def write(self, rows: list[tuple[Any, ...]], counts: BatchCounts) -> None:
        rows = self._encoder.rows(rows)
        conn = self._connection()
        try:
            await self._begin(conn)
            conn.executemany(self._sql, rows)
            for sql, counter_rows in _counter_statements(counts):
                conn.executemany(sql, counter_rows)
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
