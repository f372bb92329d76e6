"""Alembic environment: runs migrations on the gateway's own async engine."""

from __future__ import annotations

import asyncio

from alembic import context
from alembic.runtime.migration import MigrationInfo
from sqlalchemy.engine import Connection

from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import create_engine
from novo_gateway.models import Base

target_metadata = Base.metadata


def _settings() -> Settings:
    given = context.config.attributes.get("settings")
    return given if isinstance(given, Settings) else Settings()


def _applied(*, step: MigrationInfo, **_: object) -> None:
    """Tell the caller of `upgrade` which revision was just applied (its id and description)."""
    applied = context.config.attributes.get("applied")
    if applied is not None and step.is_upgrade:
        applied.append(f"{step.up_revision_id} ({step.up_revision.doc})")


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        on_version_apply=_applied,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(_settings())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_settings().sqlalchemy_url, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
