"""What the ledger asks of a database: `LedgerStore`, one implementation per database.

Everything the two databases do differently for the ledger is in a store: the driver-level
insert of the usage writer's common batch (`direct_insert`), the running counters' upserts
(`add_counts`, the only way `usage_daily` and `usage_endpoint_daily` are ever added to, in the
transaction that inserts the events), the Idempotency-Key claim's upsert, the UTC hour of an
event in SQL, a many-row insert in one statement, the claim's snapshot and row count, the
usage reads' statement timeout, and which errors mean a write was refused for its rows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Result, Table, insert
from sqlalchemy.dialects.postgresql import Insert as PostgresUpsert
from sqlalchemy.dialects.sqlite import Insert as SqliteUpsert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from novo_gateway.kit.models_base import UTCDateTime
from novo_gateway.metering.counters import BatchCounts
from novo_gateway.metering.models import UsageEvent

_INSERT_EVENTS = insert(UsageEvent)
# Errors about the rows themselves, as SQLAlchemy raises them for either database, and values a
# driver cannot bind (asyncpg's client-side DataError is a ValueError).
_ROW_ERRORS: tuple[type[BaseException], ...] = (
    IntegrityError,
    DataError,
    ValueError,
    OverflowError,
)


class LedgerInsert(Protocol):
    """The usage writer's driver-level insert (a connection of its own, kept between batches)."""

    async def write(self, rows: list[tuple[Any, ...]], counts: BatchCounts) -> None:
        """Insert the rows and add `counts` to the counters in one transaction.

        Raises, having rolled back, when it fails.
        """

    async def close(self) -> None: ...


class LedgerStore(ABC):
    """The ledger's SQL for one database (`ledger_store` picks it)."""

    def refused_rows(self, error: BaseException) -> bool:
        """Whether the database refused a write for what some of its rows hold (a constraint, a
        value out of range or not encodable); not for being unreachable or locked, where
        writing the rows one by one would only fail as many times."""
        return any(
            isinstance(cause, _ROW_ERRORS) or self._refused_by_driver(cause)
            for cause in (error, error.__cause__)
            if cause is not None
        )

    @abstractmethod
    def _refused_by_driver(self, error: BaseException) -> bool:
        """`refused_rows` for an error the driver raised itself."""

    @abstractmethod
    def direct_insert(
        self, engine: AsyncEngine, table: Table, columns: Sequence[str]
    ) -> LedgerInsert | None:
        """The driver-level insert of `columns` into `table`, or None when there is none."""

    @abstractmethod
    async def add_counts(self, connection: AsyncConnection, counts: BatchCounts) -> None:
        """Add a batch's counts to both running counters, in the connection's transaction."""

    async def insert_events(
        self, session: AsyncSession, rows: Sequence[dict[str, Any]], counts: BatchCounts
    ) -> None:
        """Insert events (their column values) and add their `counts` (`count_batch` of the same
        events) to the counters, in the session's transaction."""
        await session.execute(_INSERT_EVENTS, list(rows))
        await self.add_counts(await session.connection(), counts)

    @abstractmethod
    def upsert(self, table: Table) -> PostgresUpsert | SqliteUpsert:
        """An INSERT into `table` that can say ON CONFLICT."""

    @abstractmethod
    def utc_hour(self, at: Any) -> ColumnElement[str]:
        """SQL: the UTC hour of a timestamp column as text, `YYYY-MM-DD HH`."""

    @abstractmethod
    async def insert_many(
        self, session: AsyncSession, table: Table, rows: list[dict[str, Any]]
    ) -> None:
        """Insert rows (all with the same keys) into `table` in the session's transaction."""

    @abstractmethod
    async def one_snapshot(self, session: AsyncSession) -> None:
        """Make the session's transaction, not begun yet, read one snapshot throughout."""

    @abstractmethod
    async def changed_rows(self, session: AsyncSession, result: Result[Any]) -> int:
        """The rows changed by the UPDATE that gave `result`."""

    @abstractmethod
    def time_limit(
        self, session: AsyncSession, seconds: float
    ) -> AbstractAsyncContextManager[None]:
        """Stop any statement of the block that runs past `seconds` (`timed_out` says so)."""

    @abstractmethod
    def timed_out(self, error: DBAPIError) -> bool:
        """Whether `error` is a statement stopped by `time_limit`."""


class RowEncoder:
    """Turns rows of Python values into the driver's values, as SQLAlchemy would bind them;
    `timestamp`, when given, encodes the UTC timestamp columns instead (a faster equal one)."""

    def __init__(
        self,
        dialect: Dialect,
        table: Table,
        columns: Sequence[str],
        timestamp: Callable[[Any], Any] | None = None,
    ) -> None:
        encoders: list[tuple[int, Any]] = []
        for index, name in enumerate(columns):
            column_type = table.c[name].type
            if timestamp is not None and isinstance(column_type, UTCDateTime):
                encoders.append((index, timestamp))
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
