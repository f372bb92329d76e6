"""Migration 0008_auth re-keys stored emails by the new mapping, and leaves lookalikes apart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import insert, select

from novo_gateway.accounts.models import User
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import create_engine
from novo_gateway.migrate import upgrade
from tests.metering.test_usage_daily import downgrade
from tests.metering.test_usage_daily import empty_database as empty_database  # the fixture

FULLWIDTH = "".join(chr(ord(c) + 0xFEE0) for c in "ada")  # as the old code stored it
STORED_BEFORE = [
    "ada@example.com",
    f"{FULLWIDTH}@example.com",  # the lookalike second account the old code let in
    "stra\u00dfe@example.com",
    "".join(chr(ord(c) + 0xFEE0) for c in "bob") + "@example.com",
    "\u00e9mile@example.com",
]


async def test_emails_are_rekeyed_and_a_lookalike_of_an_older_account_is_left_as_is(
    empty_database: Settings,
) -> None:
    await asyncio.to_thread(upgrade, empty_database, "0007_lifecycle")
    engine = create_engine(empty_database)
    try:
        async with engine.begin() as conn:
            for email in STORED_BEFORE:
                await conn.execute(
                    insert(User),
                    {
                        "email": email,
                        "name": "U",
                        "password_hash": "x",
                        "subscription_status": "active",
                        "created_at": datetime(2026, 11, 1, tzinfo=UTC),
                        "cancel_at_period_end": False,
                    },
                )
        await engine.dispose()

        await asyncio.to_thread(upgrade, empty_database, "0008_auth")

        async with engine.connect() as conn:
            after = (await conn.execute(select(User.email).order_by(User.id))).scalars().all()
        assert after == [
            "ada@example.com",
            f"{FULLWIDTH}@example.com",
            "strasse@example.com",
            "bob@example.com",
            "\u00e9mile@example.com",
        ]
        await engine.dispose()
        await asyncio.to_thread(downgrade, empty_database, "0007_lifecycle")
        async with engine.connect() as conn:
            back = (await conn.execute(select(User.email).order_by(User.id))).scalars().all()
        assert back == after  # the mapping folds spellings together: it is not undone
    finally:
        await engine.dispose()
