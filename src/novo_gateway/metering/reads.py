"""Bounds on an account's usage reads, so one customer's queries cannot slow the others'.

- A statement timeout (`USAGE_READ_TIMEOUT_SECONDS`) on every statement of a usage read:
  PostgreSQL's `statement_timeout`, set for the read's transaction only (`set_config(...,
  true)`, as `SET LOCAL`), and on SQLite a progress handler that interrupts a statement past the
  deadline. A read stopped this way is answered 503 in the common error shape, with Retry-After;
  the database stops working on it at once (the query is cancelled, not left running).
- A cap on heavy reads in flight per account (`USAGE_READS_PER_ACCOUNT`, per process): one more
  is answered 429 with Retry-After at once, before it reaches the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.kit.errors import ServiceUnavailable, Throttled
from novo_gateway.metering.store import ledger_store

RETRY_AFTER_SECONDS = 1


class AccountReads:
    """The usage reads of this process: `bounded(session, user_id)` wraps one."""

    def __init__(self, *, per_account: int = 2, timeout_seconds: float = 10.0) -> None:
        self.per_account = per_account
        self.timeout_seconds = timeout_seconds
        self._in_flight: dict[int, int] = {}

    def in_flight(self, user_id: int) -> int:
        return self._in_flight.get(user_id, 0)

    @asynccontextmanager
    async def bounded(
        self, session: AsyncSession, user_id: int, *, heavy: bool = True
    ) -> AsyncIterator[None]:
        """Run the block's statements under the timeout; a `heavy` read also takes one of the
        account's slots, or is refused (429) when they are all taken."""
        if heavy:
            self._take(user_id)
        try:
            async with statement_timeout(session, self.timeout_seconds):
                yield
        finally:
            if heavy:
                self._release(user_id)

    def _take(self, user_id: int) -> None:
        running = self._in_flight.get(user_id, 0)
        if running >= self.per_account:
            raise Throttled(
                f"{running} usage queries of this account are still running. "
                "Retry when one has finished.",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                retryAfter=RETRY_AFTER_SECONDS,
            )
        self._in_flight[user_id] = running + 1

    def _release(self, user_id: int) -> None:
        running = self._in_flight.get(user_id, 0) - 1
        if running > 0:
            self._in_flight[user_id] = running
        else:
            self._in_flight.pop(user_id, None)


@asynccontextmanager
async def statement_timeout(session: AsyncSession, seconds: float) -> AsyncIterator[None]:
    """Stop any statement of the block that runs past `seconds`: `ServiceUnavailable` (503)."""
    store = ledger_store((await session.connection()).dialect.name)
    async with store.time_limit(session, seconds):
        try:
            yield
        except DBAPIError as exc:
            if not store.timed_out(exc):
                raise
            raise ServiceUnavailable(
                f"This usage query took longer than {seconds:g} s and was stopped. "
                "Ask for fewer days, or retry later.",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from exc
