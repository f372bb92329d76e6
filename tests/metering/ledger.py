"""Ledger rows added by a test's session: far faster than as many calls, and counted in the
running counters by the ledger's store, in the session's transaction, as every insert is."""

from __future__ import annotations

from collections.abc import Iterable

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
