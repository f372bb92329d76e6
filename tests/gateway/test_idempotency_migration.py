"""Migration 0005: the `idempotent_requests` table comes and goes with its revision."""

from __future__ import annotations

import asyncio

from alembic import command
from sqlalchemy import inspect

from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import create_engine
from novo_gateway.migrate import alembic_config, upgrade


async def _tables(settings: Settings) -> set[str]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def test_the_idempotency_migration_upgrades_and_downgrades(settings: Settings) -> None:
    assert "idempotent_requests" in await _tables(settings)
    config = alembic_config(settings)
    try:
        await asyncio.to_thread(command.downgrade, config, "0004_usage_daily")
        tables = await _tables(settings)
        assert "idempotent_requests" not in tables
        assert "usage_idempotency_keys" in tables
    finally:
        await asyncio.to_thread(upgrade, settings)  # the shared test database, as it was
    assert "idempotent_requests" in await _tables(settings)
