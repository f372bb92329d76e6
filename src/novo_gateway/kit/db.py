"""The database: engine, session factory and the one scope that commits or rolls back.

Services only `flush()`; `session_scope()` (used by the request dependency and by every job) commits
when the unit of work succeeds and rolls back when it raises, so related writes land together.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, MetaData, event, select, update
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from novo_gateway.kit.config import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


SessionFactory = async_sessionmaker[AsyncSession]


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the single writer; NORMAL sync is durable in WAL mode
    # against process crashes (the usage ledger's promise) and costs one fsync per checkpoint.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_private_file(path: Path) -> None:
    """Create `path` empty and readable by its owner only (0600), unless it exists.

    The SQLite database holds password and key hashes and login sessions; SQLite gives its WAL
    and shared-memory files the database file's mode.
    """
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def create_engine(settings: Settings) -> AsyncEngine:
    """An async engine for DATABASE_URL, or for the SQLite file at DATABASE_PATH."""
    url = settings.sqlalchemy_url
    if settings.is_sqlite:
        Path(settings.database_path).parent.mkdir(parents=True, exist_ok=True)
        if not settings.database_url:
            create_private_file(Path(settings.database_path))
        engine = create_async_engine(url, connect_args={"timeout": 10})
        event.listen(engine.sync_engine, "connect", _configure_sqlite)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False)


_AFTER_COMMIT = "novo_after_commit"


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run `callback` once the unit of work of `session_scope` has committed (not on rollback):
    for in-process caches that must forget what the transaction changed, after others can see it."""
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


@asynccontextmanager
async def session_scope(factory: SessionFactory) -> AsyncIterator[AsyncSession]:
    """A unit of work: commit on success, roll back on any error."""
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        for callback in session.info.pop(_AFTER_COMMIT, ()):
            callback()


async def lock_rows(session: AsyncSession, model: type[Base], *where: ColumnElement[bool]) -> None:
    """Lock the matching rows until the unit of work ends, on PostgreSQL and SQLite alike.

    PostgreSQL: `SELECT … FOR UPDATE`. SQLite has no row locks, and its driver starts a
    transaction only at the first write, so reads before it see no lock at all: a write that
    changes nothing takes the database's write lock instead, and other writers queue behind it.
    """
    key = model.__table__.primary_key.columns[0]  # type: ignore[attr-defined]
    if session.get_bind().dialect.name == "sqlite":
        # Nothing changes, so the session's loaded objects stay as they are (not expired).
        unchanged = update(model).where(*where).values({key.name: key})
        await session.execute(unchanged.execution_options(synchronize_session=False))
    else:
        await session.execute(select(key).where(*where).with_for_update())
