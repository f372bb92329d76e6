"""Group commit of usage events: every metered response waits until its event is durable.

Requests call `record(event)`, which queues the event with a future and waits. One writer task takes
everything queued, writes it in one transaction (one executemany INSERT, idempotency keys resolved
in the same transaction, and the ledger's store adds the batch's counts to the running counters
`usage_daily`, one upsert row per account and UTC day, see `daily.py`, and `usage_endpoint_daily`,
per endpoint and latency bucket as well, see `endpoint_daily.py`), commits, and resolves the
futures.
While it commits, the next batch forms, so under load one commit serves many requests and the
database sees one writer.

Idempotency: the gateway runs a request with an Idempotency-Key once and replays its answer as
an unbilled event (gateway/idempotency.py); the ledger keeps its own guarantee beneath that, for
a call run again after its process died. A billable event carrying the client's Idempotency-Key
claims `(user_id, key)` in `usage_idempotency_keys` with INSERT .. ON CONFLICT. The claim
succeeds for a new key, or for a key first seen more than 24 hours ago (its row is refreshed);
otherwise the event is stored with billable=false. The unique constraint makes this exact
between concurrent batches and processes.

A batch that cannot be committed is rolled back as a whole (no event, no claimed key). When the
database refused it for what a row holds (a constraint, a value it cannot store), each half is
written again on its own, down to the bad event, so only that event's request fails (logged) and
the rest commit; otherwise (the database unreachable) each of its requests gets
`UsageWriteError`, which the gateway answers with 503, and the writer carries on.

Two ways to write a batch. A batch with a key to claim, or when the hourly purge of old keys is
due, goes through a SQLAlchemy session as above. The common batch (nothing to claim) is written by
the driver itself (the store's `direct_insert`): one `executemany` (a `COPY` on PostgreSQL) and a
commit, the same rows, a small part
of the cost of a session, a flush and the ORM's per-row bookkeeping (bench/README.md).
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from novo_gateway.kit import metrics
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.db import SessionFactory, session_scope
from novo_gateway.metering import counters
from novo_gateway.metering.models import UsageEvent, UsageIdempotencyKey
from novo_gateway.metering.store import direct_insert, ledger_store

log = logging.getLogger("novo_gateway.metering.writer")

IDEMPOTENCY_WINDOW = timedelta(hours=24)
_PURGE_EVERY_SECONDS = 3600.0


@dataclass(slots=True)
class NewUsageEvent:
    """One metered call, as the gateway saw it (not frozen: a frozen init is 3x slower)."""

    user_id: int
    api_key_id: int
    endpoint: str
    method: str
    status: int
    latency_ms: int
    units: int
    billable: bool
    created_at: datetime
    request_id: str | None = None
    idempotency_key: str | None = None


class UsageWriteError(Exception):
    """The event could not be made durable (the write failed, or the writer is not running)."""


_Pending = tuple[NewUsageEvent, "asyncio.Future[bool]"]
_USAGE_TABLE: Table = UsageEvent.__table__  # type: ignore[assignment]
# The columns an event fills, in the order of `_values`.
_COLUMNS = (
    "user_id",
    "api_key_id",
    "endpoint",
    "method",
    "status",
    "latency_ms",
    "units",
    "billable",
    "created_at",
    "request_id",
    "idempotency_key",
)


def _values(event: NewUsageEvent, billable: bool) -> tuple[Any, ...]:
    return (
        event.user_id,
        event.api_key_id,
        event.endpoint,
        event.method,
        event.status,
        event.latency_ms,
        event.units,
        billable,
        event.created_at,
        event.request_id,
        event.idempotency_key,
    )


class UsageWriter:
    def __init__(
        self,
        sessions: SessionFactory,
        clock: Clock,
        *,
        max_batch: int = 1000,
        max_queued: int = 20_000,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        engine: AsyncEngine = sessions.kw["bind"]
        self._store = ledger_store(engine.dialect.name)
        self._direct = direct_insert(engine, _USAGE_TABLE, _COLUMNS)
        self._max_batch = max_batch
        self._max_queued = max_queued
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_purge = -math.inf
        self.committed_batches = 0
        # True from a batch that could not be committed until the next one that could.
        self.failing = False

    async def start(self) -> None:
        """Start the writer task."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="usage-writer")

    async def stop(self) -> None:
        """Write everything still queued, then stop."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        await self._task
        self._task = None
        if self._direct is not None:
            await self._direct.close()

    async def record(self, event: NewUsageEvent) -> bool:
        """Return once the event is committed; True when it was billed.

        An event recorded as billable is stored unbilled when its Idempotency-Key was already
        billed for this account within 24 hours. Raises `UsageWriteError` when the event could
        not be committed.
        """
        if self._task is None or self._stopping:
            raise UsageWriteError("the usage writer is not running")
        if len(self._queue) >= self._max_queued:
            raise UsageWriteError("too many usage events are waiting to be written")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((event, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            await self._write_batch(batch)

    async def _write_batch(self, batch: list[_Pending]) -> None:
        events = [event for event, _ in batch]
        try:
            if self._direct is not None and not self._purge_due() and not _claims(events):
                billed = [event.billable for event in events]
                await self._direct.write(
                    [_values(e, e.billable) for e in events], _day_counts(events, billed)
                )
            else:
                billed = await self._write_in_session(events)
        except Exception as exc:
            if len(batch) > 1 and self._store.refused_rows(exc):
                # One bad event (a value the database refuses) must not fail the others: write
                # each half on its own, down to the event that is refused alone.
                half = len(batch) // 2
                await self._write_batch(batch[:half])
                await self._write_batch(batch[half:])
                return
            log.error(
                "could not write %d usage events (%s); their requests get 503",
                len(batch),
                type(exc).__name__,
                exc_info=exc,
            )
            if len(batch) == 1 and self._store.refused_rows(exc):
                log.error("usage event refused by the database, not recorded: %r", batch[0][0])
            else:  # the database itself failed: not ready until a batch commits again
                self.failing = True
            for _, future in batch:
                if not future.done():
                    future.set_exception(UsageWriteError("the usage event was not recorded"))
            return
        self.committed_batches += 1
        self.failing = False
        metrics.usage_events_recorded(len(events))
        for (_, future), bill in zip(batch, billed, strict=True):
            if not future.done():
                future.set_result(bill)

    async def _write_in_session(self, events: list[NewUsageEvent]) -> list[bool]:
        """Claim Idempotency-Keys, insert, and purge old keys when due, in one transaction."""
        async with session_scope(self._sessions) as session:
            billed = await self._resolve_idempotency(session, events)
            rows = [
                dict(zip(_COLUMNS, _values(event, bill), strict=True))
                for event, bill in zip(events, billed, strict=True)
            ]
            await self._store.insert_events(session, rows, _day_counts(events, billed))
            await self._maybe_purge(session)
        return billed

    async def _resolve_idempotency(
        self, session: AsyncSession, events: list[NewUsageEvent]
    ) -> list[bool]:
        """Which events bill: billable ones, but only the first per fresh Idempotency-Key."""
        billed = [event.billable for event in events]
        first_claim: dict[tuple[int, str], int] = {}
        for index, event in enumerate(events):
            if event.billable and event.idempotency_key is not None:
                first_claim.setdefault((event.user_id, event.idempotency_key), index)
        if not first_claim:
            return billed
        won = await self._claim(session, first_claim, events)
        for index, event in enumerate(events):
            if event.billable and event.idempotency_key is not None:
                pair = (event.user_id, event.idempotency_key)
                billed[index] = first_claim[pair] == index and pair in won
        return billed

    async def _claim(
        self,
        session: AsyncSession,
        first_claim: dict[tuple[int, str], int],
        events: list[NewUsageEvent],
    ) -> set[tuple[int, str]]:
        """Claim each key; return those claimed now (new, or last claimed over 24 h ago)."""
        table = UsageIdempotencyKey.__table__
        assert isinstance(table, Table)
        # A fixed order, so two processes claiming overlapping keys lock them in the same order.
        rows = [
            {"user_id": user_id, "key": key, "first_seen_at": events[index].created_at}
            for (user_id, key), index in sorted(first_claim.items())
        ]
        stmt: Any = self._store.upsert(table).values(rows)
        stale = table.c.first_seen_at <= self._clock.now() - IDEMPOTENCY_WINDOW
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.user_id, table.c.key],
            set_={"first_seen_at": stmt.excluded.first_seen_at},
            where=stale,
        ).returning(table.c.user_id, table.c.key)
        result = await session.execute(stmt)
        return {(int(user_id), str(key)) for user_id, key in result.all()}

    def _purge_due(self) -> bool:
        return self._clock.monotonic() - self._last_purge >= _PURGE_EVERY_SECONDS

    async def _maybe_purge(self, session: AsyncSession) -> None:
        """Drop idempotency keys past their window, at most once an hour."""
        if not self._purge_due():
            return
        self._last_purge = self._clock.monotonic()
        cutoff = self._clock.now() - IDEMPOTENCY_WINDOW
        await session.execute(
            delete(UsageIdempotencyKey).where(UsageIdempotencyKey.first_seen_at <= cutoff)
        )


def _day_counts(events: list[NewUsageEvent], billed: list[bool]) -> counters.BatchCounts:
    """The batch's rows for the running counters (per account and UTC day, and per endpoint)."""
    return counters.count_batch(events, billed)


def _claims(events: list[NewUsageEvent]) -> bool:
    """Whether any event of the batch has an Idempotency-Key to claim."""
    return any(event.billable and event.idempotency_key is not None for event in events)
