"""Named leases in the database: exactly one process at a time does a given piece of work.

Taking or renewing a lease is one conditional UPDATE (or the INSERT that creates it), atomic on
SQLite and PostgreSQL alike, so it works across processes and hosts sharing the database.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.billing.models import WorkerLease
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.db import SessionFactory, session_scope


class Lease:
    def __init__(
        self, sessions: SessionFactory, clock: Clock, *, name: str, holder: str, ttl: float
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self.name = name
        self.holder = holder
        self.ttl = ttl

    async def acquire(self) -> bool:
        """Take or renew the lease; False when another live holder has it."""
        async with session_scope(self._sessions) as session:
            return await self.acquire_in(session)

    async def acquire_in(self, session: AsyncSession) -> bool:
        """`acquire` inside the caller's transaction (a fence: its work commits only if held)."""
        now = self._clock.now()
        expires = now + timedelta(seconds=self.ttl)
        dialect = session.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        created = await session.execute(
            insert(WorkerLease)
            .values(name=self.name, holder=self.holder, expires_at=expires)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        if created.rowcount == 1:  # type: ignore[attr-defined]
            return True
        taken = await session.execute(
            update(WorkerLease)
            .where(
                WorkerLease.name == self.name,
                or_(WorkerLease.holder == self.holder, WorkerLease.expires_at < now),
            )
            .values(holder=self.holder, expires_at=expires)
        )
        return bool(taken.rowcount == 1)  # type: ignore[attr-defined]

    async def release(self) -> None:
        async with session_scope(self._sessions) as session:
            await session.execute(
                update(WorkerLease)
                .where(WorkerLease.name == self.name, WorkerLease.holder == self.holder)
                .values(expires_at=self._clock.now())
            )

    async def drop(self) -> None:
        """Delete the lease if this holder has it (for leases named after one piece of work)."""
        async with session_scope(self._sessions) as session:
            await session.execute(
                delete(WorkerLease).where(
                    WorkerLease.name == self.name, WorkerLease.holder == self.holder
                )
            )
