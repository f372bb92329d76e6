"""The late-usage migration: the carried-over columns of usage_reports, added and removed."""

from __future__ import annotations

import asyncio

from alembic import command
from sqlalchemy import inspect

from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import create_engine
from novo_gateway.migrate import alembic_config, upgrade
from tests.metering.test_usage_daily import empty_database  # noqa: F401  (the fixture)

CARRIED = {"carried_invoice_item", "carried_cents", "carried_period_end"}


async def _columns(settings: Settings) -> set[str]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: {c["name"] for c in inspect(sync).get_columns("usage_reports")}
            )
    finally:
        await engine.dispose()


async def test_the_migration_adds_the_carried_over_columns_and_takes_them_back(
    empty_database: Settings,  # noqa: F811
) -> None:
    await asyncio.to_thread(upgrade, empty_database, "head")
    assert await _columns(empty_database) >= CARRIED

    await asyncio.to_thread(command.downgrade, alembic_config(empty_database), "0005_idempotency")
    assert not CARRIED & await _columns(empty_database)
    await asyncio.to_thread(upgrade, empty_database, "head")
    assert await _columns(empty_database) >= CARRIED
