"""Ledger rows added by a test's session: far faster than as many calls, and counted in the
running counters by the ledger's store, in the session's transaction, as every insert is."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.metering.counters import count_batch
from novo_gateway.metering.models import UsageEvent
from novo_gateway.metering.store import ledger_store


async def add_to_ledger(session: AsyncSession, events: Iterable[UsageEvent]) -> None:
    """Insert the events (units left unset take the column's default) and count them."""
    added = list(events)
    session.add_all(added)
    await session.flush()
    store = ledger_store(session.get_bind().dialect.name)
    await store.add_counts(
        await session.connection(), count_batch(added, [e.billable for e in added])
    )


async def add_insights_calls(
    session: AsyncSession,
    *,
    user_id: int,
    key_id: int,
    count: int,
    at: datetime,
    status: int = 200,
    latency_ms: int = 1,
    units: int = 1,
) -> None:
    """`count` calls of `GET /api/v1/insights` at `at`, billable unless `status` is an error."""
    await add_to_ledger(
        session,
        [
            UsageEvent(
                user_id=user_id,
                api_key_id=key_id,
                endpoint="/api/v1/insights",
                method="GET",
                status=status,
                latency_ms=latency_ms,
                units=units,
                billable=status < 400,
                created_at=at,
            )
            for _ in range(count)
        ],
    )
