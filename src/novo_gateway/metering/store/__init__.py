"""The ledger's store: the SQL that differs between SQLite and PostgreSQL, one module each.

`ledger_store(dialect_name)` gives the store of a database (`base.LedgerStore` says what one
does); `direct_insert(engine, ...)` the usage writer's driver-level insert for an engine.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from novo_gateway.metering.store.base import LedgerInsert, LedgerStore
from novo_gateway.metering.store.postgres import PostgresStore
from novo_gateway.metering.store.sqlite import SqliteStore

__all__ = ["LedgerInsert", "LedgerStore", "direct_insert", "ledger_store"]

_STORES: dict[str, LedgerStore] = {"postgresql": PostgresStore(), "sqlite": SqliteStore()}


def ledger_store(dialect_name: str) -> LedgerStore:
    """The store of a database, by its SQLAlchemy dialect's name."""
    try:
        return _STORES[dialect_name]
    except KeyError:
        raise ValueError(f"the usage ledger does not run on {dialect_name}") from None


def direct_insert(engine: AsyncEngine, table: Table, columns: Sequence[str]) -> LedgerInsert | None:
    """The usage writer's driver-level insert for this engine's database, or None."""
    return ledger_store(engine.dialect.name).direct_insert(engine, table, columns)
