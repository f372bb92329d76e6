"""The ledger on PostgreSQL (asyncpg).

The usage writer's common batch is asyncpg's `COPY` in a transaction on a connection of the
engine's pool, held between batches; asyncpg is plain asyncio, so this costs the event loop a few
awaits per batch. The running counters are one upsert statement each for the whole batch, its rows
sent as arrays, by that insert and by a session's insert alike.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import ColumnElement, Result, String, Table, func, insert, select
from sqlalchemy.dialects.postgresql import Insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from novo_gateway.metering.counters import BatchCounts
from novo_gateway.metering.store.base import LedgerStore, RowEncoder

log = logging.getLogger("novo_gateway.metering.writer")

# SQLSTATE of a statement cancelled by statement_timeout (query_canceled).
_QUERY_CANCELED = "57014"
# SQLSTATE classes of a write refused for its rows: "data exception", "integrity constraint
# violation" (asyncpg's server errors carry it).
_ROW_SQLSTATES = ("22", "23")

# One statement per counter for the whole batch: the rows travel as arrays, one per column.
_DAILY_UPSERT = (
    "INSERT INTO usage_daily (user_id, day, calls, billable_units, unbilled_calls) "
    "SELECT * FROM unnest($1::bigint[], $2::date[], $3::bigint[], $4::bigint[], $5::bigint[]) "
    "ON CONFLICT (user_id, day) DO UPDATE SET "
    "calls = usage_daily.calls + excluded.calls, "
    "billable_units = usage_daily.billable_units + excluded.billable_units, "
    "unbilled_calls = usage_daily.unbilled_calls + excluded.unbilled_calls"
)
_ENDPOINT_DAILY_UPSERT = (
    "INSERT INTO usage_endpoint_daily "
    "(user_id, day, endpoint, method, bucket, calls, billable_units, latency_ms_sum) "
    "SELECT * FROM unnest($1::bigint[], $2::date[], $3::varchar[], $4::varchar[], "
    "$5::smallint[], $6::bigint[], $7::bigint[], $8::bigint[]) "
    "ON CONFLICT (user_id, day, endpoint, method, bucket) DO UPDATE SET "
    "calls = usage_endpoint_daily.calls + excluded.calls, "
    "billable_units = usage_endpoint_daily.billable_units + excluded.billable_units, "
    "latency_ms_sum = usage_endpoint_daily.latency_ms_sum + excluded.latency_ms_sum"
)


def _counter_statements(counts: BatchCounts) -> list[tuple[str, list[list[Any]]]]:
    """Each counter's upsert with its arrays (none for a counter the batch leaves alone).

    Last in a transaction, so the counter rows stay locked only until the commit."""
    return [
        (sql, [list(values) for values in zip(*rows, strict=True)])
        for sql, rows in ((_DAILY_UPSERT, counts.days), (_ENDPOINT_DAILY_UPSERT, counts.endpoints))
        if rows
    ]


class PostgresStore(LedgerStore):
    def _refused_by_driver(self, error: BaseException) -> bool:
        sqlstate = getattr(error, "sqlstate", None)
        return isinstance(sqlstate, str) and sqlstate[:2] in _ROW_SQLSTATES

    def direct_insert(
        self, engine: AsyncEngine, table: Table, columns: Sequence[str]
    ) -> PostgresInsert:
        return PostgresInsert(engine, table, columns)

    async def add_counts(self, connection: AsyncConnection, counts: BatchCounts) -> None:
        for sql, arrays in _counter_statements(counts):
            await connection.exec_driver_sql(sql, tuple(arrays))

    def upsert(self, table: Table) -> Insert:
        return pg_insert(table)

    def utc_hour(self, at: Any) -> ColumnElement[str]:
        return func.to_char(func.timezone("UTC", at), "YYYY-MM-DD HH24", type_=String)

    async def insert_many(
        self, session: AsyncSession, table: Table, rows: list[dict[str, Any]]
    ) -> None:
        # The driver's executemany: one prepared statement, pipelined.
        await session.execute(insert(table), rows)

    async def one_snapshot(self, session: AsyncSession) -> None:
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})

    async def changed_rows(self, session: AsyncSession, result: Result[Any]) -> int:
        return int(result.rowcount)  # type: ignore[attr-defined]

    @asynccontextmanager
    async def time_limit(self, session: AsyncSession, seconds: float) -> AsyncIterator[None]:
        milliseconds = max(1, round(seconds * 1000))  # 0 would mean no timeout
        # For the transaction only (`SET LOCAL`).
        await session.execute(select(func.set_config("statement_timeout", str(milliseconds), True)))
        yield

    def timed_out(self, error: DBAPIError) -> bool:
        return getattr(error.orig, "sqlstate", None) == _QUERY_CANCELED


class PostgresInsert:
    """asyncpg `COPY` of the batch in a transaction; a failed batch discards its connection."""

    def __init__(self, engine: AsyncEngine, table: Table, columns: Sequence[str]) -> None:
        self._engine = engine
        self._encoder = RowEncoder(engine.dialect, table, columns)
        self._table, self._columns = table.name, list(columns)
        self._conn: AsyncConnection | None = None

    async def write(self, rows: list[tuple[Any, ...]], counts: BatchCounts) -> None:
        rows = self._encoder.rows(rows)
        if self._conn is None:
            self._conn = await self._engine.connect()
        try:
            driver: Any = (await self._conn.get_raw_connection()).driver_connection
            async with driver.transaction():
                # COPY: one message for the batch, where executemany binds and runs each row.
                await driver.copy_records_to_table(self._table, records=rows, columns=self._columns)
                for sql, arrays in _counter_statements(counts):
                    await driver.execute(sql, *arrays)
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
